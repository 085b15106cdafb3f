import client from 'prom-client';

/**
 * Prometheus metrics, one registry per service instance (tests build several in one process).
 * Modules receive the pieces they update; `/metrics` renders the registry.
 */
export function createMetrics() {
  const registry = new client.Registry();
  // The standard names (process_cpu_seconds_total, nodejs_heap_size_used_bytes, ...) that dashboards expect.
  client.collectDefaultMetrics({ register: registry });
  const pushes = new client.Counter({
    name: 'sfmirror_pushes_total',
    help: 'Apex pushes received, by result',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const changes = new client.Counter({
    name: 'sfmirror_changes_total',
    help: 'Changes given to mirror.apply, by source and result (applied, ignored)',
    labelNames: ['source', 'result'] as const,
    registers: [registry],
  });
  const applyDuration = new client.Histogram({
    name: 'sfmirror_apply_duration_seconds',
    help: 'Time to apply one batch in one transaction',
    labelNames: ['source'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const batchSize = new client.Histogram({
    name: 'sfmirror_apply_batch_changes',
    help: 'Changes per applied batch',
    buckets: [1, 10, 50, 100, 200, 500, 1000, 5000],
    registers: [registry],
  });
  const typeProblems = new client.Counter({
    name: 'sfmirror_type_problems_total',
    help: 'Values kept only in _sfm_fields because they do not fit their column, and field type changes',
    labelNames: ['org', 'object'] as const,
    registers: [registry],
  });
  const applyErrors = new client.Counter({
    name: 'sfmirror_apply_errors_total',
    help: 'Batches that could not be committed',
    labelNames: ['source', 'retryable'] as const,
    registers: [registry],
  });
  // Change Data Capture stream (src/stream).
  const streamEvents = new client.Counter({
    name: 'sfmirror_stream_events_total',
    help: 'CDC events, by result (received, committed, bad)',
    labelNames: ['org', 'result'] as const,
    registers: [registry],
  });
  const streamState = new client.Gauge({
    name: 'sfmirror_stream_state',
    help: '1 for the current state of the CDC subscriber (connecting, live, backing off, stopped)',
    labelNames: ['org', 'state'] as const,
    registers: [registry],
  });
  const streamLag = new client.Histogram({
    name: 'sfmirror_stream_lag_seconds',
    help: 'Commit in the mirror minus the event commitTimestamp',
    labelNames: ['org'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  const streamRebuilds = new client.Counter({
    name: 'sfmirror_stream_rebuilds_total',
    help: 'CometD client rebuilds and re-handshakes, by reason (auth, watchdog, subscribe, unknown_client)',
    labelNames: ['org', 'reason'] as const,
    registers: [registry],
  });
  const streamResyncs = new client.Counter({
    name: 'sfmirror_stream_resyncs_total',
    help: 'Resync requests recorded by the stream, by reason (replay_invalid, gap_overflow, wildcard)',
    labelNames: ['org', 'object', 'reason'] as const,
    registers: [registry],
  });
  // BigQuery warehouse (src/warehouse).
  const warehouseRows = new client.Counter({
    name: 'sfmirror_warehouse_rows_total',
    help: 'Outbox rows settled by the drain, by result (sent, dead_letter, retry)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const warehouseRequests = new client.Counter({
    name: 'sfmirror_warehouse_requests_total',
    help: 'insertAll requests, by result (ok, partial, retryable, invalid, not_found, denied)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const warehouseOutboxDepth = new client.Gauge({
    name: 'sfmirror_warehouse_outbox_depth',
    help: 'Changes waiting in the outbox for BigQuery, per org',
    labelNames: ['org'] as const,
    registers: [registry],
  });
  const warehouseOutboxAge = new client.Gauge({
    name: 'sfmirror_warehouse_outbox_oldest_age_seconds',
    help: 'Age of the oldest change waiting for BigQuery, per org',
    labelNames: ['org'] as const,
    registers: [registry],
  });
  const warehouseDeadLetters = new client.Gauge({
    name: 'sfmirror_warehouse_dead_letters',
    help: 'Changes BigQuery refused for good (sfmirror.warehouse_dead_letters), per org',
    labelNames: ['org'] as const,
    registers: [registry],
  });
  const warehouseClaimDuration = new client.Histogram({
    name: 'sfmirror_warehouse_claim_duration_seconds',
    help: 'Time to claim one batch of outbox rows',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  return {
    warehouseClaimDuration,
    warehouseRows,
    warehouseRequests,
    warehouseOutboxDepth,
    warehouseOutboxAge,
    warehouseDeadLetters,
    registry,
    pushes,
    changes,
    applyDuration,
    batchSize,
    typeProblems,
    applyErrors,
    streamEvents,
    streamState,
    streamLag,
    streamRebuilds,
    streamResyncs,
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Pool gauges, read at scrape time (pg.Pool exposes its counts as properties). */
/** The counters of a connection pool that the metrics read (a pg.Pool has them; pg stays in src/db). */
export interface PoolCounts {
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
}

export function trackPool(metrics: Metrics, pool: PoolCounts): void {
  if (metrics.registry.getSingleMetric('sfmirror_db_pool_connections')) return;
  new client.Gauge({
    name: 'sfmirror_db_pool_connections',
    help: 'Database pool connections by state (total, idle, waiting clients)',
    labelNames: ['state'] as const,
    registers: [metrics.registry],
    collect() {
      this.set({ state: 'total' }, pool.totalCount);
      this.set({ state: 'idle' }, pool.idleCount);
      this.set({ state: 'waiting' }, pool.waitingCount);
    },
  });
}
