import t from 'tap';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { fixedClock } from '../../src/lib/clock.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { createSecretBox } from '../../src/lib/secret-box.ts';
import { listOAuthOrgs } from '../../src/mirror/org-connections.repository.ts';
import { resealStoredSecrets } from '../../src/bin/org-sessions.ts';
import { requestToken } from '../../src/salesforce/auth.ts';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { ADMIN_TOKEN, buildTestApp } from '../support/app.ts';

// Connecting orgs by OAuth (issue 7): the web-server flow with state and PKCE against the stand-in's
// authorize/token endpoints, tokens encrypted at rest, keys rotated.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const acme = await startSalesforceOrg(t, { orgId: '00D0000000000A1', userId: '0050000000000A1' });
const beta = await startSalesforceOrg(t, { orgId: '00D0000000000B2', userId: '0050000000000B2' });
const oldKey = randomBytes(32);
const box = createSecretBox([oldKey]);
const clock = fixedClock('2026-11-30T12:00:00Z');
const REDIRECT = 'https://sfmirror.example.com/oauth/callback';
const app = await buildTestApp(tdb, {
  clock,
  oauth: {
    box,
    clientId: acme.clientId,
    clientSecret: 'consumer-secret',
    defaultLoginUrl: acme.url,
    // The stand-ins run on loopback: listed like an operator lists a login host (SFMIRROR_OAUTH_LOGIN_HOSTS).
    loginHosts: [acme.url, beta.url],
    defaultRedirectUri: REDIRECT,
    stateTtlSeconds: 600,
  },
});
t.teardown(() => app.close());
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function authorize(query: string) {
  return app.inject({ method: 'GET', url: `/oauth/authorize?${query}`, headers: admin });
}
/** What the operator's browser does: open the URL, log in, approve, and follow the redirect. */
async function approve(authorizeUrl: string): Promise<URL> {
  const r = await fetch(authorizeUrl, { redirect: 'manual' });
  if (r.status !== 302) throw new Error(`authorize answered ${r.status}: ${await r.text()}`);
  return new URL(r.headers.get('location')!);
}
const callback = (back: URL) => app.inject({ method: 'GET', url: `/oauth/callback?${back.searchParams.toString()}` });

t.test('the operator API guards authorize and says what is wrong', async (t) => {
  t.equal((await app.inject({ method: 'GET', url: '/oauth/authorize?alias=acme' })).statusCode, 401, 'no token');
  const bad = await authorize('alias=Public');
  t.equal(bad.statusCode, 400);
  t.match(bad.json().message, /alias: "Public" is not usable/);
  t.match((await authorize('alias=public')).json().message, /not usable/, 'reserved alias');
  t.match(
    (await authorize(`alias=acme&loginUrl=${encodeURIComponent('http://evil.example.com')}`)).json().message,
    /loginUrl: must be a Salesforce login origin/,
  );
  t.match((await authorize('alias=acme&redirect_uri=javascript:alert(1)')).json().message, /redirect_uri: .* is not an http\(s\) URL/);
  const bare = await buildTestApp(tdb, {
    oauth: {
      box: undefined,
      clientId: undefined,
      clientSecret: undefined,
      defaultLoginUrl: acme.url,
      defaultRedirectUri: REDIRECT,
      stateTtlSeconds: 600,
    },
  });
  const r = await bare.inject({ method: 'GET', url: '/oauth/authorize?alias=acme', headers: admin });
  t.equal(r.statusCode, 409);
  t.match(r.json().message, /needs SF_CLIENT_ID .* and SFMIRROR_ENCRYPTION_KEY/);
  await bare.close();
  t.equal(
    (await sql<{ n: number }>`select count(*)::int as n from sfmirror.oauth_states`.execute(db)).rows[0]!.n,
    0,
    'refused requests stored no state',
  );
});

