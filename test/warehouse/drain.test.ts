import t from 'tap';
import { change, BASE_MS, accountId } from '../support/changes.ts';
import { latestState } from '../../src/warehouse/bq-schema.ts';
import { outboxDepth, until, warehouseFixture } from './support.ts';

// The drain against the BigQuery stand-in through the real @google-cloud/bigquery client.
const { db, mirror, bq, drainer, client } = await warehouseFixture(t);
const rowsOf = (table: string) => bq.rows('salesforce', table);

t.test('rows arrive once per change, typed, with the change metadata', async (t) => {
  const types = {
    Account: { AnnualRevenue: 'currency', NumberOfEmployees: 'int', IsActive__c: 'boolean', Founded__c: 'date', Name: 'string' },
  };
  await mirror.apply(
    'salesforce',
    [
      change('insert', 1, BASE_MS, {
        Name: 'Acme',
        AnnualRevenue: 1234.5,
        NumberOfEmployees: 12,
        IsActive__c: true,
        Founded__c: '1999-12-31',
      }),
      change('insert', 2, BASE_MS, { Name: 'Globex', NumberOfEmployees: 'many' }),
    ],
    { types },
  );
  await mirror.apply('salesforce', [change('update', 1, BASE_MS + 1000, { Name: 'Acme Corp' })], { types });
  await mirror.apply('salesforce', [change('delete', 2, BASE_MS + 2000)], { types });
  const { drain } = drainer();
  drain.start();
  await until(async () => (await outboxDepth(db)) === 0 && rowsOf('account_changes').length >= 4, 20_000, 'outbox drained');
  await drain.stop();

  const table = bq.datasets.get('salesforce')!.get('account_changes')!;
  const type = (n: string) => table.fields.find((f) => f.name === n)?.type;
  t.same(
    [
      type('Id'),
      type('Name'),
      type('AnnualRevenue'),
      type('NumberOfEmployees'),
      type('IsActive__c'),
      type('Founded__c'),
      type('SystemModstamp'),
    ],
    ['STRING', 'STRING', 'BIGNUMERIC', 'INT64', 'BOOL', 'DATE', 'TIMESTAMP'],
    'columns typed from the mirror field types',
  );
  t.same(
    [type('_sfm_op'), type('_sfm_change_id'), type('_sfm_version'), type('_sfm_committed_at')],
    ['STRING', 'STRING', 'STRING', 'TIMESTAMP'],
    'metadata columns',
  );
  t.same(table.timePartitioning, { type: 'DAY', field: '_sfm_committed_at' }, 'day partitions on _sfm_committed_at');
  t.same(table.clustering, { fields: ['Id'] }, 'clustered by Id');

  const rows = rowsOf('account_changes');
  const ids = rows.map((r) => r._sfm_change_id);
  t.equal(new Set(ids).size, rows.length, 'each change id once');
  const changes = rows.filter((r) => r._sfm_op !== 'seed');
  t.equal(changes.length, 4, 'four changes applied, four rows');
  const first = changes.find((r) => r.Id === accountId(1) && r._sfm_op === 'insert')!;
  t.match(first, {
    Name: 'Acme',
    AnnualRevenue: '1234.5',
    NumberOfEmployees: '12',
    IsActive__c: true,
    Founded__c: '1999-12-31',
    IsDeleted: false,
    _sfm_insertId: undefined,
  });
  t.equal(first._insertId, first._sfm_change_id, 'insertId is the change id');
  const globex = changes.find((r) => r.Id === accountId(2) && r._sfm_op === 'insert')!;
  t.equal(globex.NumberOfEmployees, null, 'a value that does not fit its column is sent as NULL (the mirror keeps it in _sfm_fields)');
  const latest = latestState(rows);
  t.same(
    latest.map((r) => [r.Id, r.Name]),
    [[accountId(1), 'Acme Corp']],
    'latest state: newest Acme, deleted Globex gone',
  );
  const view = bq.datasets.get('salesforce')!.get('account')!;
  t.match(view.view?.query, /ROW_NUMBER\(\) OVER \(PARTITION BY Id/, 'the view exists');
});

t.test('a batch retried after a timeout is not duplicated (insertId)', async (t) => {
  await mirror.apply(
    'salesforce',
    [10, 11, 12].map((n) => change('insert', n, BASE_MS, { Name: `t${n}` })),
  );
  let slowOnce = true;
  bq.fault = () => (slowOnce ? ((slowOnce = false), { kind: 'slow', ms: 1500 }) : undefined);
  t.teardown(() => {
    bq.fault = undefined;
  });
  const dropped = bq.stats.duplicatesDropped;
  const requests = bq.stats.insertAll;
  // Requests time out after 300 ms: the first insertAll lands in BigQuery, its answer never arrives.
  const { drain } = drainer({ owner: 'timeout', tuning: { concurrency: 1, requestTimeoutMs: 300 }, client: client(300) });
  drain.start();
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'outbox drained');
  await drain.stop();
  t.ok(bq.stats.insertAll >= requests + 2, 'the batch was sent again after the timeout');
  t.equal(bq.stats.duplicatesDropped - dropped, 3, 'BigQuery dropped the re-sent copies by insertId');
  const rows = rowsOf('account_changes').filter((r) => String(r.Name).startsWith('t1'));
  t.equal(rows.length, 3, 'one row per change');
});

t.test('another org drains into its own dataset', async (t) => {
  const { createTestMirror } = await import('../support/changes.ts');
  const acme = await createTestMirror(db, 'acme');
  await acme.apply('acme', [change('insert', 50, BASE_MS, { Name: 'Acme org record' })]);
  const { drain } = drainer({ owner: 'orgs' });
  drain.start();
  await until(() => bq.rows('salesforce_acme', 'account_changes').some((r) => r._sfm_op === 'insert'), 20_000, 'acme rows');
  await drain.stop();
  t.equal(
    bq.rows('salesforce_acme', 'account_changes').filter((r) => r._sfm_op === 'insert')[0]?.Name,
    'Acme org record',
    '${BIGQUERY_DATASET}_<alias>',
  );
  t.notOk(
    rowsOf('account_changes').some((r) => r.Name === 'Acme org record'),
    'not in the default org dataset',
  );
});

t.test('a change table deleted in BigQuery is made again and re-seeded; a hung request times out', async (t) => {
  bq.datasets.get('salesforce')!.delete('account_changes');
  let hangs = 2;
  bq.fault = () => (hangs-- > 0 ? { kind: 'hang' } : undefined);
  t.teardown(() => {
    bq.fault = undefined;
  });
  const { drain } = drainer({ owner: 'gone', tuning: { requestTimeoutMs: 300 }, client: client(300) });
  await mirror.apply('salesforce', [change('update', 1, BASE_MS + 5000, { Name: 'Acme after the drop' })]);
  drain.start();
  await until(
    () => rowsOf('account_changes').some((r) => r.Name === 'Acme after the drop' && r._sfm_op === 'update'),
    20_000,
    'the change in the new table',
  );
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  await drain.stop();
  t.ok(hangs < 0, 'the hung requests were given up');
  const latest = latestState(rowsOf('account_changes'));
  t.ok(
    latest.some((r) => r.Id === accountId(1) && r.Name === 'Acme after the drop'),
    'the new table has the record',
  );
  t.ok(
    rowsOf('account_changes').some((r) => r._sfm_op === 'seed' && r.Id === accountId(10)),
    'and was seeded with records that did not change',
  );
});
