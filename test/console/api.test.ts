import t from 'tap';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { ADMIN_TOKEN, buildTestApp } from '../support/app.ts';
import { startTestDatabase } from '../support/pg.ts';
import { createSecretBox } from '../../src/lib/secret-box.ts';
import { recordStartFailure } from '../../src/stream/stream.repository.ts';
import { createStatusHistory } from '../../src/api/status-history.ts';
import { formatStatus } from '../../src/bin/cli-status.ts';
import { runOrgs } from '../../src/bin/cli-orgs.ts';
import { PassThrough } from 'node:stream';
import type { Status } from '../../src/api/status.ts';
import { sleep } from '../../src/lib/backoff.ts';

// The console's sessions and CSRF, the operator API it completes (clients, keys, warehouse switch,
// run now, resync) and the status items that must tell the truth, through the app as serve builds it.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const box = createSecretBox([randomBytes(32)]);
const app = await buildTestApp(tdb, {
  oauth: {
    box,
    clientId: undefined,
    clientSecret: undefined,
    defaultLoginUrl: 'https://login.salesforce.com',
    defaultRedirectUri: undefined,
    stateTtlSeconds: 600,
  },
  status: { bigqueryConfigured: false, envApiAlias: undefined },
  console: { sessionTtlSeconds: 600 },
});
t.teardown(() => app.close());
const bearer = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function signIn(): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const r = await app.inject({ method: 'POST', url: '/console/session', payload: { token: ADMIN_TOKEN } });
  const setCookie = String(r.headers['set-cookie']);
  return { cookie: setCookie.split(';')[0]!, csrf: r.json().csrfToken, setCookie };
}

t.test('sign-in: wrong token, cookie flags, form post, session endpoint, sign-out', async (t) => {
  const wrong = await app.inject({ method: 'POST', url: '/console/session', payload: { token: 'nope' } });
  t.equal(wrong.statusCode, 401, 'a wrong token is refused');
  t.notOk(wrong.headers['set-cookie'], 'and sets no cookie');
  t.equal((await app.inject({ url: '/admin/status' })).statusCode, 401, 'no session: data endpoints answer 401');
  t.equal((await app.inject({ url: '/console/session' })).statusCode, 401);

  const s = await signIn();
  t.match(
    s.setCookie,
    /^sfmirror_console=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=600; HttpOnly; SameSite=Strict$/,
    'HttpOnly, SameSite=Strict, bounded',
  );
  t.notMatch(s.setCookie, /Secure/, 'not Secure over plain http');
  const https = await app.inject({
    method: 'POST',
    url: '/console/session',
    headers: { 'x-forwarded-proto': 'https' },
    payload: { token: ADMIN_TOKEN },
  });
  t.match(String(https.headers['set-cookie']), /; Secure$/, 'Secure when served over https');
  const form = await app.inject({
    method: 'POST',
    url: '/console/session',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `token=${encodeURIComponent(ADMIN_TOKEN)}`,
  });
  t.equal(form.statusCode, 303, 'a form post signs in and goes back to the console');
  t.equal(form.headers.location, '/console');

  const st = await app.inject({ url: '/admin/status', headers: { cookie: s.cookie } });
  t.equal(st.statusCode, 200, 'the session reads the operator API');
  const me = await app.inject({ url: '/console/session', headers: { cookie: s.cookie } });
  t.equal(me.json().csrfToken, s.csrf, 'the page learns its CSRF token from the session endpoint');

  const noCsrf = await app.inject({ method: 'DELETE', url: '/console/session', headers: { cookie: s.cookie } });
  t.equal(noCsrf.statusCode, 403, 'sign-out without the CSRF token is refused');
  const out = await app.inject({ method: 'DELETE', url: '/console/session', headers: { cookie: s.cookie, 'x-csrf-token': s.csrf } });
  t.equal(out.statusCode, 204);
  t.match(String(out.headers['set-cookie']), /Max-Age=0/, 'the cookie is cleared');
  t.equal((await app.inject({ url: '/admin/status', headers: { cookie: s.cookie } })).statusCode, 401, 'the old cookie is dead');
});

