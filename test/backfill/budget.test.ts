import t from 'tap';
import { sql } from 'kysely';
import { createJob, getJob } from '../../src/backfill/jobs.repository.ts';
import { startBackfillWorker } from '../../src/backfill/worker.ts';
import { addDays } from '../../src/backfill/windows.ts';
import { readStatus } from '../../src/api/status.ts';
import { formatStatus } from '../../src/bin/cli-status.ts';
import { formatJob } from '../../src/bin/cli-backfill.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { createSalesforceSession } from '../../src/salesforce/client.ts';
import { startTestDatabase } from '../support/pg.ts';
import { waitFor } from '../support/wait.ts';
import { change, createTestMirror } from '../support/changes.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';

// The API budget: a backfill stops at a share of the org's daily API allowance, visibly, and goes
// on by itself when the allowance is back.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const mirror = await createTestMirror(db);
const org = await startSalesforceOrg(t);
const session = createSalesforceSession({ instanceUrl: org.url, accessToken: org.issueToken(), loginUrl: org.url, version: org.version });
const CLOCK = '2024-04-10T02:00:00.000Z';
org.bulk.settings.now = () => Date.parse(CLOCK);

t.test('API limit reached -> paused: API limit, then continues when allowance returns', { timeout: 60_000 }, async (t) => {
  const table = org.records.set('Lead', new Map()).get('Lead')!;
  for (let i = 0; i < 3000; i++) {
    const id = org.newId('Lead');
    const stamp = `${addDays('2024-04-01', i % 3)}T${String(i % 24).padStart(2, '0')}:00:${String(i % 60).padStart(2, '0')}.000Z`;
    table.set(id, {
      Id: id,
      LastName: `l${i}`,
      IsDeleted: false,
      CreatedDate: stamp,
      LastModifiedDate: stamp,
      SystemModstamp: stamp,
    } as never);
  }
  // 4,997 of 10,000 used: a few calls more reach the 50% share.
  org.bulk.setApiRequests(10_000, 5_003);
  const { job } = await createJob(db, 'salesforce', 'Lead', '2024-04-01');
  const worker = startBackfillWorker({
    db,
    mirror,
    sourceFor: () => session,
    resyncOrgs: [],
    clock: fixedClock(CLOCK),
    log: createLogger('silent'),
    pollMs: 50,
    reconcileAtMinutes: 0,
    pageSize: 500,
    leaseMs: 60_000,
    apiBudgetShare: 0.5,
    pausedRecheckMs: 300,
  });
  t.teardown(() => worker.stop());
  const paused = await waitFor('the pause', () => getJob(db, job.id), { until: (j) => j?.state === 'paused' });
  t.match(paused, { state: 'paused', active: true, reason: /^API limit: 50\d\d of 10000 daily API requests used; backfills stop at 50%/ });
  t.ok(paused!.rowsImported > 0 && paused!.rowsImported < 3000, `stopped after ${paused!.rowsImported} records`);
  t.ok(10_000 - org.bulk.limits.DailyApiRequests.Remaining <= 5_001, 'no more than the share (and the call that showed it) was used');
  t.match(formatJob(paused!), /paused: API limit/);
  // The worker looks again every pausedRecheckMs (claiming the job for a moment): read a paused moment.
  const status = await waitFor('status shows the pause', () => readStatus(db), {
    until: (st) => st.orgs[0]?.backfills[0]?.state === 'paused',
  });
  t.match(status.orgs[0]!.backfills[0], { state: 'paused', reason: /^API limit/ });
  t.match(formatStatus(status), /backfill job \d+ Lead: paused: API limit/, 'sfmirror status shows it');

  // Still over budget: the worker looks again (one /limits call) and stays paused.
  const limitsBefore = org.bulk.stats.limits;
  await waitFor('a second look', async () => org.bulk.stats.limits, { until: (n) => n > limitsBefore });
  // The look claims the job for a moment (running), then puts it back: wait for the put-back.
  const again = await waitFor('paused again', () => getJob(db, job.id), {
    until: (j) => j?.state === 'paused' && org.bulk.stats.limits > limitsBefore,
  });
  t.match(again, { state: 'paused', reason: /^API limit/ });
  t.equal(
    Number((await sql<{ n: string }>`select count(*) as n from salesforce.lead`.execute(db)).rows[0]!.n),
    paused!.rowsImported,
    'nothing read while over budget',
  );

  // A rolling 24 hours later the allowance is back: the job goes on by itself and finishes.
  org.bulk.setApiRequests(10_000, 10_000);
  const done = await waitFor('the end', () => getJob(db, job.id), { until: (j) => j?.state === 'done-for-today' });
  t.match(done, { state: 'done-for-today', lastDate: '2024-04-10', reason: null });
  t.equal(Number((await sql<{ n: string }>`select count(*) as n from salesforce.lead`.execute(db)).rows[0]!.n), 3000, 'every record');
});

