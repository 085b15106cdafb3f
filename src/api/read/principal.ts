import { createHash, createPublicKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { Db } from '../../db/database.ts';
import type { Clock } from '../../lib/clock.ts';
import { AppError } from '../../lib/errors.ts';
import { bearerToken } from '../auth.ts';
import type { ClientSpec, JwtSpec, RowFilter } from './client-spec.ts';
import { findClientByTokenHash } from './clients.repository.ts';
import { createRateLimiter } from './rate-limit.ts';

/**
 * Who is asking: a read API client (its token, from SFMIRROR_API_TOKENS or `sfmirror clients`), and
 * for clients that accept end-user JWTs, the user (header `X-User-Token`, verified with jose against
 * the client's key or JWKS URL). The user's claims become row filters next to the client's fixed ones.
 */
export interface Principal {
  readonly client: string;
  readonly spec: ClientSpec;
  /** Every row the principal reads must match all of these (fixed `--where` and JWT claims). */
  readonly rowFilters: readonly RowFilter[];
  /** Rate-limit bucket: per client, and per end user for JWT clients. */
  readonly rateKey: string;
}

export interface AuthenticatorOptions {
  db: Db;
  clock: Clock;
  /** Clients from SFMIRROR_API_TOKENS: every object, field and org, no row policy. */
  envTokens?: ReadonlyArray<{ name: string; token: string }> | undefined;
  /** How long a database client lookup is reused (a revoke takes effect within this). */
  cacheMs?: number | undefined;
  /**
   * Unknown tokens per second per remote address (burst 4x): beyond that, the address gets 429
   * without a database lookup until its allowance refills, so guessing tokens costs no query each. 0: no limit.
   */
  unknownTokenRate?: number | undefined;
}

/** The JWS algorithms a key may verify: never HS* with a public key (algorithm confusion). */
function algorithmsFor(key: KeyObject | undefined): string[] {
  const rsa = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
  const ec = ['ES256', 'ES384', 'ES512'];
  if (!key) return [...rsa, ...ec, 'EdDSA'];
  if (key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') return rsa;
  if (key.asymmetricKeyType === 'ec') return ec;
  return ['EdDSA'];
}

export const USER_TOKEN_HEADER = 'x-user-token';
const ENV_SPEC: ClientSpec = { objects: '*', orgs: '*' };
const MAX_CACHED = 10_000;
const sha256 = (s: string) => createHash('sha256').update(s).digest();

export function createAuthenticator(opts: AuthenticatorOptions) {
  const env = (opts.envTokens ?? []).map((t) => ({ name: t.name, hash: sha256(t.token) }));
  const cacheMs = opts.cacheMs ?? 2000;
  const cache = new Map<string, { at: number; client: { name: string; spec: ClientSpec } | undefined }>();
  const keys = new Map<string, KeyObject | ReturnType<typeof createRemoteJWKSet>>();
  const rate = opts.unknownTokenRate ?? 5;
  const failures = createRateLimiter({ rate, burst: rate * 4, clock: opts.clock });
  const blockedUntil = new Map<string, number>();

  async function client(token: string, from: string): Promise<{ name: string; spec: ClientSpec } | undefined> {
    const hash = sha256(token);
    // Every env token is compared, in constant time, whatever matches.
    let fromEnv: string | undefined;
    for (const e of env) if (timingSafeEqual(hash, e.hash) && fromEnv === undefined) fromEnv = e.name;
    if (fromEnv !== undefined) return { name: fromEnv, spec: ENV_SPEC };
    const hex = hash.toString('hex');
    const now = opts.clock.now().getTime();
    const hit = cache.get(hex);
    if (hit && now - hit.at < cacheMs) return hit.client;
    const until = blockedUntil.get(from);
    if (until !== undefined && until > now)
      throw new AppError('RATE_LIMITED', `too many unknown tokens from this address; retry in ${Math.ceil((until - now) / 1000)} s`);
    blockedUntil.delete(from);
    const stored = await findClientByTokenHash(opts.db, hex);
    if (cache.size >= MAX_CACHED) cache.clear();
    const found = stored && { name: stored.name, spec: stored.spec };
    if (!found) {
      // Unknown tokens spend the address's allowance; once spent, no lookup until it refills.
      const v = failures.take(from);
      if (!v.ok) {
        if (blockedUntil.size >= MAX_CACHED) blockedUntil.clear();
        blockedUntil.set(from, now + v.retryAfterSeconds * 1000);
      }
    }
    if (cacheMs > 0) cache.set(hex, { at: now, client: found });
    return found;
  }

  function keyFor(name: string, jwt: JwtSpec) {
    const k = `${name}\u0000${jwt.jwksUrl ?? jwt.publicKeyPem}`;
    let key = keys.get(k);
    if (!key) {
      key = jwt.jwksUrl ? createRemoteJWKSet(new URL(jwt.jwksUrl)) : createPublicKey(jwt.publicKeyPem!);
      keys.set(k, key);
    }
    return key;
  }

  async function verifyUser(name: string, jwt: JwtSpec, token: string | undefined): Promise<JWTPayload> {
    if (!token) throw new AppError('UNAUTHORIZED', `client ${name} needs the end user's token in the X-User-Token header`);
    const key = keyFor(name, jwt);
    const options = {
      algorithms: algorithmsFor(typeof key === 'function' ? undefined : key),
      issuer: jwt.issuer,
      audience: jwt.audience,
      requiredClaims: ['exp'],
      currentDate: opts.clock.now(),
      clockTolerance: 30,
    };
    try {
      // Two calls only for the type checker: jwtVerify's overloads take a key or a key set.
      const { payload } = typeof key === 'function' ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options);
      return payload;
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) throw new AppError('UNAUTHORIZED', 'user token expired');
      // The key set could not be fetched (timeout, network, a non-200 answer: a plain JOSEError):
      // the user's token may be fine, so it is the service that is unavailable, not the user refused.
      // Only a key SET can be unreachable; with a fixed key every failure is the token's.
      const unreachable =
        typeof key === 'function' &&
        (e instanceof joseErrors.JWKSTimeout ||
          e instanceof joseErrors.JWKSInvalid ||
          !(e instanceof joseErrors.JOSEError) ||
          e.constructor === joseErrors.JOSEError);
      if (unreachable) {
        throw new AppError('UNAVAILABLE', 'cannot fetch the signing keys of user tokens (JWKS); retry later', { cause: e });
      }
      throw new AppError('UNAUTHORIZED', `user token refused: ${(e as Error).message}`);
    }
  }

  return {
    async authenticate(req: FastifyRequest): Promise<Principal> {
      const token = bearerToken(req);
      if (!token) throw new AppError('UNAUTHORIZED', 'missing Authorization: Bearer <client token>');
      const c = await client(token, req.ip);
      if (!c) throw new AppError('UNAUTHORIZED', 'unknown or revoked client token');
      const rowFilters: RowFilter[] = [...(c.spec.where ?? [])];
      let rateKey = c.name;
      if (c.spec.jwt) {
        const header = req.headers[USER_TOKEN_HEADER];
        const payload = await verifyUser(c.name, c.spec.jwt, typeof header === 'string' ? header : undefined);
        for (const m of c.spec.jwt.claims) {
          const v = payload[m.claim];
          if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
            throw new AppError('FORBIDDEN', `user token has no usable claim ${m.claim}`);
          rowFilters.push({ ...(m.object ? { object: m.object } : {}), field: m.field, value: String(v) });
        }
        rateKey = `${c.name}\u0000${payload.sub ?? JSON.stringify(rowFilters)}`;
      }
      return { client: c.name, spec: c.spec, rowFilters, rateKey };
    },
  };
}
