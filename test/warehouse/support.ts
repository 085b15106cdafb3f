import type { Db } from '../../src/db/database.ts';
import { createBigQueryTable, type WarehouseTable } from '../../src/warehouse/bigquery.ts';
import { createDrain, type DrainTuning } from '../../src/warehouse/drain.ts';
import { createTableManager } from '../../src/warehouse/tables.ts';
import { enableWarehouse } from '../../src/warehouse/warehouse.repository.ts';
import { waitFor } from '../support/wait.ts';
import { createLogger } from '../../src/lib/logger.ts';
import type { Metrics } from '../../src/lib/metrics.ts';
import { startBigQuery, type BigQueryStandIn } from '../support/bigquery.ts';
import { startBigQueryStorage, type StorageFault, type StorageStandIn } from '../support/bigquery-storage.ts';
import { createTestMirror } from '../support/changes.ts';
import { startTestDatabase } from '../support/pg.ts';

/** Small, fast tuning for tests: short flush and backoff, so "minutes" of outage pass in seconds. */
export const TEST_TUNING: DrainTuning = {
  maxRows: 100,
  maxBytes: 1_000_000,
  flushMs: 50,
  concurrency: 2,
  leaseMs: 10_000,
  backoffBaseMs: 20,
  backoffCapMs: 200,
  requestTimeoutMs: 2000,
  statsEveryMs: 200,
};

type T = { teardown(fn: () => unknown): void };

export async function warehouseFixture(t: T, opts: { dedupWindowMs?: number; enable?: boolean } = {}) {
  const tdb = await startTestDatabase(t);
  const db = tdb.handle.db;
  if (opts.enable !== false) await enableWarehouse(db, { project: 'p', dataset: 'salesforce' });
  const mirror = await createTestMirror(db);
  const bq = await startBigQuery(t, opts);
  const storage = await startBigQueryStorage(t, bq);
  const client = (timeoutMs = 2000) => {
    const c = createBigQueryTable({
      projectId: 'p',
      apiEndpoint: bq.url,
      authClient: bq.authClient(),
      storageEndpoint: storage.endpoint,
      timeoutMs,
    });
    t.teardown(() => c.close());
    return c;
  };
  const log = createLogger((process.env.TEST_LOG_LEVEL ?? 'silent') as 'silent', process.stderr);
  const drainer = (opts: { owner?: string; tuning?: Partial<DrainTuning>; client?: WarehouseTable; metrics?: Metrics } = {}) => {
    const c = opts.client ?? client(opts.tuning?.requestTimeoutMs ?? TEST_TUNING.requestTimeoutMs);
    const tables = createTableManager({ db, bq: c, project: 'p', defaults: { dataset: 'salesforce', alias: 'salesforce' }, log });
    const drain = createDrain({
      db,
      bq: c,
      tables,
      owner: opts.owner ?? 'test',
      tuning: { ...TEST_TUNING, ...opts.tuning },
      log,
      metrics: opts.metrics,
    });
    t.teardown(() => drain.stop());
    return { drain, tables };
  };
  return { tdb, db, mirror, bq, storage, client, drainer, log };
}

export async function outboxDepth(db: Db): Promise<number> {
  const r = await db
    .selectFrom('sfmirror.outbox')
    .select((e) => e.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/**
 * The warehouse tests' argument order, kept until issue 18 (which rewrites these tests) calls
 * test/support/wait.ts's `waitFor` directly; new tests use waitFor.
 */
export const until = (check: () => Promise<boolean> | boolean, ms = 20_000, what = 'condition'): Promise<boolean> =>
  waitFor(what, check, { timeoutMs: ms, intervalMs: 25 });

/** History rows of a change table, per change id: how many copies BigQuery holds. */
export function copiesPerChange(rows: ReadonlyArray<Record<string, unknown>>): Map<string, number> {
  const perId = new Map<string, number>();
  for (const r of rows) perId.set(String(r._sfm_change_id), (perId.get(String(r._sfm_change_id)) ?? 0) + 1);
  return perId;
}

export type { BigQueryStandIn, StorageFault, StorageStandIn };
