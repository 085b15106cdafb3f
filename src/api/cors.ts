import type { FastifyInstance } from 'fastify';
import { AppError } from '../lib/errors.ts';

/**
 * CORS for the read API (`/api/v1/...`) only, for the origins in SFMIRROR_API_CORS_ORIGINS; off
 * (no CORS header at all) when none is configured. A browser app authenticates with a bearer token
 * (and `X-User-Token`), never cookies, so no credentials mode is offered. The preflight is answered
 * here, before the read API's authentication, which a preflight cannot pass (it carries no token).
 */
const READ_API = /^\/api\/v1(\/|\?|$)/;
const ALLOWED_HEADERS = 'authorization, x-user-token, if-none-match, x-request-id';
const EXPOSED_HEADERS = 'etag, retry-after, x-request-id';

export function installCors(app: FastifyInstance, origins: readonly string[]): void {
  if (!origins.length) return;
  const any = origins.includes('*');
  const allowed = (origin: string | undefined) => (origin && (any || origins.includes(origin)) ? origin : undefined);
  app.addHook('onRequest', async (req, reply) => {
    if (!READ_API.test(req.url)) return;
    const origin = allowed(req.headers.origin);
    reply.header('vary', 'Origin');
    if (!origin) return;
    reply.header('access-control-allow-origin', any ? '*' : origin);
    reply.header('access-control-expose-headers', EXPOSED_HEADERS);
  });
  app.options('/api/v1/*', { schema: { hide: true } }, async (req, reply) => {
    const origin = allowed(req.headers.origin);
    if (!origin) throw new AppError('FORBIDDEN', `origin: ${req.headers.origin ?? 'none'} is not allowed (SFMIRROR_API_CORS_ORIGINS)`);
    return reply
      .status(204)
      .header('access-control-allow-methods', 'GET, OPTIONS')
      .header('access-control-allow-headers', ALLOWED_HEADERS)
      .header('access-control-max-age', '600')
      .send();
  });
}
