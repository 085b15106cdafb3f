import jsforce from 'jsforce';
import { authMethod, parseIdentityUrl, requestToken, type AuthOptions } from './auth.ts';
import { awaitQueryJob, createQueryJob, readResultCsv, readResultPage, type BulkHttp } from './bulk.ts';
import { classifySalesforceError, SalesforceError, withTimeout } from './errors.ts';
import { typedBulkRecord } from './bulk-values.ts';
import { toFieldDescribe, type SObjectDescribe } from './describe.ts';

/**
 * The few Salesforce calls the rest of sfmirror makes, behind an interface we own (README,
 * "Development"). jsforce stays inside this folder.
 */
export interface SalesforceClient {
  /** Field API name -> Salesforce field type (describe's `type`, lower-case) of an object. */
  describeFields(object: string): Promise<Record<string, string>>;
  /** The object's describe: each field's type, formula and lookup target (describe.ts); operator-excluded fields left out. */
  describeSObject(object: string): Promise<SObjectDescribe>;
  /** The records of `ids`, deleted ones included (queryAll), every non-compound field; missing ids are gone. */
  readRecords(object: string, ids: readonly string[], fields?: readonly string[]): Promise<SfRecord[]>;
  /**
   * One page of records modified after `after` (SystemModstamp, then Id), deleted ones included,
   * oldest first: paging on (SystemModstamp, Id) never skips records sharing one SystemModstamp.
   */
  readModifiedSince(object: string, after: { stamp: string; id?: string | undefined }, limit: number): Promise<SfRecord[]>;
  /** How many records (deleted ones included) have a SystemModstamp in the window: a cheap REST `SELECT COUNT()`. */
  countRecords(object: string, window: Window): Promise<number>;
  /**
   * Creates a Bulk API 2.0 queryAll job over the window (every field Bulk accepts; deleted records
   * included) and returns its id. Bulk 2.0 takes no ORDER BY, LIMIT or COUNT() (Bulk API 2.0 guide, "Create a Query Job").
   */
  startBulkRead(object: string, window: Window): Promise<string>;
  /** Waits for the job; throws Salesforce's errorMessage when it failed, or when it took longer than timeoutMs (then it is aborted). */
  awaitBulkRead(jobId: string, opts: { pollMs: number; timeoutMs: number }): Promise<void>;
  /** One page of a completed job's results, typed by describe ('' is null); `next` is null after the last page. */
  readBulkPage(
    object: string,
    jobId: string,
    locator: string | undefined,
    maxRecords: number,
  ): Promise<{ records: SfRecord[]; next: string | null }>;
  /**
   * The same page as Salesforce sent it, CSV text with its header line, and the describe types that
   * type its values (bulk-values.ts): for a reader that applies CSV as it is (mirror.applyCsvPage).
   * An object with fields Bulk refuses (read by REST, see readBulkPage) gets its records instead.
   */
  readBulkCsvPage(
    object: string,
    jobId: string,
    locator: string | undefined,
    maxRecords: number,
  ): Promise<({ csv: string; types: Readonly<Record<string, string>> } | { records: SfRecord[] }) & { next: string | null }>;
  /** REST getDeleted: ids deleted in [start, end]. Reaches 15 days back, at most 600,000 ids (EXCEEDED_ID_LIMIT). */
  getDeleted(object: string, start: Date, end: Date): Promise<DeletedRecords>;
  /** The org's `/limits` (only the allocations sfmirror watches). */
  readLimits(): Promise<OrgLimits>;
  /** The last `Sforce-Limit-Info: api-usage=N/M` seen on any response, or undefined before the first call. */
  apiUsage(): { used: number; max: number } | undefined;
}

/** A SystemModstamp range: `from` inclusive, `to` exclusive, ISO instants; either may be open. */
export interface Window {
  from?: string | undefined;
  to?: string | undefined;
}

export interface DeletedRecords {
  deleted: Array<{ id: string; deletedDate: string }>;
  earliestDateAvailable: string | undefined;
  latestDateCovered: string | undefined;
}

