import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from '@fastify/type-provider-typebox';
import { decodeApexPush } from '../changes/apex-push.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../lib/errors.ts';
import type { Clock } from '../lib/clock.ts';
import type { Metrics } from '../lib/metrics.ts';
import type { Mirror } from '../mirror/apply.ts';
import { resolveSignedPushOrg } from '../mirror/orgs.repository.ts';
import type { OrgKeyCache, OrgKeys } from './org-keys.ts';
import { createLimiter } from '../lib/limiter.ts';
import { verifySignature, type SigningKeys } from './signature.ts';
import { createGroupCommitter } from './group-commit.ts';

/** Salesforce's callout limit is 6 MB (sync) / 12 MB (async); 16 MiB leaves room and bounds memory. */
export const MAX_PUSH_BYTES = 16 * 1024 * 1024;

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
}

const NO_ORG_KEYS: OrgKeys = { keys: [], owners: new Set() };

const ApplyResponse = Type.Object({ applied: Type.Integer(), ignored: Type.Integer() });

/** `POST /ingest/apex` (README.md, "Pushing changes"): signed pushes from the org's Apex triggers. */
export async function ingestRoutes(app: FastifyInstance, deps: IngestDeps): Promise<void> {
  const limiter = createLimiter(deps.maxInflight, deps.maxQueued);
  const committer = createGroupCommitter(deps.mirror, { maxChanges: 5000, source: 'apex' });
  const count = (result: string) => deps.metrics?.pushes.inc({ result });

  // The signature covers the exact bytes: keep the raw body, parse it ourselves after verifying.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', 'text/plain'], { parseAs: 'buffer', bodyLimit: MAX_PUSH_BYTES }, (_req, body, done) =>
    done(null, body),
  );

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
        headers: Type.Object({
          'x-sfmirror-timestamp': Type.Optional(Type.String()),
          'x-sfmirror-signature': Type.Optional(Type.String()),
        }),
        response: { 200: ApplyResponse },
      },
      // Refuse unsigned requests before reading their body.
      onRequest: async (req: FastifyRequest) => {
        if (!req.headers['x-sfmirror-timestamp'] || !req.headers['x-sfmirror-signature']) {
          count('unauthorized');
          throw new AppError(
            'UNAUTHORIZED',
            `missing ${req.headers['x-sfmirror-timestamp'] ? 'X-Sfmirror-Signature' : 'X-Sfmirror-Timestamp'} header`,
          );
        }
      },
    },
    async (req) => {
      const raw = req.body as Buffer;
      if (!Buffer.isBuffer(raw)) throw new AppError('BAD_REQUEST', 'body must be JSON');
      const verify = (k: OrgKeys) =>
        verifySignature(
          deps.keys,
          header(req, 'x-sfmirror-timestamp'),
          header(req, 'x-sfmirror-signature'),
          raw,
          deps.clock.now().getTime(),
          k.keys,
        );
      let orgKeys = deps.orgKeys ? await deps.orgKeys.get() : NO_ORG_KEYS;
      let verdict = verify(orgKeys);
      if (!verdict.ok && deps.orgKeys) {
        // A key added a moment ago (sfmirror orgs keys add) is not in the cache yet.
        const fresh = await deps.orgKeys.reloadAfterMiss();
        if (fresh) {
          orgKeys = fresh;
          verdict = verify(orgKeys);
        }
      }
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
      const decoded = decodeApexPush(body, { objects: deps.objects });
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

const header = (req: FastifyRequest, name: string) => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};
