import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import { sql } from 'kysely';
import { cursorBinding, encodeChangeCursor, encodeListCursor } from '../../src/api/read/cursor.ts';
import { loadCursorKey } from '../../src/api/read/cursor-key.repository.ts';
import { makeVersion } from '../../src/changes/version.ts';
import { toId18 } from '../../src/changes/names.ts';
import { createDatabase } from '../../src/db/database.ts';
import { openEmbedded } from '../../src/db/embedded.ts';
import { createMirror } from '../../src/mirror/apply.ts';
import { createSchemaManager } from '../../src/mirror/schema.ts';
import { ROOT, startServe, tempDataDir } from '../support/serve.ts';
import { ACCOUNT_TYPES, accountFields, accountId15 } from './accounts.ts';

/**
 * Read API benchmark (issue: read API): 100,000 mirrored Accounts in a child `sfmirror serve`;
 * autocannon measures GET by id, a list page of 100 and a change-feed page of 500, next to the
 * ceiling measured in the same run: a bare Fastify route running the same primary-key query with
 * `pg`. Run: `npx node test/bench/read.bench.ts` (BENCH_DURATION seconds per route, default 10;
 * BENCH_CONNECTIONS, default 16).
 */
const TOKEN = 'bench-read-token-0123456789';
const RECORDS = Number(process.env.BENCH_RECORDS ?? 100_000);
const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const CONNECTIONS = Number((process.env.BENCH_CONNECTIONS ?? '16').split(',').at(-1)); // the largest level of the ingest list
const TYPES = ACCOUNT_TYPES;
const id = (n: number) => toId18(accountId15(n))!;
const random = (n: number) => 1 + Math.floor(Math.random() * n);

async function seed(url: string) {
  const handle = createDatabase(url, { poolSize: 4 });
  const mirror = createMirror({ db: handle.db, schema: createSchemaManager(handle.db) });
  const at = Date.UTC(2024, 2, 10, 12);
  for (let start = 1; start <= RECORDS; start += 2000) {
    const changes = Array.from({ length: Math.min(2000, RECORDS - start + 1) }, (_, k) => {
      const n = start + k;
      return {
        object: 'Account',
        operation: 'insert' as const,
        id: id(n),
        version: makeVersion(at),
        fields: {
          SystemModstamp: new Date(at).toISOString(),
          ...accountFields(n, 'read'),
        },
      };
    });
    await mirror.apply('salesforce', changes, { types: TYPES });
  }
  await sql`analyze salesforce.account`.execute(handle.db);
  await handle.close();
}

/** The ceiling runs in its own process, as `serve` does, so it does not share a CPU with autocannon. */
async function ceilingServer(url: string) {
  const script = `
    import Fastify from 'fastify';
    import pg from 'pg';
    const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
    const app = Fastify();
    app.get('/ceiling/:id', async (req, reply) => {
      const r = await pool.query('select _sfm_fields as fields from salesforce.account where sfid = $1 and not isdeleted', [req.params.id]);
      if (!r.rows[0]) return reply.status(404).send();
      return r.rows[0].fields;
    });
    console.log(await app.listen({ host: '127.0.0.1', port: 0 }));`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const address = await new Promise<string>((resolve, reject) => {
    proc.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()));
    proc.once('exit', (code) => reject(new Error(`ceiling server exited with ${code}`)));
  });
  return {
    address,
    close: async () => {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

async function run(url: string, path: () => string, headers: Record<string, string> = {}) {
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: DURATION,
    requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: path(), headers: { ...req.headers, ...headers } }) }],
  });
  return { rps: result.requests.average, p99: result.latency.p99, p50: result.latency.p50, non2xx: result.non2xx };
}

export async function runReadBench(): Promise<string> {
  const dataDir = tempDataDir('sfmirror-bench-read-');
  const server = await openEmbedded({ dataDir, mode: 'serve' });
  const rows: string[] = [];
  try {
    const svc = await startServe({
      DATABASE_URL: server.url,
      SFMIRROR_API_TOKENS: `bench:${TOKEN}`,
      SFMIRROR_API_RATE_LIMIT: '0',
      LOG_LEVEL: 'warn',
      SFMIRROR_DB_POOL_SIZE: '10',
    });
    const ceiling = await ceilingServer(server.url);
    try {
      await seed(server.url);
      const auth = { authorization: `Bearer ${TOKEN}` };
      // Cursors at random positions, signed as serve signs them for this client (src/api/read/cursor.ts).
      const keyDb = createDatabase(server.url, { poolSize: 1 });
      const signer = { key: await loadCursorKey(keyDb.db), bind: cursorBinding('bench', []) };
      await keyDb.close();
      await run(svc.url, () => `/api/v1/objects/Account/${id(random(RECORDS))}`, auth); // warm-up
      await run(ceiling.address, () => `/ceiling/${id(random(RECORDS))}`);
      const ceil = await run(ceiling.address, () => `/ceiling/${id(random(RECORDS))}`);
      const byId = await run(svc.url, () => `/api/v1/objects/Account/${id(random(RECORDS))}`, auth);
      const list = await run(
        svc.url,
        () =>
          `/api/v1/objects/Account?limit=100&cursor=${encodeListCursor(signer, 'salesforce', 'account', BigInt(random(RECORDS - 100)))}`,
        auth,
      );
      const feed = await run(
        svc.url,
        () => `/api/v1/changes?limit=500&since=${encodeChangeCursor(signer, 'salesforce', BigInt(random(RECORDS - 500)))}`,
        auth,
      );
      rows.push(`${RECORDS} records, ${CONNECTIONS} connections, ${DURATION} s per route`, '');
      rows.push('| route | requests/s | p50 ms | p99 ms | non-2xx | vs ceiling (bare Fastify + pg, primary-key query) |');
      rows.push('|---|---:|---:|---:|---:|---:|');
      rows.push(`| ceiling: bare GET by id | ${ceil.rps.toFixed(0)} | ${ceil.p50} | ${ceil.p99} | ${ceil.non2xx} | 100% |`);
      for (const [name, r] of [
        ['GET by id', byId],
        ['list page of 100', list],
        ['change-feed page of 500', feed],
      ] as const) {
        rows.push(`| ${name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${((r.rps / ceil.rps) * 100).toFixed(0)}% |`);
      }
      svc.proc.kill('SIGTERM');
      await svc.exited;
    } catch (e) {
      svc.proc.kill('SIGKILL');
      throw e;
    } finally {
      await ceiling.close();
    }
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  return rows.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log('## Read API: GET by id, list page, change-feed page\n');
  console.log(await runReadBench());
}
