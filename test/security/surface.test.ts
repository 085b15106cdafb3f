import t from 'tap';
import { sql } from 'kysely';
import { decodeCdcEvent } from '../../src/changes/cdc-event.ts';
import { checkLoginUrl } from '../../src/salesforce/oauth.ts';
import { loadConfig } from '../../src/config/config.ts';
import { startTestDatabase } from '../support/pg.ts';
import { ADMIN_TOKEN, buildTestApp, hmacHeaders, pushBody, rec } from '../support/app.ts';

// The HTTP surface anyone can reach, and pushes whose names or stamps aim at the mirror's internals.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const app = await buildTestApp(tdb);
t.teardown(() => app.close());
const push = (body: string) => app.inject({ method: 'POST', url: '/ingest/apex', payload: body, headers: hmacHeaders(body) });
const recent = () => Date.now() - 60_000;

t.test('security headers on answers; API answers are not cached', async (t) => {
  const res = await app.inject('/healthz');
  t.equal(res.headers['x-content-type-options'], 'nosniff');
  t.equal(res.headers['x-frame-options'], 'DENY');
  t.equal(res.headers['cache-control'], 'no-store');
  t.notOk(res.headers['strict-transport-security'], 'no HSTS unless configured');
  const tls = await buildTestApp(tdb, { hstsMaxAge: 31_536_000 });
  t.teardown(() => tls.close());
  t.equal((await tls.inject('/healthz')).headers['strict-transport-security'], 'max-age=31536000');
});

t.test('x-request-id is used only when short and plain', async (t) => {
  const ok = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'abc-123' } });
  t.equal(ok.headers['x-request-id'], 'abc-123');
  for (const bad of ['x'.repeat(5000), 'evil\u001b[31mred', 'a b', '{"json":1}']) {
    const res = await app.inject({ url: '/healthz', headers: { 'x-request-id': bad } });
    t.not(res.headers['x-request-id'], bad, `replaced: ${JSON.stringify(bad.slice(0, 20))}`);
    t.match(String(res.headers['x-request-id']), /^[A-Za-z0-9._:-]{1,64}$/);
  }
});

t.test('/readyz does not hand database errors to anyone', async (t) => {
  const broken = await buildTestApp(tdb, {
    db: new (await import('kysely')).Kysely({
      dialect: new (await import('kysely')).PostgresDialect({
        pool: new (await import('pg')).default.Pool({
          connectionString: 'postgres://someone:secret-pw@127.0.0.1:1/private_db',
          connectionTimeoutMillis: 500,
        }),
      }),
    }),
  });
  t.teardown(() => broken.close());
  const res = await broken.inject('/readyz');
  t.equal(res.statusCode, 503);
  t.same(res.json(), { status: 'database unavailable' });
  t.notMatch(res.body, /127\.0\.0\.1|ECONNREFUSED|someone|private_db/);
});

t.test('/metrics and /docs: open by default, or behind the operator token, or off', async (t) => {
  t.equal((await app.inject('/metrics')).statusCode, 200, 'open (the default)');
  const guarded = await buildTestApp(tdb, { metricsDocs: 'admin' });
  t.teardown(() => guarded.close());
  for (const url of ['/metrics', '/docs', '/docs/json', '/docs/yaml']) {
    t.equal((await guarded.inject(url)).statusCode, 401, `${url} without the token`);
    t.equal((await guarded.inject({ url, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).statusCode, 200, `${url} with it`);
  }
  const off = await buildTestApp(tdb, { metricsDocs: 'off' });
  t.teardown(() => off.close());
  for (const url of ['/metrics', '/docs', '/docs/json'])
    t.equal((await off.inject({ url, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).statusCode, 404, `${url} off`);
  t.equal(loadConfig({ SFMIRROR_METRICS_DOCS: 'admin' }).SFMIRROR_METRICS_DOCS, 'admin');
  t.throws(() => loadConfig({ SFMIRROR_METRICS_DOCS: 'sometimes' }), /SFMIRROR_METRICS_DOCS/);
});

t.test('names that exist on Object.prototype are fields like any other', async (t) => {
  const fields = { Name: 'proto', constructor: 'c', toString: 't', valueOf: 'v', hasOwnProperty: 'h' };
  const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(900, recent(), fields) }], undefined, {
    Account: { Name: 'string', toString: 'string' },
  });
  const res = await push(body);
  t.equal(res.statusCode, 200, res.body);
  const row = await sql<{
    f: Record<string, unknown>;
  }>`select _sfm_fields as f from salesforce.account where sfid = ${rec(900, 0).Id + 'AAA'}`.execute(db);
  for (const [k, v] of Object.entries(fields)) t.equal(row.rows[0]?.f[k], v, `${k} stored`);
  // An update of those fields is applied like any other (newer wins, per field).
  const again = pushBody([{ object: 'Account', operation: 'update', record: rec(900, recent() + 1000, { constructor: 'c2' }) }]);
  t.equal((await push(again)).statusCode, 200);
  const row2 = await sql<{
    f: Record<string, unknown>;
  }>`select _sfm_fields as f from salesforce.account where sfid = ${rec(900, 0).Id + 'AAA'}`.execute(db);
  t.equal(row2.rows[0]?.f.constructor, 'c2');
  // As an object name in `types`, too (group commit merges types of concurrent pushes).
  const typed = [1, 2, 3].map((n) =>
    pushBody([{ object: 'Account', operation: 'insert', record: rec(910 + n, recent(), { Name: `t${n}` }) }], undefined, {
      constructor: { Name: 'string' },
      Account: { Name: 'string' },
    }),
  );
  const statuses = await Promise.all(typed.map(async (b) => (await push(b)).statusCode));
  t.same(statuses, [200, 200, 200]);
  t.notOk(Object.hasOwn(Object, 'Name'), 'Object itself untouched');
});

t.test('an object named like a mirror index is refused before any DDL', async (t) => {
  const body = pushBody([{ object: 'Account_sfm_seq_idx', operation: 'insert', record: rec(920, recent(), { Name: 'x' }) }]);
  const res = await push(body);
  t.equal(res.statusCode, 400, res.body);
  const rel = await sql<{ n: string }>`select count(*) as n from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'salesforce' and c.relname like 'account_sfm_seq_idx%' and c.relkind = 'r'`.execute(db);
  t.equal(Number(rel.rows[0]!.n), 0, 'no table took the index name');
});

t.test('a SystemModstamp far in the future is refused; a CDC LastModifiedDate beyond its commit is not used', async (t) => {
  const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(930, Date.UTC(9999, 11, 31), { Name: 'pinned' }) }]);
  const res = await push(body);
  t.equal(res.statusCode, 400);
  t.match(res.json().message, /SystemModstamp: .* is in the future/);
  const commit = Date.UTC(2024, 2, 10, 12);
  const r = decodeCdcEvent({
    schema: 's',
    event: { replayId: 5 },
    payload: {
      ChangeEventHeader: {
        entityName: 'Account',
        recordIds: ['001000000000001AAA'],
        changeType: 'UPDATE',
        changeOrigin: '',
        transactionKey: 'k',
        sequenceNumber: 1,
        commitTimestamp: commit,
        commitNumber: 1,
        commitUser: '005000000000001AAA',
        changedFields: ['Name'],
      },
      Name: 'x',
      LastModifiedDate: '9999-12-31T00:00:00.000Z',
    },
  });
  t.ok(r.ok);
  if (r.ok) t.equal(Number(r.event.changes[0]!.version.split('.')[0]), commit, 'the version is the commit time');
});

