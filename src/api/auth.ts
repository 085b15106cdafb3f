import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../lib/errors.ts';
import { isConsoleRequest } from '../console/admission.ts';

/** Constant-time comparison of a bearer token against the expected one (hashed: equal lengths). */
export function tokenMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export function bearerToken(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  const m = h ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
  return m?.[1];
}

/**
 * A preHandler that admits only the operator token, or a console session (src/console/); the
 * operator API is off when no token is set.
 */
export function requireAdmin(adminToken: string | undefined) {
  return async (req: FastifyRequest) => {
    if (!adminToken) throw new AppError('NOT_FOUND', 'the operator API is disabled (set SFMIRROR_ADMIN_TOKEN)');
    if (isConsoleRequest(req)) return;
    const token = bearerToken(req);
    if (!token) throw new AppError('UNAUTHORIZED', 'missing Authorization: Bearer <SFMIRROR_ADMIN_TOKEN>');
    if (!tokenMatches(token, adminToken)) throw new AppError('UNAUTHORIZED', 'wrong operator token');
  };
}