t.test('CSRF: a state change needs the token and a same-origin Origin', async (t) => {
  const s = await signIn();
  const body = { object: 'Account', startDate: '2024-01-01' };
  const none = await app.inject({ method: 'POST', url: '/admin/backfills', headers: { cookie: s.cookie }, payload: body });
  t.equal(none.statusCode, 403, 'no token');
  t.equal(none.json().code, 'CSRF');
  const wrong = await app.inject({
    method: 'POST',
    url: '/admin/backfills',
    headers: { cookie: s.cookie, 'x-csrf-token': 'x'.repeat(43) },
    payload: body,
  });
  t.equal(wrong.statusCode, 403, 'a wrong token');
  const crossSite = await app.inject({
    method: 'POST',
    url: '/admin/backfills',
    headers: { cookie: s.cookie, 'x-csrf-token': s.csrf, origin: 'https://evil.example', host: 'localhost:80' },
    payload: body,
  });
  t.equal(crossSite.statusCode, 403, 'another origin');
  const ok = await app.inject({
    method: 'POST',
    url: '/admin/backfills',
    headers: { cookie: s.cookie, 'x-csrf-token': s.csrf },
    payload: body,
  });
  t.equal(ok.statusCode, 201, 'with the token: done');
  const id = ok.json().id;
  const run = await app.inject({ method: 'POST', url: `/admin/backfills/${id}/run`, headers: bearer });
  t.match(run.json(), { id, active: true, state: 'pending' }, 'run now (bearer scripts need no CSRF token)');
  const resync = await app.inject({ method: 'POST', url: '/admin/resyncs', headers: bearer, payload: { object: 'Account' } });
  t.same([resync.statusCode, resync.json()], [202, { queued: true }], 'a resync request is queued');
  const again = await app.inject({ method: 'POST', url: '/admin/resyncs', headers: bearer, payload: { object: 'Account' } });
  t.same(again.json(), { queued: false }, 'one open resync per object');
  const rotated = await buildTestApp(tdb, { adminToken: 'another-token-0123456789' });
  t.teardown(() => rotated.close());
  t.equal(
    (await rotated.inject({ url: '/admin/status', headers: { cookie: s.cookie } })).statusCode,
    401,
    'a rotated admin token ends sessions',
  );
});

t.test('read clients over the operator API', async (t) => {
  const add = await app.inject({
    method: 'POST',
    url: '/admin/clients',
    headers: bearer,
    payload: { name: 'app', objects: 'Account,Contact', fields: 'Name' },
  });
  t.equal(add.statusCode, 201);
  const token = add.json().token as string;
  t.match(token, /^sfm_/, 'the token, once');
  t.equal(
    (await app.inject({ url: '/api/v1/objects/Account', headers: { authorization: `Bearer ${token}` } })).statusCode,
    200,
    'it reads',
  );
  t.equal(
    (await app.inject({ method: 'POST', url: '/admin/clients', headers: bearer, payload: { name: 'app', objects: 'Account' } })).statusCode,
    409,
  );
  const bad = await app.inject({
    method: 'POST',
    url: '/admin/clients',
    headers: bearer,
    payload: { name: 'x', objects: 'Not An Object' },
  });
  t.equal(bad.statusCode, 400);
  const list = (await app.inject({ url: '/admin/clients', headers: bearer })).json();
  t.match(list, [{ name: 'app', active: true, revokedAt: null }]);
  t.notOk(JSON.stringify(list).includes(token), 'the list never shows a token');
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/clients/app', headers: bearer })).statusCode, 204);
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/clients/app', headers: bearer })).statusCode, 404);
  // A running server refuses a revoked client within 2 seconds (its client cache).
  let status = 0;
  for (const until = Date.now() + 5000; Date.now() < until && status !== 401; await sleep(100))
    status = (await app.inject({ url: '/api/v1/objects/Account', headers: { authorization: `Bearer ${token}` } })).statusCode;
  t.equal(status, 401, 'revoked');
});

t.test("an org's signing keys over the operator API", async (t) => {
  const add = await app.inject({ method: 'POST', url: '/admin/orgs/salesforce/keys', headers: bearer, payload: { label: 'prod' } });
  t.equal(add.statusCode, 201);
  t.match(add.json(), { org: 'salesforce', kind: 'hmac', secret: /^[A-Za-z0-9_-]{43}$/ }, 'an HMAC secret, once');
  const pem = (await import('node:crypto'))
    .generateKeyPairSync('rsa', { modulusLength: 2048 })
    .publicKey.export({ type: 'spki', format: 'pem' });
  const rsa = await app.inject({ method: 'POST', url: '/admin/orgs/salesforce/keys', headers: bearer, payload: { publicKey: pem } });
  t.match(rsa.json(), { kind: 'rsa' });
  t.notOk(rsa.json().secret);
  t.equal(
    (await app.inject({ method: 'POST', url: '/admin/orgs/salesforce/keys', headers: bearer, payload: { publicKey: 'junk' } })).statusCode,
    400,
  );
  t.equal((await app.inject({ method: 'POST', url: '/admin/orgs/nobody/keys', headers: bearer, payload: {} })).statusCode, 404);
  const keys = (await app.inject({ url: '/admin/orgs/salesforce/keys', headers: bearer })).json();
  t.equal(keys.length, 2);
  t.notOk(JSON.stringify(keys).includes(add.json().secret), 'the list never shows a secret');
  t.equal((await app.inject({ method: 'DELETE', url: `/admin/orgs/salesforce/keys/${add.json().id}`, headers: bearer })).statusCode, 204);
  t.equal((await app.inject({ url: '/admin/orgs/salesforce/keys', headers: bearer })).json().length, 1, 'revoked');
  t.equal((await app.inject({ method: 'DELETE', url: `/admin/orgs/salesforce/keys/${add.json().id}`, headers: bearer })).statusCode, 404);
});

