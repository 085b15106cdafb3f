import { Type } from '@fastify/type-provider-typebox';

/** Schemas of the console's routes (src/console/routes.ts); the routes' types come from them. */
export const AssetParams = Type.Object({ file: Type.String() });
export const SignInBody = Type.Object({ token: Type.String({ minLength: 1, maxLength: 1000 }) });
export const SessionAnswer = Type.Object({
  csrfToken: Type.String({ description: 'send as X-CSRF-Token on every state-changing request' }),
  expiresAt: Type.String(),
});

export const ErrorAnswer = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
  code: Type.Optional(Type.String()),
});
