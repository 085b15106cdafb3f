import { Type } from '@fastify/type-provider-typebox';

/** Schemas of the operator API of backfill jobs (src/api/backfill-routes.ts); the routes' types come from them. */
export const JobSchema = Type.Object({
  id: Type.Integer(),
  org: Type.String(),
  object: Type.String(),
  startDate: Type.String(),
  lastDate: Type.String(),
  active: Type.Boolean(),
  state: Type.String(),
  reason: Type.Union([Type.String(), Type.Null()]),
  rowsImported: Type.Integer(),
  leaseOwner: Type.Union([Type.String(), Type.Null()]),
  lastRunAt: Type.Union([Type.String(), Type.Null()]),
});
export const JobList = Type.Array(JobSchema);
export const CreateBody = Type.Object(
  { object: Type.String({ maxLength: 80 }), startDate: Type.String({ maxLength: 10 }), org: Type.Optional(Type.String({ maxLength: 40 })) },
  { additionalProperties: false },
);
export const ResyncBody = Type.Object(
  { object: Type.String({ maxLength: 80 }), org: Type.Optional(Type.String({ maxLength: 40 })) },
  { additionalProperties: false },
);
export const ResyncAnswer = Type.Object({ queued: Type.Boolean({ description: 'false: a resync of this object is already open' }) });
export const IdParams = Type.Object({ id: Type.String({ pattern: '^[0-9]{1,15}$' }) });
