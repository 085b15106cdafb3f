import t from 'tap';
import { sql } from 'kysely';
import { claimJob, createJob, getJob, setActive } from '../../src/backfill/jobs.repository.ts';
import { runJob, type BackfillSource } from '../../src/backfill/runner.ts';
import { addDays, dayOf } from '../../src/backfill/windows.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { createSalesforceSession } from '../../src/salesforce/client.ts';
import { startTestDatabase } from '../support/pg.ts';
import { createTestMirror } from '../support/changes.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { makeVersion } from '../../src/changes/version.ts';

// Backfill jobs against the Salesforce stand-in through jsforce (REST query, keyset paging).
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const mirror = await createTestMirror(db);
const org = await startSalesforceOrg(t, { types: { Account: { AnnualRevenue: 'currency' } } });
const session = createSalesforceSession({ instanceUrl: org.url, accessToken: org.issueToken(), loginUrl: org.url, version: org.version });
const source: BackfillSource = session;

/** Puts a record into the org as it stood at `stamp` (history the stream never saw). */
function seed(object: string, fields: Record<string, string | number | boolean | null>, stamp: string, id = org.newId(object)) {
  const table = org.records.get(object) ?? org.records.set(object, new Map()).get(object)!;
  table.set(id, { ...fields, Id: id, IsDeleted: false, CreatedDate: stamp, LastModifiedDate: stamp, SystemModstamp: stamp } as never);
  return id;
}
const at = (day: string, time = '10:00:00') => `${day}T${time}.000Z`;
const mirrored = async (object: string) =>
  new Set(
    (
      await sql<{ sfid: string }>`select sfid from ${sql.id('salesforce', object.toLowerCase())}`
        .execute(db)
        .catch(() => ({ rows: [] as Array<{ sfid: string }> }))
    ).rows.map((r) => r.sfid),
  );

async function runDay(day: string, opts: { pageSize?: number; owner?: string; src?: BackfillSource; job?: number } = {}) {
  const clock = fixedClock(`${day}T02:00:00.000Z`);
  const job = await claimJob(db, opts.owner ?? 'test', day, 60_000, opts.job === undefined ? {} : { onlyId: opts.job });
  if (!job) return undefined;
  return runJob(
    { db, mirror, source: opts.src ?? source, clock, owner: opts.owner ?? 'test', leaseMs: 60_000, pageSize: opts.pageSize ?? 50 },
    job,
  );
}

t.test('the job model of the original sync API, day by day', async (t) => {
  // Two records a day from 2023-02-27 to 2023-03-24 (UTC), one at midnight exactly.
  const byDay = new Map<string, string[]>();
  for (let d = '2023-02-27'; d <= '2023-03-24'; d = addDays(d, 1))
    byDay.set(d, [seed('Account', { Name: `a ${d}` }, at(d, '00:00:00')), seed('Account', { Name: `b ${d}` }, at(d, '23:59:59'))]);
  const upTo = (last: string) =>
    [...byDay]
      .filter(([d]) => d <= last)
      .filter(([d]) => d >= '2023-03-01')
      .flatMap(([, ids]) => ids)
      .sort();

  const { job } = await createJob(db, 'salesforce', 'Account', '2023-03-01');
  t.same(
    [job.lastDate, job.active, job.state],
    ['2023-03-01', true, 'pending'],
    '1. created on 03-20 with start 03-01: last_date 03-01, active',
  );

  let r = await runDay('2023-03-20');
  t.equal(r?.state, 'done-for-today');
  t.same([...(await mirrored('Account'))].sort(), upTo('2023-03-19'), '2. run on 03-20 imports 03-01 .. 03-19');
  t.equal((await getJob(db, job.id))!.lastDate, '2023-03-20', 'last_date = 03-20');

  r = await runDay('2023-03-21');
  t.equal(r?.rows, 2, '3. run on 03-21 imports 03-20 only');
  t.equal((await getJob(db, job.id))!.lastDate, '2023-03-21');
  r = await runDay('2023-03-22');
  t.equal(r?.rows, 2, 'likewise 03-22');
  t.equal((await getJob(db, job.id))!.lastDate, '2023-03-22');
  t.equal(await runDay('2023-03-22'), undefined, 'running twice in one day is harmless: nothing is due');

  await setActive(db, job.id, false);
  t.same([(await getJob(db, job.id))!.active, (await getJob(db, job.id))!.state], [false, 'paused'], '4. pause: inactive');
  t.equal(await runDay('2023-03-23'), undefined, 'runs skip it');
  await setActive(db, job.id, true);
  t.equal((await getJob(db, job.id))!.active, true, 'resume: active');

  r = await runDay('2023-03-25');
  t.equal(r?.rows, 6, '5. run on 03-25 imports 03-22 .. 03-24');
  t.same([...(await mirrored('Account'))].sort(), upTo('2023-03-24'));
  const final = (await getJob(db, job.id))!;
  t.same([final.lastDate, final.state], ['2023-03-25', 'done-for-today']);
});

