import { spawn } from 'node:child_process';
import t from 'tap';
import { sql } from 'kysely';
import { getJob } from '../../src/backfill/jobs.repository.ts';
import { addDays } from '../../src/backfill/windows.ts';
import { sleep } from '../../src/lib/backoff.ts';
import { startTestDatabase } from '../support/pg.ts';
import { ADMIN_TOKEN, buildTestApp } from '../support/app.ts';
import { CLI, ROOT, childEnv, runCli } from '../support/serve.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { ensureOrgAlias } from '../../src/mirror/orgs.repository.ts';

// The operator surface of backfills: the CLI (with a SIGKILL mid-job) and /admin/backfills.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
await ensureOrgAlias(db, 'salesforce');
const org = await startSalesforceOrg(t);
const env = () => ({
  DATABASE_URL: tdb.url,
  SF_INSTANCE_URL: org.url,
  SF_ACCESS_TOKEN: org.issueToken(),
  SF_LOGIN_URL: org.url,
  SFMIRROR_BACKFILL_PAGE_SIZE: '500',
  SFMIRROR_BACKFILL_LEASE_MS: '60000',
});

function seed(object: string, n: number, fromDay: string, days: number) {
  const table = org.records.get(object) ?? org.records.set(object, new Map()).get(object)!;
  for (let i = 0; i < n; i++) {
    const id = org.newId(object);
    const stamp = `${addDays(fromDay, i % days)}T${String(i % 24).padStart(2, '0')}:00:${String(i % 60).padStart(2, '0')}.000Z`;
    table.set(id, { Id: id, Name: `n${i}`, IsDeleted: false, CreatedDate: stamp, LastModifiedDate: stamp, SystemModstamp: stamp } as never);
  }
}

t.test('start, second start, status, pause, resume', async (t) => {
  const r = await runCli(['backfill', 'start', '--object', 'Account', '--start-date', '2024-01-01'], env());
  t.equal(r.code, 0, r.stderr);
  const id = Number(r.stdout.trim());
  t.ok(id > 0, 'prints the job id');
  const again = await runCli(['backfill', 'start', '--object', 'Account', '--start-date', '2024-02-01'], env());
  t.equal(again.code, 1);
  t.match(again.stderr, new RegExp(`already exists: job ${id}`));
  const bad = await runCli(['backfill', 'start', '--object', 'Account', '--start-date', '2024-02-30'], env());
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--start-date must be a date/);
  t.match((await runCli(['backfill', 'pause', String(id)], env())).stdout, /paused/);
  t.match((await runCli(['backfill', 'resume', String(id)], env())).stdout, /pending/);
  const st = await runCli(['backfill', 'status', '--json'], env());
  t.match(JSON.parse(st.stdout), [{ id, object: 'Account', startDate: '2024-01-01', lastDate: '2024-01-01', active: true }]);
  t.equal((await runCli(['backfill', 'status', '999'], env())).code, 1);
});

