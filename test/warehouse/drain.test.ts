import t from 'tap';
import { change, BASE_MS, accountId } from '../support/changes.ts';
import { latestState } from '../../src/warehouse/bq-schema.ts';
import { copiesPerChange, outboxDepth, until, warehouseFixture, type StorageFault } from './support.ts';

// The drain against the BigQuery stand-ins (REST for tables, gRPC Storage Write API for rows)
// through the real @google-cloud/bigquery and @google-cloud/bigquery-storage clients.
const { db, mirror, bq, storage, drainer, client } = await warehouseFixture(t);
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
  t.equal(rows.filter((r) => r._sfm_op === 'seed').length, 0, 'no seed rows: the warehouse was on from the first change');
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
  });
  const globex = changes.find((r) => r.Id === accountId(2) && r._sfm_op === 'insert')!;
  t.equal(globex.NumberOfEmployees, null, 'a value that does not fit its column is sent as NULL (the mirror keeps it in _sfm_fields)');
  const latest = latestState(rows);
  t.same(
    latest.map((r) => [r.Id, r.Name]),
    [[accountId(1), 'Acme Corp']],
    'latest state: newest Acme, deleted Globex gone',
  );
  const current = bq.datasets.get('salesforce')!.get('account')!;
  t.notOk(current.view, 'the latest state is a table, not a view');
  t.same(current.primaryKey, ['Id'], 'primary key Id (NOT ENFORCED)');
  t.equal(current.maxStaleness, '0-0 0 0:15:0', 'max_staleness 15 minutes by default');
  t.same(
    rowsOf('account').map((r) => [r.Id, r.Name]),
    [[accountId(1), 'Acme Corp']],
    'the latest-state table (CDC): newest Acme, deleted Globex gone',
  );
});

t.test('a batch appended again after its answer was lost is refused as ALREADY_EXISTS, not duplicated', async (t) => {
  await mirror.apply(
    'salesforce',
    [10, 11, 12].map((n) => change('insert', n, BASE_MS, { Name: `t${n}` })),
  );
  // The first append of each batch: t10's answer is lost, t13's comes after the client's deadline.
  const faults = new Map<string, StorageFault>([
    ['t10', { kind: 'lose-answer' }],
    ['t13', { kind: 'slow', ms: 1500 }],
  ]);
  storage.fault = (a) => {
    if (!a.table.endsWith('_changes')) return undefined;
    const f = faults.get(String(a.rows[0]?.Name));
    faults.delete(String(a.rows[0]?.Name));
    return f;
  };
  t.teardown(() => {
    storage.fault = undefined;
  });
  const exists = storage.stats.alreadyExists;
  // Requests time out after 300 ms: the second append lands in BigQuery, its answer comes too late.
  const { drain } = drainer({ owner: 'timeout', tuning: { concurrency: 1, requestTimeoutMs: 300 }, client: client(300) });
  drain.start();
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'outbox drained');
  await mirror.apply(
    'salesforce',
    [13, 14, 15].map((n) => change('insert', n, BASE_MS, { Name: `t${n}` })),
  );
  await until(async () => (await outboxDepth(db)) === 0 && faults.size === 0, 20_000, 'outbox drained again');
  await drain.stop();
  t.equal(faults.size, 0, 'both faults happened');
  t.ok(storage.stats.alreadyExists - exists >= 2, 'each re-sent batch was refused at its offset (ALREADY_EXISTS)');
  const rows = rowsOf('account_changes').filter((r) => String(r.Name).startsWith('t1'));
  t.equal(rows.length, 6, 'one row per change');
  t.same(
    [...copiesPerChange(rowsOf('account_changes')).values()].filter((n) => n !== 1),
    [],
    'no change id twice in history',
  );
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
  storage.fault = () => (hangs-- > 0 ? { kind: 'hang' } : undefined);
  t.teardown(() => {
    storage.fault = undefined;
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

t.test('a stream BigQuery finalized: the next batch goes to a new stream; latest-state copies are harmless', async (t) => {
  const { drain } = drainer({ owner: 'finalized', tuning: { concurrency: 1 } });
  await mirror.apply('salesforce', [change('update', 10, BASE_MS + 9000, { Name: 'before finalize' })]);
  drain.start();
  await until(() => rowsOf('account_changes').some((r) => r.Name === 'before finalize'), 20_000, 'first change');
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  const streams = [...storage.streams.values()].filter((s) => s.table === 'account_changes' && s.type === 'COMMITTED' && !s.finalized);
  for (const s of streams) storage.loseStream(s.name, 'finalize');
  const created = storage.stats.streamsCreated;
  // Every latest-state upsert's answer is lost once: the drain sends it again (at least once).
  const lost = new Set<string>();
  storage.fault = (a) => {
    const k = String(a.rows[0]?.Name);
    if (a.table !== 'account' || lost.has(k)) return undefined;
    lost.add(k);
    return { kind: 'lose-answer' };
  };
  t.teardown(() => {
    storage.fault = undefined;
  });
  await mirror.apply('salesforce', [change('update', 10, BASE_MS + 10_000, { Name: 'after finalize' })]);
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained again');
  await drain.stop();
  t.equal(storage.stats.streamsCreated - created, 1, 'a new stream was opened');
  t.equal(rowsOf('account_changes').filter((r) => r.Name === 'after finalize').length, 1, 'the change arrived once in history');
  t.ok(lost.size >= 1, 'the latest-state upsert was sent again');
  t.same(
    rowsOf('account')
      .filter((r) => r.Id === accountId(10))
      .map((r) => r.Name),
    ['after finalize'],
    'the latest state holds the newest change once',
  );
});
