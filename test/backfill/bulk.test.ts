import t from 'tap';
import { sql } from 'kysely';
import { claimJob, createJob, getJob } from '../../src/backfill/jobs.repository.ts';
import { runJob } from '../../src/backfill/runner.ts';
import { addDays } from '../../src/backfill/windows.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { createSalesforceSession } from '../../src/salesforce/client.ts';
import { typedBulkRecord } from '../../src/salesforce/bulk-values.ts';
import { startTestDatabase } from '../support/pg.ts';
import { createTestMirror } from '../support/changes.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';

// Bulk API 2.0 backfills against the stand-in, through the real client code (fetch + csv-parse).
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const mirror = await createTestMirror(db);
const types = {
  AnnualRevenue: 'currency',
  NumberOfEmployees: 'int',
  Active__c: 'boolean',
  Founded__c: 'date',
  BillingAddress: 'address',
  BillingCity: 'string',
};
const org = await startSalesforceOrg(t, {
  types: { Account: types, Opportunity: { Amount: 'currency', Logo__c: 'base64' }, Contact: { Birthdate: 'date', Employees__c: 'int' } },
});
const session = createSalesforceSession({ instanceUrl: org.url, accessToken: org.issueToken(), loginUrl: org.url, version: org.version });
const BULK = { threshold: 1000, pageSize: 7000, pollMs: 5, timeoutMs: 10_000 };

function seed(object: string, fields: Record<string, string | number | boolean | null>, stamp: string, deleted = false) {
  const table = org.records.get(object) ?? org.records.set(object, new Map()).get(object)!;
  const id = org.newId(object);
  table.set(id, { ...fields, Id: id, IsDeleted: deleted, CreatedDate: stamp, LastModifiedDate: stamp, SystemModstamp: stamp } as never);
  return id;
}
async function run(object: string, day: string, startDate: string, bulk = BULK) {
  const { job } = await createJob(db, 'salesforce', object, startDate);
  const now = `${day}T02:00:00.000Z`;
  org.bulk.settings.now = () => Date.parse(now);
  const claimed = await claimJob(db, 'test', day, 60_000, { onlyId: job.id });
  const outcome = await runJob(
    { db, mirror, source: session, clock: fixedClock(now), owner: 'test', leaseMs: 60_000, pageSize: 2000, bulk },
    claimed!,
  );
  return { job: (await getJob(db, job.id))!, outcome };
}

t.test('Bulk CSV values are typed by describe; an empty string is null', async (t) => {
  const rec = typedBulkRecord(
    {
      Id: '001000000000001AAA',
      IsDeleted: 'false',
      Active__c: 'true',
      AnnualRevenue: '12.50',
      NumberOfEmployees: '',
      Name: 'a, "b"',
      Big__c: '1e400',
    },
    { Active__c: 'boolean', AnnualRevenue: 'currency', NumberOfEmployees: 'int', Name: 'string', Big__c: 'double' },
  );
  t.same(rec, {
    Id: '001000000000001AAA',
    IsDeleted: false,
    Active__c: true,
    AnnualRevenue: 12.5,
    NumberOfEmployees: null,
    Name: 'a, "b"',
    Big__c: '1e400',
  });
});

