import fs from 'node:fs';
import autocannon from 'autocannon';
import pg from 'pg';
import { signHmac } from '../../src/ingest/signature.ts';
import { openEmbedded } from '../../src/db/embedded.ts';
import { startBigQuery } from '../support/bigquery.ts';
import { startBigQueryStorage, type StorageStandIn } from '../support/bigquery-storage.ts';
import { startServe, tempDataDir, type ServeProcess } from '../support/serve.ts';
import { ACCOUNT_TYPES, accountFields, accountId15 } from './accounts.ts';

/**
 * Warehouse benchmark (issues 8 and 18): a child `sfmirror serve` takes signed 200-record pushes
 * and drains its outbox over the Storage Write API into the stand-ins (REST for tables, gRPC
 * BigQueryWrite for rows; default tuning: 500-row batches, 4 drain loops, 2 s flush). Three runs on
 * one durable embedded PostgreSQL:
 *  1. ingest with the warehouse off;
 *  2. sustained ingest with the warehouse on, outbox depth sampled each second: it must stay bounded;
 *  3. drain capacity: a backlog built during a simulated outage (UNAVAILABLE), timed as it drains.
 * Then the cost model: history rows per change, bytes sent per history row, seed rows.
 * The stand-ins run in this process beside autocannon, so the figures are a floor.
 */
const SECRET = 'bench-secret-0123456789';
const ORG = '00D000000000001EAA';
const BATCH = 200;
const DURATION = Number(process.env.BENCH_DURATION ?? 30);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS?.split(',').at(-1) ?? 4);
const TYPES = ACCOUNT_TYPES;

let nextId = 1;
const stamp = new Date(Date.UTC(2024, 2, 10, 12)).toISOString();
const record = (n: number) => ({ Id: accountId15(n), SystemModstamp: stamp, ...accountFields(n, 'warehouse') });

function bodies(n: number) {
  return Array.from({ length: n }, () => {
    const body = JSON.stringify({
      orgId: ORG,
      changes: Array.from({ length: BATCH }, () => ({ object: 'Account', operation: 'insert', record: record(nextId++) })),
      types: TYPES,
    });
    const ts = Math.floor(Date.now() / 1000);
    return {
      body,
      headers: {
        'content-type': 'application/json',
        'x-sfmirror-timestamp': String(ts),
        'x-sfmirror-signature': signHmac(SECRET, ts, body),
      },
    };
  });
}

async function push(url: string, seconds: number) {
  const pool = bodies(Math.max(1500, CONNECTIONS * 150));
  let i = 0;
  const r = await autocannon({
    url: `${url}/ingest/apex`,
    method: 'POST',
    connections: CONNECTIONS,
    duration: seconds,
    requests: [{ method: 'POST', setupRequest: (req) => ({ ...req, ...pool[i++ % pool.length]! }) }],
  });
  return { records: r['2xx'] * BATCH, seconds: r.duration, non2xx: r.non2xx };
}

/** CPU seconds a process has used (user + system; with `children`, also its children that ended), from /proc. */
function cpuSeconds(pid: number, children = false): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12]) + (children ? Number(fields[13]) + Number(fields[14]) : 0)) / 100;
}

/** CPU seconds of the embedded PostgreSQL listening on `port`: the postmaster, its live and its ended backends. */
function postgresCpuSeconds(port: number): number {
  const procs = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  const read = (pid: string, f: string) => {
    try {
      return fs.readFileSync(`/proc/${pid}/${f}`, 'utf8');
    } catch {
      return ''; // the process ended meanwhile
    }
  };
  const master = procs.find((p) => {
    const args = read(p, 'cmdline').split('\0');
    return args[0]?.endsWith('/postgres') && args.includes('-p') && args[args.indexOf('-p') + 1] === String(port);
  });
  if (!master) return NaN;
  let total = cpuSeconds(Number(master), true);
  for (const p of procs) {
    const stat = read(p, 'stat');
    if (stat && stat.split(') ')[1]!.split(' ')[1] === master) total += cpuSeconds(Number(p));
  }
  return total;
}

/** CPU seconds per second of wall time of serve, PostgreSQL and this process (autocannon, the BigQuery stand-ins) during `work`. */
async function cpuDuring<T extends { seconds: number }>(servePid: number, pgPort: number, work: () => Promise<T>) {
  const s0 = cpuSeconds(servePid);
  const p0 = postgresCpuSeconds(pgPort);
  const b0 = process.cpuUsage();
  const result = await work();
  const b = process.cpuUsage(b0);
  return {
    result,
    cpu: {
      serve: (cpuSeconds(servePid) - s0) / result.seconds,
      postgres: (postgresCpuSeconds(pgPort) - p0) / result.seconds,
      bench: (b.user + b.system) / 1e6 / result.seconds,
    },
  };
}
const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
const cpuCells = (c: { serve: number; postgres: number; bench: number }) => `${pct(c.serve)} | ${pct(c.postgres)} | ${pct(c.bench)}`;

