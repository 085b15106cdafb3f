import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import sensible from '@fastify/sensible';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { pingDatabase, type Db } from '../db/database.ts';
import { pendingMigrations } from '../db/migrator.ts';
import type { Logger } from '../lib/logger.ts';
import { trackPool, type Metrics, type PoolCounts } from '../lib/metrics.ts';
import { ingestRoutes, type IngestDeps } from '../ingest/routes.ts';
import { requireAdmin } from './auth.ts';
import { backfillRoutes } from './backfill-routes.ts';
import { warehouseRoutes } from './warehouse-routes.ts';
import { readRoutes, type ReadApiOptions } from './read/routes.ts';
import { installErrorHandler } from './errors.ts';
import { readStatus, type StatusContext } from './status.ts';
import { StatusHistorySchema, StatusSchema } from './status-schema.ts';
import { StatusQuery } from './app.schema.ts';
import { createStatusHistory } from './status-history.ts';
import { adminClientsRoutes } from './admin-clients-routes.ts';
import { adminKeysRoutes } from './admin-keys-routes.ts';
import { consoleRoutes, consoleSessionHook } from '../console/routes.ts';
import { createConsoleSessions } from '../console/sessions.ts';
import { AppError } from '../lib/errors.ts';
import { oauthRoutes, type OAuthDeps } from './oauth-routes.ts';
import { finishDocument } from './openapi.ts';
import { installCors } from './cors.ts';

/**
 * The HTTP surface (README.md, "Operations" and the OpenAPI document at /docs): ingest, operator API, health, metrics, OpenAPI.
 * Built from dependencies passed in (src/bin wires them), so tests build it the same way.
 */
export interface AppDeps extends IngestDeps {
  log: Logger;
  pool: PoolCounts;
  metrics: Metrics;
  adminToken?: string | undefined;
  /** Read API for the mobile app: env tokens, rate limit (src/api/read/). */
  readApi?: ReadApiOptions | undefined;
  /** Browser origins allowed to call the read API (SFMIRROR_API_CORS_ORIGINS); none: CORS off. */
  corsOrigins?: readonly string[] | undefined;
  /** Connecting orgs by OAuth (src/api/oauth-routes.ts); the routes answer 409 naming what is missing when absent. */
  oauth?: Omit<OAuthDeps, 'db' | 'clock' | 'adminToken'> | undefined;
  /** What this process knows that status cannot read from the database (BigQuery configured, SF_* access). */
  status?: StatusContext | undefined;
  /** The operator console (src/console/): session lifetime, chart sampling interval. */
  console?: { sessionTtlSeconds?: number | undefined; historyIntervalMs?: number | undefined } | undefined;
  /** Who may read /metrics and /docs (SFMIRROR_METRICS_DOCS): everyone, the operator token only, or nobody. */
  metricsDocs?: 'open' | 'admin' | 'off' | undefined;
  /** Connection cap and timeouts of the HTTP server (README, "Security"). */
  http?: Partial<HttpLimits> | undefined;
  /** Strict-Transport-Security max-age in seconds when served behind TLS (SFMIRROR_HSTS_MAX_AGE); 0: none. */
  hstsMaxAge?: number | undefined;
}

