import jsforce from 'jsforce';
import { authMethod, parseIdentityUrl, requestToken, type AuthOptions } from './auth.ts';

/**
 * The few Salesforce calls the rest of sfmirror makes, behind an interface we own (STYLE.md,
 * principle 2). jsforce stays inside this folder.
 */
export interface SalesforceClient {
  /** Field API name -> Salesforce field type (describe's `type`, lower-case) of an object. */
  describeFields(object: string): Promise<Record<string, string>>;
  /** The records of `ids`, deleted ones included (queryAll), every non-compound field; missing ids are gone. */
  readRecords(object: string, ids: readonly string[], fields?: readonly string[]): Promise<SfRecord[]>;
  /**
   * One page of records modified after `after` (SystemModstamp, then Id), deleted ones included,
   * oldest first: paging on (SystemModstamp, Id) never skips records sharing one SystemModstamp.
   */
  readModifiedSince(object: string, after: { stamp: string; id?: string | undefined }, limit: number): Promise<SfRecord[]>;
}

/** A record as the REST API returns it, without `attributes`. */
export type SfRecord = Record<string, string | number | boolean | null> & { Id: string };

/** An authenticated session with the org configured by environment. */
export interface SalesforceSession extends SalesforceClient {
  readonly version: string;
  instanceUrl(): string;
  accessToken(): string;
  /** Gets a token when needed and reads the org's identity. */
  connect(): Promise<{ orgId: string; userId: string }>;
  /** A new token (refresh token or JWT); false when the session cannot be renewed (plain access token). */
  refresh(): Promise<boolean>;
}

const IDS_PER_QUERY = 200;
const q = (s: string) => `'${s.replace(/[\\']/g, '\\$&')}'`;

/** True for the token endpoint's `invalid_grant`: the credentials are dead until someone reconnects. */
export const isGrantRevoked = (e: unknown) => (e as { sfError?: unknown } | null)?.sfError === 'invalid_grant';

export interface SessionHooks {
  /** Salesforce refused the refresh token or JWT grant for good (invalid_grant). */
  onGrantRevoked?: ((message: string) => void) | undefined;
  /** A token was granted (the credentials work). */
  onGranted?: (() => void) | undefined;
}

export function createSalesforceSession(opts: AuthOptions & { version: string }, hooks: SessionHooks = {}): SalesforceSession {
  const method = authMethod(opts);
  const token = () => requestToken(opts).then(
    (r) => { if (r) hooks.onGranted?.(); return r; },
    (e: Error) => { if (isGrantRevoked(e)) hooks.onGrantRevoked?.(e.message); throw e; },
  );
  let identity: { orgId: string; userId: string } | undefined;
  const conn = new jsforce.Connection({
    version: opts.version,
    ...(opts.instanceUrl ? { instanceUrl: opts.instanceUrl } : {}),
    ...(opts.accessToken ? { accessToken: opts.accessToken } : {}),
    ...(method === 'refresh-token' || method === 'jwt-bearer'
      ? {
          // jsforce calls this on 401 INVALID_SESSION_ID and retries the request.
          refreshFn: (c: { instanceUrl: string }, cb: (err: Error | null, token?: string) => void) => {
            token().then((r) => { c.instanceUrl = r!.instance_url; cb(null, r!.access_token); }, (e: Error) => cb(e));
          },
        }
      : {}),
    // Recognise our own calls in CDC's changeOrigin (SALESFORCE-NOTES.md, jsforce v3).
    callOptions: { client: 'sfmirror' },
  });
  const describeCache = new Map<string, Promise<Record<string, string>>>();

  async function describeFields(object: string) {
    const d = await conn.sobject(object).describe();
    const out: Record<string, string> = {};
    for (const f of d.fields) out[f.name] = String(f.type).toLowerCase();
    return out;
  }
  const cachedDescribe = (object: string) => {
    let p = describeCache.get(object);
    if (!p) { p = describeFields(object); describeCache.set(object, p); p.catch(() => describeCache.delete(object)); }
    return p;
  };
  async function fieldList(object: string, fields?: readonly string[]) {
    const types = await cachedDescribe(object);
    const all = Object.keys(types).filter((f) => types[f] !== 'address' && types[f] !== 'location');
    const want = new Set(['Id', 'IsDeleted', 'SystemModstamp', ...(fields ?? all)]);
    return [...want].filter((f) => f in types || f === 'Id' || f === 'IsDeleted' || f === 'SystemModstamp');
  }
  async function queryAll(soql: string): Promise<SfRecord[]> {
    const out: SfRecord[] = [];
    let res = await conn.query(soql, { scanAll: true, autoFetch: false });
    for (;;) {
      for (const r of res.records as Array<Record<string, unknown>>) {
        const { attributes: _a, ...rest } = r;
        out.push(rest as SfRecord);
      }
      if (res.done || !res.nextRecordsUrl) return out;
      res = await conn.queryMore(res.nextRecordsUrl);
    }
  }

  const session: SalesforceSession = {
    version: opts.version,
    instanceUrl: () => conn.instanceUrl,
    accessToken: () => conn.accessToken ?? '',
    describeFields,
    async readRecords(object, ids, fields) {
      const list = (await fieldList(object, fields)).join(', ');
      const out: SfRecord[] = [];
      for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
        out.push(...(await queryAll(`SELECT ${list} FROM ${object} WHERE Id IN (${ids.slice(i, i + IDS_PER_QUERY).map(q).join(', ')})`)));
      }
      return out;
    },
    async readModifiedSince(object, after, limit) {
      const list = (await fieldList(object)).join(', ');
      // SOQL datetime literals have second precision, as Salesforce's datetimes do.
      const stamp = new Date(after.stamp).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const where = after.id ? `(SystemModstamp > ${stamp} OR (SystemModstamp = ${stamp} AND Id > ${q(after.id)}))` : `SystemModstamp >= ${stamp}`;
      return queryAll(`SELECT ${list} FROM ${object} WHERE ${where} ORDER BY SystemModstamp, Id LIMIT ${limit}`);
    },
    async connect() {
      if (!conn.accessToken) await session.refresh();
      if (!identity) {
        // GET /services/data/vXX.X names the identity URL, which ends in /<orgId>/<userId>.
        const res = await conn.request<{ identity?: string }>(`/services/data/v${opts.version}`);
        identity = res.identity ? parseIdentityUrl(res.identity) : undefined;
        if (!identity) throw new Error('Salesforce did not name the identity of this session');
      }
      return identity;
    },
    async refresh() {
      const r = await token();
      if (!r) return false;
      conn.instanceUrl = r.instance_url;
      conn.accessToken = r.access_token;
      identity ??= parseIdentityUrl(r.id);
      return true;
    },
  };
  return session;
}
