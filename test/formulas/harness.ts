import { createFieldFilter, type FieldFilter } from '../../src/changes/field-filter.ts';
import { createFormulaMetrics } from '../../src/formulas/metrics.ts';
import { createFilteredMirror } from '../../src/formulas/mirror-hook.ts';
import { createFormulaRereader, type FormulaSource, type RereaderTuning } from '../../src/formulas/rereader.ts';
import { createFormulaTracker } from '../../src/formulas/tracker.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { createMetrics } from '../../src/lib/metrics.ts';
import { createMirror } from '../../src/mirror/apply.ts';
import { ensureOrgAlias } from '../../src/mirror/orgs.repository.ts';
import { createSchemaManager } from '../../src/mirror/schema.ts';
import { createSalesforceSession } from '../../src/salesforce/client.ts';
import { createDescribeCache } from '../../src/salesforce/describe.ts';
import { openStreamingClient } from '../../src/salesforce/streaming.ts';
import { startStreamService } from '../../src/stream/service.ts';
import { TUNING } from '../stream/harness.ts';
import type { TestDatabase } from '../support/pg.ts';
import type { SalesforceOrg } from '../support/salesforce-org.ts';

/**
 * Formula freshness wired as `serve` wires it (src/bin/formulas.ts), in process, against the
 * stand-in org: describe cache -> schema (a column per described field) -> inner mirror; the
 * filtered mirror with the tracker for every source; the re-reader on the inner mirror.
 */
export async function startFormulas(
  tdb: TestDatabase,
  org: SalesforceOrg,
  o: {
    filter?: FieldFilter;
    tuning?: Partial<RereaderTuning>;
    stream?: boolean;
    source?: (s: FormulaSource) => FormulaSource;
    /** The describe cache's clock (its entries live 60 s). */
    describeNow?: () => number;
  } = {},
) {
  const { db, pool } = tdb.handle;
  await ensureOrgAlias(db, 'salesforce');
  const log = createLogger(process.env.TEST_LOG === '1' ? 'debug' : 'silent');
  const metrics = createMetrics();
  const filter = o.filter ?? createFieldFilter();
  const session = createSalesforceSession({
    refreshToken: org.refreshToken,
    clientId: org.clientId,
    loginUrl: org.url,
    version: org.version,
    allowField: filter.allows,
  });
  const describes = createDescribeCache(
    async (_org, object) => {
      if (!session.accessToken()) await session.refresh();
      return session.describeSObject(object);
    },
    {
      ttlMs: 60_000,
      ...(o.describeNow ? { now: o.describeNow } : {}),
    },
  );
  const schema = createSchemaManager(db, {
    describe: (a, b) => describes.types(a, b),
    describeAll: true,
    refreshDescribe: describes.refresh,
    log,
  });
  const inner = createMirror({ db, schema, log, metrics });
  const tracker = createFormulaTracker({ db, describe: (a, b) => describes.get(a, b), delayMs: 50, ttlMs: 60_000, log });
  const formulaMetrics = createFormulaMetrics(metrics.registry);
  const rereader = createFormulaRereader({
    db,
    mirror: inner,
    tracker,
    sourceFor: () => (o.source ? o.source(session) : session),
    orgs: () => ['salesforce'],
    syncColumns: async (a, b) => {
      await schema.ensure(a, b, []);
    },
    tuning: {
      pollMs: 20,
      claimLimit: 2000,
      leaseMs: 60_000,
      refreshIntervalMs: 86_400_000,
      bulkThreshold: 1_000_000,
      bulk: { pollMs: 10, timeoutMs: 10_000, pageSize: 50_000 },
      budgetShare: 0.5,
      retryMs: 100,
      ...o.tuning,
    },
    log,
    metrics: formulaMetrics,
  });
  const mirror = createFilteredMirror(inner, { filter, tracker, log });
  const service =
    o.stream === false
      ? undefined
      : startStreamService({
          db,
          pool,
          mirror,
          session,
          openStreaming: openStreamingClient,
          log,
          metrics,
          org: 'salesforce',
          channels: ['/data/ChangeEvents'],
          tuning: TUNING,
        });
  return {
    session,
    mirror,
    inner,
    tracker,
    rereader,
    metrics,
    schema,
    describes,
    async stop() {
      await rereader.stop();
      await service?.stop();
    },
    service,
  };
}
