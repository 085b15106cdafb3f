import type { Config } from '../config/config.ts';
import { createApp } from '../api/app.ts';
import { createTombstonePurger } from '../api/read/purge.ts';
import { migrate } from '../db/migrator.ts';
import { systemClock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { createMetrics } from '../lib/metrics.ts';
import { createMirror } from '../mirror/apply.ts';
import { ensureOrgAlias } from '../mirror/orgs.repository.ts';
import { createSchemaManager, type DescribeFields } from '../mirror/schema.ts';
import { createDescribeCache } from '../salesforce/describe.ts';
import { startFormulaFreshness } from './formulas.ts';
import { openStreamingClient } from '../salesforce/streaming.ts';
import { startStreamService } from '../stream/service.ts';
import { openDatabase } from './database.ts';
import { bulkTuningOf, salesforceSessionOf } from './salesforce.ts';
import { startBackfillWorker } from '../backfill/worker.ts';
import { createSecretBox } from '../lib/secret-box.ts';
import { createOrgKeyCache } from '../ingest/org-keys.ts';
import { setAuthState } from '../mirror/org-connections.repository.ts';
import { createOrgSessions, resealStoredSecrets, superviseOrgStreams } from './org-sessions.ts';
import { enableWarehouse, readWarehouseSetting } from '../warehouse/warehouse.repository.ts';
import { warehouseOf } from './warehouse.ts';

/**
 * `sfmirror serve`: everything in one process, wired here.
 * Shutdown: stop accepting, finish in-flight batches, close the pool, stop the embedded server.
 */
export async function serve(config: Config, log: Logger): Promise<{ close(): Promise<void>; url: string }> {
  const database = await openDatabase(config, log, 'serve');
  const cleanups: Array<() => Promise<unknown>> = [() => database.close()];
  const closeAll = async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch((err: Error) => log.error({ err: err.message }, 'shutdown step failed'));
  };
  try {
    const { db, pool } = database.handle;
    const { results, error } = await migrate(db);
    for (const r of results) log.info({ migration: r.name, status: r.status }, 'migration');
    if (error) throw error;
    await ensureOrgAlias(db, config.SF_ORG_ALIAS);

    const metrics = createMetrics();
    const box = config.SFMIRROR_ENCRYPTION_KEY ? createSecretBox(config.SFMIRROR_ENCRYPTION_KEY) : undefined;
    if (box) {
      const resealed = await resealStoredSecrets(db, box, log);
      if (resealed) log.info({ resealed, key: box.currentKeyId }, 'stored secrets re-encrypted with the current key');
    }
    // The org configured by environment; its token state shows in status like an OAuth org's.
    let envGrant: 'connected' | 'revoked' | undefined;
    const sf = config.salesforceConfigured
      ? salesforceSessionOf(config, {
          onGrantRevoked: (message) => {
            envGrant = 'revoked';
            void setAuthState(db, config.SF_ORG_ALIAS, 'revoked', message).catch((e: Error) =>
              log.warn({ err: e.message }, 'could not record the revoked state'),
            );
            log.error({ org: config.SF_ORG_ALIAS, err: message }, 'Salesforce refused the configured credentials');
          },
          onGranted: () => {
            if (envGrant !== 'connected') {
              envGrant = 'connected';
              void setAuthState(db, config.SF_ORG_ALIAS, 'connected', null).catch((e: Error) =>
                log.warn({ err: e.message }, 'could not record the connected state'),
              );
            }
          },
        })
      : undefined;
    // Sessions of every org with API access: environment + OAuth (src/bin/org-sessions.ts).
    const sessions = createOrgSessions({ db, config, box, log, envSession: sf });
    // Describe, cached, drives the mirror's columns and the formula catalog (src/formulas; README, "Formula fields").
    const describes = createDescribeCache(
      async (org, object) => {
        const session = sessions.sessionFor(org);
        // A refresh-token session has no instance URL before its first token (the stream may not have asked yet).
        if (session && !session.accessToken()) await session.refresh();
        return session?.describeSObject(object);
      },
      {
        ttlMs: config.SFMIRROR_DESCRIBE_REFRESH_MS,
      },
    );
    const describe: DescribeFields = (org, object) => describes.types(org, object);
    const schema = createSchemaManager(db, { describe, describeAll: true, refreshDescribe: describes.refresh, log });
    const formulas = await startFormulaFreshness({ config, db, log, metrics, schema, sessions, describes });
    cleanups.push(() => formulas.stop());
    const mirror = formulas.mirror;
    const channels = config.SF_CDC_CHANNEL.split(',')
      .map((c) => c.trim())
      .filter(Boolean);
    // Each org with a session gets its CDC subscription; removed or revoked orgs lose it.
    const streams = superviseOrgStreams({
      sessions,
      log,
      pollMs: config.SFMIRROR_ORGS_POLL_MS,
      start: (alias, session) =>
        startStreamService({
          db,
          pool,
          mirror,
          session,
          openStreaming: openStreamingClient,
          log,
          metrics,
          org: alias,
          channels,
          // SF_OBJECTS restricts the org configured by environment; OAuth orgs mirror what arrives.
          objects: alias === config.SF_ORG_ALIAS ? config.SF_OBJECTS : undefined,
          tuning: {
            flushIdleMs: config.SFMIRROR_CDC_FLUSH_IDLE_MS,
            maxBatch: config.SFMIRROR_CDC_MAX_BATCH,
            watchdogGraceMs: config.SFMIRROR_CDC_WATCHDOG_GRACE_MS,
            resyncMarginMs: 300_000,
            leaderPollMs: config.SFMIRROR_CDC_LEADER_POLL_MS,
          },
        }),
    });
    cleanups.push(() => streams.stop());
    await streams.sync();
    const app = await createApp({
      db,
      pool,
      log,
      metrics,
      mirror,
      keys: { secrets: config.SFMIRROR_INGEST_SECRETS, publicKeys: config.SFMIRROR_INGEST_PUBLIC_KEYS },
      orgKeys: createOrgKeyCache({ db, box, log }),
      adminToken: config.SFMIRROR_ADMIN_TOKEN,
      defaultAlias: config.SF_ORG_ALIAS,
      objects: config.SF_OBJECTS,
      clock: systemClock,
      console: {
        sessionTtlSeconds: config.SFMIRROR_CONSOLE_SESSION_MINUTES * 60,
        historyIntervalMs: config.SFMIRROR_CONSOLE_HISTORY_INTERVAL_MS,
      },
      status: {
        bigqueryConfigured: Boolean(config.BIGQUERY_PROJECT),
        envApiAlias: config.salesforceConfigured ? config.SF_ORG_ALIAS : undefined,
      },
      maxInflight: config.SFMIRROR_INGEST_MAX_INFLIGHT,
      maxQueued: config.SFMIRROR_INGEST_MAX_QUEUED,
      corsOrigins: config.SFMIRROR_API_CORS_ORIGINS,
      maxUnverifiedBytes: config.SFMIRROR_INGEST_UNVERIFIED_BYTES,
      bodyTimeoutMs: config.SFMIRROR_INGEST_BODY_TIMEOUT_MS,
      metricsDocs: config.SFMIRROR_METRICS_DOCS,
      hstsMaxAge: config.SFMIRROR_HSTS_MAX_AGE,
      http: {
        maxConnections: config.SFMIRROR_MAX_CONNECTIONS,
        headersTimeoutMs: config.SFMIRROR_HEADERS_TIMEOUT_MS,
        requestTimeoutMs: config.SFMIRROR_REQUEST_TIMEOUT_MS,
      },
      readApi: {
        unknownTokenRate: config.SFMIRROR_API_UNKNOWN_TOKEN_RATE,
        envTokens: config.SFMIRROR_API_TOKENS,
        rateLimit: config.SFMIRROR_API_RATE_LIMIT,
        rateBurst: config.SFMIRROR_API_RATE_BURST,
      },
      oauth: {
        box,
        clientId: config.SF_CLIENT_ID,
        clientSecret: config.SF_CLIENT_SECRET,
        defaultLoginUrl: config.SF_LOGIN_URL ?? 'https://login.salesforce.com',
        loginHosts: config.SFMIRROR_OAUTH_LOGIN_HOSTS,
        defaultRedirectUri: config.SFMIRROR_OAUTH_REDIRECT_URI,
        stateTtlSeconds: config.SFMIRROR_OAUTH_STATE_TTL_SECONDS,
        onConnected: () => void streams.sync(),
      },
    });
    cleanups.push(() => app.close());
    const purger = createTombstonePurger({ db, clock: systemClock, log, retentionDays: config.SFMIRROR_TOMBSTONE_RETENTION_DAYS });
    purger.start();
    cleanups.push(() => purger.stop());
    // Backfill jobs: seeded at once, reconciled daily (src/backfill), for every org with a session.
    const backfills = startBackfillWorker({
      db,
      mirror,
      clock: systemClock,
      log,
      sourceFor: (org) => sessions.sessionFor(org),
      resyncOrgs: () => sessions.aliases(),
      pollMs: config.SFMIRROR_BACKFILL_POLL_MS,
      reconcileAtMinutes: config.SFMIRROR_RECONCILE_AT,
      pageSize: config.SFMIRROR_BACKFILL_PAGE_SIZE,
      leaseMs: config.SFMIRROR_BACKFILL_LEASE_MS,
      bulk: bulkTuningOf(config),
      apiBudgetShare: config.SFMIRROR_API_BUDGET_SHARE,
      pausedRecheckMs: config.SFMIRROR_API_BUDGET_RECHECK_MS,
    });
    cleanups.push(() => backfills.stop());
    const warehouseSetting = await readWarehouseSetting(db);
    if (!config.BIGQUERY_PROJECT && warehouseSetting?.enabled)
      log.warn(
        { outbox: 'growing' },
        "the warehouse is on in the database but BIGQUERY_PROJECT is not set here: changes queue in the outbox and nobody sends them; configure BigQuery, or run 'sfmirror warehouse disable'",
      );
    if (config.BIGQUERY_PROJECT) {
      // Recorded in the database so every writer (a CLI backfill without BIGQUERY_* too) queues changes;
      // an operator's 'warehouse disable' stands until 'warehouse enable' (what is queued is still sent).
      if (warehouseSetting?.enabled === false && warehouseSetting.changedBy === 'operator')
        log.warn("the warehouse was switched off by the operator: changes are not queued for BigQuery ('sfmirror warehouse enable')");
      else await enableWarehouse(db, { project: config.BIGQUERY_PROJECT, dataset: config.BIGQUERY_DATASET });
      const warehouse = warehouseOf(config, db, log);
      const drain = warehouse.drain(metrics);
      drain.start();
      cleanups.push(async () => {
        await drain.stop();
        await warehouse.bq.close();
      });
    }
    const url = await app.listen({ host: config.HOST, port: config.PORT });
    log.info({ url, database: config.DATABASE_URL ? 'DATABASE_URL' : 'embedded' }, 'sfmirror is serving');
    return { url, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
