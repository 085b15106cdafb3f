import t from 'tap';
import { sql } from 'kysely';
import { grpc } from 'google-gax';
import { change, BASE_MS } from '../support/changes.ts';
import { createMetrics } from '../../src/lib/metrics.ts';
import { readStatus } from '../../src/api/status.ts';
import { formatStatus } from '../../src/bin/cli-status.ts';
import type { WarehouseTable } from '../../src/warehouse/bigquery.ts';
import { retryDeadLetters } from '../../src/warehouse/warehouse.repository.ts';
import { copiesPerChange, outboxDepth, until, warehouseFixture } from './support.ts';

// Faults of BigQuery (outage, quota, timeouts, refused rows) and concurrent drainers, through the
// real Storage Write API client against the gRPC stand-in.
const { db, mirror, bq, storage, drainer, client: makeClient } = await warehouseFixture(t);
const changeRows = (table = 'account_changes') => bq.rows('salesforce', table).filter((r) => r._sfm_op !== 'seed');
const namesOf = (prefix: string, table = 'account_changes') =>
  changeRows(table)
    .filter((r) => String(r.Name).startsWith(prefix))
    .map((r) => String(r.Name))
    .sort();
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

t.test('an outage (UNAVAILABLE, then quota errors) loses nothing; the outbox drains after it', async (t) => {
  let phase: 'down' | 'quota' | 'up' = 'down';
  storage.fault = () =>
    phase === 'down' ? { kind: 'unavailable' } : phase === 'quota' ? { kind: 'status', code: grpc.status.RESOURCE_EXHAUSTED } : undefined;
  t.teardown(() => {
    storage.fault = undefined;
  });
  const metrics = createMetrics();
  const { drain } = drainer({ owner: 'outage', metrics });
  drain.start();
  // Changes keep coming while BigQuery is down: 20 batches of 10.
  for (const b of range(0, 20))
    await mirror.apply(
      'salesforce',
      range(1000 + b * 10, 10).map((n) => change('insert', n, BASE_MS, { Name: `out${n}` })),
    );
  await until(async () => (await outboxDepth(db)) >= 200, 10_000, 'outbox filled');
  await until(
    async () => (await metrics.registry.getSingleMetricAsString('sfmirror_warehouse_outbox_depth')).includes('org="salesforce"'),
    10_000,
    'depth gauge',
  );
  t.match(
    await metrics.registry.getSingleMetricAsString('sfmirror_warehouse_outbox_depth'),
    /sfmirror_warehouse_outbox_depth\{org="salesforce"\} \d+/,
    'outbox depth is a metric',
  );
  // The drain may be between attempts (backing off) when the outbox fills: wait for its first failure.
  await until(
    async () => /result="retryable"\} [1-9]/.test(await metrics.registry.getSingleMetricAsString('sfmirror_warehouse_requests_total')),
    10_000,
    'a failed request',
  );
  t.match(
    await metrics.registry.getSingleMetricAsString('sfmirror_warehouse_requests_total'),
    /result="retryable"\} [1-9]/,
    'failed requests counted',
  );
  const status = await readStatus(db);
  t.ok(status.warehouse.outboxDepth >= 200, 'status shows the depth');
  t.equal(status.warehouse.perOrg[0]?.org, 'salesforce');
  t.match(status.warehouse.perOrg[0]?.lastError, { object: 'Account', message: /UNAVAILABLE/ }, "status has the drain's last error");
  t.match(formatStatus(status), /warehouse: on; outbox \d+ change\(s\), oldest \d+ s/, 'sfmirror status prints depth and age');
  t.same(namesOf('out'), [], 'nothing arrived during the outage');
  phase = 'quota';
  await new Promise((r) => setTimeout(r, 500));
  phase = 'up';
  await until(async () => (await outboxDepth(db)) === 0, 30_000, 'outbox drained after the outage');
  await drain.stop();
  const names = namesOf('out');
  t.equal(names.length, 200, 'every change arrived');
  t.equal(new Set(names).size, 200, 'and once');
  t.equal(namesOf('out', 'account').length, 200, 'the latest-state table has every record');
  t.equal((await readStatus(db)).warehouse.perOrg[0]?.lastError ?? null, null, 'the error clears once the drain recovers');
});

