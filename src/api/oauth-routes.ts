import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { isValidAlias } from '../changes/names.ts';
import type { Db } from '../db/database.ts';
import type { Clock } from '../lib/clock.ts';
import { AppError } from '../lib/errors.ts';
import type { SecretBox } from '../lib/secret-box.ts';
import { saveConnectedOrg, saveOAuthState, takeOAuthState } from '../mirror/org-connections.repository.ts';
import { isSalesforceError } from '../salesforce/errors.ts';
import { buildAuthorizeRequest, checkLoginUrl, exchangeCode, hashState } from '../salesforce/oauth.ts';
import { requireAdmin } from './auth.ts';
import { AuthorizeAnswer, AuthorizeQuery, CallbackQuery, Identity } from './oauth-routes.schema.ts';

/**
 * Connecting orgs by OAuth (README.md, "Several orgs: connecting by OAuth"): `GET /oauth/authorize` (admin token) answers
 * the Salesforce URL to send the operator's browser to; `GET /oauth/callback` (no token: the
 * single-use, expiring `state` proves the flow) exchanges the code, stores the refresh token
 * encrypted and registers the org under the alias chosen at authorize time.
 */
export interface OAuthDeps {
  db: Db;
  clock: Clock;
  adminToken: string | undefined;
  /** Encrypts refresh tokens and PKCE verifiers; undefined = SFMIRROR_ENCRYPTION_KEY unset. */
  box: SecretBox | undefined;
  clientId: string | undefined;
  clientSecret: string | undefined;
  defaultLoginUrl: string;
  /** Login hosts allowed besides Salesforce's (SFMIRROR_OAUTH_LOGIN_HOSTS); defaultLoginUrl is allowed too. */
  loginHosts?: readonly string[] | undefined;
  defaultRedirectUri: string | undefined;
  stateTtlSeconds: number;
  /** Told when an org was connected (serve starts its stream without waiting for its next poll). */
  onConnected?: ((alias: string) => void) | undefined;
  fetchImpl?: typeof fetch | undefined;
}

export async function oauthRoutes(scope: FastifyInstance, deps: OAuthDeps): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  const allowedHosts = [...(deps.loginHosts ?? []), deps.defaultLoginUrl];
  const ensureConfigured = () => {
    const missing = [
      !deps.clientId && "SF_CLIENT_ID (the connected app's consumer key)",
      !deps.box && 'SFMIRROR_ENCRYPTION_KEY (refresh tokens are stored encrypted)',
    ].filter(Boolean);
    if (missing.length) throw new AppError('NOT_CONFIGURED', `connecting orgs by OAuth needs ${missing.join(' and ')}`);
    return { clientId: deps.clientId!, box: deps.box! };
  };

  app.get(
    '/oauth/authorize',
    {
      preHandler: requireAdmin(deps.adminToken),
      schema: {
        summary: 'Start connecting an org: the Salesforce authorization URL to open',
        tags: ['operator'],
        security: [{ bearer: [] }],
        querystring: AuthorizeQuery,
        response: { 200: AuthorizeAnswer },
      },
    },
    async (req) => {
      const { clientId, box } = ensureConfigured();
      const { alias } = req.query;
      if (!isValidAlias(alias))
        throw new AppError(
          'BAD_REQUEST',
          `alias: "${alias}" is not usable (lower-case letters, digits and _, starting with a letter, at most 40; not sfmirror, public, information_schema or pg_*)`,
        );
      const redirectUri = req.query.redirect_uri ?? deps.defaultRedirectUri;
      if (!redirectUri)
        throw new AppError('BAD_REQUEST', "redirect_uri: give the connected app's callback URL (or set SFMIRROR_OAUTH_REDIRECT_URI)");
      if (!isHttpUrl(redirectUri)) throw new AppError('BAD_REQUEST', `redirect_uri: "${redirectUri.slice(0, 100)}" is not an http(s) URL`);
      const loginUrl = checkLoginUrl(req.query.loginUrl ?? deps.defaultLoginUrl, allowedHosts);
      if (!loginUrl)
        throw new AppError(
          'BAD_REQUEST',
          'loginUrl: must be a Salesforce login origin (https://login.salesforce.com, https://test.salesforce.com, https://<domain>.my.salesforce.com) or a host listed in SFMIRROR_OAUTH_LOGIN_HOSTS',
        );
      const flow = buildAuthorizeRequest({ loginUrl, clientId, redirectUri });
      const now = deps.clock.now();
      const expiresAt = new Date(now.getTime() + deps.stateTtlSeconds * 1000);
      const stateHash = hashState(flow.state);
      await saveOAuthState(
        deps.db,
        stateHash,
        { alias, loginUrl, redirectUri, verifierEnc: box.seal(flow.verifier, `oauth_verifier:${stateHash}`) },
        expiresAt,
      );
      req.log.info({ alias, loginUrl }, 'oauth flow started');
      return { url: flow.url, alias, expiresAt: expiresAt.toISOString() };
    },
  );

  app.get(
    '/oauth/callback',
    {
      schema: {
        summary: "Salesforce sends the operator back here; stores the org's tokens and answers its identity",
        tags: ['operator'],
        querystring: CallbackQuery,
        response: { 200: Identity },
      },
    },
    async (req) => {
      const { clientId, box } = ensureConfigured();
      const { code, state } = req.query;
      if (!state) throw new AppError('BAD_REQUEST', 'state: missing (start from /oauth/authorize)');
      const stateHash = hashState(state);
      // Taken even when Salesforce reports an error: a state is good for one answer only.
      const pending = await takeOAuthState(deps.db, stateHash, deps.clock.now());
      if (req.query.error)
        throw new AppError(
          'BAD_REQUEST',
          `Salesforce did not authorize: ${req.query.error}${req.query.error_description ? `: ${req.query.error_description}` : ''}`,
        );
      if (!code) throw new AppError('BAD_REQUEST', 'code: missing');
      // Checked again at the exchange: the client secret never goes to a host no longer allowed.
      if (!checkLoginUrl(pending.loginUrl, allowedHosts))
        throw new AppError('BAD_REQUEST', `loginUrl: ${pending.loginUrl} is not an allowed login host (SFMIRROR_OAUTH_LOGIN_HOSTS)`);
      let result;
      try {
        result = await exchangeCode({
          loginUrl: pending.loginUrl,
          clientId,
          clientSecret: deps.clientSecret,
          redirectUri: pending.redirectUri,
          code,
          verifier: box.open(pending.verifierEnc, `oauth_verifier:${stateHash}`),
          fetchImpl: deps.fetchImpl,
        });
      } catch (e) {
        // Salesforce refused the code (the operator starts again) versus Salesforce failing us.
        if (isSalesforceError(e)) throw new AppError(e.kind === 'auth' ? 'BAD_REQUEST' : 'BAD_GATEWAY', e.message);
        throw e;
      }
      await saveConnectedOrg(deps.db, {
        alias: pending.alias,
        orgId: result.orgId,
        userId: result.userId,
        identityUrl: result.identityUrl,
        instanceUrl: result.instanceUrl,
        loginUrl: pending.loginUrl,
        refreshTokenEnc: box.seal(result.refreshToken, `refresh_token:${pending.alias}`),
      });
      req.log.info({ alias: pending.alias, orgId: result.orgId }, 'org connected by oauth');
      deps.onConnected?.(pending.alias);
      return { alias: pending.alias, id: result.identityUrl, orgId: result.orgId, userId: result.userId, instanceUrl: result.instanceUrl };
    },
  );
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'https:' || u.protocol === 'http:') && !u.username && !u.password;
  } catch {
    return false;
  }
}
