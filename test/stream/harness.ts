import { sql } from 'kysely';
import { setDefaults } from 'jsforce/lib/request.js';
import type { Db } from '../../src/db/database.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { createMetrics } from '../../src/lib/metrics.ts';
import { createMirror } from '../../src/mirror/apply.ts';
import { createSchemaManager } from '../../src/mirror/schema.ts';
import { ensureOrgAlias } from '../../src/mirror/orgs.repository.ts';
import { createSalesforceSession } from '../../src/salesforce/client.ts';
import { openStreamingClient } from '../../src/salesforce/streaming.ts';
import { startStreamService } from '../../src/stream/service.ts';
import { startBackfillWorker } from '../../src/backfill/worker.ts';
import { systemClock } from '../../src/lib/clock.ts';
import type { TestDatabase } from '../support/pg.ts';
import type { SalesforceOrg } from '../support/salesforce-org.ts';

// A 5xx from the stand-in must fail at once, not after jsforce's retries.
setDefaults({ followRedirect: true, retry: { maxRetries: 0 } } as never);
delete process.env.http_proxy;
delete process.env.https_proxy;

export const TUNING = {
  flushIdleMs: 20,
  maxBatch: 2000,
  watchdogGraceMs: 1500,
  resyncMarginMs: 60_000,
  leaderPollMs: 200,
};

/** An in-process CDC stream against the stand-in org, with the backfill worker that works its resync requests, as `serve` wires them. */
export async function startStream(
  tdb: TestDatabase,
  org: SalesforceOrg,
  o: { auth?: 'access' | 'refresh'; token?: string; channels?: string[] } = {},
) {
  const { db, pool } = tdb.handle;
  await ensureOrgAlias(db, 'salesforce');
  const log = createLogger(process.env.TEST_LOG === '1' ? 'debug' : 'silent');
  const metrics = createMetrics();
  const mirror = createMirror({ db, schema: createSchemaManager(db), metrics });
  const session = createSalesforceSession(
    o.auth === 'access'
      ? { instanceUrl: org.url, accessToken: o.token ?? org.issueToken(), loginUrl: org.url, version: org.version }
      : { refreshToken: org.refreshToken, clientId: org.clientId, loginUrl: org.url, version: org.version },
  );
  const service = startStreamService({
    db,
    pool,
    mirror,
    session,
    openStreaming: openStreamingClient,
    log,
    metrics,
    org: 'salesforce',
    channels: o.channels ?? ['/data/ChangeEvents'],
    tuning: TUNING,
  });
  // The stream only records resync requests; the backfill worker works them, started as serve starts it.
  const worker = startBackfillWorker({
    db,
    mirror,
    sourceFor: (alias) => (alias === 'salesforce' ? session : undefined),
    resyncOrgs: ['salesforce'],
    clock: systemClock,
    log,
    pollMs: 100,
    reconcileAtMinutes: 0,
    pageSize: 500,
    leaseMs: 60_000,
  });
  const stop = async () => {
    await worker.stop();
    await service.stop();
  };
  return { service: { ...service, stop }, metrics };
}

/** The mirror's live rows of an object: id -> the named fields. */
export async function mirrorRows(db: Db, object: string, fields: string[]): Promise<Map<string, Record<string, unknown>>> {
  const exists = await sql<{ t: string | null }>`select to_regclass(${`salesforce.${object.toLowerCase()}`})::text as t`.execute(db);
  if (!exists.rows[0]?.t) return new Map();
  const r = await sql<{
    sfid: string;
    f: Record<string, unknown>;
  }>`select sfid, _sfm_fields as f from ${sql.id('salesforce', object.toLowerCase())} where not isdeleted`.execute(db);
  return new Map(r.rows.map((x) => [x.sfid, Object.fromEntries(fields.map((k) => [k, x.f[k] ?? null]))]));
}

/** Whether the mirror's live records equal the org's (on `fields`). */
export async function converged(db: Db, org: SalesforceOrg, object: string, fields: string[]): Promise<boolean> {
  const mine = await mirrorRows(db, object, fields);
  const truth = org.live(object);
  if (mine.size !== truth.size) return false;
  for (const [id, rec] of truth) {
    const m = mine.get(id);
    if (!m) return false;
    for (const f of fields) if ((rec[f] ?? null) !== (m[f] ?? null)) return false;
  }
  return true;
}

export const metricValue = async (metrics: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string>) => {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
};
