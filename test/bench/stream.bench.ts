import fs from 'node:fs';
import pg from 'pg';
import { sleep } from '../../src/lib/backoff.ts';
import { decodeCdcEvent } from '../../src/changes/cdc-event.ts';
import { createDatabase } from '../../src/db/database.ts';
import { openEmbedded } from '../../src/db/embedded.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { createBatcher, type Pending } from '../../src/stream/batcher.ts';
import { createSink } from '../../src/stream/sink.ts';
import { accountId, createTestMirror } from '../support/changes.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { startServe, tempDataDir } from '../support/serve.ts';

/**
 * CDC stream benchmark (issue 4): change events from the Salesforce stand-in, over CometD
 * long-polling, into a child `sfmirror serve`, through to committed mirror rows (PostgreSQL with its
 * default, durable settings). Two runs: a sustained rate (BENCH_STREAM_RATE events/s for
 * BENCH_DURATION s) and a burst (BENCH_STREAM_BURST events published at once). Lag is the serve's
 * own `sfmirror_stream_lag_seconds` histogram (commit in the mirror - commitTimestamp): quantiles are
 * the upper bound of the histogram bucket they fall in. Next to it, the ceiling: a bare batched
 * INSERT ... ON CONFLICT of 200-record batches on one connection (the stream is one writer).
 *
 * A third run feeds the same burst to the stream's batcher and sink in this process, without CometD
 * (as the issue allows): decoding, batching, mirror.apply and the replayId checkpoint, as serve runs
 * them, without the stand-in's own publishing and long-polling (the stand-in shares the machine's two
 * cores and publishes 50,000 events in about a second on its own).
 */
const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const RATE = Number(process.env.BENCH_STREAM_RATE ?? 5000);
const BURST = Number(process.env.BENCH_STREAM_BURST ?? 20000);
const RECORDS = 2000;

type Bucket = { le: number; count: number };
async function lagBuckets(url: string): Promise<Bucket[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return [...text.matchAll(/^sfmirror_stream_lag_seconds_bucket\{le="([^"]+)",org="[^"]*"\} (\d+)/gm)].map((m) => ({
    le: m[1] === '+Inf' ? Infinity : Number(m[1]),
    count: Number(m[2]),
  }));
}
function quantile(after: Bucket[], before: Bucket[], q: number): string {
  const d = after.map((b, i) => ({ le: b.le, count: b.count - (before[i]?.count ?? 0) }));
  const total = d.at(-1)?.count ?? 0;
  const hit = d.find((b) => b.count >= q * total);
  return hit ? (hit.le === Infinity ? '> 300 s' : `<= ${hit.le * 1000} ms`) : 'n/a';
}
async function committedReplayId(db: pg.Pool): Promise<number | undefined> {
  const r = await db.query(`select value from sfmirror.checkpoints where source = 'cdc:/data/ChangeEvents'`);
  return r.rows[0]?.value?.replayId;
}

async function ceiling(url: string, total: number): Promise<number> {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  pool.on('error', () => {});
  await pool.query(`create table if not exists bench_stream_ceiling (sfid text primary key, name text, phone text, fields jsonb)`);
  await pool.query('truncate bench_stream_ceiling');
  const started = performance.now();
  for (let i = 0; i < total; i += 200) {
    const ids = Array.from({ length: 200 }, (_, k) => `001${String((i + k) % RECORDS).padStart(15, '0')}`);
    await pool.query(
      `insert into bench_stream_ceiling (sfid, name, phone, fields) select distinct on (s) s, 'n', 'p', '{}'::jsonb from unnest($1::text[]) s
      on conflict (sfid) do update set name = excluded.name, fields = excluded.fields`,
      [ids],
    );
  }
  const perSecond = total / ((performance.now() - started) / 1000);
  await pool.end();
  return perSecond;
}