export type Allocation = { max: number; remaining: number };
export interface OrgLimits {
  dailyApiRequests: Allocation;
  dailyBulkV2QueryJobs: Allocation | undefined;
}

/** Every method of a SalesforceClient fails with a SalesforceError: switch on its `kind` (errors.ts). */
export { SalesforceError, type SalesforceErrorKind } from './errors.ts';

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

/** How long one REST call through jsforce may take (jsforce's own limit is 30 minutes). */
const CALL_TIMEOUT_MS = 120_000;

export interface SessionHooks {
  /** Salesforce refused the refresh token or JWT grant for good (invalid_grant). */
  onGrantRevoked?: ((message: string) => void) | undefined;
  /** A token was granted (the credentials work). */
  onGranted?: (() => void) | undefined;
}

export function createSalesforceSession(
  opts: AuthOptions & {
    version: string;
    /** SFMIRROR_FIELDS / SFMIRROR_EXCLUDE_FIELDS: a field refused here is never described, so never queried (REST or Bulk). */
    allowField?: ((object: string, field: string) => boolean) | undefined;
  },
  hooks: SessionHooks = {},
): SalesforceSession {
  const method = authMethod(opts);
  const token = () =>
    requestToken(opts).then(
      (r) => {
        if (r) hooks.onGranted?.();
        return r;
      },
      (e: Error) => {
        if (e instanceof SalesforceError && e.kind === 'revoked') hooks.onGrantRevoked?.(e.message);
        throw e;
      },
    );
  const callTimeout = opts.timeoutMs ?? CALL_TIMEOUT_MS;
  let identity: { orgId: string; userId: string } | undefined;
  const conn = new jsforce.Connection({
    version: opts.version,
    ...(opts.instanceUrl ? { instanceUrl: opts.instanceUrl } : {}),
    ...(opts.accessToken ? { accessToken: opts.accessToken } : {}),
    ...(method === 'refresh-token' || method === 'jwt-bearer'
      ? {
          // jsforce calls this on 401 INVALID_SESSION_ID and retries the request.
          refreshFn: (c: { instanceUrl: string }, cb: (err: Error | null, token?: string) => void) => {
            token().then(
              (r) => {
                c.instanceUrl = r!.instance_url;
                cb(null, r!.access_token);
              },
              (e: Error) => cb(e),
            );
          },
        }
      : {}),
    // jsforce v3 sends this as the Sforce-Call-Options header, so CDC events of our own writes carry
    // `client=sfmirror` in their changeOrigin.
    callOptions: { client: 'sfmirror' },
  });
  const describeCache = new Map<string, Promise<Record<string, string>>>();

  const allowed = (object: string, field: string) =>
    field === 'Id' || field === 'IsDeleted' || field === 'SystemModstamp' || !opts.allowField || opts.allowField(object, field);
  async function describeSObject(object: string): Promise<SObjectDescribe> {
    const d = await withTimeout(conn.sobject(object).describe(), callTimeout, `describe ${object}`);
    return { name: d.name, fields: d.fields.map(toFieldDescribe).filter((f) => allowed(object, f.name)) };
  }
  async function describeFields(object: string) {
    const out: Record<string, string> = {};
    for (const f of (await describeSObject(object)).fields) out[f.name] = f.type;
    return out;
  }
  const cachedDescribe = (object: string) => {
    let p = describeCache.get(object);
    if (!p) {
      p = describeFields(object);
      describeCache.set(object, p);
      p.catch(() => describeCache.delete(object));
    }
    return p;
  };
  async function fieldList(object: string, fields?: readonly string[]) {
    const types = await cachedDescribe(object);
    const all = Object.keys(types).filter((f) => types[f] !== 'address' && types[f] !== 'location');
    const want = new Set(['Id', 'IsDeleted', 'SystemModstamp', ...(fields ?? all)]);
    return [...want].filter((f) => f in types || f === 'Id' || f === 'IsDeleted' || f === 'SystemModstamp');
  }
  const soqlTime = (iso: string) => new Date(iso).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const windowWhere = (w: Window) =>
    [w.from && `SystemModstamp >= ${soqlTime(w.from)}`, w.to && `SystemModstamp < ${soqlTime(w.to)}`].filter(Boolean).join(' AND ');
  let lastUsage: { used: number; max: number } | undefined;
  const noteUsage = (header: string) => {
    const m = /api-usage=(\d+)\/(\d+)/.exec(header);
    if (m) lastUsage = { used: Number(m[1]), max: Number(m[2]) };
  };
  const bulkHttp: BulkHttp = {
    base: () => `${conn.instanceUrl}/services/data/v${opts.version}`,
    token: () => conn.accessToken ?? '',
    refresh: () => session.refresh(),
    onLimitInfo: noteUsage,
    timeoutMs: opts.timeoutMs,
  };
  // jsforce reports its own responses' Sforce-Limit-Info through `limitInfo`; whichever came last wins.
  let jsforceUsageSeen: unknown;
  const usage = () => {
    const j = (conn as unknown as { limitInfo?: { apiUsage?: { used: number; limit: number } } }).limitInfo?.apiUsage;
    if (j && j !== jsforceUsageSeen) {
      jsforceUsageSeen = j;
      lastUsage = { used: j.used, max: j.limit };
    }
    return lastUsage;
  };
  /** Bulk refuses compound fields (we query their flat components, which describe lists as ordinary fields) and base64 (read through REST). */
  async function bulkFields(object: string) {
    const types = await cachedDescribe(object);
    const rest = Object.keys(types).filter((f) => types[f] === 'base64');
    return { types, bulk: (await fieldList(object)).filter((f) => !rest.includes(f)), rest };
  }

  async function queryAll(soql: string): Promise<SfRecord[]> {
    const out: SfRecord[] = [];
    let res = await withTimeout(conn.query(soql, { scanAll: true, autoFetch: false }), callTimeout, 'query');
    for (;;) {
      for (const r of res.records as Array<Record<string, unknown>>) {
        const { attributes: _a, ...rest } = r;
        out.push(rest as SfRecord);
      }
      if (res.done || !res.nextRecordsUrl) return out;
      res = await withTimeout(conn.queryMore(res.nextRecordsUrl), callTimeout, 'queryMore');
    }
  }

  const session: SalesforceSession = {
    version: opts.version,
    instanceUrl: () => conn.instanceUrl,
    accessToken: () => conn.accessToken ?? '',
    describeFields,
    describeSObject,
    async readRecords(object, ids, fields) {
      const list = (await fieldList(object, fields)).join(', ');
      const out: SfRecord[] = [];
      for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
        out.push(
          ...(await queryAll(
            `SELECT ${list} FROM ${object} WHERE Id IN (${ids
              .slice(i, i + IDS_PER_QUERY)
              .map(q)
              .join(', ')})`,
          )),
        );
      }
      return out;
    },
    async readModifiedSince(object, after, limit) {
      const list = (await fieldList(object)).join(', ');
      // SOQL datetime literals have second precision, as Salesforce's datetimes do.
      const stamp = new Date(after.stamp).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const where = after.id
        ? `(SystemModstamp > ${stamp} OR (SystemModstamp = ${stamp} AND Id > ${q(after.id)}))`
        : `SystemModstamp >= ${stamp}`;
      return queryAll(`SELECT ${list} FROM ${object} WHERE ${where} ORDER BY SystemModstamp, Id LIMIT ${limit}`);
    },
    async countRecords(object, window) {
      const where = windowWhere(window);
      const soql = `SELECT COUNT() FROM ${object}${where ? ` WHERE ${where}` : ''}`;
      const res = await withTimeout(conn.query(soql, { scanAll: true, autoFetch: false }), callTimeout, 'count');
      return res.totalSize;
    },
    async startBulkRead(object, window) {
      const where = windowWhere(window);
      const { bulk } = await bulkFields(object);
      return createQueryJob(bulkHttp, `SELECT ${bulk.join(', ')} FROM ${object}${where ? ` WHERE ${where}` : ''}`, true);
    },
    async awaitBulkRead(jobId, o) {
      await awaitQueryJob(bulkHttp, jobId, o);
    },
    async readBulkCsvPage(object, jobId, locator, maxRecords) {
      const { types, rest } = await bulkFields(object);
      if (rest.length) return session.readBulkPage(object, jobId, locator, maxRecords);
      const { csv, next } = await readResultCsv(bulkHttp, jobId, locator, maxRecords);
      return { csv, types, next };
    },
    async readBulkPage(object, jobId, locator, maxRecords) {
      const { types, rest } = await bulkFields(object);
      const page = await readResultPage(bulkHttp, jobId, locator, maxRecords);
      const records = page.rows.map((row) => typedBulkRecord(row, types));
      if (rest.length && records.length) {
        // Fields Bulk refuses come from REST, 200 ids a query.
        const byId = new Map(
          (
            await session.readRecords(
              object,
              records.map((r) => r.Id),
              rest,
            )
          ).map((r) => [r.Id, r]),
        );
        for (const r of records) for (const f of rest) if (byId.get(r.Id) && f in byId.get(r.Id)!) r[f] = byId.get(r.Id)![f]!;
      }
      return { records, next: page.next };
    },
    async getDeleted(object, start, end) {
      const res = (await withTimeout(conn.sobject(object).deleted(start, end), callTimeout, `getDeleted ${object}`)) as unknown as {
        deletedRecords?: Array<{ id: string; deletedDate: string }>;
        earliestDateAvailable?: string;
        latestDateCovered?: string;
      };
      return {
        deleted: res.deletedRecords ?? [],
        earliestDateAvailable: res.earliestDateAvailable,
        latestDateCovered: res.latestDateCovered,
      };
    },
    async readLimits() {
      const l = (await withTimeout(conn.limits(), callTimeout, 'limits')) as unknown as Record<
        string,
        { Max: number; Remaining: number } | undefined
      >;
      const alloc = (k: string) => (l[k] ? { max: Number(l[k]!.Max), remaining: Number(l[k]!.Remaining) } : undefined);
      const api = alloc('DailyApiRequests');
      if (!api) throw new SalesforceError('invalid', 'NO_DAILY_API_REQUESTS', 'Salesforce /limits did not report DailyApiRequests');
      lastUsage = { used: api.max - api.remaining, max: api.max };
      return { dailyApiRequests: api, dailyBulkV2QueryJobs: alloc('DailyBulkV2QueryJobs') };
    },
    apiUsage: usage,
    async connect() {
      if (!conn.accessToken) await session.refresh();
      if (!identity) {
        // GET /services/data/vXX.X names the identity URL, which ends in /<orgId>/<userId>.
        const res = await withTimeout(conn.request<{ identity?: string }>(`/services/data/v${opts.version}`), callTimeout, 'identity');
        identity = res.identity ? parseIdentityUrl(res.identity) : undefined;
        if (!identity) throw new SalesforceError('invalid', 'NO_IDENTITY', 'Salesforce did not name the identity of this session');
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
  return guardErrors(session);
}

/**
 * The session as callers see it: every method's failure is a classified SalesforceError (errors.ts),
 * whatever jsforce, fetch or the token endpoint threw.
 */
function guardErrors(s: SalesforceSession): SalesforceSession {
  const out = { ...s };
  for (const [k, v] of Object.entries(s)) {
    if (typeof v !== 'function' || k === 'instanceUrl' || k === 'accessToken' || k === 'apiUsage') continue;
    (out as Record<string, unknown>)[k] = async (...args: unknown[]) => {
      try {
        return await (v as (...a: unknown[]) => Promise<unknown>)(...args);
      } catch (e) {
        throw classifySalesforceError(e);
      }
    };
  }
  return out;
}
