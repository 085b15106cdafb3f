/**
 * Every error that leaves src/salesforce is a SalesforceError whose `kind` names the decision the
 * caller must make (as src/lib/errors.ts; warehouse/bigquery.ts does the same for BigQuery).
 * `classifySalesforceError` is the one place that reads Salesforce's error codes, HTTP statuses
 * and network failures; callers switch on `kind` and never match messages.
 *
 *   kind          what it means                                   what callers do
 *   limit         an allowance is spent (REQUEST_LIMIT_EXCEEDED)  pause, look again later
 *   revoked       the refresh token / JWT grant is dead           stop; an operator reconnects
 *   auth          a token was refused or could not be had         renew the token, back off
 *   gone          the thing asked for no longer exists            start over (a new Bulk job)
 *   out-of-reach  getDeleted's log does not reach that far back   compare ids (whole-object resync)
 *   too-large     more ids than getDeleted returns at once        split the range
 *   invalid       Salesforce refused the request as malformed     fail with Salesforce's words
 *   timeout       no answer in time                               retry later
 *   transient     a 5xx, a reset connection, a refused connect    retry later
 */
export type SalesforceErrorKind =
  | 'limit'
  | 'revoked'
  | 'auth'
  | 'gone'
  | 'out-of-reach'
  | 'too-large'
  | 'invalid'
  | 'timeout'
  | 'transient';

export class SalesforceError extends Error {
  readonly kind: SalesforceErrorKind;
  /** Salesforce's errorCode (`INVALID_FIELD`, `invalid_grant`, ...), or `HTTP_<status>`, or the network error's code. */
  readonly code: string;
  /** The HTTP status, when there was a response. */
  readonly status: number | undefined;

  constructor(kind: SalesforceErrorKind, code: string, message: string, opts: { status?: number | undefined; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'SalesforceError';
    this.kind = kind;
    this.code = code;
    this.status = opts.status;
  }

  /** Whether the same call may succeed later without anyone changing anything. */
  get retryable(): boolean {
    return this.kind === 'timeout' || this.kind === 'transient' || this.kind === 'limit';
  }
}

export const isSalesforceError = (e: unknown): e is SalesforceError => e instanceof SalesforceError;

const BY_CODE: Record<string, SalesforceErrorKind> = {
  REQUEST_LIMIT_EXCEEDED: 'limit',
  LIMIT_EXCEEDED: 'limit',
  TXN_SECURITY_METERING_ERROR: 'limit',
  invalid_grant: 'revoked',
  INVALID_SESSION_ID: 'auth',
  INVALID_AUTH_HEADER: 'auth',
  invalid_client: 'auth',
  invalid_client_id: 'auth',
  unsupported_grant_type: 'auth',
  NOT_FOUND: 'gone',
  INVALID_LOCATOR: 'gone',
  INVALIDJOBSTATE: 'gone',
  ENTITY_IS_DELETED: 'gone',
  BULK_JOB_FAILED: 'gone',
  BULK_JOB_TIMEOUT: 'timeout',
  INVALID_REPLICATION_DATE: 'out-of-reach',
  EXCEEDED_ID_LIMIT: 'too-large',
  SERVER_UNAVAILABLE: 'transient',
  UNABLE_TO_LOCK_ROW: 'transient',
};
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN', 'UND_ERR_SOCKET']);

/**
 * What a failed call means. `e` is whatever jsforce, fetch or our own HTTP code threw; `status`
 * and `code` come from a response when the caller read one.
 */
export function classifySalesforceError(e: unknown, from: { status?: number; code?: string; message?: string } = {}): SalesforceError {
  if (e instanceof SalesforceError) return e;
  const err = (e ?? {}) as {
    name?: unknown;
    message?: unknown;
    errorCode?: unknown;
    code?: unknown;
    cause?: unknown;
    statusCode?: unknown;
  };
  const cause = (err.cause ?? {}) as { code?: unknown };
  const status = from.status ?? (typeof err.statusCode === 'number' ? err.statusCode : undefined);
  const code =
    from.code ??
    (typeof err.errorCode === 'string' && err.errorCode ? err.errorCode : undefined) ??
    (typeof err.code === 'string' && err.code ? err.code : undefined) ??
    (typeof cause.code === 'string' ? cause.code : undefined) ??
    (typeof err.name === 'string' && /^[A-Z_]+$/.test(err.name) ? err.name : undefined) ??
    (status ? `HTTP_${status}` : 'UNKNOWN');
  const message = from.message ?? (typeof err.message === 'string' ? err.message : String(e));
  const make = (kind: SalesforceErrorKind) => new SalesforceError(kind, code, message, { status, cause: e });
  if (BY_CODE[code]) return make(BY_CODE[code]);
  if (err.name === 'TimeoutError' || err.name === 'AbortError' || code === 'ETIMEDOUT') return make('timeout');
  if (NETWORK.has(code) || (typeof err.message === 'string' && /fetch failed|socket hang up/i.test(err.message))) return make('transient');
  if (status === 401) return make('auth');
  if (status === 404) return make('gone');
  if (status === 429) return make('limit');
  if (status !== undefined && status >= 500) return make('transient');
  if (status !== undefined && status >= 400) return make('invalid');
  // jsforce names Salesforce's errors by their errorCode (upper case); anything else is ours or the network's.
  return make(typeof err.errorCode === 'string' ? 'invalid' : 'transient');
}

/** Rejects with a `timeout` SalesforceError when `p` has not settled after `ms` (for calls that take no AbortSignal). */
export async function withTimeout<T>(call: PromiseLike<T>, ms: number, what: string): Promise<T> {
  const p = Promise.resolve(call);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SalesforceError('timeout', 'TIMEOUT', `${what}: no answer from Salesforce within ${ms} ms`)), ms);
  });
  // The call goes on in the background after the deadline; its late failure has nobody to tell.
  p.catch(() => {});
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}
