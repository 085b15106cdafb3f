import t from 'tap';
import { sql } from 'kysely';
import { toId18 } from '../../src/changes/names.ts';
import type { Mirror } from '../../src/mirror/apply.ts';
import { startTestDatabase } from '../support/pg.ts';
import { ADMIN_TOKEN, ORG_ID, SECRET, acct, buildTestApp, hmacHeaders, now, pushBody, rec, rsaHeaders } from '../support/app.ts';
import { generateKeyPairSync } from 'node:crypto';

const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const app = await buildTestApp(tdb, {
  keys: { secrets: [SECRET, 'second-secret-for-rotation'], publicKeys: [(await import('../support/app.ts')).rsaKeys().publicKey] },
});
t.teardown(() => app.close());
const T0 = Date.UTC(2024, 2, 10, 12);

const count = async () =>
  Number(
    (await sql<{ n: string }>`select count(*) as n from salesforce.account`.execute(db).catch(() => ({ rows: [{ n: '0' }] }))).rows[0]!.n,
  );
const post = (body: string, headers: Record<string, string>) => app.inject({ method: 'POST', url: '/ingest/apex', payload: body, headers });

t.test('HMAC-signed push is applied and answered after commit', async (t) => {
  const body = pushBody(
    [{ object: 'Account', operation: 'insert', record: { attributes: { type: 'Account' }, ...rec(1, T0, { Name: 'Acme' }) } }],
    ORG_ID,
    { Account: { Name: 'STRING' } },
  );
  const res = await post(body, hmacHeaders(body));
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json(), { applied: 1, ignored: 0 });
  const row = await sql<{ sfid: string; name: string }>`select sfid, name from salesforce.account`.execute(db);
  t.same(row.rows, [{ sfid: toId18(acct(1)), name: 'Acme' }], '15-character id stored as 18 characters');
  const again = await post(body, hmacHeaders(body));
  t.same(again.json(), { applied: 0, ignored: 1 }, 'a re-sent push is ignored');
  const org = await db.selectFrom('sfmirror.orgs').select(['alias', 'org_id']).execute();
  t.same(org, [{ alias: 'salesforce', org_id: ORG_ID }], 'the first pushing org is registered under the default alias');
});

t.test('RSA-signed push (Apex signWithCertificate) and HMAC secret rotation', async (t) => {
  const body = pushBody([{ object: 'Account', operation: 'update', record: rec(1, T0 + 1000, { Name: 'Acme 2' }) }]);
  t.equal((await post(body, rsaHeaders(body))).statusCode, 200);
  const body2 = pushBody([{ object: 'Account', operation: 'update', record: rec(1, T0 + 2000, { Name: 'Acme 3' }) }]);
  t.equal(
    (await post(body2, hmacHeaders(body2, { secret: 'second-secret-for-rotation' }))).statusCode,
    200,
    'the second secret is accepted too',
  );
});

t.test('bad signatures are refused with 401 and write nothing', async (t) => {
  const before = await count();
  const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(50, T0, { Name: 'Evil' }) }]);
  const cases: Array<[string, Record<string, string>, string]> = [
    ['wrong secret', hmacHeaders(body, { secret: 'not-the-secret-at-all' }), 'does not match'],
    ['stale timestamp', hmacHeaders(body, { ts: now() - 301 }), 'away from now'],
    ['future timestamp', hmacHeaders(body, { ts: now() + 400 }), 'away from now'],
    ['altered body', hmacHeaders(body.replace('Evil', 'Good')), 'does not match'],
    ['missing signature', { 'content-type': 'application/json', 'x-sfmirror-timestamp': String(now()) }, 'X-Sfmirror-Signature'],
    ['missing timestamp', { 'content-type': 'application/json', 'x-sfmirror-signature': 'sha256=00' }, 'X-Sfmirror-Timestamp'],
    ['unknown scheme', { ...hmacHeaders(body), 'x-sfmirror-signature': 'md5=abc' }, 'must be sha256'],
    ['RSA from another key', rsaHeaders(body, { key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }), 'does not match'],
  ];
  for (const [name, headers, why] of cases) {
    const payload = name === 'altered body' ? body : body;
    const res = await post(payload, headers);
    t.equal(res.statusCode, 401, name);
    t.match(res.json().message, why, `${name}: says why`);
  }
  t.equal(await count(), before, 'nothing written');
});

t.test('400 names each bad change and writes nothing', async (t) => {
  const before = await count();
  const body = pushBody([
    { object: 'Account', operation: 'insert', record: rec(60, T0, { Name: 'fine' }) },
    { object: 'Account', operation: 'explode', record: rec(61, T0) },
    { object: 'Robert"); DROP TABLE x;--', operation: 'insert', record: rec(62, T0) },
    { object: 'Account', operation: 'insert', record: { Id: 'nope', SystemModstamp: 'yesterday' } },
  ]);
  const res = await post(body, hmacHeaders(body));
  t.equal(res.statusCode, 400);
  const { details, message } = res.json();
  t.match(message, /nothing was written/);
  t.match(details.join('\n'), /changes\[1\]\.operation/);
  t.match(details.join('\n'), /changes\[2\]\.object/);
  t.match(details.join('\n'), /changes\[3\]\.record\.Id/);
  t.match(details.join('\n'), /changes\[3\]\.record\.SystemModstamp/);
  t.equal(await count(), before, 'not even the good change');
  const notJson = '{"orgId": ';
  const r2 = await post(notJson, hmacHeaders(notJson));
  t.equal(r2.statusCode, 400);
  t.match(r2.json().message, /not valid JSON/);
});

