import { Type } from '@fastify/type-provider-typebox';
import { USER_TOKEN_HEADER } from './principal.ts';

/**
 * Schemas of the read API (src/api/read/routes.ts); the routes' types come from them. The shapes of
 * a record and of a change are also named components of the OpenAPI document (src/api/openapi.ts).
 */
export const RecordSchema = Type.Object({}, { additionalProperties: true, description: 'The record: Salesforce field API names as keys' });
export const Problem = Type.Object(
  { statusCode: Type.Integer(), error: Type.String(), message: Type.String(), code: Type.Optional(Type.String()) },
  { additionalProperties: true },
);
export const UserTokenHeaders = Type.Object({
  [USER_TOKEN_HEADER]: Type.Optional(Type.String({ description: "The end user's JWT, for clients with a JWT row policy" })),
});

export const ListParams = Type.Object({ object: Type.String({ maxLength: 100 }) });
/** Other query parameters, named like fields of the object, are equality filters: the schema lets them through. */
export const ListQuery = Type.Object({
  fields: Type.Optional(Type.String({ description: 'Comma-separated field API names; default: every field the client may read' })),
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  cursor: Type.Optional(Type.String({ description: '`next` of the previous page' })),
  modifiedSince: Type.Optional(Type.String({ description: 'ISO 8601 datetime: records whose SystemModstamp is at or after it' })),
  org: Type.Optional(Type.String()),
});
export const ListAnswer = Type.Object({ records: Type.Array(RecordSchema), next: Type.Union([Type.String(), Type.Null()]) });

export const RecordParams = Type.Object({ object: Type.String({ maxLength: 100 }), id: Type.String({ maxLength: 100 }) });
export const RecordQuery = Type.Object({ fields: Type.Optional(Type.String()), org: Type.Optional(Type.String()) });
/** 304 Not Modified: the If-None-Match header named the record's current ETag. */
export const NotModified = Type.Null();

export const ChangesQuery = Type.Object({
  since: Type.String({ description: '0, or `next` of the previous page' }),
  objects: Type.Optional(Type.String({ description: 'Comma-separated objects; default: every object the client may read' })),
  limit: Type.Integer({ minimum: 1, maximum: 2000, default: 500 }),
  org: Type.Optional(Type.String()),
});
export const ChangesAnswer = Type.Object({
  changes: Type.Array(
    Type.Object({ object: Type.String(), id: Type.String(), deleted: Type.Boolean(), record: Type.Optional(RecordSchema) }),
  ),
  next: Type.String(),
});
