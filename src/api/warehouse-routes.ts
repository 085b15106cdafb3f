import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { isValidAlias, isValidSobjectName } from '../changes/names.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../lib/errors.ts';
import { listDeadLetters, retryDeadLetters, setWarehouseEnabled } from '../warehouse/warehouse.repository.ts';
import { warehouseWarning } from './status.ts';
import { requireAdmin } from './auth.ts';
import { RetryBody, SwitchAnswer } from './warehouse-routes.schema.ts';

/** Operator API of the warehouse's dead letters: list them, put them back into the outbox. */
export async function warehouseRoutes(
  scope: FastifyInstance,
  deps: { db: Db; adminToken: string | undefined; bigqueryConfigured: boolean; envApiAlias: string | undefined },
) {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  const preHandler = requireAdmin(deps.adminToken);
  const tags = ['operator'];
  const security = [{ bearer: [] }];
  app.get(
    '/admin/warehouse/dead-letters',
    { preHandler, schema: { summary: 'Changes BigQuery refused, newest first (at most 500)', tags, security } },
    async () => ({ deadLetters: await listDeadLetters(deps.db, 500) }),
  );
  app.post(
    '/admin/warehouse/dead-letters/retry',
    {
      preHandler,
      schema: {
        summary: 'Put dead letters (of an org, of an object) back into the outbox under their own change ids',
        tags,
        security,
        body: RetryBody,
      },
    },
    async (req) => {
      const { org, object } = req.body ?? {};
      if (org !== undefined && !isValidAlias(org)) throw new AppError('BAD_REQUEST', `org: "${org}" is not an org alias`);
      if (object !== undefined && !isValidSobjectName(object))
        throw new AppError('BAD_REQUEST', `object: "${object}" is not a Salesforce object API name`);
      return { requeued: await retryDeadLetters(deps.db, { org, object }) };
    },
  );
  for (const action of ['enable', 'disable'] as const) {
    app.post(
      `/admin/warehouse/${action}`,
      {
        preHandler,
        schema: {
          summary:
            action === 'enable'
              ? 'Queue changes for BigQuery again (recorded in the database: every writer follows)'
              : 'Stop queueing changes for BigQuery; what is queued stays and is still sent',
          tags,
          security,
          response: { 200: SwitchAnswer },
        },
      },
      async () => {
        const s = await setWarehouseEnabled(deps.db, action === 'enable', 'operator');
        return { enabled: s.enabled, configuredHere: deps.bigqueryConfigured, warning: warehouseWarning(s.enabled, deps) };
      },
    );
  }
}
