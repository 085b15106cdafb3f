import { createPublicKey } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { isValidAlias } from '../changes/names.ts';
import type { Db } from '../db/database.ts';
import { addOrgHmacKey } from '../ingest/org-keys.ts';
import { AppError } from '../lib/errors.ts';
import type { SecretBox } from '../lib/secret-box.ts';
import { addOrgKey, listOrgKeys, revokeOrgKey } from '../mirror/org-connections.repository.ts';
import { requireAdmin } from './auth.ts';
import { AliasParams, CreateBody, Created, KeyList, KeyParams } from './admin-keys-routes.schema.ts';

/**
 * Operator API of an org's own signing keys (README, "Operator API"), as `sfmirror orgs keys`:
 * a push signed with one may only write that org. An HMAC key's secret is in the answer, once.
 */
export async function adminKeysRoutes(
  scope: FastifyInstance,
  deps: { db: Db; adminToken: string | undefined; box: SecretBox | undefined },
) {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  const preHandler = requireAdmin(deps.adminToken);
  const tags = ['operator'];
  const security = [{ bearer: [] }];
  const alias = (a: string) => {
    if (!isValidAlias(a)) throw new AppError('BAD_REQUEST', `"${a}" is not an org alias`);
    return a;
  };
  app.get(
    '/admin/orgs/:alias/keys',
    {
      preHandler,
      schema: {
        summary: "An org's own signing keys in use",
        tags,
        security,
        params: AliasParams,
        response: { 200: KeyList },
      },
    },
    async (req) =>
      (await listOrgKeys(deps.db, alias(req.params.alias))).map((k) => ({
        id: k.id,
        org: k.alias,
        kind: k.kind,
        label: k.label,
        createdAt: k.createdAt.toISOString(),
      })),
  );
  app.post(
    '/admin/orgs/:alias/keys',
    {
      preHandler,
      schema: {
        summary: 'Add a signing key to an org: an RSA public key, or a new HMAC secret (in the answer, once)',
        tags,
        security,
        params: AliasParams,
        body: CreateBody,
        response: { 201: Created },
      },
    },
    async (req, reply) => {
      const org = alias(req.params.alias);
      const { publicKey, label } = req.body ?? {};
      reply.status(201).header('cache-control', 'no-store');
      if (publicKey !== undefined) {
        try {
          createPublicKey(publicKey);
        } catch (e) {
          throw new AppError('BAD_REQUEST', `publicKey: not a PEM public key or certificate (${(e as Error).message})`);
        }
        return { id: await addOrgKey(deps.db, { alias: org, kind: 'rsa', publicKey, label }), org, kind: 'rsa' };
      }
      if (!deps.box)
        throw new AppError('NOT_CONFIGURED', 'HMAC keys are stored encrypted: set SFMIRROR_ENCRYPTION_KEY (or give publicKey)');
      const { id, secret } = await addOrgHmacKey(deps.db, deps.box, org, label);
      return { id, org, kind: 'hmac', secret };
    },
  );
  app.delete(
    '/admin/orgs/:alias/keys/:id',
    { preHandler, schema: { summary: "Revoke one of an org's signing keys", tags, security, params: KeyParams } },
    async (req, reply) => {
      if (!(await revokeOrgKey(deps.db, alias(req.params.alias), Number(req.params.id))))
        throw new AppError('NOT_FOUND', `org ${req.params.alias} has no key ${req.params.id} in use`);
      return reply.status(204).send();
    },
  );
}