t.test('rows BigQuery will not accept are dead-lettered with its reason; the rest arrive; the operator retries them', async (t) => {
  bq.poison = (json) => (json.Name === 'poison' ? 'Row larger than the maximum allowed size.' : undefined);
  t.teardown(() => {
    bq.poison = undefined;
  });
  await mirror.apply('salesforce', [
    ...range(3000, 9).map((n) => change('insert', n, BASE_MS, { Name: `dl${n}` })),
    change('insert', 3009, BASE_MS, { Name: 'poison' }),
  ]);
  const { drain } = drainer({ owner: 'dead' });
  drain.start();
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  t.equal(namesOf('dl').length, 9, 'the valid rows of the batch arrived (appended again without the invalid one)');
  t.equal(namesOf('dl', 'account').length, 9, 'and are in the latest-state table');
  const dead = await sql<{
    change_id: string;
    sfid: string;
    reason: string;
  }>`select change_id, sfid, reason from sfmirror.warehouse_dead_letters`.execute(db);
  t.equal(dead.rows.length, 1, 'one dead letter');
  t.match(dead.rows[0]!.reason, /invalid: Row larger than the maximum allowed size/, "BigQuery's reason kept");
  const status = await readStatus(db);
  t.equal(status.warehouse.deadLetters, 1, '/admin/status counts it');
  t.equal(status.warehouse.recentDeadLetters[0]?.changeId, dead.rows[0]!.change_id, 'and lists it');
  t.match(formatStatus(status), /1 DEAD LETTER\(S\)[\s\S]*Row larger than the maximum/, 'sfmirror status shows it');

  bq.poison = undefined;
  t.equal(await retryDeadLetters(db, { object: 'account' }), 1, 'the operator puts it back');
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  await drain.stop();
  t.equal(changeRows().filter((r) => r.Name === 'poison').length, 1, 'it arrives once the cause is gone');
  t.equal((await readStatus(db)).warehouse.deadLetters, 0, 'no dead letters left');
});

t.test('rows only the latest-state table refuses are kept as dead letters and sent there again on retry', async (t) => {
  // Refused by the latest-state table (a CDC row carries _CHANGE_TYPE), taken by the history.
  bq.poison = (json) => (json._CHANGE_TYPE && json.Name === 'lpoison' ? 'Row refused by the latest-state table.' : undefined);
  t.teardown(() => {
    bq.poison = undefined;
  });
  await mirror.apply('salesforce', [
    ...range(3100, 4).map((n) => change('insert', n, BASE_MS, { Name: `lp${n}` })),
    change('insert', 3104, BASE_MS, { Name: 'lpoison' }),
  ]);
  const metrics = createMetrics();
  const { drain } = drainer({ owner: 'latest', metrics });
  drain.start();
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  await until(
    async () => (await sql`select 1 from sfmirror.warehouse_dead_letters where target = 'latest'`.execute(db)).rows.length === 1,
    10_000,
    'the refused row kept',
  );
  t.equal(namesOf('lp').length, 5, 'the history took every change');
  t.same(namesOf('lp', 'account'), ['lp3100', 'lp3101', 'lp3102', 'lp3103'], 'the latest-state table took the rest of the batch');
  const dead = await sql<{ sfid: string; reason: string; retry: boolean }>`select sfid, reason, retry from sfmirror.warehouse_dead_letters
    where target = 'latest'`.execute(db);
  t.match(dead.rows[0], { reason: /latest-state table.*Row refused by the latest-state table/, retry: false }, "BigQuery's reason kept");
  t.match(
    await metrics.registry.getSingleMetricAsString('sfmirror_warehouse_rows_total'),
    /result="latest_refused"\} 1/,
    'counted as latest_refused',
  );
  t.equal((await readStatus(db)).warehouse.deadLetters, 1, 'status counts it with the dead letters');

  bq.poison = undefined;
  t.equal(await retryDeadLetters(db, { object: 'Account' }), 1, 'the operator retries it');
  await until(async () => namesOf('lpoison', 'account').length === 1, 20_000, 'sent to the latest-state table');
  await until(async () => (await readStatus(db)).warehouse.deadLetters === 0, 10_000, 'dead letter gone');
  await drain.stop();
  t.equal(namesOf('lpoison').length, 1, 'the history still has it once (a retry never appends to the history)');
  t.equal(await outboxDepth(db), 0, 'nothing went back to the outbox');
});

/** A client that counts its appends (which drainer did the work). */
function counting(c: WarehouseTable) {
  const n = { appends: 0 };
  return {
    n,
    client: {
      ...c,
      async append(...args: Parameters<WarehouseTable['append']>) {
        n.appends++;
        return c.append(...args);
      },
    } satisfies WarehouseTable,
  };
}

