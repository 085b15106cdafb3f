import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from '@fastify/type-provider-typebox';
import { AppError } from '../lib/errors.ts';
import { admitConsoleRequest, isConsoleRequest } from './admission.ts';
import { COOKIE, cookieValue, csrfMatches, csrfTokenOf, sessionCookie, type ConsoleSessions } from './sessions.ts';

/**
 * The operator console (README, "Console"): one page and its assets, served by `serve` itself from
 * src/console/assets (plain ES modules and CSS: no build step, nothing fetched from elsewhere), and
 * the session endpoints. The page drives the operator API (`/admin/...`) with the session cookie.
 */
const ASSETS: Record<string, string> = {
  'console.js': 'text/javascript; charset=utf-8',
  'render.js': 'text/javascript; charset=utf-8',
  'charts.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};
const assetDir = new URL('./assets/', import.meta.url);
const load = (name: string) => readFileSync(new URL(name, assetDir));

/** Scripts and styles come from this server only; no inline code, no framing. */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

const SignInBody = Type.Object({ token: Type.String({ minLength: 1, maxLength: 1000 }) });
const SessionAnswer = Type.Object({
  csrfToken: Type.String({ description: 'send as X-CSRF-Token on every state-changing request' }),
  expiresAt: Type.String(),
});

const ErrorAnswer = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
  code: Type.Optional(Type.String()),
});

const isSecure = (req: FastifyRequest) => req.protocol === 'https' || req.headers['x-forwarded-proto'] === 'https';
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** `Origin`, when the browser sends it, must be this server (a second line behind SameSite and the CSRF token). */
function sameOrigin(req: FastifyRequest): boolean {
  const origin = req.headers.origin;
  if (!origin) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

/**
 * The hook, added at the app's root, that admits console sessions to the operator API: a request
 * without an Authorization header whose cookie names a live session passes `requireAdmin`; a
 * state-changing one only with the session's CSRF token and a same-origin `Origin` (else 403).
 */
export function consoleSessionHook(sessions: ConsoleSessions | undefined) {
  return async (req: FastifyRequest) => {
    if (!sessions || req.headers.authorization) return;
    const url = req.url;
    const guarded =
      url.startsWith('/admin/') || url.startsWith('/oauth/authorize') || (url.startsWith('/console/session') && req.method === 'DELETE');
    if (!guarded) return;
    const id = cookieValue(req.headers.cookie, COOKIE);
    if (!id || !(await sessions.check(id))) return;
    if (UNSAFE.has(req.method)) {
      const given = req.headers['x-csrf-token'];
      if (!sameOrigin(req) || !csrfMatches(id, typeof given === 'string' ? given : undefined))
        throw new AppError(
          'CSRF',
          'a console request that changes something needs the X-CSRF-Token of its session (and a same-origin Origin)',
        );
    }
    admitConsoleRequest(req);
  };
}

export async function consoleRoutes(app: FastifyInstance, deps: { sessions: ConsoleSessions | undefined }) {
  const { sessions } = deps;
  // The sign-in form posts application/x-www-form-urlencoded (this plugin's scope only).
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  const page = load('index.html');
  const hide = { hide: true };
  const sendPage = async (_req: FastifyRequest, reply: FastifyReply) =>
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store')
      .send(page);
  app.get('/console', { schema: hide }, sendPage);
  app.get('/console/', { schema: hide }, sendPage);
  const assets = new Map(Object.entries(ASSETS).map(([name, type]) => [name, { type, body: load(name) }]));
  app.get<{ Params: { file: string } }>('/console/assets/:file', { schema: hide }, async (req, reply) => {
    const a = assets.get(req.params.file);
    if (!a) throw new AppError('NOT_FOUND', 'no such console asset');
    return reply
      .header('content-type', a.type)
      .header('x-content-type-options', 'nosniff')
      .header('cache-control', 'no-cache')
      .send(a.body);
  });

  const tags = ['console'];
  app.get(
    '/console/session',
    {
      schema: {
        summary: "The console session of this browser's cookie, with its CSRF token (401 without one)",
        tags,
        response: { 200: SessionAnswer, 401: ErrorAnswer },
      },
    },
    async (req, reply) => {
      const id = cookieValue(req.headers.cookie, COOKIE);
      const expiresAt = sessions && id ? await sessions.check(id) : undefined;
      reply.header('cache-control', 'no-store');
      if (!id || !expiresAt) throw new AppError('UNAUTHORIZED', 'not signed in');
      return { csrfToken: csrfTokenOf(id), expiresAt: expiresAt.toISOString() };
    },
  );
  app.post<{ Body: Static<typeof SignInBody> }>(
    '/console/session',
    {
      schema: {
        summary: 'Sign in to the console with the admin token (form token= or JSON { token }): sets the session cookie',
        tags,
        body: SignInBody,
        response: { 200: SessionAnswer, 401: ErrorAnswer, 403: ErrorAnswer, 404: ErrorAnswer },
      },
    },
    async (req, reply) => {
      if (!sessions) throw new AppError('NOT_FOUND', 'the operator API is disabled (set SFMIRROR_ADMIN_TOKEN)');
      if (!sameOrigin(req)) throw new AppError('CSRF', 'cross-origin sign-in refused');
      const s = await sessions.signIn(req.body.token);
      if (!s) throw new AppError('UNAUTHORIZED', 'wrong admin token');
      reply.header('set-cookie', sessionCookie(s.id, sessions.ttlSeconds, isSecure(req))).header('cache-control', 'no-store');
      // A form posted without the page's script: back to the console.
      if (req.headers['content-type']?.startsWith('application/x-www-form-urlencoded')) return reply.redirect('/console', 303);
      return { csrfToken: csrfTokenOf(s.id), expiresAt: s.expiresAt.toISOString() };
    },
  );
  app.delete('/console/session', { schema: { summary: 'Sign out: ends the session and clears its cookie', tags } }, async (req, reply) => {
    const id = cookieValue(req.headers.cookie, COOKIE);
    if (id && sessions) {
      // Only a request the hook admitted (it carried the CSRF token) may end the session.
      const live = await sessions.check(id);
      if (live && !isConsoleRequest(req)) throw new AppError('CSRF', 'sign-out needs the X-CSRF-Token of its session');
      await sessions.revoke(id);
    }
    return reply
      .header('set-cookie', sessionCookie('', 0, isSecure(req)))
      .status(204)
      .send();
  });
}
