import t from 'tap';
import { sql } from 'kysely';
import { claimJob, createJob, getJob } from '../../src/backfill/jobs.repository.ts';
import { runJob } from '../../src/backfill/runner.ts';
import { runResync } from '../../src/backfill/resync.ts';
import { dayOf } from '../../src/backfill/windows.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { claimResync } from '../../src/mirror/resync-requests.repository.ts';
import { createSalesforceSession } from '../../src/salesforce/client.ts';
import { startTestDatabase } from '../support/pg.ts';
import { createTestMirror } from '../support/changes.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';

// Hard deletes: getDeleted inside its 15-day reach, ids compared (whole-object resync) beyond it.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const mirror = await createTestMirror(db);
const org = await startSalesforceOrg(t);
const session = createSalesforceSession({ instanceUrl: org.url, accessToken: org.issueToken(), loginUrl: org.url, version: org.version });
const DAY = 86_400_000;
const iso = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString();

function seed(object: string, name: string, stampMs: number) {
  const table = org.records.get(object) ?? org.records.set(object, new Map()).get(object)!;
  const id = org.newId(object);
  const stamp = iso(stampMs);
  table.set(id, { Name: name, Id: id, IsDeleted: false, CreatedDate: stamp, LastModifiedDate: stamp, SystemModstamp: stamp } as never);
  return id;
}
/** A hard delete (emptied from the Recycle Bin) at `atMs`, as Salesforce's delete log records it. */
function hardDelete(object: string, id: string, atMs: number) {
  org.records.get(object)!.delete(id);
  org.deletions.push({ object, id, deletedDate: iso(atMs) });
}
const live = async () =>
  new Map(
    (await sql<{ sfid: string; isdeleted: boolean }>`select sfid, isdeleted from salesforce.contact`.execute(db)).rows.map((r) => [
      r.sfid,
      !r.isdeleted,
    ]),
  );

t.test('getDeleted refuses a start past its reach, and more ids than its limit', async (t) => {
  await t.rejects(session.getDeleted('Contact', new Date(Date.now() - 20 * DAY), new Date()), {
    kind: 'out-of-reach',
    code: 'INVALID_REPLICATION_DATE',
  } as object as Error);
  org.bulk.settings.idLimit = 1;
  org.deletions.push(
    { object: 'Lead', id: org.newId('Lead'), deletedDate: iso(Date.now() - 3600_000) },
    { object: 'Lead', id: org.newId('Lead'), deletedDate: iso(Date.now() - 60_000) },
  );
  await t.rejects(session.getDeleted('Lead', new Date(Date.now() - 2 * 3600_000), new Date()), {
    kind: 'too-large',
    code: 'EXCEEDED_ID_LIMIT',
  } as object as Error);
  org.bulk.settings.idLimit = 600_000;
});

