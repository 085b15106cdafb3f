import type { Config } from '../config/config.ts';
import type { Db } from '../db/database.ts';
import { emptyExcludedFields } from '../formulas/exclusions.repository.ts';
import * as formulasRepo from '../formulas/formulas.repository.ts';
import { createFormulaMetrics } from '../formulas/metrics.ts';
import { createFilteredMirror } from '../formulas/mirror-hook.ts';
import { createFormulaRereader } from '../formulas/rereader.ts';
import { createFormulaTracker } from '../formulas/tracker.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import { createMirror } from '../mirror/apply.ts';
import type { SchemaManager } from '../mirror/schema.ts';
import type { DescribeCache } from '../salesforce/describe.ts';
import type { OrgSessions } from './org-sessions.ts';
import { bulkTuningOf, fieldFilterOf } from './salesforce.ts';

/**
 * Formula freshness and the operator's field choice, wired for `serve` (src/formulas): the mirror
 * every source writes through (excluded fields dropped, formula re-reads queued after each batch),
 * the re-reader of every org with API access, and on start the emptying of newly excluded fields.
 */
export async function startFormulaFreshness(d: {
  config: Config;
  db: Db;
  log: Logger;
  metrics: Metrics;
  schema: SchemaManager;
  sessions: Pick<OrgSessions, 'sessionFor' | 'aliases'>;
  describes: DescribeCache;
}) {
  const { config, db, log } = d;
  const filter = fieldFilterOf(config);
  await formulasRepo.setSetting(db, 'fields', { include: config.SFMIRROR_FIELDS, exclude: config.SFMIRROR_EXCLUDE_FIELDS });
  await emptyExcludedFields(db, filter, log);
  const inner = createMirror({ db, schema: d.schema, log, metrics: d.metrics });
  const tracker = createFormulaTracker({
    db,
    describe: (org, object) => d.describes.get(org, object),
    delayMs: config.SFMIRROR_FORMULA_REREAD_DELAY_MS,
    ttlMs: config.SFMIRROR_DESCRIBE_REFRESH_MS,
    log,
  });
  const bulk = bulkTuningOf(config);
  const rereader = createFormulaRereader({
    db,
    mirror: inner,
    tracker,
    sourceFor: (org) => d.sessions.sessionFor(org),
    orgs: () => d.sessions.aliases(),
    syncColumns: async (org, object) => {
      await d.schema.ensure(org, object, []);
    },
    tuning: {
      pollMs: config.SFMIRROR_FORMULA_POLL_MS,
      claimLimit: 2000,
      leaseMs: 300_000,
      refreshIntervalMs: config.SFMIRROR_FORMULA_REFRESH_INTERVAL_MS,
      bulkThreshold: config.SFMIRROR_FORMULA_BULK_THRESHOLD,
      bulk: { pollMs: bulk.pollMs, timeoutMs: bulk.timeoutMs, pageSize: bulk.pageSize },
      budgetShare: config.SFMIRROR_API_BUDGET_SHARE,
      retryMs: config.SFMIRROR_API_BUDGET_RECHECK_MS,
      columnsEveryMs: config.SFMIRROR_DESCRIBE_REFRESH_MS,
    },
    log: log.child({ component: 'formulas' }),
    metrics: createFormulaMetrics(d.metrics.registry),
  });
  // Always started: OAuth orgs may connect later; each pass skips orgs without a session.
  rereader.start();
  return {
    mirror: createFilteredMirror(inner, { filter, tracker, log }),
    tracker,
    rereader,
    stop: () => rereader.stop(),
  };
}
