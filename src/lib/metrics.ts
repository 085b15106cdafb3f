import client from 'prom-client';

/**
 * Prometheus metrics, one registry per service instance (tests build several in one process).
 * Modules receive the pieces they update; `/metrics` renders the registry.
 */
export function createMetrics() {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'sfmirror_process_' });
  const pushes = new client.Counter({ name: 'sfmirror_pushes_total', help: 'Apex pushes received, by result', labelNames: ['result'] as const, registers: [registry] });
  const changes = new client.Counter({ name: 'sfmirror_changes_total', help: 'Changes given to mirror.apply, by source and result (applied, ignored)', labelNames: ['source', 'result'] as const, registers: [registry] });
  const applyDuration = new client.Histogram({
    name: 'sfmirror_apply_duration_seconds',
    help: 'Time to apply one batch in one transaction',
    labelNames: ['source'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const batchSize = new client.Histogram({ name: 'sfmirror_apply_batch_changes', help: 'Changes per applied batch', buckets: [1, 10, 50, 100, 200, 500, 1000, 5000], registers: [registry] });
  const typeProblems = new client.Counter({ name: 'sfmirror_type_problems_total', help: 'Values kept only in _sfm_fields because they do not fit their column, and field type changes', labelNames: ['org', 'object'] as const, registers: [registry] });
  const applyErrors = new client.Counter({ name: 'sfmirror_apply_errors_total', help: 'Batches that could not be committed', labelNames: ['source', 'retryable'] as const, registers: [registry] });
  return { registry, pushes, changes, applyDuration, batchSize, typeProblems, applyErrors };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Pool gauges, read at scrape time (pg.Pool exposes its counts as properties). */
export function trackPool(metrics: Metrics, pool: { totalCount: number; idleCount: number; waitingCount: number }): void {
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
