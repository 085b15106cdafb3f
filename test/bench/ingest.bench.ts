import fs from 'node:fs';
import autocannon from 'autocannon';
import pg from 'pg';
import { signHmac } from '../../src/ingest/signature.ts';
import { startServe, tempDataDir } from '../support/serve.ts';
import { openEmbedded } from '../../src/db/embedded.ts';
import { ACCOUNT_TYPES, accountFields, accountId15 } from './accounts.ts';

/**
 * Ingest benchmark (issue: foundation): signed 200-record batches pushed with autocannon at 1, 4 and
 * 16 connections into a child `sfmirror serve`, next to the ceiling measured in the same run: a bare
 * batched INSERT ... ON CONFLICT of the same records into the same PostgreSQL with pg (median of 3).
 * PostgreSQL runs with its default, durable settings on both sides.
 */
const SECRET = 'bench-secret-0123456789';
const ORG = '00D000000000001EAA';
const BATCH = 200;
const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const LEVELS = (process.env.BENCH_CONNECTIONS ?? '1,4,16').split(',').map(Number);
const TYPES = ACCOUNT_TYPES;

let nextId = 1;
const stamp = new Date(Date.UTC(2024, 2, 10, 12)).toISOString();
const record = (n: number) => ({ Id: accountId15(n), SystemModstamp: stamp, ...accountFields(n, 'ingest') });
function batchOfNew() {
  const recs = Array.from({ length: BATCH }, () => record(nextId++));
  return recs;
}

async function ceiling(url: string, connections: number, batches: number): Promise<number> {
  const pool = new pg.Pool({ connectionString: url, max: connections });
  await pool.query(
    `create table if not exists bench_ceiling (sfid text primary key, name text, phone text, billingcity text, annualrevenue numeric, numberofemployees integer, description text, systemmodstamp timestamptz, fields jsonb)`,
  );
  await pool.query('truncate bench_ceiling');
  const work = Array.from({ length: batches }, () => batchOfNew());
  const started = performance.now();
  let i = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (i < work.length) {
        const recs = work[i++]!;
        await pool.query(
          `insert into bench_ceiling (sfid, name, phone, billingcity, annualrevenue, numberofemployees, description, systemmodstamp, fields)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::int[], $7::text[], $8::timestamptz[], $9::jsonb[])
         on conflict (sfid) do update set name = excluded.name, fields = excluded.fields`,
          [
            recs.map((r) => r.Id),
            recs.map((r) => r.Name),
            recs.map((r) => r.Phone),
            recs.map((r) => r.BillingCity),
            recs.map((r) => r.AnnualRevenue),
            recs.map((r) => r.NumberOfEmployees),
            recs.map((r) => r.Description),
            recs.map((r) => r.SystemModstamp),
            recs.map((r) => JSON.stringify(r)),
          ],
        );
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await pool.end();
  return (batches * BATCH) / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export async function runIngestBench() {
  const dataDir = tempDataDir('sfmirror-bench-');
  const server = await openEmbedded({ dataDir, mode: 'serve' });
  const rows: string[] = [];
  try {
    const svc = await startServe(
      {
        DATABASE_URL: server.url,
        SFMIRROR_INGEST_SECRETS: SECRET,
        LOG_LEVEL: 'warn',
        SFMIRROR_DB_POOL_SIZE: '20',
        SFMIRROR_INGEST_MAX_INFLIGHT: '16',
        SFMIRROR_INGEST_MAX_QUEUED: '64',
      },
      { bin: true /* as `npx sfmirror serve` runs it: bin/sfmirror.js's #! line carries the memory flag */ },
    );
    try {
      // Warm-up: creates the table and columns, JIT-compiles the hot path.
      await push(svc.url, 1, 3);
      rows.push('| connections | ingest records/s | ceiling records/s (median of 3) | ingest / ceiling | p50 ms | p99 ms | non-2xx |');
      rows.push('|---:|---:|---:|---:|---:|---:|---:|');
      for (const c of LEVELS) {
        const result = await push(svc.url, c, DURATION);
        const ceil = median([await ceiling(server.url, c, 150), await ceiling(server.url, c, 150), await ceiling(server.url, c, 150)]);
        const rps = (result.ok * BATCH) / result.seconds;
        rows.push(
          `| ${c} | ${rps.toFixed(0)} | ${ceil.toFixed(0)} | ${((rps / ceil) * 100).toFixed(0)}% | ${result.p50} | ${result.p99} | ${result.non2xx} |`,
        );
        console.error(rows.at(-1));
      }
      rows.push('', `peak RSS of sfmirror serve: ${peakRssMb(svc.proc.pid!).toFixed(0)} MB`);
      svc.proc.kill('SIGTERM');
      await svc.exited;
    } catch (e) {
      svc.proc.kill('SIGKILL');
      throw e;
    }
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  return rows.join('\n');
}

async function push(url: string, connections: number, seconds: number) {
  // Bodies are made and signed before the run, so the load generator spends its time sending.
  const pool = Array.from({ length: Math.max(2000, connections * 200) }, () => {
    const body = JSON.stringify({
      orgId: ORG,
      changes: batchOfNew().map((r) => ({ object: 'Account', operation: 'insert', record: r })),
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
  let i = 0;
  const result = await autocannon({
    url: `${url}/ingest/apex`,
    method: 'POST',
    connections,
    duration: seconds,
    requests: [{ method: 'POST', setupRequest: (req) => ({ ...req, ...pool[i++ % pool.length]! }) }],
  });
  if (i > pool.length) console.error(`note: ${i - pool.length} requests re-sent an earlier batch (ignored by the mirror)`);
  return { ok: result['2xx'], non2xx: result.non2xx, seconds: result.duration, p50: result.latency.p50, p99: result.latency.p99 };
}
