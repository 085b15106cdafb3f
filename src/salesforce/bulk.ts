import { parse } from 'csv-parse/sync';
import { classifySalesforceError, SalesforceError } from './errors.ts';

/**
 * Bulk API 2.0 query jobs, spoken over plain HTTP (fetch) rather than jsforce's `bulk2.query`, which
 * breaks on results spanning more than one page (jsforce issues #1546 and #1693). We page
 * ourselves: `GET /jobs/query/<id>/results?locator=&maxRecords=` until `Sforce-Locator` is the literal
 * string `null` (Bulk API 2.0 Developer Guide, "Get Results for a Query Job").
 *
 *   POST /jobs/query {operation, query} -> UploadComplete -> InProgress -> JobComplete
 *                                                                    \-> Failed (errorMessage) | Aborted
 */
export interface BulkHttp {
  /** Base URL of the REST API, e.g. https://x.my.salesforce.com/services/data/v62.0 */
  base(): string;
  token(): string;
  /** A new token after a 401; false when the session cannot be renewed. */
  refresh(): Promise<boolean>;
  /** Every response's `Sforce-Limit-Info` header (`api-usage=N/M`). */
  onLimitInfo(header: string): void;
  /** How long one request (its body included) may take; default 120 s. */
  timeoutMs?: number | undefined;
}

const TIMEOUT_MS = 120_000;

async function call(http: BulkHttp, path: string, init: RequestInit = {}): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(`${http.base()}${path}`, {
        ...init,
        headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${http.token()}` },
        // Covers the body too: a results page that stops arriving fails instead of hanging the run.
        signal: AbortSignal.timeout(http.timeoutMs ?? TIMEOUT_MS),
      });
    } catch (e) {
      throw classifySalesforceError(e);
    }
    const limit = res.headers.get('sforce-limit-info');
    if (limit) http.onLimitInfo(limit);
    if (res.status === 401 && attempt === 0 && (await http.refresh())) {
      await res.body?.cancel();
      continue;
    }
    if (res.ok) return res;
    const text = await res.text();
    let code = `HTTP_${res.status}`;
    let message = text.slice(0, 500);
    try {
      // Salesforce errors: [{ errorCode, message }] (sometimes a single object).
      const body = JSON.parse(text) as unknown;
      const first = (Array.isArray(body) ? body[0] : body) as { errorCode?: string; message?: string } | undefined;
      if (first?.errorCode) code = first.errorCode;
      if (first?.message) message = first.message;
    } catch {
      /* not JSON: keep the text */
    }
    throw classifySalesforceError(undefined, { status: res.status, code, message: `${code}: ${message}` });
  }
}

export interface BulkJobInfo {
  id: string;
  state: string;
  errorMessage?: string;
  numberRecordsProcessed?: number;
}

/** Creates a query job; `all` = queryAll (deleted and archived records included). Returns its id. */
export async function createQueryJob(http: BulkHttp, soql: string, all: boolean): Promise<string> {
  const res = await call(http, '/jobs/query', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      operation: all ? 'queryAll' : 'query',
      query: soql,
      contentType: 'CSV',
      columnDelimiter: 'COMMA',
      lineEnding: 'LF',
    }),
  });
  return ((await res.json().catch((e: unknown) => Promise.reject(classifySalesforceError(e)))) as BulkJobInfo).id;
}

export async function jobInfo(http: BulkHttp, id: string): Promise<BulkJobInfo> {
  const res = await call(http, `/jobs/query/${encodeURIComponent(id)}`);
  return (await res.json().catch((e: unknown) => Promise.reject(classifySalesforceError(e)))) as BulkJobInfo;
}

/**
 * Polls until JobComplete. Failed and Aborted throw Salesforce's errorMessage; past `timeoutMs` the
 * job is aborted (it would keep using the org's Bulk quota) and the wait throws: a backfill must fail
 * loudly, never report success with data missing.
 */
export async function awaitQueryJob(http: BulkHttp, id: string, opts: { pollMs: number; timeoutMs: number }): Promise<BulkJobInfo> {
  const until = Date.now() + opts.timeoutMs;
  for (;;) {
    const info = await jobInfo(http, id);
    if (info.state === 'JobComplete') return info;
    if (info.state === 'Failed' || info.state === 'Aborted') {
      throw new SalesforceError(
        'gone',
        'BULK_JOB_FAILED',
        `BULK_JOB_FAILED: Bulk API 2.0 query job ${id} ${info.state.toLowerCase()}: ${info.errorMessage || 'no message from Salesforce'}`,
      );
    }
    if (Date.now() > until) {
      await call(http, `/jobs/query/${encodeURIComponent(id)}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ state: 'Aborted' }),
        // Best effort: the job is given up either way, and Salesforce ends an unfinished job by itself.
      }).catch(() => {});
      throw new SalesforceError(
        'timeout',
        'BULK_JOB_TIMEOUT',
        `BULK_JOB_TIMEOUT: Bulk API 2.0 query job ${id} did not complete within ${Math.round(opts.timeoutMs / 1000)} s (state ${info.state}); it was aborted`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.pollMs));
  }
}

/**
 * One page of a completed job's results as Salesforce sent it: CSV text, header line first (all
 * values strings, '' for null), and the next locator (null after the last page).
 */
export async function readResultCsv(
  http: BulkHttp,
  id: string,
  locator: string | undefined,
  maxRecords: number,
): Promise<{ csv: string; next: string | null }> {
  const qs = new URLSearchParams({ maxRecords: String(maxRecords), ...(locator ? { locator } : {}) });
  const res = await call(http, `/jobs/query/${encodeURIComponent(id)}/results?${qs}`, { headers: { accept: 'text/csv' } });
  const header = res.headers.get('sforce-locator');
  const csv = await res.text().catch((e: unknown) => Promise.reject(classifySalesforceError(e)));
  return { csv, next: !header || header === 'null' ? null : header };
}

/** A results page's rows as string maps (header names as keys). */
export function parseResultCsv(csv: string): Array<Record<string, string>> {
  return csv.trim() === '' ? [] : (parse(csv, { columns: true, skip_empty_lines: true }) as Array<Record<string, string>>);
}

/** One page of a completed job's results: rows as string maps, and the next locator (null after the last page). */
export async function readResultPage(
  http: BulkHttp,
  id: string,
  locator: string | undefined,
  maxRecords: number,
): Promise<{ rows: Array<Record<string, string>>; next: string | null }> {
  const { csv, next } = await readResultCsv(http, id, locator, maxRecords);
  return { rows: parseResultCsv(csv), next };
}
