import { Type } from '@fastify/type-provider-typebox';

/** Schemas of connecting orgs by OAuth (src/api/oauth-routes.ts); the routes' types come from them. */
export const AuthorizeQuery = Type.Object({
  alias: Type.String({ maxLength: 40, description: "The org's alias: its Postgres schema and BigQuery dataset suffix" }),
  redirect_uri: Type.Optional(
    Type.String({
      maxLength: 2000,
      description: "The connected app's callback URL, ending in /oauth/callback (default SFMIRROR_OAUTH_REDIRECT_URI)",
    }),
  ),
  loginUrl: Type.Optional(
    Type.String({ maxLength: 300, description: 'https://test.salesforce.com for sandboxes, or a My Domain (default SF_LOGIN_URL)' }),
  ),
});
export const CallbackQuery = Type.Object({
  code: Type.Optional(Type.String({ maxLength: 4000 })),
  state: Type.Optional(Type.String({ maxLength: 200 })),
  error: Type.Optional(Type.String({ maxLength: 200 })),
  error_description: Type.Optional(Type.String({ maxLength: 2000 })),
});
export const Identity = Type.Object({
  alias: Type.String(),
  id: Type.String(),
  orgId: Type.String(),
  userId: Type.String(),
  instanceUrl: Type.String(),
});
export const AuthorizeAnswer = Type.Object({ url: Type.String(), alias: Type.String(), expiresAt: Type.String() });