export async function runStreamBench(): Promise<string> {
  const dataDir = tempDataDir('sfmirror-bench-stream-');
  const server = await openEmbedded({ dataDir, mode: 'serve' });
  const org = await startSalesforceOrg(undefined, { connectTimeout: 10 });
  const db = new pg.Pool({ connectionString: server.url, max: 2 });
  db.on('error', () => {}); // an idle connection cut by the server's shutdown is expected here
  const rows: string[] = [];
  try {
    const svc = await startServe({
      DATABASE_URL: server.url,
      LOG_LEVEL: 'warn',
      SF_INSTANCE_URL: org.url,
      SF_LOGIN_URL: org.url,
      SF_CLIENT_ID: org.clientId,
      SF_REFRESH_TOKEN: org.refreshToken,
    });
    try {
      for (let i = 0; (await db.query(`select 1 from sfmirror.stream_state where state = 'live'`)).rowCount === 0; i++) {
        if (i > 600) throw new Error('the stream did not start');
        await sleep(50);
      }
      const ids = Array.from({ length: RECORDS }, (_, i) => org.insert('Account', { Name: `a${i}`, Phone: '1' }));
      const caughtUp = async (timeoutS: number) => {
        const end = Date.now() + timeoutS * 1000;
        while ((await committedReplayId(db)) !== org.lastReplayId) {
          if (Date.now() > end) throw new Error('the stream did not catch up');
          await sleep(5);
        }
      };
      await caughtUp(60);
      let n = 0;
      const update = () => {
        const i = n++;
        org.update('Account', ids[i % RECORDS]!, { Name: `u${i}` });
      };
      rows.push(
        '| run | events | events/s to committed rows | lag p50 | lag p99 | ceiling rows/s (bare INSERT, 1 connection) |',
        '|---|---:|---:|---:|---:|---:|',
      );
      const ceil = await ceiling(server.url, 40_000);

      // Sustained: RATE events/s in 10 ms ticks.
      let before = await lagBuckets(svc.url);
      let started = performance.now();
      const total = RATE * DURATION;
      for (let tick = 0; n < total; tick++) {
        const due = Math.min(total, Math.round(((performance.now() - started) / 1000) * RATE));
        while (n < due) update();
        await sleep(10);
      }
      await caughtUp(60);
      let seconds = (performance.now() - started) / 1000;
      let after = await lagBuckets(svc.url);
      rows.push(
        `| sustained ${RATE}/s for ${DURATION} s | ${total} | ${(total / seconds).toFixed(0)} | ${quantile(after, before, 0.5)} | ${quantile(after, before, 0.99)} | ${ceil.toFixed(0)} |`,
      );
      console.error(rows.at(-1));

      // Burst: everything published at once, as fast as the stand-in can.
      before = after;
      started = performance.now();
      const first = n;
      while (n < first + BURST) update();
      await caughtUp(120);
      seconds = (performance.now() - started) / 1000;
      after = await lagBuckets(svc.url);
      rows.push(
        `| burst | ${BURST} | ${(BURST / seconds).toFixed(0)} | ${quantile(after, before, 0.5)} | ${quantile(after, before, 0.99)} | ${ceil.toFixed(0)} |`,
      );
      console.error(rows.at(-1));
    } finally {
      svc.proc.kill('SIGTERM');
      await svc.exited;
    }
    await sinkBurst(server.url, 10_000); // warm-up: JIT-compiles decoding and the write path in this process
    const direct = await sinkBurst(server.url, BURST);
    rows.push(`| burst fed to the sink (no CometD) | ${BURST} | ${direct.toFixed(0)} | | | |`);
    console.error(rows.at(-1));
  } finally {
    await db.end();
    await org.close();
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  return rows.join('\n');
}

/**
 * `events` CDC updates of RECORDS Accounts, as the stand-in publishes them, decoded and fed to the
 * stream's batcher and sink (SFMIRROR_CDC_MAX_BATCH's default) at once: events/s to committed rows.
 */
let directRuns = 0;
async function sinkBurst(url: string, events: number): Promise<number> {
  const handle = createDatabase(url);
  try {
    const org = `bench_direct_${++directRuns}`;
    const mirror = await createTestMirror(handle.db, org);
    const log = createLogger('silent');
    const sink = createSink({
      db: handle.db,
      mirror,
      sf: {
        readRecords: async () => {
          throw new Error('no REST read expected');
        },
      },
      org,
      isAllowed: () => true,
      requestResync: async () => {
        throw new Error('no resync expected');
      },
      resyncMarginMs: 60_000,
      log,
    });
    let failed: unknown;
    const batcher = createBatcher({
      maxBatch: 2000,
      idleMs: 20,
      log,
      isStopped: () => failed !== undefined,
      apply: async (channel, items) => {
        try {
          await sink.apply(channel, items);
        } catch (e) {
          failed ??= e;
          throw e;
        }
      },
    });
    const t0 = Date.UTC(2024, 2, 10, 12);
    const message = (i: number, type: string, fields: Record<string, unknown>) => ({
      schema: 'bench',
      event: { replayId: i + 1 },
      payload: {
        ChangeEventHeader: {
          entityName: 'Account',
          recordIds: [accountId(i % RECORDS)],
          changeType: type,
          changeOrigin: 'com/salesforce/api/soap/62.0;client=bench',
          transactionKey: `txn-${i}`,
          sequenceNumber: 1,
          commitTimestamp: t0 + i,
          commitNumber: i,
          commitUser: '005000000000001AAA',
          changedFields: type === 'UPDATE' ? Object.keys(fields) : [],
        },
        ...fields,
      },
    });
    // In chunks of 500 events, as long-poll responses deliver them: decoding overlaps the database work.
    const feed = async (from: number, to: number, type: string) => {
      for (let i = from; i < to; i++) {
        if (i % 500 === 0) await new Promise(setImmediate);
        const stamp = new Date(t0 + i).toISOString();
        const fields =
          type === 'CREATE' ? { Name: `a${i}`, Phone: '1', LastModifiedDate: stamp } : { Name: `u${i}`, LastModifiedDate: stamp };
        // Through JSON, as a long-poll response delivers it.
        const r = decodeCdcEvent(JSON.parse(JSON.stringify(message(i, type, fields))));
        if (!r.ok) throw new Error(r.error);
        const e = r.event;
        batcher.add({
          channel: '/data/ChangeEvents',
          replayId: e.replayId,
          commitTimestamp: e.header.commitTimestamp,
          key: e.header.transactionKey,
          event: e,
        } satisfies Pending);
      }
    };
    await feed(0, RECORDS, 'CREATE');
    await batcher.drain();
    const started = performance.now();
    await feed(RECORDS, RECORDS + events, 'UPDATE');
    await batcher.drain();
    const seconds = (performance.now() - started) / 1000;
    if (failed) throw failed;
    return events / seconds;
  } finally {
    await handle.close();
  }
}
