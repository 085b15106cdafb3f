import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { authMethod, parseIdentityUrl } from '../../src/salesforce/auth.ts';
import { createSalesforceSession } from '../../src/salesforce/client.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import './harness.ts';

// The three ways to authenticate (README.md): each yields a token and the org's identity.
const org = await startSalesforceOrg(t);

t.test('identity URL and method selection', async (t) => {
  t.same(parseIdentityUrl('https://login.salesforce.com/id/00D5g000004ABCDEAM/0055g00000ABCDEAAH'), {
    orgId: '00D5g000004ABCDEAM',
    userId: '0055g00000ABCDEAAH',
  });
  t.equal(parseIdentityUrl('https://example.com/nothing'), undefined);
  t.equal(authMethod({ loginUrl: 'x', instanceUrl: 'i', accessToken: 'a' }), 'access-token');
  t.equal(authMethod({ loginUrl: 'x', refreshToken: 'r', clientId: 'c' }), 'refresh-token');
  t.equal(authMethod({ loginUrl: 'x', username: 'u', privateKeyFile: 'k', clientId: 'c' }), 'jwt-bearer');
  t.equal(authMethod({ loginUrl: 'x' }), undefined);
});

t.test('access token: identity from /services/data; cannot be renewed', async (t) => {
  const s = createSalesforceSession({ instanceUrl: org.url, accessToken: org.issueToken(), loginUrl: org.url, version: org.version });
  t.same(await s.connect(), { orgId: org.orgId, userId: org.userId });
  t.equal(await s.refresh(), false);
});

t.test('refresh token: REST calls survive an expired session (jsforce refreshes on 401)', async (t) => {
  const s = createSalesforceSession({ refreshToken: org.refreshToken, clientId: org.clientId, loginUrl: org.url, version: org.version });
  t.same(await s.connect(), { orgId: org.orgId, userId: org.userId });
  const id = org.insert('Account', { Name: 'x' });
  org.revokeTokens();
  const recs = await s.readRecords('Account', [id]);
  t.equal(recs[0]?.Name, 'x');
  const bad = createSalesforceSession({ refreshToken: 'wrong', clientId: org.clientId, loginUrl: org.url, version: org.version });
  await t.rejects(bad.connect(), /token request \(refresh-token\) failed: 400 invalid_grant/);
});

t.test('JWT bearer: a signed assertion gets a token', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfm-jwt-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const key = path.join(dir, 'server.key');
  fs.writeFileSync(key, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const s = createSalesforceSession({
    username: 'me@example.com',
    privateKeyFile: key,
    clientId: org.clientId,
    loginUrl: org.url,
    version: org.version,
  });
  const grants = org.stats.tokenGrants;
  t.same(await s.connect(), { orgId: org.orgId, userId: org.userId });
  t.equal(org.stats.tokenGrants, grants + 1);
  t.equal(await s.refresh(), true, 'renewed with a fresh assertion');
});