export interface HttpLimits {
  /** Open connections at once; more are closed on accept (Node's server.maxConnections). */
  maxConnections: number;
  /** Time for a request's headers to arrive (server.headersTimeout). */
  headersTimeoutMs: number;
  /** Time for a whole request to arrive (server.requestTimeout); ingest bodies have a shorter one. */
  requestTimeoutMs: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = { maxConnections: 512, headersTimeoutMs: 10_000, requestTimeoutMs: 60_000 };

/** A caller's X-Request-Id is used (and logged) only when short and plain; otherwise one is made. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
let requestCounter = 0;

export async function createApp(deps: AppDeps): Promise<FastifyInstance> {
  const limits = { ...DEFAULT_HTTP_LIMITS, ...deps.http };
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : `req-${(++requestCounter).toString(36)}`;
    },
    bodyLimit: 1024 * 1024,
    // Node's server.requestTimeout bounds the time to RECEIVE a request (not to answer it), and
    // headersTimeout the time for its headers; both close slow senders' sockets (nodejs.org/api/http.html,
    // "server.requestTimeout", "server.headersTimeout"). Ingest bodies get a shorter bound of their own.
    requestTimeout: limits.requestTimeoutMs,
    return503OnClosing: true,
    keepAliveTimeout: 10_000,
  });
  app.server.headersTimeout = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  // Beyond maxConnections Node closes new sockets on accept ("server.maxConnections"): a flood of
  // connections costs a bounded number of sockets and their buffers.
  app.server.maxConnections = limits.maxConnections;
  installErrorHandler(app);
  // Security headers on every answer (README, "Security"): no MIME sniffing, no framing, no caching
  // of API answers unless a route chose (the record route's ETag), HSTS when configured behind TLS.
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('x-frame-options', 'DENY');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('x-request-id', req.id);
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    if (deps.hstsMaxAge) reply.header('strict-transport-security', `max-age=${deps.hstsMaxAge}`);
  });
  // Graceful shutdown: answers sent while closing end their keep-alive connection, so close() does
  // not wait out the keep-alive timeout of a client that just got its answer.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_req, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  // Every answer names its request id (the caller's x-request-id, or the one Fastify made), so a
  // caller can quote it and the operator can find the request's log lines.
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  await app.register(sensible);
  await app.register(swagger, {
    openapi: {
      info: { title: 'sfmirror', version: '0.1.0', description: 'Live mirror of a Salesforce org in PostgreSQL and BigQuery' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    transformObject: (d) =>
      'openapiObject' in d ? (finishDocument(d.openapiObject as Record<string, unknown>) as typeof d.openapiObject) : d.swaggerObject,
  });

  // /metrics and /docs: open, behind the operator token, or off (SFMIRROR_METRICS_DOCS).
  const metricsDocs = deps.metricsDocs ?? 'open';
  const exposure =
    metricsDocs === 'admin'
      ? { preHandler: requireAdmin(deps.adminToken) }
      : metricsDocs === 'off'
        ? {
            preHandler: async () => {
              throw new AppError('NOT_FOUND', 'disabled (SFMIRROR_METRICS_DOCS=off)');
            },
          }
        : {};
  // /docs: the interactive UI (its assets served from this process, nothing fetched from a CDN);
  // /docs/json and /docs/yaml: the OpenAPI document, for generators. `uiHooks` guard every one of them.
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true },
    ...(exposure.preHandler ? { uiHooks: { preHandler: exposure.preHandler } } : {}),
  });

  installCors(app, deps.corsOrigins ?? []);
  trackPool(deps.metrics, deps.pool);
  const statusContext: StatusContext = deps.status ?? { bigqueryConfigured: false, envApiAlias: undefined };
  const sessions = deps.adminToken
    ? createConsoleSessions({ db: deps.db, adminToken: deps.adminToken, ttlSeconds: deps.console?.sessionTtlSeconds ?? 8 * 3600 })
    : undefined;
  // Admits console sessions to the operator API (at the root, so it runs before every route's guard).
  app.addHook('onRequest', consoleSessionHook(sessions));
  const history = createStatusHistory({ db: deps.db, intervalMs: deps.console?.historyIntervalMs ?? 10_000, log: deps.log });
  if (deps.adminToken) {
    app.addHook('onReady', async () => history.start());
    app.addHook('onClose', async () => history.stop());
  }

  // These routes, like every route module's, get their request and reply types from their TypeBox schemas.
  const typed = app.withTypeProvider<TypeBoxTypeProvider>();
  typed.get('/healthz', { schema: { summary: 'The process is up', tags: ['health'] } }, async () => ({ status: 'ok' }));
  typed.get('/readyz', { schema: { summary: 'The database is reachable and migrated', tags: ['health'] } }, async (req, reply) => {
    try {
      await pingDatabase(deps.db);
      const pending = await pendingMigrations(deps.db);
      if (pending.length) return reply.status(503).send({ status: 'migrating', pending });
      return { status: 'ready' };
    } catch (e) {
      // The reason goes to the log only: /readyz is open to anyone, and a driver's message can name hosts and users.
      req.log.warn({ err: (e as Error).message }, 'readiness check: database unavailable');
      return reply.status(503).send({ status: 'database unavailable' });
    }
  });
  typed.get('/metrics', { ...exposure, schema: { summary: 'Prometheus metrics', tags: ['health'] } }, async (_req, reply) => {
    reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
  typed.get(
    '/admin/status',
    {
      preHandler: requireAdmin(deps.adminToken),
      schema: {
        summary: 'Per org and object: rows, last change, connection, checkpoints, outbox, type problems',
        tags: ['operator'],
        security: [{ bearer: [] }],
        querystring: StatusQuery,
        response: { 200: StatusSchema },
      },
    },
    async (req) => {
      const status = await readStatus(deps.db, req.query.org, statusContext);
      if (req.query.org && !status.orgs.length) throw new AppError('NOT_FOUND', `org: no org named ${req.query.org}`);
      return status;
    },
  );
  typed.get(
    '/admin/status/history',
    {
      preHandler: requireAdmin(deps.adminToken),
      schema: {
        summary: "The last hour of ingest rate, stream lag and outbox depth (the console's charts)",
        tags: ['operator'],
        security: [{ bearer: [] }],
        response: { 200: StatusHistorySchema },
      },
    },
    async () => history.history(),
  );

  await app.register(async (scope) => ingestRoutes(scope, deps));
  await app.register(async (scope) => backfillRoutes(scope, { db: deps.db, adminToken: deps.adminToken, defaultAlias: deps.defaultAlias }));
  await app.register(async (scope) =>
    oauthRoutes(scope, {
      db: deps.db,
      clock: deps.clock,
      adminToken: deps.adminToken,
      ...(deps.oauth ?? {
        box: undefined,
        clientId: undefined,
        clientSecret: undefined,
        defaultLoginUrl: 'https://login.salesforce.com',
        defaultRedirectUri: undefined,
        stateTtlSeconds: 600,
      }),
    }),
  );
  await app.register(async (scope) => warehouseRoutes(scope, { db: deps.db, adminToken: deps.adminToken, ...statusContext }));
  await app.register(async (scope) => adminClientsRoutes(scope, { db: deps.db, adminToken: deps.adminToken }));
  await app.register(async (scope) => adminKeysRoutes(scope, { db: deps.db, adminToken: deps.adminToken, box: deps.oauth?.box }));
  await app.register(async (scope) => consoleRoutes(scope, { sessions }));
  await app.register(async (scope) =>
    readRoutes(scope, { db: deps.db, clock: deps.clock, defaultAlias: deps.defaultAlias, ...deps.readApi }),
  );
  return app;
}
