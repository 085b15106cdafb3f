import t from 'tap';
import { sql } from 'kysely';
import { ADMIN_TOKEN, SECRET, acct, hmacHeaders, pushBody, rec } from '../support/app.ts';
import { startBigQuery } from '../support/bigquery.ts';
import { startBigQueryStorage } from '../support/bigquery-storage.ts';
import { createTestMirror, change, BASE_MS } from '../support/changes.ts';
import { startTestDatabase } from '../support/pg.ts';
import { runCli, startServe } from '../support/serve.ts';
import { toId18 } from '../../src/changes/names.ts';
import { until } from './support.ts';

// `sfmirror serve` with BIGQUERY_PROJECT drains pushes into BigQuery (the stand-in); the CLI
// rebuilds a table and retries dead letters; a writer without BigQuery settings still queues.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const bq = await startBigQuery(t);
const storage = await startBigQueryStorage(t, bq);
const T0 = Date.UTC(2024, 2, 10, 12);
const env = {
  DATABASE_URL: tdb.url,
  SFMIRROR_INGEST_SECRETS: SECRET,
  SFMIRROR_ADMIN_TOKEN: ADMIN_TOKEN,
  BIGQUERY_PROJECT: 'p',
  BIGQUERY_DATASET: 'sf',
  BIGQUERY_API_ENDPOINT: bq.url,
  BIGQUERY_STORAGE_API_ENDPOINT: storage.endpoint,
  SFMIRROR_WAREHOUSE_FLUSH_MS: '50',
};
const rows = (table = 'account_changes') => bq.rows('sf', table);

// Six CLI runs and a serve: minutes on a loaded 2-core machine.
t.test('serve drains signed pushes into BigQuery; the CLI rebuilds and retries', { timeout: 280_000 }, async (t) => {
  // Mirror data from before the warehouse was configured: seeded when its table is made.
  const mirror = await createTestMirror(db);
  await mirror.apply('salesforce', [change('insert', 900, BASE_MS, { Name: 'old' }, 'Contact')]);
  t.equal(
    Number((await sql<{ n: string }>`select count(*) as n from sfmirror.outbox`.execute(db)).rows[0]!.n),
    0,
    'warehouse off: nothing queued',
  );

  const srv = await startServe(env);
  t.teardown(async () => {
    if (srv.proc.exitCode === null) {
      srv.proc.kill('SIGTERM');
      await srv.exited;
    }
  });
  const body = pushBody(
    [1, 2, 3].map((n) => ({ object: 'Account', operation: 'insert', record: rec(n, T0 + n, { Name: `p${n}` }) })),
    undefined,
    { Account: { Name: 'string' } },
  );
  const r = await fetch(`${srv.url}/ingest/apex`, { method: 'POST', body, headers: hmacHeaders(body) });
  t.equal(r.status, 200, 'push accepted');
  await until(() => rows().filter((x) => x._sfm_op === 'insert').length === 3, 30_000, 'pushed changes in BigQuery');
  t.same(
    rows()
      .filter((x) => x._sfm_op === 'insert')
      .map((x) => x.Name)
      .sort(),
    ['p1', 'p2', 'p3'],
    'each change once',
  );
  await until(() => rows('account').length === 3, 30_000, 'the latest-state table');
  t.same(
    rows('account')
      .map((x) => x.Name)
      .sort(),
    ['p1', 'p2', 'p3'],
    'the latest-state table has the records',
  );
  await until(() => rows('contact_changes').length === 1, 30_000, 'an object mirrored before gets its table, seeded');
  t.match(rows('contact_changes')[0], { Name: 'old', _sfm_op: 'seed' });

  // A writer without BIGQUERY_* (a CLI backfill, here the mirror in this process) queues too.
  await mirror.apply('salesforce', [change('update', 1, T0 + 10_000, { Name: 'from elsewhere' })]);
  await until(() => rows().some((x) => x.Name === 'from elsewhere'), 30_000, 'a change written elsewhere');
  await until(
    async () => Number((await sql<{ n: string }>`select count(*) as n from sfmirror.outbox`.execute(db)).rows[0]!.n) === 0,
    30_000,
    'outbox drained',
  );

  const status = (await (await fetch(`${srv.url}/admin/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
    warehouse: { enabled: boolean; outboxDepth: number; deadLetters: number };
  };
  t.match(status.warehouse, { enabled: true, outboxDepth: 0, deadLetters: 0 }, '/admin/status');
  t.match(
    await (await fetch(`${srv.url}/metrics`)).text(),
    /sfmirror_warehouse_rows_total\{result="sent"\} [1-9]/,
    'rows sent are counted',
  );

  const usage = await runCli(['warehouse', 'rebuild'], env);
  t.equal(usage.code, 2, 'rebuild without --object: usage error');
  t.match(usage.stderr, /give --object/);
  const unknown = await runCli(['warehouse', 'rebuild', '--object', 'Lead'], env);
  t.equal(unknown.code, 1, 'an object the mirror does not have');
  const rebuilt = await runCli(['warehouse', 'rebuild', '--object', 'Account'], env);
  t.equal(rebuilt.code, 0, rebuilt.stderr);
  t.match(rebuilt.stdout, /rebuilt sf\.account_changes and sf\.account; 3 record\(s\) queued/);
  await until(() => rows().length === 3 && rows().every((x) => x._sfm_op === 'seed'), 30_000, 'rebuilt table seeded from the mirror');
  t.same(
    rows()
      .map((x) => x.Name)
      .sort(),
    ['from elsewhere', 'p2', 'p3'],
    'the mirror state',
  );
  await until(() => rows('account').length === 3, 30_000, 'the rebuilt latest-state table');
  t.same(
    rows('account')
      .map((x) => x.Name)
      .sort(),
    ['from elsewhere', 'p2', 'p3'],
    'the latest-state table too',
  );

  await db
    .insertInto('sfmirror.warehouse_dead_letters' as never)
    .values({
      change_id: 999999,
      org_alias: 'salesforce',
      object: 'Account',
      sfid: toId18(acct(2)),
      op: 'update',
      version: 'v',
      seq: 1,
      record: JSON.stringify({ Id: toId18(acct(2)), Name: 'requeued' }),
      committed_at: new Date(),
      reason: 'invalid: test',
    } as never)
    .execute();
  const listed = (await (
    await fetch(`${srv.url}/admin/warehouse/dead-letters`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  ).json()) as { deadLetters: Array<{ changeId: string }> };
  t.same(
    listed.deadLetters.map((d) => d.changeId),
    ['999999'],
    'GET /admin/warehouse/dead-letters',
  );
  const statusCli = await runCli(['status'], env);
  t.match(statusCli.stdout, /1 DEAD LETTER\(S\)[\s\S]*change 999999 salesforce Account/, 'sfmirror status lists it');
  const bad = await fetch(`${srv.url}/admin/warehouse/dead-letters/retry`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ object: 'not an object' }),
  });
  t.equal(bad.status, 400, 'a bad object name is a 400');
  const retried = await runCli(['warehouse', 'retry-dead-letters', '--org', 'salesforce'], env);
  t.match(retried.stdout, /^1 dead letter\(s\) queued again \(refused by the change table: back in the outbox/, retried.stderr);
  await until(
    () => rows().some((x) => x._sfm_change_id === '999999' && x.Name === 'requeued'),
    30_000,
    'the retried change under its own id',
  );

  srv.proc.kill('SIGTERM');
  t.equal(await srv.exited, 0, 'serve stops cleanly with the drain');
});
