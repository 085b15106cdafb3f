// Regenerates the signing vector shared by the Apex tests and sfmirror's verifier:
//   npx node salesforce/test-fixtures/make-vector.ts
// It makes a NEW throwaway key pair, so after running it copy the printed constants into
// force-app/main/default/classes/SfmirrorTestSupport.cls (test/salesforce/vector.test.ts fails until
// both sides agree). The key is for tests only: no sfmirror deployment may trust its public half.
import { generateKeyPairSync, createSign } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const here = import.meta.dirname;
const timestamp = '1710072000'; // 2024-03-10T12:00:00Z
// One update as SfmirrorEnvelope renders it; the non-ASCII city proves both sides sign UTF-8 bytes.
const body = JSON.stringify({
  orgId: '00D000000000001EAA',
  changes: [{
    object: 'Account',
    operation: 'update',
    record: { Id: '001000000000001AAA', SystemModstamp: '2024-03-10T12:00:00.000Z', BillingCity: 'Zürich', Phone: null },
  }],
  types: { Account: { Id: 'id', SystemModstamp: 'datetime', BillingCity: 'string', Phone: 'phone' } },
});
const stringToSign = `${timestamp}.${body}`;

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const signatureBase64 = createSign('sha256').update(stringToSign, 'utf8').sign(privateKey).toString('base64');

// A self-signed certificate, the form in which an admin exports "Sfmirror_Signing" from Setup.
const dir = mkdtempSync(join(tmpdir(), 'sfmirror-vector-'));
let certificatePem: string | undefined;
try {
  writeFileSync(join(dir, 'key.pem'), privatePem);
  execFileSync('openssl', ['req', '-x509', '-new', '-key', join(dir, 'key.pem'), '-subj', '/CN=Sfmirror_Signing TEST ONLY',
    '-days', '36500', '-sha256', '-out', join(dir, 'cert.pem')]);
  certificatePem = readFileSync(join(dir, 'cert.pem'), 'utf8');
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const vector = {
  description: 'TEST ONLY. X-Sfmirror-Signature = "rsa-sha256=" + signatureBase64, RSA PKCS#1 v1.5 SHA-256 over the UTF-8 bytes of stringToSign = timestamp + "." + body.',
  timestamp,
  body,
  stringToSign,
  signatureHeader: `rsa-sha256=${signatureBase64}`,
  signatureBase64,
  publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  certificatePem,
};
writeFileSync(join(here, 'vector.json'), JSON.stringify(vector, null, 2) + '\n');
writeFileSync(join(here, 'TEST-ONLY-private-key.pem'), privatePem);

const pkcs8Base64 = privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64');
console.log(`VECTOR_SIGNATURE = '${signatureBase64}'`);
console.log(`TEST_ONLY_PRIVATE_KEY_PKCS8 = '${pkcs8Base64}'`);
