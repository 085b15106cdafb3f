import { Type } from '@fastify/type-provider-typebox';

/** Schemas of the operator API of an org's own signing keys (src/api/admin-keys-routes.ts); the routes' types come from them. */
export const AliasParams = Type.Object({ alias: Type.String({ maxLength: 40 }) });
export const KeyParams = Type.Object({ alias: Type.String({ maxLength: 40 }), id: Type.String({ pattern: '^[0-9]{1,15}$' }) });
export const KeySchema = Type.Object({
  id: Type.Integer(),
  org: Type.String(),
  kind: Type.String({ description: "'hmac' (sha256=) or 'rsa' (rsa-sha256=)" }),
  label: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
});
export const KeyList = Type.Array(KeySchema);
export const CreateBody = Type.Object(
  {
    publicKey: Type.Optional(
      Type.String({ maxLength: 20000, description: 'PEM public key or certificate: an RSA key; absent: a new HMAC secret' }),
    ),
    label: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
export const Created = Type.Object({
  id: Type.Integer(),
  org: Type.String(),
  kind: Type.String(),
  secret: Type.Optional(Type.String({ description: "the HMAC secret, shown only now: put it in the org's sfmirror settings" })),
});