t.test('hard deletes inside the 15-day reach, and beyond it', { timeout: 60_000 }, async (t) => {
  const now = Date.now();
  const old = Array.from({ length: 300 }, (_, i) => seed('Contact', `old ${i}`, now - 30 * DAY + i * 1000));
  const recent = Array.from({ length: 300 }, (_, i) => seed('Contact', `recent ${i}`, now - 5 * DAY + i * 1000));
  const { job } = await createJob(db, 'salesforce', 'Contact', dayOf(new Date(now - 40 * DAY)));
  const runAt = async (clockMs: number) => {
    const claimed = await claimJob(db, 'test', dayOf(new Date(clockMs)), 60_000, { onlyId: job.id });
    return runJob(
      { db, mirror, source: session, clock: fixedClock(new Date(clockMs)), owner: 'test', leaseMs: 60_000, pageSize: 200 },
      claimed!,
    );
  };
  // The first run: 3 hours ago (so the deletes below happen after it).
  t.equal((await runAt(now - 3 * 3600_000)).state, 'done-for-today');
  t.equal([...(await live()).values()].filter(Boolean).length, 600, 'seeded');
  t.ok(
    Math.abs((await getJob(db, job.id))!.deletesCheckedUntil!.getTime() - (now - 3 * 3600_000)) < 5000,
    'getDeleted asked up to the run',
  );

  // Since then, two records were hard-deleted (gone from queryAll too), 2 h and 1 h ago; with an id
  // limit of 1 the range must be split to be read.
  hardDelete('Contact', recent[0]!, now - 2 * 3600_000);
  hardDelete('Contact', old[0]!, now - 3600_000);
  org.bulk.settings.idLimit = 1;
  const second = await runAt(now + DAY);
  org.bulk.settings.idLimit = 600_000;
  t.equal(second.state, 'done-for-today', second.reason ?? '');
  let state = await live();
  t.same(
    [state.get(recent[0]!), state.get(old[0]!)],
    [false, false],
    'both tombstoned from getDeleted (one of a record modified 30 days ago)',
  );
  const tomb = await sql<{ systemmodstamp: Date }>`select systemmodstamp from salesforce.contact where sfid = ${recent[0]!}`.execute(db);
  t.equal(tomb.rows[0]!.systemmodstamp.toISOString(), iso(now - 2 * 3600_000), 'the tombstone carries the deletedDate');

  // The job was paused for 20 days: deletes since its last check are past getDeleted's reach.
  await sql`update sfmirror.backfill_jobs set deletes_checked_until = ${new Date(now - 20 * DAY)}, last_date = ${dayOf(new Date(now))} where id = ${job.id}`.execute(
    db,
  );
  hardDelete('Contact', old[1]!, now - 18 * DAY);
  hardDelete('Contact', recent[1]!, now - 17 * DAY);
  const third = await runAt(now + DAY);
  t.equal(third.state, 'done-for-today', third.reason ?? '');
  state = await live();
  t.same([state.get(old[1]!), state.get(recent[1]!)], [true, true], 'getDeleted cannot see them: still live in the mirror');
  const request = await claimResync(db, 'test-worker', 60_000, 'salesforce');
  t.match(request, { object: 'Contact', since: null, reason: /past getDeleted's 15-day reach/ }, 'a whole-object resync was requested');

  // The backfill worker works it: ids compared, the two tombstoned, nothing else touched.
  const before = Number((await sql<{ n: string }>`select max(_sfm_seq) as n from salesforce.contact`.execute(db)).rows[0]!.n);
  const r = await runResync({ db, mirror, source: session, owner: 'test-worker', leaseMs: 60_000, pageSize: 250 }, request!);
  t.equal(r.state, 'done');
  t.equal(r.records, 596, 'every record Salesforce has was read');
  state = await live();
  t.same([state.get(old[1]!), state.get(recent[1]!)], [false, false], 'tombstoned by comparing ids');
  t.equal([...state.values()].filter(Boolean).length, 596, 'the mirror has exactly the live records Salesforce has');
  const touched = await sql<{ n: string }>`select count(*) as n from salesforce.contact where _sfm_seq > ${before}`.execute(db);
  t.equal(Number(touched.rows[0]!.n), 2, 'records Salesforce still has were read again but not changed: equal versions are ignored');
});

t.test('a whole-object resync that loses its lease stops reading and comparing', async (t) => {
  const now = Date.now();
  for (let i = 0; i < 30; i++) seed('Lead', `lead ${i}`, now - DAY + i * 1000);
  await sql`insert into sfmirror.resync_requests (org_alias, object, reason, source, since) values ('salesforce', 'Lead', 'test', 'test', null)`.execute(
    db,
  );
  const request = await claimResync(db, 'slow-worker', 60_000, 'salesforce');
  t.ok(request);
  let pages = 0;
  const source = {
    ...session,
    async readModifiedSince(object: string, after: { stamp: string; id?: string }, limit: number) {
      pages++;
      // Meanwhile the lease expired and another worker claimed the request.
      await sql`update sfmirror.resync_requests set lease_owner = 'other-worker' where id = ${request!.id}::bigint`.execute(db);
      return session.readModifiedSince(object, after, limit);
    },
  };
  const r = await runResync({ db, mirror, source, owner: 'slow-worker', leaseMs: 60_000, pageSize: 10 }, request!);
  t.equal(r.state, 'pending', 'not reported done');
  t.equal(pages, 1, 'no page read after the lease was lost');
  const row = await sql<{
    status: string;
    lease_owner: string;
  }>`select status, lease_owner from sfmirror.resync_requests where id = ${request!.id}::bigint`.execute(db);
  t.same(row.rows[0], { status: 'running', lease_owner: 'other-worker' }, "the other worker's claim is left alone");
});
