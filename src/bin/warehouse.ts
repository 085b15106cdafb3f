import os from 'node:os';
import type { Config } from '../config/config.ts';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import { createBigQueryTable, type WarehouseTable } from '../warehouse/bigquery.ts';
import { createDrain } from '../warehouse/drain.ts';
import { createTableManager } from '../warehouse/tables.ts';

/** The warehouse's parts from the configuration (BIGQUERY_*, SFMIRROR_BIGQUERY_* and SFMIRROR_WAREHOUSE_*). */
export function warehouseOf(config: Config, db: Db, log: Logger, client?: WarehouseTable) {
  const project = config.BIGQUERY_PROJECT;
  if (!project) throw new Error('BIGQUERY_PROJECT is not set');
  const bq =
    client ??
    createBigQueryTable({
      projectId: project,
      apiEndpoint: config.BIGQUERY_API_ENDPOINT,
      storageEndpoint: config.BIGQUERY_STORAGE_API_ENDPOINT,
      timeoutMs: config.SFMIRROR_WAREHOUSE_REQUEST_TIMEOUT_MS,
    });
  const tables = createTableManager({
    db,
    bq,
    project,
    defaults: { dataset: config.BIGQUERY_DATASET, alias: config.SF_ORG_ALIAS },
    maxStalenessMinutes: config.SFMIRROR_BIGQUERY_MAX_STALENESS,
    log,
  });
  return {
    bq,
    tables,
    drain: (metrics?: Metrics) =>
      createDrain({
        db,
        bq,
        tables,
        log,
        metrics,
        owner: `${os.hostname()}:${process.pid}`,
        tuning: {
          maxRows: config.SFMIRROR_WAREHOUSE_BATCH_ROWS,
          maxBytes: config.SFMIRROR_WAREHOUSE_BATCH_BYTES,
          flushMs: config.SFMIRROR_WAREHOUSE_FLUSH_MS,
          concurrency: config.SFMIRROR_WAREHOUSE_CONCURRENCY,
          leaseMs: config.SFMIRROR_WAREHOUSE_LEASE_MS,
          backoffBaseMs: config.SFMIRROR_WAREHOUSE_BACKOFF_BASE_MS,
          backoffCapMs: config.SFMIRROR_WAREHOUSE_BACKOFF_CAP_MS,
          requestTimeoutMs: config.SFMIRROR_WAREHOUSE_REQUEST_TIMEOUT_MS,
        },
      }),
  };
}