t.test('OAuth login URLs: Salesforce login hosts and listed hosts only', async (t) => {
  for (const ok of [
    'https://login.salesforce.com',
    'https://test.salesforce.com',
    'https://acme.my.salesforce.com',
    'https://acme--dev.sandbox.my.salesforce.com',
    'https://agency.my.salesforce.mil',
  ])
    t.equal(checkLoginUrl(ok), ok, ok);
  for (const bad of [
    'https://evil.example.com',
    'https://login.salesforce.com.evil.example.com',
    'https://my.salesforce.com',
    'https://acme.my.salesforce.com:8443',
    'http://127.0.0.1:5432',
    'http://localhost:6379',
    'https://169.254.169.254',
  ])
    t.equal(checkLoginUrl(bad), undefined, `${bad} refused`);
  t.equal(checkLoginUrl('https://sso.example.com', ['sso.example.com']), 'https://sso.example.com', 'a listed host');
  t.equal(checkLoginUrl('http://127.0.0.1:8123', ['http://127.0.0.1:8123']), 'http://127.0.0.1:8123', 'a listed loopback origin');
  t.equal(checkLoginUrl('http://127.0.0.1:8124', ['http://127.0.0.1:8123']), undefined, 'another port is not');
  t.same(loadConfig({ SFMIRROR_OAUTH_LOGIN_HOSTS: 'sso.example.com, http://127.0.0.1:8123' }).SFMIRROR_OAUTH_LOGIN_HOSTS, [
    'sso.example.com',
    'http://127.0.0.1:8123',
  ]);
  t.throws(() => loadConfig({ SFMIRROR_OAUTH_LOGIN_HOSTS: 'https://x.example.com/path?q' }), /SFMIRROR_OAUTH_LOGIN_HOSTS/);
});

t.test('the OAuth routes never send the code or the client secret to an unlisted host', async (t) => {
  let contacted = 0;
  const oauthApp = await buildTestApp(tdb, {
    oauth: {
      box: (await import('../../src/lib/secret-box.ts')).createSecretBox([Buffer.alloc(32, 1)]),
      clientId: 'cid',
      clientSecret: 'the-client-secret',
      defaultLoginUrl: 'https://login.salesforce.com',
      defaultRedirectUri: 'https://sfmirror.example.com/oauth/callback',
      stateTtlSeconds: 600,
      fetchImpl: async () => {
        contacted++;
        return new Response('{}', { status: 400 });
      },
    },
  });
  t.teardown(() => oauthApp.close());
  const res = await oauthApp.inject({
    url: `/oauth/authorize?alias=evil&loginUrl=${encodeURIComponent('http://127.0.0.1:9')}`,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  t.equal(res.statusCode, 400);
  t.match(res.json().message, /^loginUrl:/);
  const ext = await oauthApp.inject({
    url: `/oauth/authorize?alias=evil&loginUrl=${encodeURIComponent('https://attacker.example.com')}`,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  t.equal(ext.statusCode, 400);
  t.equal(contacted, 0);
});
