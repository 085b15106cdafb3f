import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { change, BASE_MS, accountId } from '../support/changes.ts';
import { latestState } from '../../src/warehouse/bq-schema.ts';
import { outboxDepth, until, warehouseFixture } from './support.ts';

// SIGKILL between insertAll and the outbox delete: the batch is sent again after the lease runs
// out. With BigQuery's best-effort de-duplication out of the picture (window 0), each change id is
// in the change table at most twice, and the view's logic counts it once.
const { tdb, db, mirror, bq, drainer } = await warehouseFixture(t, { dedupWindowMs: 0 });
const CHILD = fileURLToPath(new URL('./fixtures/kill-drain.ts', import.meta.url));

t.test('a drainer killed after insertAll, before the delete', async (t) => {
  await mirror.apply(
    'salesforce',
    [1, 2, 3, 4, 5].map((n) => change('insert', n, BASE_MS, { Name: `k${n}` })),
  );
  await mirror.apply('salesforce', [change('update', 2, BASE_MS + 1, { Name: 'k2 again' })]);
  const { tables } = drainer({ owner: 'setup' });
  t.equal((await tables.ensure('salesforce', 'Account')) && (await outboxDepth(db)), 11, 'table made: 6 changes and 5 seed rows queued');
  const child = spawn(process.execPath, [CHILD], {
    env: { PATH: process.env.PATH, DATABASE_URL: tdb.url, BQ_URL: bq.url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await until(() => out.includes('SENT'), 30_000, `child to send (${out})`);
  child.kill('SIGKILL');
  t.equal(await exited, null, 'killed');
  t.equal(await outboxDepth(db), 11, 'the outbox still holds the batch BigQuery accepted');
  t.equal(bq.rows('salesforce', 'account_changes').length, 11, 'BigQuery holds it too');

  const { drain } = drainer({ owner: 'survivor' });
  drain.start();
  await until(async () => (await outboxDepth(db)) === 0, 30_000, 'drained after the lease ran out');
  await drain.stop();
  const rows = bq.rows('salesforce', 'account_changes');
  const perId = new Map<string, number>();
  for (const r of rows) perId.set(String(r._sfm_change_id), (perId.get(String(r._sfm_change_id)) ?? 0) + 1);
  t.equal(perId.size, 11, 'eleven change ids (six changes, five seed rows)');
  t.same([...perId.values()], Array(11).fill(2), 'each change id twice in the change table (the re-sent batch), never more');
  const latest = latestState(rows);
  t.equal(latest.length, 5, 'the view logic: one row per record');
  t.same(
    latest.map((r) => [r.Id, r.Name]).sort(),
    [1, 2, 3, 4, 5].map((n) => [accountId(n), n === 2 ? 'k2 again' : `k${n}`]).sort(),
    'with the newest state',
  );
});
