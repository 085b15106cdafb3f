import { Type } from '@fastify/type-provider-typebox';

/** Schemas of the operator API of read API clients (src/api/admin-clients-routes.ts); the routes' types come from them. */
const NAME = '^[A-Za-z0-9_.-]{1,100}$';
export const ClientSchema = Type.Object({
  name: Type.String(),
  active: Type.Boolean(),
  description: Type.String({ description: 'objects, fields, filters, orgs and JWT settings in one line' }),
  spec: Type.Unknown({ description: 'the stored access rules' }),
  createdAt: Type.String(),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
});
export const ClientList = Type.Array(ClientSchema);
export const CreateBody = Type.Object(
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
export const Created = Type.Object({
  name: Type.String(),
  token: Type.String({ description: 'shown only now' }),
  description: Type.String(),
});
export const NameParams = Type.Object({ name: Type.String({ pattern: NAME }) });
