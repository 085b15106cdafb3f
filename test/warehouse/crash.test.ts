import t from 'tap';
import { sql } from 'kysely';
import { ADMIN_TOKEN, SECRET, hmacHeaders, pushBody, rec } from '../support/app.ts';
import { startBigQuery } from '../support/bigquery.ts';
import { startBigQueryStorage } from '../support/bigquery-storage.ts';
import { startTestDatabase } from '../support/pg.ts';
import { startServe, type ServeProcess } from '../support/serve.ts';
import { toId18 } from '../../src/changes/names.ts';
import { acct } from '../support/app.ts';
import { copiesPerChange, outboxDepth, until } from './support.ts';

// SIGKILL of `serve` while appends are in flight (BigQuery has the rows, sfmirror has not
// committed them), then a restart: the batch in flight is appended again at the same offset,
// BigQuery refuses the copy (ALREADY_EXISTS), and history holds each change exactly once.
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
  SFMIRROR_WAREHOUSE_BATCH_ROWS: '25',
  SFMIRROR_WAREHOUSE_LEASE_MS: '3000',
  SFMIRROR_WAREHOUSE_REQUEST_TIMEOUT_MS: '1000',
};

async function push(srv: ServeProcess, from: number, n: number, stamp: number, label: string) {
  const body = pushBody(
    Array.from({ length: n }, (_, i) => ({
      object: 'Account',
      operation: 'update',
      record: rec(from + i, stamp, { Name: `${label}${from + i}` }),
    })),
    undefined,
    { Account: { Name: 'string' } },
  );
  const r = await fetch(`${srv.url}/ingest/apex`, { method: 'POST', body, headers: hmacHeaders(body) });
  if (r.status !== 200) throw new Error(`push: ${r.status} ${await r.text()}`);
}

t.test('serve killed with appends in flight: after a restart each change is in history once', { timeout: 120_000 }, async (t) => {
  const first = await startServe(env);
  t.teardown(() => {
    if (first.proc.exitCode === null) first.proc.kill('SIGKILL');
  });
  await push(first, 1, 50, T0, 'a');
  await until(
    () => bq.rows('sf', 'account_changes').length === 50 && bq.rows('sf', 'account').length === 50,
    30_000,
    'the first pushes in BigQuery',
  );
  // From now on every history append lands at once and is answered only after 5 s.
  let inFlight = 0;
  storage.fault = (a) => (a.table === 'account_changes' ? (inFlight++, { kind: 'slow', ms: 5000 }) : undefined);
  const stored = storage.stats.rowsStored;
  await push(first, 1, 50, T0 + 1000, 'b');
  await until(() => inFlight > 0, 30_000, 'an append in flight');
  first.proc.kill('SIGKILL');
  t.equal(await first.exited, null, 'killed');
  storage.fault = undefined;
  const landed = storage.stats.rowsStored - stored;
  t.ok(landed > 0, `${landed} row(s) in BigQuery whose append serve never saw answered`);
  t.ok((await outboxDepth(db)) >= landed, 'and they are still in the outbox');

  const exists = storage.stats.alreadyExists;
  const second = await startServe(env);
  t.teardown(async () => {
    if (second.proc.exitCode === null) {
      second.proc.kill('SIGTERM');
      await second.exited;
    }
  });
  await push(second, 51, 10, T0 + 2000, 'c');
  await until(async () => (await outboxDepth(db)) === 0, 60_000, 'drained after the restart (the dead lease ran out)');
  t.ok(storage.stats.alreadyExists > exists, 'the batch in flight was appended again and refused as ALREADY_EXISTS');

  const history = bq.rows('sf', 'account_changes');
  const copies = copiesPerChange(history);
  t.equal(copies.size, 110, '110 changes (50 inserts, 50 updates, 10 inserts)');
  t.same(
    [...copies.entries()].filter(([, n]) => n !== 1),
    [],
    'each change exactly once in history',
  );
  const mirror = await sql<{ sfid: string; name: string }>`select sfid, _sfm_fields->>'Name' as name from salesforce.account
    where not isdeleted order by sfid`.execute(db);
  t.equal(mirror.rows.length, 60, 'the mirror holds 60 live records');
  t.same(
    bq
      .rows('sf', 'account')
      .map((r) => [r.Id, r.Name])
      .sort(),
    mirror.rows.map((r) => [r.sfid, r.name]).sort(),
    "the latest-state table equals the mirror's live records",
  );
  t.equal(toId18(acct(1)), mirror.rows[0]!.sfid, 'ids compare as 18 characters');
  second.proc.kill('SIGTERM');
  t.equal(await second.exited, 0, 'serve stops cleanly');
});
