import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { decodeApexPush } from '../changes/apex-push.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../lib/errors.ts';
import type { Clock } from '../lib/clock.ts';
import type { Metrics } from '../lib/metrics.ts';
import type { Mirror } from '../mirror/apply.ts';
import { resolveSignedPushOrg } from '../mirror/orgs.repository.ts';
import type { OrgKeyCache, OrgKeys } from './org-keys.ts';
import { createLimiter } from '../lib/limiter.ts';
import { checkSignatureHeaders, createBodyVerifier, type HeaderCheck, type SigningKeys } from './signature.ts';
import { createUnverifiedBudget, readSignedBody, type SignedBody } from './signed-body.ts';
import { createGroupCommitter } from './group-commit.ts';
import { ApplyResponse, SignatureHeaders } from './routes.schema.ts';

/** Salesforce's callout limit is 6 MB (sync) / 12 MB (async); 16 MiB leaves room and bounds memory. */
export const MAX_PUSH_BYTES = 16 * 1024 * 1024;
/** Unverified body bytes held at once over all pushes (SFMIRROR_INGEST_UNVERIFIED_BYTES); at least one full push. */
export const DEFAULT_UNVERIFIED_BYTES = 32 * 1024 * 1024;
/** A push body must arrive within this (SFMIRROR_INGEST_BODY_TIMEOUT_MS); Apex sends it at once. */
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;

export interface IngestDeps {
  db: Db;
  mirror: Mirror;
  keys: SigningKeys;
  defaultAlias: string;
  objects?: readonly string[] | undefined;
  clock: Clock;
  metrics?: Metrics | undefined;
  /** Batches applied at once / waiting; beyond that a push gets 503 + Retry-After instead of a queue slot. */
  maxInflight: number;
  maxQueued: number;
  /** Signing keys that belong to single orgs (sfmirror.org_ingest_keys); none when absent. */
  orgKeys?: OrgKeyCache | undefined;
  /** Bound on body bytes read but not yet verified, over all pushes at once (README, "Security"). */
  maxUnverifiedBytes?: number | undefined;
  /** Time a push body may take to arrive. */
  bodyTimeoutMs?: number | undefined;
}

const NO_ORG_KEYS: OrgKeys = { keys: [], owners: new Set() };

/** `POST /ingest/apex` (README.md, "Pushing changes"): signed pushes from the org's Apex triggers. */
export async function ingestRoutes(scope: FastifyInstance, deps: IngestDeps): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  const limiter = createLimiter(deps.maxInflight, deps.maxQueued);
  const committer = createGroupCommitter(deps.mirror, { maxChanges: 2000, source: 'apex' });
  const count = (result: string) => deps.metrics?.pushes.inc({ result });

  // The signature covers the exact bytes: the body is hashed as it streams in (src/ingest/signed-body.ts)
  // and parsed only after it verified. The headers are checked first, before a byte of it is read.
  const budget = createUnverifiedBudget(Math.max(deps.maxUnverifiedBytes ?? DEFAULT_UNVERIFIED_BYTES, MAX_PUSH_BYTES));
  const pending = new WeakMap<FastifyRequest, { header: Extract<HeaderCheck, { ok: true }>; orgKeys: OrgKeys }>();
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', 'text/plain'], async (req: FastifyRequest, payload: NodeJS.ReadableStream) => {
    const p = pending.get(req);
    if (!p) throw new AppError('UNAUTHORIZED', 'missing signature headers');
    return readSignedBody(req.raw, payload, {
      verifier: createBodyVerifier(deps.keys, p.header, p.orgKeys.keys),
      budget,
      maxBytes: MAX_PUSH_BYTES,
      timeoutMs: deps.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
      // A key added a moment ago (sfmirror orgs keys add) is not in the cache yet.
      retry: deps.orgKeys
        ? async () => {
            const fresh = await deps.orgKeys!.reloadAfterMiss();
            if (!fresh) return undefined;
            p.orgKeys = fresh;
            return createBodyVerifier(deps.keys, p.header, fresh.keys);
          }
        : undefined,
    });
  });

  // Batches whose sender hung up still finish (or roll back) before the database closes.
  app.addHook('onClose', async () => {
    if (limiter.running) app.log.info({ running: limiter.running, waiting: limiter.waiting }, 'waiting for in-flight pushes');
    await limiter.idle();
  });

  if (!deps.keys.secrets.length && !deps.keys.publicKeys.length) {
    app.log.warn('no SFMIRROR_INGEST_SECRETS or SFMIRROR_INGEST_PUBLIC_KEYS: every push will be refused with 401');
  }

  app.post(
    '/ingest/apex',
    {
      schema: {
        summary: 'Receive a signed batch of changes from Apex triggers',
        tags: ['ingest'],
        headers: SignatureHeaders,
        response: { 200: ApplyResponse },
      },
      // Refuse unsigned, stale or oversized requests before reading their body.
      onRequest: async (req: FastifyRequest) => {
        const header = checkSignatureHeaders(
          header_(req, 'x-sfmirror-timestamp'),
          header_(req, 'x-sfmirror-signature'),
          deps.clock.now().getTime(),
        );
        if (!header.ok) {
          count('unauthorized');
          throw new AppError('UNAUTHORIZED', header.reason);
        }
        const declared = Number(req.headers['content-length'] ?? 0);
        if (declared > MAX_PUSH_BYTES) {
          count('invalid');
          throw new AppError('PAYLOAD_TOO_LARGE', `a push holds at most ${MAX_PUSH_BYTES} bytes (got ${declared}); split the batch`);
        }
        pending.set(req, { header, orgKeys: deps.orgKeys ? await deps.orgKeys.get() : NO_ORG_KEYS });
      },
    },
    async (req) => {
      // The body is what the content-type parser above made of it (no schema: it is verified as bytes first).
      const signed = req.body as SignedBody | undefined;
      const p = pending.get(req);
      if (!signed || !p) throw new AppError('BAD_REQUEST', 'body must be JSON (content-type application/json)');
      const raw = signed.body;
      const orgKeys = p.orgKeys;
      const verdict = signed.verdict;
      if (!verdict.ok) {
        count('unauthorized');
        throw new AppError('UNAUTHORIZED', verdict.reason);
      }
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch (e) {
        count('invalid');
        throw new AppError('BAD_REQUEST', `body is not valid JSON: ${(e as Error).message.slice(0, 200)}`);
      }
      const decoded = decodeApexPush(body, { objects: deps.objects, nowMs: deps.clock.now().getTime() });
      if (!decoded.ok) {
        count('invalid');
        throw new AppError(
          'BAD_REQUEST',
          `${decoded.errors.length} problem(s) in the push; nothing was written: ${decoded.errors.slice(0, 5).join('; ')}`,
          { details: decoded.errors },
        );
      }
      const { push } = decoded;
      const target = await resolveSignedPushOrg(deps.db, push.orgId, deps.defaultAlias, {
        owner: verdict.owner,
        ownersWithKeys: orgKeys.owners,
      });
      if ('refused' in target) {
        count('forbidden');
        throw new AppError('FORBIDDEN', target.refused);
      }
      const org = target.alias;
      const result = await limiter.run(() => committer.submit(org, push.changes, push.types));
      count('applied');
      req.log.info(
        {
          org,
          objects: [...new Set(push.changes.map((c) => c.object))],
          changes: push.changes.length,
          applied: result.applied,
          ignored: result.ignored,
          scheme: verdict.scheme,
        },
        'push applied',
      );
      return { applied: result.applied, ignored: result.ignored };
    },
  );
}

const header_ = (req: FastifyRequest, name: string) => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};
