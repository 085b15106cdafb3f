import { spawn } from 'node:child_process';
import t from 'tap';
import { sql } from 'kysely';
import { getJob } from '../../src/backfill/jobs.repository.ts';
import { addDays } from '../../src/backfill/windows.ts';
import { sleep } from '../../src/lib/backoff.ts';
import { readCheckpoint } from '../../src/mirror/mirror.repository.ts';
import { ensureOrgAlias } from '../../src/mirror/orgs.repository.ts';
import { startTestDatabase } from '../support/pg.ts';
import { CLI, ROOT, childEnv, runCli } from '../support/serve.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';

// The CLI over Bulk API 2.0: a SIGKILL in the middle of a Bulk job, and `sfmirror resync`.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
await ensureOrgAlias(db, 'salesforce');
const org = await startSalesforceOrg(t);
const env = (extra: Record<string, string> = {}) => ({
  DATABASE_URL: tdb.url,
  SF_INSTANCE_URL: org.url,
  SF_ACCESS_TOKEN: org.issueToken(),
  SF_LOGIN_URL: org.url,
  SFMIRROR_BULK_THRESHOLD: '1000',
  SFMIRROR_BULK_PAGE_SIZE: '1000',
  SFMIRROR_BULK_POLL_MS: '20',
  SFMIRROR_BACKFILL_LEASE_MS: '60000',
  ...extra,
});
const count = async (q: ReturnType<typeof sql<{ n: string }>>) => Number((await q.execute(db)).rows[0]!.n);

function seed(object: string, n: number, fromDay: string, days: number) {
  const table = org.records.get(object) ?? org.records.set(object, new Map()).get(object)!;
  for (let i = 0; i < n; i++) {
    const id = org.newId(object);
    const stamp = `${addDays(fromDay, i % days)}T${String(i % 24).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:00.000Z`;
    table.set(id, { Id: id, Name: `n${i}`, IsDeleted: false, CreatedDate: stamp, LastModifiedDate: stamp, SystemModstamp: stamp } as never);
  }
}