t.test('backfill run in the foreground; SIGKILL mid-job resumes with nothing lost', { timeout: 120_000 }, async (t) => {
  seed('Contact', 12_000, '2024-01-01', 4);
  const start = await runCli(['backfill', 'start', '--object', 'Contact', '--start-date', '2024-01-01'], env());
  const id = Number(start.stdout.trim());
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
  for (let i = 0; i < 3000 && ((await getJob(db, id))?.rowsImported ?? 0) < 1000; i++) await sleep(20);
  child.kill('SIGKILL');
  await exited;
  const mid = Number((await sql<{ n: string }>`select count(*) as n from salesforce.contact`.execute(db)).rows[0]!.n);
  t.ok(mid > 0 && mid < 12_000, `killed after ${mid} records (${out.trim().split('\n').pop() ?? ''})`);
  const left = (await getJob(db, id))!;
  t.equal(left.state, 'running', 'the job still looks running, its lease held by the dead process');
  t.ok(left.leaseUntil! > new Date(), 'the lease has not expired');
  // A live holder on another host keeps its lease: only its expiry can tell it is gone.
  await sql`update sfmirror.backfill_jobs set lease_owner = 'another-host:1:serve' where id = ${id}`.execute(db);
  const busy = await runCli(['backfill', 'run', String(id)], env());
  t.equal(busy.code, 1, 'a lease of another host holds');
  t.match(busy.stderr, /being worked by another-host:1:serve/);
  await sql`update sfmirror.backfill_jobs set lease_owner = ${left.leaseOwner} where id = ${id}`.execute(db);
  // The SIGKILLed holder was on this host and is gone: the next run takes the job over at once.
  const started = Date.now();
  const rerun = await runCli(['backfill', 'run', String(id)], env());
  t.equal(rerun.code, 0, rerun.stderr);
  t.match(rerun.stderr, new RegExp(`job ${id} was held by .*:${child.pid}:cli, which is gone: taking it over`));
  t.match(rerun.stdout, new RegExp(`job ${id} salesforce.Contact: done-for-today`));
  t.ok(Date.now() - started < 60_000, 'without waiting out the 60 s lease');
  const rows = await sql<{ sfid: string; name: string }>`select sfid, name from salesforce.contact`.execute(db);
  t.equal(rows.rows.length, 12_000, 'every record, once');
  const truth = org.records.get('Contact')!;
  t.same(
    rows.rows.filter((r) => (truth.get(r.sfid) as { Name?: string } | undefined)?.Name !== r.name),
    [],
    'values equal the org',
  );
  const noApi = await runCli(['backfill', 'run'], { DATABASE_URL: tdb.url });
  t.equal(noApi.code, 2);
  t.match(noApi.stderr, /needs Salesforce API access/);
});

t.test('operator API: /admin/backfills', async (t) => {
  const app = await buildTestApp(tdb);
  t.teardown(() => app.close());
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const created = await app.inject({
    method: 'POST',
    url: '/admin/backfills',
    headers: auth,
    payload: { object: 'Lead', startDate: '2024-03-10' },
  });
  t.equal(created.statusCode, 201, created.body);
  const job = created.json();
  t.match(job, { object: 'Lead', org: 'salesforce', startDate: '2024-03-10', lastDate: '2024-03-10', active: true, state: 'pending' });
  const dup = await app.inject({
    method: 'POST',
    url: '/admin/backfills',
    headers: auth,
    payload: { object: 'lead', startDate: '2024-01-01' },
  });
  t.equal(dup.statusCode, 409);
  t.match(dup.json().message, new RegExp(`job ${job.id}`));
  t.equal(
    (
      await app.inject({
        method: 'POST',
        url: '/admin/backfills',
        headers: auth,
        payload: { object: 'Lead; drop', startDate: '2024-01-01' },
      })
    ).statusCode,
    400,
  );
  t.equal(
    (await app.inject({ method: 'POST', url: '/admin/backfills', headers: auth, payload: { object: 'Case', startDate: 'yesterday' } }))
      .statusCode,
    400,
  );
  t.equal(
    (await app.inject({ method: 'POST', url: '/admin/backfills', payload: { object: 'Case', startDate: '2024-01-01' } })).statusCode,
    401,
  );
  t.match((await app.inject({ method: 'POST', url: `/admin/backfills/${job.id}/pause`, headers: auth })).json(), {
    active: false,
    state: 'paused',
  });
  t.match((await app.inject({ method: 'POST', url: `/admin/backfills/${job.id}/resume`, headers: auth })).json(), { active: true });
  t.equal((await app.inject({ url: '/admin/backfills/424242', headers: auth })).statusCode, 404);
  const list = await app.inject({ url: '/admin/backfills', headers: auth });
  t.ok(list.json().some((j: { id: number }) => j.id === job.id));
  const status = await app.inject({ url: '/admin/status', headers: auth });
  t.ok(
    status.json().orgs[0].backfills.some((b: { id: number }) => b.id === job.id),
    '/admin/status shows each job',
  );
});
