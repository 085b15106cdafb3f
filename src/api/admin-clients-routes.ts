import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@fastify/type-provider-typebox';
import type { Db } from '../db/database.ts';
import { AppError } from '../lib/errors.ts';
import { describeSpec, parseClientSpec } from './read/client-spec.ts';
import { addClient, listClients, revokeClient } from './read/clients.repository.ts';
import { requireAdmin } from './auth.ts';

/**
 * Operator API of read API clients (README, "Operator API"): what `sfmirror clients add|list|revoke`
 * does, without the CLI's database access. The token is in the answer of POST, once; only its hash is kept.
 */
const NAME = '^[A-Za-z0-9_.-]{1,100}$';
const ClientSchema = Type.Object({
  name: Type.String(),
  active: Type.Boolean(),
  description: Type.String({ description: 'objects, fields, filters, orgs and JWT settings in one line' }),
  spec: Type.Unknown({ description: 'the stored access rules' }),
  createdAt: Type.String(),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
});
const CreateBody = Type.Object(
  {
    name: Type.String({ pattern: NAME }),
    objects: Type.String({ maxLength: 4000, description: 'comma-separated object API names, e.g. "Account,Contact"' }),
    fields: Type.Optional(Type.String({ maxLength: 8000, description: 'comma-separated Field or Object.Field (default: all)' })),
    where: Type.Optional(Type.Array(Type.String({ maxLength: 500 }), { maxItems: 50, description: 'fixed row filters "Field=value"' })),
    org: Type.Optional(Type.String({ maxLength: 500, description: 'comma-separated org aliases, its own first' })),
    jwtIssuer: Type.Optional(Type.String({ maxLength: 500 })),
    jwtAudience: Type.Optional(Type.String({ maxLength: 500 })),
    jwtKeyPem: Type.Optional(Type.String({ maxLength: 20000 })),
    jwksUrl: Type.Optional(Type.String({ maxLength: 2000 })),
    jwtClaim: Type.Optional(Type.Array(Type.String({ maxLength: 200 }), { maxItems: 20, description: '"claim=Field"' })),
  },
  { additionalProperties: false },
);
const Created = Type.Object({ name: Type.String(), token: Type.String({ description: 'shown only now' }), description: Type.String() });
const NameParams = Type.Object({ name: Type.String({ pattern: NAME }) });

export async function adminClientsRoutes(app: FastifyInstance, deps: { db: Db; adminToken: string | undefined }) {
  const preHandler = requireAdmin(deps.adminToken);
  const tags = ['operator'];
  const security = [{ bearer: [] }];
  app.get(
    '/admin/clients',
    {
      preHandler,
      schema: { summary: 'Read API clients kept in the database', tags, security, response: { 200: Type.Array(ClientSchema) } },
    },
    async () =>
      (await listClients(deps.db)).map((c) => ({
        name: c.name,
        active: !c.revokedAt,
        description: describeSpec(c.spec),
        spec: c.spec.jwt?.publicKeyPem ? { ...c.spec, jwt: { ...c.spec.jwt, publicKeyPem: '(pem)' } } : c.spec,
        createdAt: c.createdAt.toISOString(),
        revokedAt: c.revokedAt?.toISOString() ?? null,
      })),
  );
  app.post<{ Body: Static<typeof CreateBody> }>(
    '/admin/clients',
    {
      preHandler,
      schema: {
        summary: 'Add a read API client; the answer holds its token, once',
        tags,
        security,
        body: CreateBody,
        response: { 201: Created },
      },
    },
    async (req, reply) => {
      const { name, ...options } = req.body;
      const { spec, problems } = parseClientSpec(options);
      if (!spec) throw new AppError('BAD_REQUEST', problems.join('; '), { details: problems });
      const token = await addClient(deps.db, name, spec);
      if (!token) throw new AppError('CONFLICT', `client ${name} exists; revoke it first to replace it`);
      return reply
        .status(201)
        .header('cache-control', 'no-store')
        .send({ name, token, description: describeSpec(spec) });
    },
  );
  app.delete<{ Params: Static<typeof NameParams> }>(
    '/admin/clients/:name',
    { preHandler, schema: { summary: 'Revoke a read API client (its token is refused from then on)', tags, security, params: NameParams } },
    async (req, reply) => {
      if (!(await revokeClient(deps.db, req.params.name))) throw new AppError('NOT_FOUND', `no active client named ${req.params.name}`);
      return reply.status(204).send();
    },
  );
}
