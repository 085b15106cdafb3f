import jsforce from 'jsforce';

/**
 * The few Salesforce calls the rest of sfmirror makes, behind an interface we own (STYLE.md,
 * principle 2). jsforce stays inside this folder.
 */
export interface SalesforceClient {
  /** Field API name -> Salesforce field type (describe's `type`, lower-case) of an object. */
  describeFields(object: string): Promise<Record<string, string>>;
}

export interface JsforceOptions {
  instanceUrl: string;
  accessToken?: string | undefined;
  refreshToken?: string | undefined;
  clientId?: string | undefined;
  clientSecret?: string | undefined;
  loginUrl?: string | undefined;
  version: string;
}

export function createJsforceClient(opts: JsforceOptions): SalesforceClient {
  const conn = new jsforce.Connection({
    instanceUrl: opts.instanceUrl,
    version: opts.version,
    ...(opts.accessToken ? { accessToken: opts.accessToken } : {}),
    ...(opts.refreshToken && opts.clientId
      ? { refreshToken: opts.refreshToken, oauth2: { clientId: opts.clientId, clientSecret: opts.clientSecret, loginUrl: opts.loginUrl } }
      : {}),
    // Recognise our own calls in CDC's changeOrigin (SALESFORCE-NOTES.md, jsforce v3).
    callOptions: { client: 'sfmirror' },
  });
  return {
    async describeFields(object) {
      const d = await conn.sobject(object).describe();
      const out: Record<string, string> = {};
      for (const f of d.fields) out[f.name] = String(f.type).toLowerCase();
      return out;
    },
  };
}