t.test('a call Salesforce refuses for the daily limit pauses too (never a success, never a failure)', async (t) => {
  const { runJob } = await import('../../src/backfill/runner.ts');
  const { claimJob } = await import('../../src/backfill/jobs.repository.ts');
  const table = org.records.set('Case', new Map()).get('Case')!;
  const id = org.newId('Case');
  table.set(id, {
    Id: id,
    Subject: 's',
    IsDeleted: false,
    CreatedDate: '2024-04-02T00:00:00.000Z',
    LastModifiedDate: '2024-04-02T00:00:00.000Z',
    SystemModstamp: '2024-04-02T00:00:00.000Z',
  } as never);
  const { job } = await createJob(db, 'salesforce', 'Case', '2024-04-01');
  org.bulk.setApiRequests(10_000, 0);
  const claimed = await claimJob(db, 'test', '2024-04-10', 60_000, { onlyId: job.id });
  const r = await runJob(
    { db, mirror, source: session, clock: fixedClock(CLOCK), owner: 'test', leaseMs: 60_000, pageSize: 100 },
    claimed!,
  );
  org.bulk.setApiRequests(10_000, 10_000);
  t.equal(r.state, 'paused');
  t.match(r.reason, /^API limit: Salesforce refused a call \(.*REQUEST_LIMIT_EXCEEDED/);
  t.match((await getJob(db, job.id))!, { state: 'paused', reason: /REQUEST_LIMIT_EXCEEDED/ });
});

t.test('the daily Bulk API 2.0 query jobs are a budget too', async (t) => {
  const { runJob } = await import('../../src/backfill/runner.ts');
  const { claimJob } = await import('../../src/backfill/jobs.repository.ts');
  const table = org.records.set('Contact', new Map()).get('Contact')!;
  for (let i = 0; i < 50; i++) {
    const id = org.newId('Contact');
    table.set(id, {
      Id: id,
      LastName: `c${i}`,
      IsDeleted: false,
      CreatedDate: '2024-04-03T00:00:00.000Z',
      LastModifiedDate: '2024-04-03T00:00:00.000Z',
      SystemModstamp: '2024-04-03T00:00:00.000Z',
    } as never);
  }
  const { job } = await createJob(db, 'salesforce', 'Contact', '2024-04-01');
  org.bulk.setBulkJobs(100, 50);
  const bulk = { threshold: 10, pageSize: 1000, pollMs: 5, timeoutMs: 5000 };
  let claimed = await claimJob(db, 'test', '2024-04-10', 60_000, { onlyId: job.id });
  const r = await runJob(
    { db, mirror, source: session, clock: fixedClock(CLOCK), owner: 'test', leaseMs: 60_000, pageSize: 100, bulk, apiBudgetShare: 0.5 },
    claimed!,
  );
  t.equal(r.state, 'paused');
  t.match(r.reason, /^API limit: 50 of 100 daily Bulk API 2.0 query jobs used/);
  t.equal(org.bulk.limits.DailyBulkV2QueryJobs.Remaining, 50, 'no job was created');
  org.bulk.setBulkJobs(100, 100);
  claimed = await claimJob(db, 'test', '2024-04-10', 60_000, { onlyId: job.id });
  const again = await runJob(
    { db, mirror, source: session, clock: fixedClock(CLOCK), owner: 'test', leaseMs: 60_000, pageSize: 100, bulk, apiBudgetShare: 0.5 },
    claimed!,
  );
  t.equal(again.state, 'done-for-today');
  t.equal(again.rows, 50);
  t.equal(org.bulk.limits.DailyBulkV2QueryJobs.Remaining, 99, 'read by one Bulk job');
});

t.test('a whole-object resync over the API budget pauses: a result with the reason, nothing tombstoned', async (t) => {
  const { resyncObject } = await import('../../src/backfill/full-resync.ts');
  const table = org.records.set('Task', new Map()).get('Task')!;
  for (let i = 0; i < 40; i++) {
    const id = org.newId('Task');
    const stamp = `2024-04-02T00:00:${String(i).padStart(2, '0')}.000Z`;
    table.set(id, {
      Id: id,
      Subject: `t${i}`,
      IsDeleted: false,
      CreatedDate: stamp,
      LastModifiedDate: stamp,
      SystemModstamp: stamp,
    } as never);
  }
  // A mirror row Salesforce does not have: a finished resync would tombstone it, a paused one must not.
  const orphan = change('insert', 1, Date.parse('2024-04-01T00:00:00.000Z'), { Subject: 'orphan' }, 'Task');
  await mirror.apply('salesforce', [orphan], { source: 'test' });
  const deps = { db, mirror, source: session, pageSize: 5, apiBudgetShare: 0.5 };

  org.bulk.setApiRequests(10_000, 4_000);
  const before = await resyncObject(deps, 'salesforce', 'Task');
  t.match(before, { state: 'paused', reason: /^API limit: 6\d\d\d of 10000 daily API requests used/, records: 0, tombstoned: 0 });

  // Just under the share: a few pages are read, then the budget is spent mid-way.
  org.bulk.setApiRequests(10_000, 5_006);
  const mid = await resyncObject(deps, 'salesforce', 'Task');
  t.equal(mid.state, 'paused', 'paused mid-way');
  t.ok(mid.records > 0 && mid.records < 40, `read ${mid.records} of 40 records before the pause`);
  t.equal(mid.tombstoned, 0);
  const row = await sql<{ isdeleted: boolean }>`select isdeleted from salesforce.task where sfid = ${orphan.id}`.execute(db);
  t.equal(row.rows[0]?.isdeleted, false, 'the mirror row Salesforce lacks is still live');

  org.bulk.setApiRequests(10_000, 10_000);
  const done = await resyncObject(deps, 'salesforce', 'Task');
  t.match(done, { state: 'done', records: 40, tombstoned: 1 }, 'with the allowance back it finishes and tombstones the orphan');
});