t.test('403 for an org that is not registered', async (t) => {
  const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(70, T0) }], '00D000000000002EAA');
  const res = await post(body, hmacHeaders(body));
  t.equal(res.statusCode, 403);
  t.match(res.json().message, /00D000000000002/);
});

t.test('413 above 16 MiB', async (t) => {
  const big = pushBody([{ object: 'Account', operation: 'insert', record: rec(80, T0, { Description: 'x'.repeat(17 * 1024 * 1024) }) }]);
  const res = await post(big, hmacHeaders(big));
  t.equal(res.statusCode, 413);
});

t.test('503 with Retry-After when overloaded, instead of an unbounded queue', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const slowMirror: Mirror = {
    apply: async (...args) => {
      await gate;
      return app.deps.mirror.apply(...args);
    },
    applyCsvPage: (...args) => app.deps.mirror.applyCsvPage(...args),
  };
  const slow = await buildTestApp(tdb, { mirror: slowMirror, maxInflight: 1, maxQueued: 1 });
  t.teardown(() => slow.close());
  const bodies = [1, 2, 3, 4].map((i) => pushBody([{ object: 'Account', operation: 'insert', record: rec(90 + i, T0) }]));
  let settled = 0;
  const pending = bodies.map((b) =>
    slow.inject({ method: 'POST', url: '/ingest/apex', payload: b, headers: hmacHeaders(b) }).finally(() => {
      settled++;
    }),
  );
  // Release the gate only once the two that found no slot have been answered (however slow the machine).
  for (let i = 0; i < 500 && settled < 2; i++) await new Promise((r) => setTimeout(r, 20));
  release();
  const results = await Promise.all(pending);
  const codes = results.map((r) => r.statusCode).sort();
  t.same(codes, [200, 200, 503, 503], 'one running, one queued, the rest told to come back');
  const refused = results.find((r) => r.statusCode === 503)!;
  t.equal(refused.headers['retry-after'], '1');
});

t.test('503 while the database is down, and recovery when it is back', async (t) => {
  const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(99, T0, { Name: 'after outage' }) }]);
  await tdb.stop();
  const res = await post(body, hmacHeaders(body));
  t.equal(res.statusCode, 503, res.body);
  t.ok(res.headers['retry-after'], 'Retry-After set');
  const ready = await app.inject('/readyz');
  t.equal(ready.statusCode, 503, '/readyz reports it');
  await tdb.restart();
  const ok = await post(body, hmacHeaders(body));
  t.equal(ok.statusCode, 200, ok.body);
  t.equal((await app.inject('/readyz')).statusCode, 200);
});

t.test('operator API needs the admin token; status, metrics and docs answer', async (t) => {
  t.equal((await app.inject('/admin/status')).statusCode, 401);
  t.equal((await app.inject({ url: '/admin/status', headers: { authorization: 'Bearer wrong-token-wrong-token' } })).statusCode, 401);
  const st = await app.inject({ url: '/admin/status', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.equal(st.statusCode, 200);
  const acc = st.json().orgs[0].objects.find((o: { object: string }) => o.object === 'Account');
  t.ok(acc.rows >= 1, 'rows per object');
  const m = await app.inject('/metrics');
  t.match(m.body, /sfmirror_pushes_total\{result="applied"\}/);
  t.match(m.body, /sfmirror_apply_duration_seconds_bucket/);
  t.match(m.body, /sfmirror_db_pool_connections/);
  const docs = await app.inject('/docs/json');
  t.ok(docs.json().paths['/ingest/apex'], 'OpenAPI lists the ingest route');
  t.equal((await app.inject('/healthz')).statusCode, 200);
});

t.test('graceful shutdown finishes a push in flight before the database closes', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  let entered!: () => void;
  const inside = new Promise<void>((r) => {
    entered = r;
  });
  const gated: Mirror = {
    apply: async (...args) => {
      entered();
      await gate;
      return app.deps.mirror.apply(...args);
    },
    applyCsvPage: (...args) => app.deps.mirror.applyCsvPage(...args),
  };
  const srv = await buildTestApp(tdb, { mirror: gated });
  const address = await srv.listen({ port: 0, host: '127.0.0.1' });
  const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(123, T0, { Name: 'in flight' }) }]);
  const answer = fetch(`${address}/ingest/apex`, { method: 'POST', body, headers: hmacHeaders(body) });
  await inside;
  let closed = false;
  const closing = srv.close().then(() => {
    closed = true;
  });
  await new Promise((r) => setTimeout(r, 200));
  t.equal(closed, false, 'close waits for the push');
  release();
  const res = await answer;
  t.equal(res.status, 200);
  await closing;
  const row = await sql<{ name: string }>`select name from salesforce.account where sfid = ${toId18(acct(123))}`.execute(db);
  t.equal(row.rows[0]?.name, 'in flight', 'committed before shutdown completed');
});
