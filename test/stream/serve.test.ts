import t from 'tap';
import { sql } from 'kysely';
import { sleep } from '../../src/lib/backoff.ts';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { startServe, type ServeProcess } from '../support/serve.ts';
import { converged } from './harness.ts';
import { waitFor } from '../support/wait.ts';

// `sfmirror serve` with Salesforce configured: the CDC subscriber runs in the real process, one per
// org across instances, and survives SIGKILL without losing or inventing anything.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const org = await startSalesforceOrg(t, { connectTimeout: 1 });
const env = {
  DATABASE_URL: tdb.url,
  SF_INSTANCE_URL: org.url,
  SF_LOGIN_URL: org.url,
  SF_CLIENT_ID: org.clientId,
  SF_REFRESH_TOKEN: org.refreshToken,
  SFMIRROR_CDC_LEADER_POLL_MS: '200',
  SFMIRROR_CDC_WATCHDOG_GRACE_MS: '2000',
  SFMIRROR_CDC_FLUSH_IDLE_MS: '20',
};
const FIELDS = ['Name', 'Phone'];
const procs: ServeProcess[] = [];
t.teardown(async () => {
  for (const p of procs)
    if (p.proc.exitCode === null && p.proc.signalCode === null) {
      p.proc.kill('SIGKILL');
      await p.exited;
    }
});
const serve = async () => {
  const p = await startServe(env);
  procs.push(p);
  return p;
};
const holder = async () =>
  (await sql<{ holder: string; state: string }>`select holder, state from sfmirror.stream_state where org_alias = 'salesforce'`.execute(db))
    .rows[0];
const pidOf = (h: string | undefined) => Number(h?.split(':').pop());

t.test('two instances: one subscribes; SIGKILL it and the other takes over', { timeout: 180_000 }, async (t) => {
  const a = await serve();
  const b = await serve();
  await waitFor('one live subscriber', async () => (await holder())?.state === 'live', { timeoutMs: 30_000 });
  const first = pidOf((await holder())?.holder);
  t.ok([a.proc.pid, b.proc.pid].includes(first), 'the holder is one of the two');
  const subscribersBefore = org.stats.subscribes.length;
  await sleep(600);
  t.equal(org.stats.subscribes.length, subscribersBefore, 'the standby does not subscribe');
  org.insert('Account', { Name: 'before the kill' });
  await waitFor('converged', () => converged(db, org, 'Account', FIELDS));
  const leader = first === a.proc.pid ? a : b;
  leader.proc.kill('SIGKILL');
  await leader.exited;
  org.insert('Account', { Name: 'after the kill' });
  await waitFor(
    'the other took over',
    async () => {
      const h = await holder();
      return h?.state === 'live' && pidOf(h.holder) !== first;
    },
    { timeoutMs: 20_000 },
  );
  await waitFor('converged after takeover', () => converged(db, org, 'Account', FIELDS));
  const other = leader === a ? b : a;
  other.proc.kill('SIGTERM');
  t.equal(await other.exited, 0, 'graceful stop');
});

t.test('SIGKILL of serve mid-burst: after restart the mirror equals the org', { timeout: 180_000 }, async (t) => {
  const s1 = await serve();
  await waitFor(
    'live',
    async () => {
      const h = await holder();
      return h?.state === 'live' && pidOf(h.holder) === s1.proc.pid;
    },
    { timeoutMs: 30_000 },
  );
  const ids: string[] = [];
  let killed = false;
  for (let i = 0; i < 6000; i++) {
    if (i % 2 === 0 || ids.length === 0) ids.push(org.insert('Account', { Name: `b${i}` }));
    else org.update('Account', ids[i % ids.length]!, { Phone: `p${i}` });
    if (i % 500 === 499) await sleep(20);
    if (i === 3000) {
      s1.proc.kill('SIGKILL');
      killed = true;
    }
  }
  t.ok(killed);
  await s1.exited;
  const s2 = await serve();
  await waitFor('converged after restart', () => converged(db, org, 'Account', FIELDS), { timeoutMs: 40_000 });
  s2.proc.kill('SIGTERM');
  t.equal(await s2.exited, 0);
});
