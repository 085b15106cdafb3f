import { createHash, randomBytes } from 'node:crypto';
import { parseIdentityUrl } from './auth.ts';
import { classifySalesforceError, SalesforceError } from './errors.ts';

/**
 * Salesforce's OAuth 2.0 web-server flow with PKCE (help.salesforce.com "OAuth 2.0 Web Server Flow
 * for Web App Integration" and "Proof Key for Code Exchange"): the operator's browser goes to
 * `<login>/services/oauth2/authorize?response_type=code&client_id&redirect_uri&state&code_challenge`,
 * Salesforce sends it back to the redirect URI with `code` and `state`, and the code is exchanged
 * with the verifier at `<login>/services/oauth2/token` (grant_type=authorization_code).
 */

export interface AuthorizeRequest {
  /** The random value that comes back on the callback (kept hashed on our side). */
  state: string;
  /** The PKCE verifier: 43-128 characters of [A-Za-z0-9-._~]; only its SHA-256 leaves sfmirror here. */
  verifier: string;
  url: string;
}

export const hashState = (state: string) => createHash('sha256').update(state).digest('hex');

/** `api` for REST/CometD, `refresh_token` so the connection outlives the access token. */
export const OAUTH_SCOPE = 'api refresh_token';

export function buildAuthorizeRequest(o: { loginUrl: string; clientId: string; redirectUri: string }): AuthorizeRequest {
  const state = randomBytes(32).toString('base64url');
  const verifier = randomBytes(48).toString('base64url'); // 64 characters
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const u = new URL('/services/oauth2/authorize', o.loginUrl);
  u.search = new URLSearchParams({
    response_type: 'code',
    client_id: o.clientId,
    redirect_uri: o.redirectUri,
    state,
    scope: OAUTH_SCOPE,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    // Always show the consent screen: the operator is choosing which org (user) to connect.
    prompt: 'login consent',
  }).toString();
  return { state, verifier, url: u.toString() };
}

export interface CodeExchangeResult {
  accessToken: string;
  refreshToken: string;
  instanceUrl: string;
  identityUrl: string;
  orgId: string;
  userId: string;
}

/**
 * Exchanges the authorization code for tokens; the identity URL names the org and the user.
 * Throws a SalesforceError: `auth` when Salesforce refused the code (its `error` is the code),
 * `invalid` when its answer is unusable, `timeout`/`transient` when it could not be reached.
 */
export async function exchangeCode(o: {
  loginUrl: string;
  clientId: string;
  clientSecret?: string | undefined;
  redirectUri: string;
  code: string;
  verifier: string;
  fetchImpl?: typeof fetch;
}): Promise<CodeExchangeResult> {
  const form = new URLSearchParams({
    grant_type: 'authorization_code',
    code: o.code,
    client_id: o.clientId,
    redirect_uri: o.redirectUri,
    code_verifier: o.verifier,
  });
  if (o.clientSecret) form.set('client_secret', o.clientSecret);
  let res: Response;
  try {
    res = await (o.fetchImpl ?? fetch)(new URL('/services/oauth2/token', o.loginUrl), {
      method: 'POST',
      body: form,
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    const err = classifySalesforceError(e);
    throw new SalesforceError(err.kind, err.code, `cannot reach ${o.loginUrl}: ${err.message}`, { cause: e });
  }
  // An unreadable body is an empty answer: the checks below name what is missing.
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    const err = typeof body.error === 'string' ? body.error : undefined;
    const message =
      `Salesforce refused the authorization code: ${res.status} ${err ?? ''} ${typeof body.error_description === 'string' ? body.error_description : ''}`.trim();
    // Salesforce named why (invalid_grant: the code expired or was used): the operator starts again.
    if (err) throw new SalesforceError('auth', err, message, { status: res.status });
    throw new SalesforceError(res.status >= 500 ? 'transient' : 'invalid', `HTTP_${res.status}`, message, { status: res.status });
  }
  const str = (k: string) => (typeof body[k] === 'string' ? (body[k] as string) : undefined);
  const identityUrl = str('id');
  const who = identityUrl ? parseIdentityUrl(identityUrl) : undefined;
  if (!str('access_token') || !str('instance_url') || !who)
    throw new SalesforceError(
      'invalid',
      'BAD_TOKEN_RESPONSE',
      'Salesforce answered the token request without access_token, instance_url or a usable id URL',
    );
  if (!str('refresh_token')) {
    throw new SalesforceError(
      'invalid',
      'NO_REFRESH_TOKEN',
      'Salesforce issued no refresh token: add the "refresh_token, offline_access" scope to the connected app and connect again',
    );
  }
  return {
    accessToken: str('access_token')!,
    refreshToken: str('refresh_token')!,
    instanceUrl: str('instance_url')!.replace(/\/+$/, ''),
    identityUrl: identityUrl!,
    orgId: who.orgId,
    userId: who.userId,
  };
}

/**
 * Salesforce's login hosts: the generic ones and every My Domain login host, which ends in
 * `.my.salesforce.com` (production, `--sandbox.sandbox.my.salesforce.com`, `.develop.`, `.scratch.`)
 * or `.my.salesforce.mil` (government cloud); see Salesforce Help, "My Domain URL Formats".
 */
export const SALESFORCE_LOGIN_HOSTS: readonly string[] = ['login.salesforce.com', 'test.salesforce.com'];
export const SALESFORCE_LOGIN_SUFFIXES: readonly string[] = ['.my.salesforce.com', '.my.salesforce.mil'];

/**
 * A login URL an operator may pick per org: an https origin on one of Salesforce's login hosts, or
 * one the operator listed (SFMIRROR_OAUTH_LOGIN_HOSTS, SF_LOGIN_URL): a host name (https, default
 * port) or an exact origin (http only on loopback, for stand-ins). Anything else is refused: the
 * code, the PKCE verifier and the client secret are sent there.
 */
export function checkLoginUrl(raw: string, allowed: readonly string[] = []): string | undefined {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return undefined;
  }
  const loopback = u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) return undefined;
  if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) return undefined;
  const host = u.hostname.toLowerCase();
  const salesforce =
    u.protocol === 'https:' &&
    u.port === '' &&
    (SALESFORCE_LOGIN_HOSTS.includes(host) || SALESFORCE_LOGIN_SUFFIXES.some((s) => host.endsWith(s) && host.length > s.length));
  const listed = allowed.some((entry) => {
    const e = entry.trim().toLowerCase().replace(/\/+$/, '');
    if (/^https?:\/\//.test(e)) {
      try {
        return new URL(e).origin === u.origin;
      } catch {
        return false;
      }
    }
    return u.protocol === 'https:' && u.port === '' && host === e;
  });
  return salesforce || listed ? u.origin : undefined;
}