t.test('100,000 records across Bulk pages and days', { timeout: 180_000 }, async (t) => {
  const days = 5;
  const truth = new Map<string, Record<string, unknown>>();
  for (let i = 0; i < 100_000; i++) {
    const day = addDays('2024-01-01', i % days);
    const stamp = `${day}T${String(Math.floor(i / 5000) % 24).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:${String((i >> 3) % 60).padStart(2, '0')}.000Z`;
    const fields = {
      Name: i % 97 === 0 ? `Acme, "quoted"\nline ${i}` : `Account ${i}`,
      AnnualRevenue: i % 10 === 0 ? null : i * 1.5,
      NumberOfEmployees: i % 1000,
      Active__c: i % 2 === 0,
      Founded__c: i % 7 === 0 ? null : '2001-02-03',
      BillingCity: i % 3 === 0 ? null : 'Lyon',
    };
    const id = seed('Account', fields, stamp, i % 100 === 1);
    truth.set(id, { ...fields, deleted: i % 100 === 1 });
  }
  const started = Date.now();
  const { job, outcome } = await run('Account', '2024-01-10', '2024-01-01');
  const seconds = (Date.now() - started) / 1000;
  t.equal(outcome.state, 'done-for-today', outcome.reason ?? '');
  t.equal(outcome.rows, 100_000);
  t.match(job, { state: 'done-for-today', lastDate: '2024-01-10' });
  const jobs = org.bulk.stats.jobs;
  t.equal(jobs.length, days, 'one Bulk job per day');
  t.ok(
    jobs.every((j) => j.operation === 'queryAll'),
    'queryAll: deleted records come too',
  );
  t.ok(
    jobs.every((j) => !/BillingAddress|ORDER BY|LIMIT/.test(j.query) && /BillingCity/.test(j.query)),
    'compound fields left out of Bulk SOQL, their flat components queried',
  );
  const pages = org.bulk.stats.resultPages;
  t.equal(pages.length, days * 3, '20,000 a day in pages of 7,000: three pages each, paged by Sforce-Locator');
  t.equal(pages.filter((p) => p.locator === null).length, days, 'the first page of each job has no locator');
  const rows = await sql<{
    sfid: string;
    name: string;
    annualrevenue: string | null;
    numberofemployees: number;
    active__c: boolean;
    founded__c: string | null;
    billingcity: string | null;
    isdeleted: boolean;
  }>`
    select sfid, name, annualrevenue::text, numberofemployees, active__c, founded__c::text, billingcity, isdeleted from salesforce.account`.execute(
    db,
  );
  t.equal(rows.rows.length, 100_000, 'every record, once');
  const wrong = rows.rows.filter((r) => {
    const x = truth.get(r.sfid)!;
    return (
      !x ||
      r.name !== x.Name ||
      (r.annualrevenue === null ? x.AnnualRevenue !== null : Number(r.annualrevenue) !== x.AnnualRevenue) ||
      r.numberofemployees !== x.NumberOfEmployees ||
      r.active__c !== x.Active__c ||
      r.founded__c !== x.Founded__c ||
      r.billingcity !== x.BillingCity ||
      r.isdeleted !== x.deleted
    );
  });
  t.same(wrong.slice(0, 3), [], 'values typed as describe says, nulls kept, deletes as tombstones');
  t.comment(`100,000 records in ${seconds.toFixed(1)} s (${(100_000 / seconds).toFixed(0)} records/s)`);
});

t.test('a Bulk page PostgreSQL refuses as CSV is decoded record by record: nothing lost, the bad values reported', async (t) => {
  // A 30 February and an integer out of range fail the CSV path's casts; the row path keeps them
  // in _sfm_fields, leaves their columns NULL and records type problems (field-types.ts wording).
  for (let i = 0; i < 1500; i++)
    seed(
      'Contact',
      { LastName: `c${i}`, Birthdate: i === 7 ? '2023-02-30' : '1990-01-01', Employees__c: i === 9 ? 99999999999 : i },
      `2024-04-02T09:00:${String(i % 60).padStart(2, '0')}.000Z`,
    );
  const { outcome } = await run('Contact', '2024-04-03', '2024-04-02');
  t.match(outcome, { state: 'done-for-today', rows: 1500 });
  t.ok(
    org.bulk.stats.jobs.some((j) => / FROM Contact\b/.test(j.query)),
    'read by Bulk',
  );
  const n = await sql<{ n: string }>`select count(*) as n from salesforce.contact`.execute(db);
  t.equal(Number(n.rows[0]!.n), 1500, 'every record in the mirror');
  const bad = await sql<{ lastname: string; birthdate: string | null; employees__c: number | null; f: Record<string, unknown> }>`
    select lastname, birthdate::text, employees__c, _sfm_fields as f from salesforce.contact where lastname in ('c7', 'c9') order by lastname`.execute(
    db,
  );
  t.match(bad.rows, [
    { lastname: 'c7', birthdate: null, f: { Birthdate: '2023-02-30' } },
    { lastname: 'c9', employees__c: null, f: { Employees__c: 99999999999 } },
  ]);
  const problems = await sql<{ field: string; problem: string }>`select field, problem from sfmirror.type_problems
    where object = 'Contact' order by field`.execute(db);
  t.match(problems.rows, [
    { field: 'Birthdate', problem: /not a calendar date/ },
    { field: 'Employees__c', problem: /out of integer range/ },
  ]);
});

