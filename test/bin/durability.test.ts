import t from 'tap';
import { sql } from 'kysely';
import { toId18 } from '../../src/changes/names.ts';
import { sleep } from '../../src/lib/backoff.ts';
import { startTestDatabase } from '../support/pg.ts';
import { SECRET, hmacHeaders, pushBody, rec } from '../support/app.ts';
import { startServe } from '../support/serve.ts';

// A push is acknowledged only after commit: SIGKILL `serve` in the middle of a stream of pushes,
// restart it, and every push that was answered 200 must be in the mirror, whole.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const T0 = Date.UTC(2024, 2, 10, 12);
const env = { DATABASE_URL: tdb.url, SFMIRROR_INGEST_SECRETS: SECRET };

t.test('every acknowledged push survives a SIGKILL of serve', { timeout: 120_000 }, async (t) => {
  const s1 = await startServe(env);
  const acked: number[][] = [];
  let failed = 0;
  let next = 1;
  let stop = false;
  const sender = async () => {
    while (!stop) {
      const ids = Array.from({ length: 20 }, () => next++);
      const body = pushBody(ids.map((n) => ({ object: 'Account', operation: 'insert', record: rec(n, T0 + n, { Name: `r${n}` }) })));
      try {
        const res = await fetch(`${s1.url}/ingest/apex`, { method: 'POST', body, headers: hmacHeaders(body) });
        if (res.status === 200) acked.push(ids);
        else failed++;
        await res.arrayBuffer();
      } catch {
        failed++;
        await sleep(50);
      }
    }
  };
  const senders = [sender(), sender(), sender(), sender()];
  // Kill mid-stream: once a good number of pushes were answered, however slow the machine is.
  for (let i = 0; i < 600 && acked.length < 40; i++) await sleep(50);
  s1.proc.kill('SIGKILL');
  await s1.exited;
  await sleep(300);
  stop = true;
  await Promise.all(senders);
  t.ok(acked.length > 10, `${acked.length} pushes acknowledged before the kill (${failed} cut off)`);

  const s2 = await startServe(env);
  const rows = await sql<{ sfid: string }>`select sfid from salesforce.account`.execute(db);
  const present = new Set(rows.rows.map((r) => r.sfid));
  const lost = acked.flat().filter((n) => !present.has(toId18(`001${String(n).padStart(12, '0')}`)!));
  t.same(lost, [], 'no acknowledged record is missing');
  // Whole batches or nothing: every batch is all present or all absent.
  const attempted = Array.from({ length: Math.ceil((next - 1) / 20) }, (_, b) => Array.from({ length: 20 }, (_, i) => b * 20 + i + 1));
  const torn = attempted.filter((ids) => {
    const n = ids.filter((id) => present.has(toId18(`001${String(id).padStart(12, '0')}`)!)).length;
    return n !== 0 && n !== ids.length;
  });
  t.same(torn, [], 'no batch was half applied');
  s2.proc.kill('SIGTERM');
  t.equal(await s2.exited, 0);
});