t.test('5,000 records sharing one SystemModstamp: none skipped, none repeated', async (t) => {
  const stamp = at('2023-04-02', '12:00:00');
  const ids = Array.from({ length: 5000 }, () => seed('Contact', { LastName: 'same' }, stamp));
  const { job } = await createJob(db, 'salesforce', 'Contact', '2023-04-01');
  let pages = 0;
  const counting: BackfillSource = {
    describeFields: (o) => source.describeFields(o),
    readModifiedSince: async (...a) => {
      pages++;
      return source.readModifiedSince(...a);
    },
  };
  const r = await runDay('2023-04-05', { pageSize: 700, src: counting, job: job.id });
  t.equal(r?.state, 'done-for-today');
  t.equal(r?.rows, 5000, 'each record read once');
  t.ok(pages >= 8, `${pages} pages of at most 700`);
  t.same((await mirrored('Contact')).size, ids.length);
  t.equal((await getJob(db, job.id))!.lastDate, '2023-04-05');
});

t.test('20,000 records over many pages and days; a failure mid-run resumes where it stopped', async (t) => {
  const days = 10;
  const all: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    const day = addDays('2023-05-01', i % days);
    const time = `${String(Math.floor(i / 1000) % 24).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:00`;
    all.push(seed('Lead', { LastName: `l${i}`, Company: 'c' }, at(day, time)));
  }
  const { job } = await createJob(db, 'salesforce', 'Lead', '2023-05-01');
  // Salesforce fails after 7 pages (a timeout): the job fails with the reason, its cursor kept.
  let calls = 0;
  const flaky: BackfillSource = {
    describeFields: (o) => source.describeFields(o),
    readModifiedSince: async (...a) => {
      if (++calls === 8) throw new Error('QUERY_TIMEOUT: Your query request was running for too long.');
      return source.readModifiedSince(...a);
    },
  };
  const first = await runDay('2023-05-20', { pageSize: 1000, src: flaky, job: job.id });
  t.equal(first?.state, 'failed');
  t.match(first?.reason, /QUERY_TIMEOUT/, "the job failed with Salesforce's message, not success");
  t.match((await getJob(db, job.id))!, { state: 'failed', reason: /QUERY_TIMEOUT/ });
  const partial = (await mirrored('Lead')).size;
  t.ok(partial > 0 && partial < 20_000, `${partial} records before the failure`);
  const second = await runDay('2023-05-20', { pageSize: 1000, job: job.id });
  t.equal(second?.state, 'done-for-today');
  t.equal((await mirrored('Lead')).size, 20_000, 'every record');
  t.ok(second!.rows <= 20_000 - partial, `the rerun imported ${second!.rows} records: it resumed after the last committed page`);
});