const depthOf = async (db: pg.Pool) => Number((await db.query<{ n: string }>('select count(*) as n from sfmirror.outbox')).rows[0]!.n);

/** Samples the outbox depth every second while `work` runs. */
async function sampled<T>(db: pg.Pool, work: Promise<T>) {
  const depths: number[] = [];
  let done = false;
  const sampler = (async () => {
    while (!done) {
      depths.push(await depthOf(db));
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const result = await work;
  done = true;
  await sampler;
  return { result, depths };
}

async function untilDrained(db: pg.Pool, bq: StorageStandIn, timeoutMs: number) {
  const end = Date.now() + timeoutMs;
  while ((await depthOf(db)) > 0) {
    if (Date.now() > end) throw new Error('the outbox did not drain in time');
    await new Promise((r) => setTimeout(r, 100));
  }
  return bq.stats.committedRows;
}

export async function runWarehouseBench() {
  const dataDir = tempDataDir('sfmirror-bench-wh-');
  const server = await openEmbedded({ dataDir, mode: 'serve' });
  const rest = await startBigQuery({ teardown: () => {} }, { keepRows: false });
  const bq = await startBigQueryStorage({ teardown: () => {} }, rest);
  const db = new pg.Pool({ connectionString: server.url, max: 2 });
  db.on('error', () => {}); // an idle connection ended by the server's stop
  const base = {
    DATABASE_URL: server.url,
    SFMIRROR_INGEST_SECRETS: SECRET,
    LOG_LEVEL: 'warn',
    SFMIRROR_DB_POOL_SIZE: '20',
    SFMIRROR_INGEST_MAX_INFLIGHT: '16',
    SFMIRROR_INGEST_MAX_QUEUED: '64',
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('SFMIRROR_WAREHOUSE_')) as Array<[string, string]>),
  };
  const out: string[] = [];
  let svc: ServeProcess | undefined;
  const stop = async () => {
    if (svc && svc.proc.exitCode === null) {
      svc.proc.kill('SIGTERM');
      await svc.exited;
    }
    svc = undefined;
  };
  try {
    // 1. Warehouse off.
    svc = await startServe(base, { nodeFlags: ['--max-semi-space-size=4', '--max-old-space-size=512', '--initial-old-space-size=128'] });
    await push(svc.url, 2);
    const { result: off, cpu: offCpu } = await cpuDuring(svc.proc.pid!, server.port, () => push(svc!.url, Math.min(DURATION, 10)));
    await stop();
    console.error(`warehouse off: ${(off.records / off.seconds).toFixed(0)} records/s`);

    // 2. Warehouse on: sustained ingest, depth sampled; then the tail drains.
    svc = await startServe(
      { ...base, BIGQUERY_PROJECT: 'p', BIGQUERY_API_ENDPOINT: rest.url, BIGQUERY_STORAGE_API_ENDPOINT: bq.endpoint },
      { nodeFlags: ['--max-semi-space-size=4', '--max-old-space-size=512', '--initial-old-space-size=128'] },
    );
    // Turning the warehouse on seeds the Account table from run 1's mirror rows: let that pass first.
    for (let i = 0; !(await db.query(`select 1 from sfmirror.warehouse_tables where seeded_at is not null`)).rowCount; i++) {
      if (i > 1200) throw new Error('the seed did not happen');
      await new Promise((r) => setTimeout(r, 100));
    }
    await untilDrained(db, bq, 300_000);
    const seededRows = Number(
      (await db.query<{ n: string }>('select coalesce(sum(seeded_rows), 0) as n from sfmirror.warehouse_tables')).rows[0]!.n,
    );
    const seeded = bq.stats.committedRows;
    const history0 = { rows: bq.stats.committedRows, bytes: bq.stats.committedBytes, cdc: bq.stats.defaultRows };
    // Changes applied, counted by the change cursor (one per applied change; pushes still in flight
    // when autocannon stops are applied too, so its 2xx count would undercount them).
    const cursor = async () =>
      Number((await db.query<{ n: string }>('select coalesce(sum(last_seq), 0) as n from sfmirror.orgs')).rows[0]!.n);
    const cursor0 = await cursor();
    const t0 = performance.now();
    const servePid = svc.proc.pid!;
    const {
      result: { result: on, depths },
      cpu: onCpu,
    } = await cpuDuring(servePid, server.port, async () => {
      const r = await sampled(db, push(svc!.url, DURATION));
      return Object.assign(r, { seconds: r.result.seconds });
    });
    const sentDuring = bq.stats.committedRows - seeded;
    const metricsText = await (await fetch(`${svc.url}/metrics`)).text();
    const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metricsText)?.[1] ?? NaN);
    const claimMs =
      (metric('sfmirror_warehouse_claim_duration_seconds_sum') / metric('sfmirror_warehouse_claim_duration_seconds_count')) * 1000;
    const stored = await untilDrained(db, bq, 300_000);
    const changes = (await cursor()) - cursor0;
    const history = {
      rows: bq.stats.committedRows - history0.rows,
      bytes: bq.stats.committedBytes - history0.bytes,
      cdc: bq.stats.defaultRows - history0.cdc,
    };
    const tailSeconds = (performance.now() - t0) / 1000 - on.seconds;
    console.error(`warehouse on: ${(on.records / on.seconds).toFixed(0)} records/s, max depth ${Math.max(...depths)}`);
    const half = Math.floor(depths.length / 2);

    // 3. Backlog from an outage, then its drain.
    bq.fault = () => ({ kind: 'unavailable' });
    const { result: outage, cpu: outageCpu } = await cpuDuring(servePid, server.port, () => push(svc!.url, 10));
    const backlog = await depthOf(db);
    const before = bq.stats.committedRows;
    bq.fault = undefined;
    const d0 = performance.now();
    const after = await untilDrained(db, bq, 300_000);
    const drainSeconds = (performance.now() - d0) / 1000;
    console.error(`backlog of ${backlog} drained in ${drainSeconds.toFixed(1)} s`);
    await stop();

    out.push(
      '| run | ingest records/s | rows into BigQuery | BigQuery rows/s | outbox depth (max / 2nd half max / end) | serve CPU | PostgreSQL CPU | bench CPU (autocannon, stand-ins) |',
    );
    out.push('|---|---:|---:|---:|---|---:|---:|---:|');
    out.push(
      `| ingest, warehouse off (${Math.min(DURATION, 10)} s, ${CONNECTIONS} conn.) | ${(off.records / off.seconds).toFixed(0)} | - | - | - | ${cpuCells(offCpu)} |`,
    );
    out.push(
      `| sustained ingest, warehouse on (${DURATION} s, ${CONNECTIONS} conn.) | ${(on.records / on.seconds).toFixed(0)} | ${sentDuring} during, ${stored - seeded} in all | ${(sentDuring / on.seconds).toFixed(0)} | ${Math.max(...depths)} / ${Math.max(...depths.slice(half))} / ${depths.at(-1)} (tail drained ${tailSeconds.toFixed(1)} s after the run) | ${cpuCells(onCpu)} |`,
    );
    out.push(
      `| drain of an outage backlog (UNAVAILABLE for 10 s while ingesting ${(outage.records / outage.seconds).toFixed(0)} records/s) | - | ${after - before} | ${((after - before) / drainSeconds).toFixed(0)} | ${backlog} at the end of the outage, 0 after ${drainSeconds.toFixed(1)} s | ${cpuCells(outageCpu)} (during the outage) |`,
    );
    out.push(
      '',
      'CPU: user + system time per second of the run (100% = one core of the two; serve runs its JavaScript on one thread); PostgreSQL: the postmaster and its backends; bench: this process, which runs autocannon and the BigQuery stand-ins.',
    );
    out.push('', `outbox depth each second of run 2: ${depths.join(' ')}`);
    out.push(
      `mean claim time in run 2: ${claimMs.toFixed(1)} ms (${metric('sfmirror_warehouse_claim_duration_seconds_count')} claims, seed included)`,
    );
    out.push(
      `appends: ${bq.stats.appends}; refused as ALREADY_EXISTS: ${bq.stats.alreadyExists}; non-2xx pushes: ${off.non2xx + on.non2xx + outage.non2xx}`,
    );
    out.push(
      '',
      `ingest with the warehouse on / off: ${((on.records / on.seconds / (off.records / off.seconds)) * 100).toFixed(0)}% (goal >= 90%)`,
      '',
      'cost model (run 2):',
      `- history rows per change: ${(history.rows / changes).toFixed(3)} (${history.rows} rows for ${changes} applied changes; goal exactly 1)`,
      `- bytes sent per history row (Storage Write API, protobuf): ${(history.bytes / Math.max(1, history.rows)).toFixed(0)}`,
      `- latest-state (CDC) rows per change: ${(history.cdc / changes).toFixed(3)}`,
      `- seed rows: ${seededRows}, for run 1's records, written while the warehouse was off (a fresh start seeds 0: test/warehouse/drain.test.ts)`,
    );
  } finally {
    await stop().catch(() => {});
    await db.end();
    await bq.close();
    await rest.close();
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  return out.join('\n');
}
