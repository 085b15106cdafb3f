import { Type } from '@fastify/type-provider-typebox';

/**
 * Schemas of `POST /ingest/apex` (src/ingest/routes.ts). The body has none here: it is read and
 * verified as raw bytes before it is parsed (its shape is in the OpenAPI document, src/api/openapi.ts).
 */
export const SignatureHeaders = Type.Object({
  'x-sfmirror-timestamp': Type.Optional(Type.String()),
  'x-sfmirror-signature': Type.Optional(Type.String()),
});
export const ApplyResponse = Type.Object({ applied: Type.Integer(), ignored: Type.Integer() });