t.test("a Bulk job failure fails the backfill job with Salesforce's message", async (t) => {
  const logo = (i: number) => (i % 100 === 0 ? `/services/data/v62.0/sobjects/Opportunity/${i}/Logo__c` : null);
  for (let i = 0; i < 1500; i++)
    seed('Opportunity', { Name: `o${i}`, Amount: i, Logo__c: logo(i) }, `2024-02-01T10:00:${String(i % 60).padStart(2, '0')}.000Z`);
  org.bulk.failNextJob("INVALID_FIELD: No such column 'Secret__c' on entity 'Opportunity'");
  const { job, outcome } = await run('Opportunity', '2024-02-05', '2024-02-01');
  t.equal(outcome.state, 'failed');
  t.match(outcome.reason, /Bulk API 2.0 query job \w+ failed: INVALID_FIELD: No such column 'Secret__c'/);
  t.match(job, { state: 'failed', reason: /INVALID_FIELD/, lastDate: '2024-02-01' }, 'not success: the day is still to do');
  t.equal(outcome.rows, 0);

  org.bulk.stallJobs(true);
  const claimed = await claimJob(db, 'test', '2024-02-05', 60_000, { onlyId: job.id });
  const timedOut = await runJob(
    {
      db,
      mirror,
      source: session,
      clock: fixedClock('2024-02-05T02:00:00Z'),
      owner: 'test',
      leaseMs: 60_000,
      pageSize: 2000,
      bulk: { ...BULK, timeoutMs: 200 },
    },
    claimed!,
  );
  org.bulk.stallJobs(false);
  t.equal(timedOut.state, 'failed');
  t.match(timedOut.reason, /did not complete within 0 s \(state InProgress\); it was aborted/);
  t.match((await getJob(db, job.id))!, { state: 'failed', reason: /did not complete/ });

  const again = await claimJob(db, 'test', '2024-02-05', 60_000, { onlyId: job.id });
  const ok = await runJob(
    { db, mirror, source: session, clock: fixedClock('2024-02-05T02:00:00Z'), owner: 'test', leaseMs: 60_000, pageSize: 2000, bulk: BULK },
    again!,
  );
  t.equal(ok.state, 'done-for-today');
  t.equal(
    Number((await sql<{ n: string }>`select count(*) as n from salesforce.opportunity`.execute(db)).rows[0]!.n),
    1500,
    'a later run imports the day',
  );
  t.notOk(org.bulk.stats.jobs.at(-1)!.query.includes('Logo__c'), 'Bulk does not serve base64 fields: not in its SOQL');
  const logos = await sql<{ n: string }>`select count(*) as n from salesforce.opportunity where logo__c like '/services/data/%'`.execute(
    db,
  );
  t.equal(Number(logos.rows[0]!.n), 15, "base64 fields read through REST for the page's ids");
});

t.test('a saved Bulk job Salesforce no longer serves: the day is read again with a new job', async (t) => {
  for (let i = 0; i < 1200; i++) seed('Lead', { LastName: `l${i}` }, `2024-03-02T08:00:${String(i % 60).padStart(2, '0')}.000Z`);
  const { job } = await createJob(db, 'salesforce', 'Lead', '2024-03-02');
  const aborted = await session.startBulkRead('Lead', { from: '2024-03-02T00:00:00Z', to: '2024-03-03T00:00:00Z' });
  await fetch(`${org.url}/services/data/v${org.version}/jobs/query/${aborted}`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${session.accessToken()}`, 'content-type': 'application/json' },
    body: '{"state":"Aborted"}',
  });
  const save = (value: unknown) =>
    sql`insert into sfmirror.checkpoints (org_alias, source, value) values ('salesforce', ${`backfill:${job.id}`}, ${JSON.stringify(value)}::jsonb)
    on conflict (org_alias, source) do update set value = excluded.value`.execute(db);
  for (const cursor of [
    { day: '2024-03-02', bulk: { job: '750000000000000AAA', locator: 'a' } },
    { day: '2024-03-02', bulk: { job: aborted, locator: 'b' } },
  ]) {
    await save(cursor);
    await sql`update sfmirror.backfill_jobs set last_date = '2024-03-02' where id = ${job.id}`.execute(db);
    const jobsBefore = org.bulk.stats.jobs.length;
    const claimed = await claimJob(db, 'test', '2024-03-05', 60_000, { onlyId: job.id });
    const r = await runJob(
      {
        db,
        mirror,
        source: session,
        clock: fixedClock('2024-03-05T02:00:00Z'),
        owner: 'test',
        leaseMs: 60_000,
        pageSize: 2000,
        bulk: BULK,
      },
      claimed!,
    );
    t.equal(r.state, 'done-for-today', r.reason ?? '');
    t.equal(r.rows, 1200, `${cursor.bulk.job === aborted ? 'aborted' : 'unknown'} job: every record read again`);
    t.equal(org.bulk.stats.jobs.length - jobsBefore, 1, 'by one new job');
  }
  t.equal(Number((await sql<{ n: string }>`select count(*) as n from salesforce.lead`.execute(db)).rows[0]!.n), 1200);
});
