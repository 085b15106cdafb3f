import t from 'tap';
import { sql } from 'kysely';
import { change, BASE_MS } from '../support/changes.ts';
import { createMetrics } from '../../src/lib/metrics.ts';
import { readStatus } from '../../src/api/status.ts';
import { formatStatus } from '../../src/bin/cli-status.ts';
import { retryDeadLetters } from '../../src/warehouse/warehouse.repository.ts';
import { outboxDepth, until, warehouseFixture } from './support.ts';

// Faults of BigQuery (outage, quota, timeouts, partial and invalid rows) and concurrent drainers.
const { db, mirror, bq, drainer, client: makeClient } = await warehouseFixture(t);
const changeRows = () => bq.rows('salesforce', 'account_changes').filter((r) => r._sfm_op !== 'seed');
const namesOf = (prefix: string) =>
  changeRows()
    .filter((r) => String(r.Name).startsWith(prefix))
    .map((r) => String(r.Name))
    .sort();
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

t.test('an outage (5xx, then quota errors) loses nothing; the outbox drains after it', async (t) => {
  let phase: 'down' | 'quota' | 'up' = 'down';
  bq.fault = () =>
    phase === 'down'
      ? { kind: 'status', status: 503, reason: 'backendError' }
      : phase === 'quota'
        ? { kind: 'status', status: 403, reason: 'quotaExceeded' }
        : undefined;
  t.teardown(() => {
    bq.fault = undefined;
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
  t.match(
    await metrics.registry.getSingleMetricAsString('sfmirror_warehouse_requests_total'),
    /result="retryable"\} [1-9]/,
    'failed requests counted',
  );
  const status = await readStatus(db);
  t.ok(status.warehouse.outboxDepth >= 200, 'status shows the depth');
  t.equal(status.warehouse.perOrg[0]?.org, 'salesforce');
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
});

t.test('partial insertErrors: only the failed rows are sent again', async (t) => {
  const failedOnce = new Set<string>();
  bq.fault = (req) =>
    req.rows.some((r) => String(r.json.Name).startsWith('part'))
      ? {
          kind: 'partial',
          reasonFor: (json) =>
            String(json.Name).endsWith('7') && !failedOnce.has(String(json.Name))
              ? (failedOnce.add(String(json.Name)), 'backendError')
              : undefined,
        }
      : undefined;
  t.teardown(() => {
    bq.fault = undefined;
  });
  const received = bq.stats.rowsReceived;
  await mirror.apply(
    'salesforce',
    range(2000, 30).map((n) => change('insert', n, BASE_MS, { Name: `part${n}` })),
  );
  const { drain } = drainer({ owner: 'partial', tuning: { concurrency: 1 } });
  drain.start();
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  await drain.stop();
  t.equal(failedOnce.size, 3, 'three rows failed once');
  t.equal(bq.stats.rowsReceived - received, 33, '30 rows sent, then only the 3 failed ones again');
  t.equal(namesOf('part').length, 30, 'each change arrived once');
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
  t.equal(namesOf('dl').length, 9, 'the valid rows of the batch arrived (sent again without the invalid one)');
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

  // Whole-request refusal (400): the drain halves the batch until the bad row stands alone.
  bq.fault = (req) =>
    req.rows.some((r) => String(r.json.Name).startsWith('wr') || r.json.Name === 'poison') ? { kind: 'reject-invalid-request' } : undefined;
  await mirror.apply('salesforce', [
    ...range(3100, 7).map((n) => change('insert', n, BASE_MS, { Name: `wr${n}` })),
    change('insert', 3107, BASE_MS, { Name: 'poison' }),
  ]);
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  t.equal(namesOf('wr').length, 7, 'a refused request: the valid rows arrive');
  t.equal((await readStatus(db)).warehouse.deadLetters, 2, 'the bad row is dead-lettered');
  bq.fault = undefined;

  bq.poison = undefined;
  t.equal(await retryDeadLetters(db, { object: 'account' }), 2, 'the operator puts them back');
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  await drain.stop();
  t.equal(changeRows().filter((r) => r.Name === 'poison').length, 2, 'both arrive once the cause is gone');
  t.equal((await readStatus(db)).warehouse.deadLetters, 0, 'no dead letters left');
});

t.test('two drainers never send the same row at the same time, and every row arrives once', async (t) => {
  bq.fault = () => ({ kind: 'slow', ms: 30 });
  t.teardown(() => {
    bq.fault = undefined;
  });
  const before = bq.stats.concurrentSameId;
  const a = drainer({ owner: 'a', tuning: { maxRows: 20, concurrency: 3 } }).drain;
  const b = drainer({ owner: 'b', tuning: { maxRows: 20, concurrency: 3 } }).drain;
  a.start();
  b.start();
  for (const k of range(0, 10))
    await mirror.apply(
      'salesforce',
      range(4000 + k * 40, 40).map((n) => change('insert', n, BASE_MS, { Name: `two${n}` })),
    );
  await until(async () => (await outboxDepth(db)) === 0, 30_000, 'drained');
  await Promise.all([a.stop(), b.stop()]);
  t.equal(bq.stats.concurrentSameId - before, 0, 'no insertId was in two open requests');
  t.equal(bq.stats.duplicatesDropped, 0, 'no row was sent twice at all');
  t.equal(namesOf('two').length, 400);
  t.equal(new Set(namesOf('two')).size, 400);
});

t.test('a new Salesforce field becomes a new column while the drain runs', async (t) => {
  const { drain } = drainer({ owner: 'schema' });
  drain.start();
  await mirror.apply('salesforce', [change('insert', 5000, BASE_MS, { Name: 'before' })]);
  await until(() => namesOf('before').length === 1, 20_000, 'first row');
  const table = bq.datasets.get('salesforce')!.get('account_changes')!;
  t.notOk(
    table.fields.some((f) => f.name === 'Rating__c'),
    'no column yet',
  );
  await mirror.apply(
    'salesforce',
    [change('update', 5000, BASE_MS + 1, { Name: 'after', Rating__c: 4.5, Since__c: '2024-03-10T10:00:00.000Z' })],
    { types: { Account: { Rating__c: 'double', Since__c: 'datetime' } } },
  );
  await until(() => namesOf('after').length === 1, 20_000, 'row with the new fields');
  await drain.stop();
  t.same(
    ['Rating__c', 'Since__c'].map((n) => table.fields.find((f) => f.name === n)?.type),
    ['BIGNUMERIC', 'TIMESTAMP'],
    'tables.patch added typed columns',
  );
  t.match(
    changeRows().find((r) => r.Name === 'after'),
    { Rating__c: '4.5', Since__c: '2024-03-10T10:00:00.000Z' },
    'the values arrived',
  );
  t.ok(
    bq.stats.calls.some((c) => c.startsWith('PATCH /bigquery/v2/projects/p/datasets/salesforce/tables/account_changes')),
    'by tables.patch',
  );
});

t.test('a drainer that lost its lease does not send the rest of its batch', async (t) => {
  const client = makeClient();
  await mirror.apply(
    'salesforce',
    range(6000, 6).map((n) => change('insert', n, BASE_MS, { Name: `lease${n}` })),
  );
  let first = true;
  const real = client;
  const wrapped = {
    ...real,
    async insertAll(dataset: string, table: string, rows: Parameters<typeof real.insertAll>[2]) {
      const r = await real.insertAll(dataset, table, rows);
      if (first) {
        first = false;
        // Meanwhile the lease ran out and another drainer took the remaining rows.
        await sql`update sfmirror.outbox set lease_owner = 'thief' where lease_owner = 'victim'`.execute(db);
      }
      return r;
    },
  };
  // Tiny byte limit: one row per request; lease short enough that every request renews it first.
  const { drain } = drainer({
    owner: 'victim',
    client: wrapped,
    tuning: { maxBytes: 100, leaseMs: 2000, requestTimeoutMs: 1000, concurrency: 1 },
  });
  t.equal(await drain.step(), 6, 'claimed six rows');
  t.equal(namesOf('lease').length, 1, 'sent the first, then found its lease gone and stopped');
  const held = await sql<{ n: string }>`select count(*) as n from sfmirror.outbox where lease_owner = 'thief'`.execute(db);
  t.equal(
    Number(held.rows[0]!.n),
    6,
    "the other drainer holds all six: five unsent, and the sent one (not this drainer's to delete any more)",
  );
  await sql`update sfmirror.outbox set lease_owner = null, lease_until = null where lease_owner = 'thief'`.execute(db);
  const again = drainer({ owner: 'next' }).drain;
  again.start();
  await until(async () => (await outboxDepth(db)) === 0, 20_000, 'drained');
  await again.stop();
  t.equal(namesOf('lease').length, 6, 'all six arrive, once (the re-sent first one is dropped by insertId)');
});
