import { createSign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { classifySalesforceError, SalesforceError } from './errors.ts';

/**
 * How sfmirror gets an access token for the org configured by environment (README.md, "Change Data Capture" and "Configuration"):
 * a ready session (`SF_ACCESS_TOKEN`, cannot be renewed), a refresh token (OAuth refresh_token grant)
 * or JWT bearer (`SF_USERNAME` + `SF_PRIVATE_KEY_FILE`, a fresh assertion per token). The token
 * endpoint's answer carries the identity URL, which ends in `/<orgId>/<userId>`.
 */
export interface AuthOptions {
  instanceUrl?: string | undefined;
  accessToken?: string | undefined;
  refreshToken?: string | undefined;
  clientId?: string | undefined;
  clientSecret?: string | undefined;
  loginUrl: string;
  username?: string | undefined;
  privateKeyFile?: string | undefined;
  /** How long one call to Salesforce may take (token requests, REST, Bulk); default 30 s for tokens, 120 s otherwise. */
  timeoutMs?: number | undefined;
}

export interface TokenResponse {
  readonly access_token: string;
  readonly instance_url: string;
  /** Identity URL: `https://login.salesforce.com/id/<orgId>/<userId>`. */
  readonly id: string;
}

export type AuthMethod = 'access-token' | 'refresh-token' | 'jwt-bearer';

export function authMethod(o: AuthOptions): AuthMethod | undefined {
  if (o.refreshToken && o.clientId) return 'refresh-token';
  if (o.username && o.privateKeyFile && o.clientId) return 'jwt-bearer';
  if (o.accessToken && o.instanceUrl) return 'access-token';
  return undefined;
}

/** Parses `/id/<orgId>/<userId>` off an identity URL. */
export function parseIdentityUrl(url: string): { orgId: string; userId: string } | undefined {
  const m = /\/id\/(00D\w{12,15})\/(005\w{12,15})\/?$/.exec(url);
  return m ? { orgId: m[1]!, userId: m[2]! } : undefined;
}

const TOKEN_TIMEOUT_MS = 30_000;

/** A new token by refresh token or JWT bearer; undefined for a plain access token (nothing to renew with). */
export async function requestToken(o: AuthOptions): Promise<TokenResponse | undefined> {
  const method = authMethod(o);
  let form: URLSearchParams;
  if (method === 'refresh-token') {
    form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: o.refreshToken!, client_id: o.clientId! });
    if (o.clientSecret) form.set('client_secret', o.clientSecret);
  } else if (method === 'jwt-bearer') {
    form = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwtAssertion(o) });
  } else {
    return undefined;
  }
  let res: Response;
  try {
    res = await fetch(`${o.loginUrl}/services/oauth2/token`, {
      method: 'POST',
      body: form,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      signal: AbortSignal.timeout(o.timeoutMs ?? TOKEN_TIMEOUT_MS),
    });
  } catch (e) {
    throw classifySalesforceError(e);
  }
  // An unreadable body is treated as no answer: the checks below say the request failed.
  const body = (await res.json().catch(() => ({}))) as Partial<TokenResponse> & { error?: string; error_description?: string };
  if (!res.ok || !body.access_token || !body.instance_url || !body.id) {
    const message = `Salesforce token request (${method}) failed: ${res.status} ${body.error ?? ''} ${body.error_description ?? ''}`.trim();
    // invalid_grant = the refresh token was revoked or expired (or the JWT user lost access): no retry helps.
    if (body.error === 'invalid_grant') throw new SalesforceError('revoked', body.error, message, { status: res.status });
    throw new SalesforceError(res.status >= 500 ? 'transient' : 'auth', body.error || `HTTP_${res.status}`, message, {
      status: res.status,
    });
  }
  return body as TokenResponse;
}

function jwtAssertion(o: AuthOptions): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const unsigned = `${b64({ alg: 'RS256' })}.${b64({ iss: o.clientId, sub: o.username, aud: o.loginUrl, exp: Math.floor(Date.now() / 1000) + 180 })}`;
  const signature = createSign('RSA-SHA256').update(unsigned).sign(readFileSync(o.privateKeyFile!, 'utf8')).toString('base64url');
  return `${unsigned}.${signature}`;
}