t.test('two drainers share the partitions; every row arrives once', async (t) => {
  storage.fault = (a) => (a.table.endsWith('_changes') ? { kind: 'slow', ms: 30 } : undefined);
  t.teardown(() => {
    storage.fault = undefined;
  });
  const exists = storage.stats.alreadyExists;
  const ca = counting(makeClient());
  const cb = counting(makeClient());
  // One loop each: while one drainer holds a partition, the other takes the other one.
  const a = drainer({ owner: 'a', client: ca.client, tuning: { maxRows: 20, concurrency: 1 } }).drain;
  const b = drainer({ owner: 'b', client: cb.client, tuning: { maxRows: 20, concurrency: 1 } }).drain;
  for (const k of range(0, 10))
    await mirror.apply('salesforce', [
      ...range(4000 + k * 40, 20).map((n) => change('insert', n, BASE_MS, { Name: `two${n}` })),
      ...range(4000 + k * 40, 20).map((n) => change('insert', n, BASE_MS, { Name: `two${n}` }, 'Contact')),
    ]);
  a.start();
  b.start();
  await until(async () => (await outboxDepth(db)) === 0, 30_000, 'drained');
  await Promise.all([a.stop(), b.stop()]);
  t.ok(ca.n.appends > 0 && cb.n.appends > 0, `both drainers appended (${ca.n.appends}, ${cb.n.appends})`);
  t.equal(storage.stats.alreadyExists - exists, 0, 'no batch was appended twice');
  t.equal(namesOf('two').length, 200);
  t.equal(new Set(namesOf('two')).size, 200);
  t.equal(namesOf('two', 'contact_changes').length, 200);
  t.equal(new Set(namesOf('two', 'contact_changes')).size, 200);
});

t.test('a new Salesforce field becomes a new column of both tables while the drain runs', async (t) => {
  const { drain } = drainer({ owner: 'schema' });
  drain.start();
  await mirror.apply('salesforce', [change('insert', 5000, BASE_MS, { Name: 'before' })]);
  await until(() => namesOf('before').length === 1, 20_000, 'first row');
  const table = bq.datasets.get('salesforce')!.get('account_changes')!;
  const latest = bq.datasets.get('salesforce')!.get('account')!;
  t.notOk(
    table.fields.some((f) => f.name === 'Rating__c'),
    'no column yet',
  );
  await mirror.apply(
    'salesforce',
    [change('update', 5000, BASE_MS + 1, { Name: 'after', Rating__c: 4.5, Since__c: '2024-03-10T10:00:00.000Z' })],
    { types: { Account: { Rating__c: 'double', Since__c: 'datetime' } } },
  );
  await until(() => namesOf('after').length === 1 && namesOf('after', 'account').length === 1, 20_000, 'rows with the new fields');
  await drain.stop();
  for (const [name, tb] of [
    ['history', table],
    ['latest state', latest],
  ] as const)
    t.same(
      ['Rating__c', 'Since__c'].map((n) => tb.fields.find((f) => f.name === n)?.type),
      ['BIGNUMERIC', 'TIMESTAMP'],
      `tables.patch added typed columns (${name})`,
    );
  t.match(
    changeRows().find((r) => r.Name === 'after'),
    { Rating__c: '4.5', Since__c: '2024-03-10T10:00:00.000Z' },
    'the values arrived',
  );
  t.match(
    changeRows('account').find((r) => r.Name === 'after'),
    { Rating__c: '4.5' },
    'in the latest state too',
  );
});

t.test('a drainer that lost its partition changes nothing; the next one re-sends the batch in flight at its offset', async (t) => {
  const real = makeClient();
  await mirror.apply(
    'salesforce',
    range(6000, 6).map((n) => change('insert', n, BASE_MS, { Name: `lease${n}` })),
  );
  let stolen = false;
  const wrapped: WarehouseTable = {
    ...real,
    async append(...args: Parameters<WarehouseTable['append']>) {
      const r = await real.append(...args);
      if (!stolen) {
        stolen = true;
        // Meanwhile the lease ran out and another drainer took the partition.
        await sql`update sfmirror.warehouse_partitions set owner = 'thief' where object = 'Account'`.execute(db);
      }
      return r;
    },
  };
  const exists = storage.stats.alreadyExists;
  const { drain } = drainer({ owner: 'victim', client: wrapped, tuning: { concurrency: 1 } });
  t.equal(await drain.step(), true, 'drained a partition');
  t.equal(namesOf('lease').length, 6, 'the batch was appended');
  t.equal(await outboxDepth(db), 6, 'but the drainer that lost the lease did not commit it');
  const p = await sql<{ pending_rows: number }>`select pending_rows from sfmirror.warehouse_partitions where object = 'Account'`.execute(
    db,
  );
  t.equal(p.rows[0]!.pending_rows, 6, 'the batch is still in flight');
  await sql`update sfmirror.warehouse_partitions set owner = null, lease_until = now() where owner = 'thief'`.execute(db);
  const again = drainer({ owner: 'next' }).drain;
  again.start();
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  await again.stop();
  t.equal(storage.stats.alreadyExists - exists, 1, 'the re-sent batch was refused at its offset');
  t.equal(namesOf('lease').length, 6, 'all six arrive, once');
  t.same(
    [...copiesPerChange(changeRows()).values()].filter((n) => n !== 1),
    [],
    'no change twice in history',
  );
});