t.test('status tells the truth', async (t) => {
  // The default org, written to by signed pushes only: no SF_* access here.
  const status = async () => (await app.inject({ url: '/admin/status', headers: bearer })).json() as Status;
  t.equal((await status()).orgs[0]!.connection.state, 'push only', 'push only, not environment');
  t.match(formatStatus(await status()), /connection: push only \(no API access\)/);
  const listed = new PassThrough();
  await runOrgs(db, { action: 'list', json: true }, undefined, listed, listed);
  t.match(JSON.parse(String(listed.read())), [{ alias: 'salesforce', state: 'push only' }], 'sfmirror orgs list says so too');

  await recordStartFailure(db, 'salesforce', ['/data/ChangeEvents'], 'connect ECONNREFUSED 127.0.0.1:9');
  t.match((await status()).orgs[0]!.stream.channels, [{ state: 'backing off', error: /ECONNREFUSED/ }], 'a stream that cannot start');

  const on = await app.inject({ method: 'POST', url: '/admin/warehouse/enable', headers: bearer });
  t.match(on.json(), { enabled: true, configuredHere: false, warning: /BIGQUERY_PROJECT is not set/ });
  await sql`insert into sfmirror.outbox (org_alias, object, sfid, op, version, seq, record)
    values ('salesforce', 'Account', '001000000000001AAA', 'update', '1', 1, '{}'::jsonb)`.execute(db);
  const w = (await status()).warehouse;
  t.match(w, { enabled: true, warning: /nobody here sends them/, outboxDepth: 1 });
  t.match(formatStatus(await status()), /WARNING: the warehouse is on/);
  const off = await app.inject({ method: 'POST', url: '/admin/warehouse/disable', headers: bearer });
  t.match(off.json(), { enabled: false, warning: null });
  t.equal((await status()).warehouse.enabled, false);
});

t.test('the history of the charts', async (t) => {
  const h = createStatusHistory({ db, intervalMs: 1000 });
  await h.sample();
  await sql`update sfmirror.orgs set last_seq = last_seq + 50`.execute(db);
  await h.sample();
  const points = h.history().points;
  t.equal(points.length, 2);
  t.equal(points[0]!.changesPerSecond, null, 'no rate from one sample');
  t.ok(points[1]!.changesPerSecond! > 0, 'changes per second from the change cursors');
  t.equal(points[1]!.outboxDepth, 1);
  const r = await app.inject({ url: '/admin/status/history', headers: bearer });
  t.equal(r.statusCode, 200);
  t.match(r.json(), { intervalSeconds: 10, points: Array });
});

t.test('the page and its assets', async (t) => {
  const page = await app.inject({ url: '/console' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-security-policy'], /script-src 'self'/);
  t.match(page.body, /<script type="module" src="\/console\/assets\/console.js">/);
  t.notMatch(page.body, /(src|href)="https?:/, 'nothing fetched from elsewhere');
  const js = await app.inject({ url: '/console/assets/console.js' });
  t.equal(js.statusCode, 200);
  t.match(js.headers['content-type'], /javascript/);
  t.notMatch(js.body, /localStorage|sessionStorage/, 'the token is never stored in the page');
  t.equal((await app.inject({ url: '/console/assets/..%2Fsessions.ts' })).statusCode, 404);
});

t.test('the new operator routes are in the OpenAPI document', async (t) => {
  const doc = (await app.inject({ url: '/docs/json' })).json() as { paths: Record<string, Record<string, { responses?: object }>> };
  for (const p of [
    '/admin/clients',
    '/admin/clients/{name}',
    '/admin/orgs/{alias}/keys',
    '/admin/orgs/{alias}/keys/{id}',
    '/admin/warehouse/enable',
    '/admin/warehouse/disable',
    '/admin/backfills/{id}/run',
    '/admin/resyncs',
    '/admin/status/history',
    '/console/session',
  ])
    t.ok(doc.paths[p], p);
  t.ok(doc.paths['/admin/status']!.get!.responses, '/admin/status has its response schema');
});