t.test('the whole flow: authorize URL with state and PKCE, callback, identity, encrypted token', async (t) => {
  const r = await authorize(`alias=acme&loginUrl=${encodeURIComponent(acme.url)}`);
  t.equal(r.statusCode, 200, r.body);
  const url = new URL(r.json().url);
  t.equal(url.origin + url.pathname, `${acme.url}/services/oauth2/authorize`);
  t.equal(url.searchParams.get('response_type'), 'code');
  t.equal(url.searchParams.get('client_id'), acme.clientId);
  t.equal(url.searchParams.get('redirect_uri'), REDIRECT);
  t.equal(url.searchParams.get('code_challenge_method'), 'S256');
  t.match(url.searchParams.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
  t.match(url.searchParams.get('state'), /^[A-Za-z0-9_-]{43}$/);
  const stored = (
    await sql<{ state_hash: string; verifier_enc: string }>`select state_hash, verifier_enc from sfmirror.oauth_states`.execute(db)
  ).rows;
  t.equal(stored.length, 1);
  t.not(stored[0]!.state_hash, url.searchParams.get('state'), 'the state is stored hashed');
  t.match(stored[0]!.verifier_enc, /^v1\./, 'the verifier is stored encrypted');

  const back = await approve(url.toString());
  t.equal(back.searchParams.get('state'), url.searchParams.get('state'));
  const done = await callback(back);
  t.equal(done.statusCode, 200, done.body);
  t.same(done.json(), {
    alias: 'acme',
    id: `${acme.url}/id/${acme.orgId}/${acme.userId}`,
    orgId: acme.orgId,
    userId: acme.userId,
    instanceUrl: acme.url,
  });

  const [org] = await listOAuthOrgs(db);
  t.equal(org?.alias, 'acme');
  t.equal(org?.orgId, acme.orgId);
  t.equal(org?.authState, 'connected');
  const raw = (await sql<Record<string, string>>`select * from sfmirror.orgs where alias = 'acme'`.execute(db)).rows[0]!;
  const refreshToken = box.open(org!.refreshTokenEnc, 'refresh_token:acme');
  t.notOk(JSON.stringify(raw).includes(refreshToken), 'the refresh token appears nowhere in the row in clear');
  t.equal(raw.user_id, acme.userId);
  t.equal(raw.login_url, acme.url);
  // The stored token is the one Salesforce issued: it gets new access tokens.
  const grant = await requestToken({ loginUrl: acme.url, refreshToken, clientId: acme.clientId });
  t.ok(grant?.access_token, 'the stored refresh token works');

  t.test('the state is single use', async (t) => {
    const again = await callback(back);
    t.equal(again.statusCode, 400);
    t.match(again.json().message, /already used/);
  });
});

t.test('unknown, expired and denied flows are refused and connect nothing', async (t) => {
  const before = (await listOAuthOrgs(db)).length;
  const unknown = await app.inject({ method: 'GET', url: '/oauth/callback?code=abc&state=not-a-state' });
  t.equal(unknown.statusCode, 400);
  t.match(unknown.json().message, /unknown OAuth state/);
  t.match((await app.inject({ method: 'GET', url: '/oauth/callback?code=abc' })).json().message, /state: missing/);

  const r = await authorize(`alias=beta&loginUrl=${encodeURIComponent(beta.url)}`);
  const back = await approve(r.json().url);
  clock.advance(601_000);
  const late = await callback(back);
  t.equal(late.statusCode, 400);
  t.match(late.json().message, /expired/);
  clock.advance(-601_000);

  beta.denyNextAuthorization();
  const denied = await callback(await approve((await authorize(`alias=beta&loginUrl=${encodeURIComponent(beta.url)}`)).json().url));
  t.equal(denied.statusCode, 400);
  t.match(denied.json().message, /Salesforce did not authorize: access_denied/);

  // A code Salesforce does not know (or one already exchanged): Salesforce's words come back.
  const fresh = await approve((await authorize(`alias=beta&loginUrl=${encodeURIComponent(beta.url)}`)).json().url);
  fresh.searchParams.set('code', 'forged-code');
  const forged = await callback(fresh);
  t.equal(forged.statusCode, 400);
  t.match(forged.json().message, /refused the authorization code: 400 invalid_grant/);
  t.equal((await listOAuthOrgs(db)).length, before, 'nothing connected');
});

t.test('an alias keeps its org; an org keeps its alias', async (t) => {
  const other = await callback(await approve((await authorize(`alias=acme&loginUrl=${encodeURIComponent(beta.url)}`)).json().url));
  t.equal(other.statusCode, 409);
  t.match(other.json().message, /alias "acme" already belongs to org 00D0000000000A1/);
  const moved = await callback(await approve((await authorize(`alias=acme2&loginUrl=${encodeURIComponent(acme.url)}`)).json().url));
  t.equal(moved.statusCode, 409);
  t.match(moved.json().message, /already connected as "acme"/);
  const ok = await callback(await approve((await authorize(`alias=beta&loginUrl=${encodeURIComponent(beta.url)}`)).json().url));
  t.equal(ok.statusCode, 200, ok.body);
  const reconnect = await callback(await approve((await authorize(`alias=acme&loginUrl=${encodeURIComponent(acme.url)}`)).json().url));
  t.equal(reconnect.statusCode, 200, 'the same org under its alias reconnects');
  t.same(
    (await listOAuthOrgs(db)).map((o) => o.alias),
    ['acme', 'beta'],
  );
});

t.test('tokens are unreadable without the key and survive its rotation', async (t) => {
  const rows = await listOAuthOrgs(db);
  const plain = rows.map((r) => box.open(r.refreshTokenEnc, `refresh_token:${r.alias}`));
  t.throws(
    () => createSecretBox([randomBytes(32)]).open(rows[0]!.refreshTokenEnc, 'refresh_token:acme'),
    /not in SFMIRROR_ENCRYPTION_KEY/,
    'another key cannot read it',
  );
  t.throws(
    () => box.open(rows[0]!.refreshTokenEnc, 'refresh_token:beta'),
    /does not decrypt/,
    'a token copied to another org does not open there',
  );
  // A character in the middle of the ciphertext (v1.<key>.<iv>.<tag>.<ciphertext>): the last base64
  // character may carry only padding bits, whose change decodes to the same bytes.
  const parts = rows[0]!.refreshTokenEnc.split('.');
  const ct = parts[4]!;
  const mid = Math.floor(ct.length / 2);
  parts[4] = ct.slice(0, mid) + (ct[mid] === 'A' ? 'B' : 'A') + ct.slice(mid + 1);
  const tampered = parts.join('.');
  t.throws(() => box.open(tampered, 'refresh_token:acme'), /does not decrypt/, 'tampering is detected');

  const newKey = randomBytes(32);
  const rotating = createSecretBox([newKey, oldKey]);
  t.equal(await resealStoredSecrets(db, rotating, createLogger('silent')), 2, 'both tokens re-encrypted');
  const after = await listOAuthOrgs(db);
  for (const r of after) t.equal(rotating.keyIdOf(r.refreshTokenEnc), rotating.currentKeyId);
  const onlyNew = createSecretBox([newKey]);
  t.same(
    after.map((r) => onlyNew.open(r.refreshTokenEnc, `refresh_token:${r.alias}`)),
    plain,
    'the new key alone reads them: the old key can go',
  );
  t.equal(await resealStoredSecrets(db, rotating, createLogger('silent')), 0, 'nothing left to re-encrypt');
});
