import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/database.ts';
import { insertSession, liveSession, revokeSession } from './sessions.repository.ts';

/**
 * Sessions of the operator console (README, "Console"). Signing in with the admin token makes a
 * random session id that lives only in an HttpOnly, SameSite=Strict cookie; the database keeps its
 * hash, its expiry and the fingerprint of the admin token (rotating the token ends every session).
 *
 * CSRF: SameSite=Strict already keeps the cookie off cross-site requests; on top of that, every
 * state-changing request made with the cookie must carry `X-CSRF-Token`, a value derived from the
 * session id that only the page can learn (from `GET /console/session`, which a cross-site page
 * cannot read), and an `Origin`, when sent, must be this server's.
 */
export const COOKIE = 'sfmirror_console';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const tokenPrint = (adminToken: string) => sha256(`sfmirror-console:${adminToken}`);

export function csrfTokenOf(sessionId: string): string {
  return createHmac('sha256', sessionId).update('sfmirror-console-csrf').digest('base64url');
}

export function csrfMatches(sessionId: string, given: string | undefined): boolean {
  if (!given) return false;
  const a = Buffer.from(csrfTokenOf(sessionId));
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface ConsoleSessions {
  /** A new session when `token` is the admin token, else undefined. */
  signIn(token: string): Promise<{ id: string; expiresAt: Date } | undefined>;
  /** The expiry of a live session, else undefined. */
  check(id: string | undefined): Promise<Date | undefined>;
  revoke(id: string): Promise<void>;
  readonly ttlSeconds: number;
}

export function createConsoleSessions(o: { db: Db; adminToken: string; ttlSeconds: number }): ConsoleSessions {
  const print = tokenPrint(o.adminToken);
  return {
    ttlSeconds: o.ttlSeconds,
    async signIn(token) {
      const a = createHash('sha256').update(token).digest();
      const b = createHash('sha256').update(o.adminToken).digest();
      if (!timingSafeEqual(a, b)) return undefined;
      const id = randomBytes(32).toString('base64url');
      const expiresAt = new Date(Date.now() + o.ttlSeconds * 1000);
      await insertSession(o.db, sha256(id), print, expiresAt);
      return { id, expiresAt };
    },
    async check(id) {
      if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
      return liveSession(o.db, sha256(id), print);
    },
    async revoke(id) {
      await revokeSession(o.db, sha256(id));
    },
  };
}

/** The value of one cookie from a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** The Set-Cookie value of a session (or of its removal, with `maxAge` 0). */
export function sessionCookie(value: string, maxAgeSeconds: number, secure: boolean): string {
  return [`${COOKIE}=${value}`, 'Path=/', `Max-Age=${maxAgeSeconds}`, 'HttpOnly', 'SameSite=Strict', ...(secure ? ['Secure'] : [])].join(
    '; ',
  );
}
