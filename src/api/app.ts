import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import sensible from '@fastify/sensible';
import swagger from '@fastify/swagger';
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
import { readStatus } from './status.ts';
import { AppError } from '../lib/errors.ts';
import { oauthRoutes, type OAuthDeps } from './oauth-routes.ts';

/**
 * The HTTP surface (INTERFACE.md, "HTTP"): ingest, operator API, health, metrics, OpenAPI.
 * Built from dependencies passed in (src/bin wires them), so tests build it the same way.
 */
export interface AppDeps extends IngestDeps {
  log: Logger;
  pool: PoolCounts;
  metrics: Metrics;
  adminToken?: string | undefined;
  /** Read API for the mobile app: env tokens, rate limit (src/api/read/). */
  readApi?: ReadApiOptions | undefined;
  /** Connecting orgs by OAuth (src/api/oauth-routes.ts); the routes answer 409 naming what is missing when absent. */
  oauth?: Omit<OAuthDeps, 'db' | 'clock' | 'adminToken'> | undefined;
}

export async function createApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    requestIdHeader: 'x-request-id',
    bodyLimit: 1024 * 1024,
    // Keep handlers from waiting forever on a stuck client; Salesforce's callout timeout is 120 s.
    requestTimeout: 120_000,
    return503OnClosing: true,
    keepAliveTimeout: 10_000,
  });
  installErrorHandler(app);
  // Graceful shutdown: answers sent while closing end their keep-alive connection, so close() does
  // not wait out the keep-alive timeout of a client that just got its answer.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_req, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  await app.register(sensible);
  await app.register(swagger, {
    openapi: {
      info: { title: 'sfmirror', version: '0.1.0', description: 'Live mirror of a Salesforce org in PostgreSQL and BigQuery' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });

  trackPool(deps.metrics, deps.pool);

  app.get('/healthz', { schema: { summary: 'The process is up', tags: ['health'] } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { summary: 'The database is reachable and migrated', tags: ['health'] } }, async (_req, reply) => {
    try {
      await pingDatabase(deps.db);
      const pending = await pendingMigrations(deps.db);
      if (pending.length) return reply.status(503).send({ status: 'migrating', pending });
      return { status: 'ready' };
    } catch (e) {
      return reply.status(503).send({ status: 'database unavailable', message: (e as Error).message });
    }
  });
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['health'] } }, async (_req, reply) => {
    reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
  app.get<{ Querystring: { org?: string } }>(
    '/admin/status',
    {
      preHandler: requireAdmin(deps.adminToken),
      schema: {
        summary: 'Per org and object: rows, last change, connection, checkpoints, outbox, type problems',
        tags: ['operator'],
        security: [{ bearer: [] }],
        querystring: {
          type: 'object',
          properties: { org: { type: 'string', maxLength: 40, description: 'only this org' } },
          additionalProperties: false,
        },
      },
    },
    async (req) => {
      const status = await readStatus(deps.db, req.query.org);
      if (req.query.org && !status.orgs.length) throw new AppError('NOT_FOUND', `org: no org named ${req.query.org}`);
      return status;
    },
  );
  app.get('/docs', { schema: { hide: true } }, async () => app.swagger());

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
  await app.register(async (scope) => warehouseRoutes(scope, { db: deps.db, adminToken: deps.adminToken }));
  await app.register(async (scope) =>
    readRoutes(scope, { db: deps.db, clock: deps.clock, defaultAlias: deps.defaultAlias, ...deps.readApi }),
  );
  return app;
}