t.test(
  'SIGKILL in the middle of a Bulk job: the rerun goes on with the same job, nothing lost or counted twice',
  { timeout: 120_000 },
  async (t) => {
    seed('Contact', 30_000, '2024-01-01', 2);
    const id = Number((await runCli(['backfill', 'start', '--object', 'Contact', '--start-date', '2024-01-01'], env())).stdout.trim());
    const seqBefore = BigInt(
      (await sql<{ s: string }>`select last_seq::text as s from sfmirror.orgs where alias = 'salesforce'`.execute(db)).rows[0]!.s,
    );
    const child = spawn(process.execPath, [CLI, 'backfill', 'run', String(id)], {
      cwd: ROOT,
      env: childEnv(env()),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const exited = new Promise((r) => child.on('exit', r));
    for (let i = 0; i < 3000 && ((await getJob(db, id))?.rowsImported ?? 0) < 3000; i++) await sleep(10);
    child.kill('SIGKILL');
    await exited;
    const cursor = (await readCheckpoint(db, 'salesforce', `backfill:${id}`)) as { day: string; bulk?: { job: string; locator?: string } };
    const mid = await count(sql`select count(*) as n from salesforce.contact`);
    t.ok(
      mid >= 3000 && mid < 15_000,
      `killed inside the first day's Bulk job after ${mid} records (${out.trim().split('\n').pop() ?? ''})`,
    );
    t.match(cursor, { day: '2024-01-01', bulk: { job: /^750/, locator: /\w/ } }, 'the cursor holds the Bulk job and the next locator');
    const jobsBefore = org.bulk.stats.jobs.length;
    const pagesBefore = org.bulk.stats.resultPages.length;

    await sql`update sfmirror.backfill_jobs set lease_until = now() - interval '1 second' where id = ${id}`.execute(db);
    const rerun = await runCli(['backfill', 'run', String(id)], env());
    t.equal(rerun.code, 0, rerun.stderr);
    t.match(rerun.stdout, new RegExp(`job ${id} salesforce.Contact: done-for-today`));
    const resumed = org.bulk.stats.resultPages.slice(pagesBefore);
    t.same(
      resumed[0],
      { job: cursor.bulk!.job, locator: cursor.bulk!.locator, rows: 1000 },
      'the rerun read the same job from the saved locator',
    );
    t.equal(org.bulk.stats.jobs.length - jobsBefore, 1, 'one new Bulk job only: for the second day');
    t.equal(await count(sql`select count(*) as n from salesforce.contact`), 30_000, 'every record');
    const seqAfter = BigInt(
      (await sql<{ s: string }>`select last_seq::text as s from sfmirror.orgs where alias = 'salesforce'`.execute(db)).rows[0]!.s,
    );
    t.equal(seqAfter - seqBefore, 30_000n, 'each record applied once: nothing counted twice in the change cursor');
    const truth = org.records.get('Contact')!;
    const rows = await sql<{ sfid: string; name: string }>`select sfid, name from salesforce.contact`.execute(db);
    t.same(
      rows.rows.filter((r) => (truth.get(r.sfid) as { Name?: string } | undefined)?.Name !== r.name),
      [],
      'values equal the org',
    );
  },
);

t.test("sfmirror resync converges, deletes past getDeleted's reach included", { timeout: 120_000 }, async (t) => {
  const help = await runCli(['resync', '--help'], env());
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: sfmirror resync --object Account \[--org ALIAS\]/);
  t.equal((await runCli(['resync'], env())).code, 2, 'no --object: usage error');
  t.match((await runCli(['resync', '--object', 'Account; drop'], env())).stderr, /--object must be a Salesforce object API name/);
  t.equal((await runCli(['resync', '--object', 'Account'], { DATABASE_URL: tdb.url })).code, 2, 'needs Salesforce API access');
  t.match((await runCli(['resync', '--object', 'Account', '--org', 'nope'], env())).stderr, /no org named nope/);

  seed('Account', 3000, '2023-06-01', 3);
  const first = await runCli(['resync', '--object', 'Account'], env());
  t.equal(first.code, 0, first.stderr);
  t.match(first.stdout, /resync salesforce.Account: read \d+ records \(Bulk job 750/, 'progress');
  t.match(first.stdout, /resync salesforce.Account: done: 3000 records read, 0 mirror rows tombstoned/);

  // In Salesforce, meanwhile: 25 hard deletes 20 days ago (getDeleted no longer lists them), 10
  // renames nobody pushed, one soft delete; and a row the mirror got from a push is gone too.
  const accounts = org.records.get('Account')!;
  const ids = [...accounts.keys()];
  for (const id of ids.slice(0, 25)) {
    accounts.delete(id);
    org.deletions.push({ object: 'Account', id, deletedDate: new Date(Date.now() - 20 * 86_400_000).toISOString() });
  }
  for (const id of ids.slice(25, 35)) org.update('Account', id, { Name: `renamed ${id}` }, { silent: true });
  org.remove('Account', ids[40]!, { silent: true });
  const second = await runCli(['resync', '--object', 'Account'], env({ SFMIRROR_BULK_THRESHOLD: '100000' }));
  t.equal(second.code, 0, second.stderr);
  t.match(second.stdout, /done: 2975 records read, 25 mirror rows tombstoned/, 'read by REST this time (under the threshold)');
  const mirror = await sql<{
    sfid: string;
    name: string;
    isdeleted: boolean;
  }>`select sfid, name, isdeleted from salesforce.account`.execute(db);
  const liveInMirror = new Map(mirror.rows.filter((r) => !r.isdeleted).map((r) => [r.sfid, r.name]));
  const liveInOrg = org.live('Account');
  t.equal(liveInMirror.size, liveInOrg.size, 'as many live rows as Salesforce has live records');
  t.same(
    [...liveInOrg].filter(([id, r]) => liveInMirror.get(id) !== r.Name),
    [],
    'same ids, same values',
  );
  t.equal(mirror.rows.filter((r) => r.isdeleted).length, 26, 'the 25 hard deletes and the soft delete are tombstones');
});
