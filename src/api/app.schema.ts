import { Type } from '@fastify/type-provider-typebox';

/**
 * Schemas of the routes src/api/app.ts declares itself (health, metrics, status); the status
 * document's own schema is src/api/status-schema.ts.
 */
export const StatusQuery = Type.Object(
  { org: Type.Optional(Type.String({ maxLength: 40, description: 'only this org' })) },
  { additionalProperties: false },
);
