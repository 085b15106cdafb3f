import { Type } from '@fastify/type-provider-typebox';

/** Schemas of the operator API of the warehouse (src/api/warehouse-routes.ts); the routes' types come from them. */
export const RetryBody = Type.Object(
  { org: Type.Optional(Type.String({ maxLength: 40 })), object: Type.Optional(Type.String({ maxLength: 80 })) },
  { additionalProperties: false },
);

export const SwitchAnswer = Type.Object({
  enabled: Type.Boolean(),
  configuredHere: Type.Boolean({ description: 'this process has BigQuery configured and drains the outbox' }),
  warning: Type.Union([Type.String(), Type.Null()]),
});
