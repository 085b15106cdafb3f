// The signing contract between the Apex publisher and sfmirror's verifier, pinned by one known
// vector (salesforce/test-fixtures/vector.json): Apex's test asserts it builds the same string to
// sign and the same signature (SfmirrorSignerTest), and this test proves Node verifies that
// signature with the public key, so a change on either side breaks one of the two.
import t from 'tap';
import { createPrivateKey, createPublicKey, createSign, verify, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..', 'salesforce');
const fixtures = join(root, 'test-fixtures');

interface Vector {
  timestamp: string;
  body: string;
  stringToSign: string;
  signatureHeader: string;
  signatureBase64: string;
  publicKeyPem: string;
  certificatePem: string;
}
const vector = JSON.parse(readFileSync(join(fixtures, 'vector.json'), 'utf8')) as Vector;

const verifies = (data: string, signatureBase64: string, key: string): boolean =>
  verify('sha256', Buffer.from(data, 'utf8'), createPublicKey(key), Buffer.from(signatureBase64, 'base64'));

t.test('the string to sign is timestamp, dot, raw body', async (t) => {
  t.match(vector.timestamp, /^\d{10}$/, 'unix seconds');
  t.equal(vector.stringToSign, `${vector.timestamp}.${vector.body}`);
  t.ok(Buffer.byteLength(vector.body, 'utf8') > vector.body.length, 'the body has non-ASCII text, so byte handling is tested');
  t.equal(vector.signatureHeader, `rsa-sha256=${vector.signatureBase64}`);
});

t.test('Node verifies the signature with the public key and with the certificate', async (t) => {
  t.ok(verifies(vector.stringToSign, vector.signatureBase64, vector.publicKeyPem), 'public key');
  t.ok(verifies(vector.stringToSign, vector.signatureBase64, vector.certificatePem), 'self-signed certificate, as Setup exports it');
  const certificate = new X509Certificate(vector.certificatePem);
  t.ok(certificate.publicKey.equals(createPublicKey(vector.publicKeyPem)), 'the certificate holds that public key');
  t.equal(certificate.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
});

t.test('a changed body, timestamp or key does not verify', async (t) => {
  t.notOk(verifies(vector.stringToSign.replace('Zürich', 'Zurich'), vector.signatureBase64, vector.publicKeyPem), 'body');
  t.notOk(verifies(`1710072001.${vector.body}`, vector.signatureBase64, vector.publicKeyPem), 'timestamp');
  t.notOk(verifies(vector.body, vector.signatureBase64, vector.publicKeyPem), 'body alone is not what is signed');
});

t.test('the test-only private key reproduces the signature (PKCS#1 v1.5 is deterministic)', async (t) => {
  const privateKey = createPrivateKey(readFileSync(join(fixtures, 'TEST-ONLY-private-key.pem'), 'utf8'));
  t.ok(createPublicKey(privateKey).equals(createPublicKey(vector.publicKeyPem)), 'the pair matches');
  const signature = createSign('sha256').update(vector.stringToSign, 'utf8').sign(privateKey).toString('base64');
  t.equal(signature, vector.signatureBase64);
});

/** The value of `public static final String NAME = '...' + '...';` in an Apex class. */
function apexConstant(source: string, name: string): string {
  const declaration = new RegExp(`static final String ${name} =([\\s\\S]*?);`).exec(source);
  if (!declaration) throw new Error(`no constant ${name}`);
  return [...declaration[1]!.matchAll(/'((?:[^'\\]|\\.)*)'/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1')).join('');
}

t.test('the Apex test asserts the same vector and key', async (t) => {
  const support = readFileSync(join(root, 'force-app', 'main', 'default', 'classes', 'SfmirrorTestSupport.cls'), 'utf8');
  t.equal(apexConstant(support, 'VECTOR_TIMESTAMP'), vector.timestamp);
  t.equal(apexConstant(support, 'VECTOR_BODY'), vector.body);
  t.equal(apexConstant(support, 'VECTOR_STRING_TO_SIGN'), vector.stringToSign);
  t.equal(apexConstant(support, 'VECTOR_SIGNATURE'), vector.signatureBase64);
  const pkcs8 = createPrivateKey(readFileSync(join(fixtures, 'TEST-ONLY-private-key.pem'), 'utf8'))
    .export({ type: 'pkcs8', format: 'der' })
    .toString('base64');
  t.equal(apexConstant(support, 'TEST_ONLY_PRIVATE_KEY_PKCS8'), pkcs8, 'Crypto.sign gets the same key, as base64 PKCS#8');

  const signerTest = readFileSync(join(root, 'force-app', 'main', 'default', 'classes', 'SfmirrorSignerTest.cls'), 'utf8');
  t.match(signerTest, /SfmirrorSigner\.stringToSign\(SfmirrorTestSupport\.VECTOR_TIMESTAMP, SfmirrorTestSupport\.VECTOR_BODY\)/);
  t.match(signerTest, /'rsa-sha256=' \+ SfmirrorTestSupport\.VECTOR_SIGNATURE/);
});