t.test('a backfill racing live pushes ends with the newest values', async (t) => {
  const id = seed('Opportunity', { Name: 'old name', StageName: 'Prospecting' }, at('2023-06-01'));
  const { job } = await createJob(db, 'salesforce', 'Opportunity', '2023-06-01');
  // A push with a newer SystemModstamp lands first; the backfill then reads the older state.
  await mirror.apply('salesforce', [
    {
      object: 'Opportunity',
      operation: 'update',
      id,
      fields: { Name: 'new name', SystemModstamp: at('2023-06-03') },
      version: makeVersion(Date.parse(at('2023-06-03'))),
    },
  ]);
  await runDay('2023-06-10', { job: job.id });
  const row = await sql<{ name: string; stagename: string }>`select name, stagename from salesforce.opportunity where sfid = ${id}`.execute(
    db,
  );
  t.same(row.rows[0], { name: 'new name', stagename: 'Prospecting' }, 'newer pushed value kept, other fields filled in');
});

t.test('a job is worked by one worker at a time (lease)', async (t) => {
  seed('Case', { Subject: 's' }, at('2023-07-01'));
  const { job } = await createJob(db, 'salesforce', 'Case', '2023-07-01');
  const a = await claimJob(db, 'serve-1', '2023-07-05', 60_000, { onlyId: job.id });
  t.equal(a?.id, job.id);
  t.equal(await claimJob(db, 'cli-2', '2023-07-05', 60_000, { onlyId: job.id }), undefined, 'the CLI cannot claim it while serve holds it');
  await sql`update sfmirror.backfill_jobs set lease_until = now() - interval '1 second' where id = ${job.id}`.execute(db);
  t.equal(
    (await claimJob(db, 'cli-2', '2023-07-05', 60_000, { onlyId: job.id }))?.id,
    job.id,
    'an expired lease (a dead worker) is taken over',
  );
  const { created, job: again } = await createJob(db, 'salesforce', 'case', '2023-01-01');
  t.equal(created, false, 'a second start for the same object names the existing job');
  t.equal(again.id, job.id);
  t.equal(dayOf(new Date('2023-07-05T23:59:59Z')), '2023-07-05');
});

t.test('resync requests recorded by the stream are picked up by the backfill worker', async (t) => {
  const { requestResync } = await import('../../src/mirror/resync-requests.repository.ts');
  const { startBackfillWorker } = await import('../../src/backfill/worker.ts');
  const { createLogger } = await import('../../src/lib/logger.ts');
  const keep = seed('Account', { Name: 'changed while the stream was away' }, at('2024-02-01'));
  const gone = seed('Account', { Name: 'deleted while the stream was away' }, at('2024-02-01'));
  (org.records.get('Account')!.get(gone) as unknown as { IsDeleted: boolean }).IsDeleted = true;
  await requestResync(db, 'salesforce', {
    object: 'Account',
    reason: 'replayId refused',
    source: 'cdc:/data/ChangeEvents',
    since: new Date(at('2024-01-31')),
  });
  const worker = startBackfillWorker({
    db,
    mirror,
    sourceFor: () => source,
    resyncOrgs: ['salesforce'],
    clock: fixedClock('2024-02-02T00:10:00Z'),
    log: createLogger('silent'),
    pollMs: 50,
    reconcileAtMinutes: 24 * 60,
    pageSize: 100,
    leaseMs: 60_000,
  });
  t.teardown(() => worker.stop());
  let status = '';
  for (let i = 0; i < 200 && status !== 'done'; i++) {
    await new Promise((r) => setTimeout(r, 50));
    status = (await sql<{ status: string }>`select status from sfmirror.resync_requests order by id desc limit 1`.execute(db)).rows[0]!
      .status;
  }
  t.equal(status, 'done', 'the request was worked');
  const rows = await sql<{
    sfid: string;
    name: string;
    isdeleted: boolean;
  }>`select sfid, name, isdeleted from salesforce.account where sfid = any(${[keep, gone]}) order by sfid`.execute(db);
  t.same(
    Object.fromEntries(rows.rows.map((r) => [r.sfid, r.isdeleted])),
    { [keep]: false, [gone]: true },
    'changes and deletes since `since` converge',
  );
  const again = await import('../../src/mirror/resync-requests.repository.ts');
  t.equal(await again.claimResync(db, 'someone-else', 1000, 'salesforce'), undefined, 'a done request is never claimed again');
});
