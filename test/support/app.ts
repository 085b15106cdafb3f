import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { createApp, type AppDeps } from '../../src/api/app.ts';
import { signHmac } from '../../src/ingest/signature.ts';
import { systemClock } from '../../src/lib/clock.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { createMetrics } from '../../src/lib/metrics.ts';
import { createMirror } from '../../src/mirror/apply.ts';
import { ensureOrgAlias } from '../../src/mirror/orgs.repository.ts';
import { createSchemaManager } from '../../src/mirror/schema.ts';
import type { TestDatabase } from './pg.ts';

export const SECRET = 'test-secret-0123456789';
export const ADMIN_TOKEN = 'admin-token-0123456789';
export const ORG_ID = '00D000000000001EAA';

let rsa: { privateKey: KeyObject; publicKey: KeyObject } | undefined;
export const rsaKeys = () => (rsa ??= generateKeyPairSync('rsa', { modulusLength: 2048 }));

/** The app as `serve` builds it, on a test database, with overridable dependencies. */
export async function buildTestApp(tdb: TestDatabase, overrides: Partial<AppDeps> = {}): Promise<FastifyInstance & { deps: AppDeps }> {
  const { db, pool } = tdb.handle;
  await ensureOrgAlias(db, 'salesforce');
  const metrics = createMetrics();
  const log = createLogger((process.env.TEST_LOG_LEVEL as 'info') ?? 'silent');
  const deps: AppDeps = {
    db,
    pool,
    log,
    metrics,
    mirror: createMirror({ db, schema: createSchemaManager(db), metrics }),
    keys: { secrets: [SECRET], publicKeys: [rsaKeys().publicKey] },
    adminToken: ADMIN_TOKEN,
    defaultAlias: 'salesforce',
    clock: systemClock,
    maxInflight: 8,
    maxQueued: 32,
    ...overrides,
  };
  const app = await createApp(deps);
  return Object.assign(app, { deps });
}

export const now = () => Math.floor(Date.now() / 1000);

/** Headers of an HMAC-signed push. */
export function hmacHeaders(body: string | Buffer, opts: { secret?: string; ts?: number } = {}) {
  const ts = opts.ts ?? now();
  return {
    'content-type': 'application/json',
    'x-sfmirror-timestamp': String(ts),
    'x-sfmirror-signature': signHmac(opts.secret ?? SECRET, ts, body),
  };
}

/** Headers of an RSA-signed push, as Apex's Crypto.signWithCertificate('RSA-SHA256', ...) makes it. */
export function rsaHeaders(body: string, opts: { key?: KeyObject; ts?: number } = {}) {
  const ts = opts.ts ?? now();
  const sig = sign('sha256', Buffer.from(`${ts}.${body}`), opts.key ?? rsaKeys().privateKey).toString('base64');
  return { 'content-type': 'application/json', 'x-sfmirror-timestamp': String(ts), 'x-sfmirror-signature': `rsa-sha256=${sig}` };
}

export function pushBody(changes: unknown[], orgId = ORG_ID, types?: unknown): string {
  return JSON.stringify({ orgId, changes, ...(types ? { types } : {}) });
}

export const acct = (n: number) => `001${String(n).padStart(12, '0')}`;
export const rec = (n: number, stampMs: number, fields: Record<string, unknown> = {}) => ({
  Id: acct(n),
  SystemModstamp: new Date(stampMs).toISOString(),
  ...fields,
});
