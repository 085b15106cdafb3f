import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../db/database.ts';
import { AppError } from '../lib/errors.ts';
import { describeSpec, parseClientSpec } from './read/client-spec.ts';
import { addClient, listClients, revokeClient } from './read/clients.repository.ts';
import { requireAdmin } from './auth.ts';
import { ClientList, CreateBody, Created, NameParams } from './admin-clients-routes.schema.ts';

/**
 * Operator API of read API clients (README, "Operator API"): what `sfmirror clients add|list|revoke`
 * does, without the CLI's database access. The token is in the answer of POST, once; only its hash is kept.
 */
export async function adminClientsRoutes(scope: FastifyInstance, deps: { db: Db; adminToken: string | undefined }) {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  const preHandler = requireAdmin(deps.adminToken);
  const tags = ['operator'];
  const security = [{ bearer: [] }];
  app.get(
    '/admin/clients',
    {
      preHandler,
      schema: { summary: 'Read API clients kept in the database', tags, security, response: { 200: ClientList } },
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
  app.post(
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
  app.delete(
    '/admin/clients/:name',
    { preHandler, schema: { summary: 'Revoke a read API client (its token is refused from then on)', tags, security, params: NameParams } },
    async (req, reply) => {
      if (!(await revokeClient(deps.db, req.params.name))) throw new AppError('NOT_FOUND', `no active client named ${req.params.name}`);
      return reply.status(204).send();
    },
  );
}
