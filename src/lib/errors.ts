/**
 * Errors named by the decision the caller must make.
 * `code` is stable and machine-readable; `retryable` says whether trying again later can succeed;
 * the original error rides along as `cause`. One place (api/errors.ts) maps codes to HTTP statuses.
 */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'NOT_CONFIGURED'
  | 'BAD_GATEWAY'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNAVAILABLE'
  | 'OVERLOADED'
  | 'RATE_LIMITED'
  /** A change cursor older than purged deletes (410): the app starts again from since=0. */
  | 'CURSOR_EXPIRED'
  /** What the caller asked to create exists already (409); the answer says which. */
  | 'EXISTS'
  /** A console request without its session's CSRF token, or from another origin (403). */
  | 'CSRF'
  | 'CONFIG'
  | 'INTERNAL';

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** Extra detail safe to show to the caller (e.g. one message per bad change). */
  readonly details: readonly string[] | undefined;
  /** Seconds the caller should wait before trying again (the Retry-After header), when known. */
  readonly retryAfterSeconds: number | undefined;
  /** More fields of the answer, safe to show (e.g. the existing job of a 409). */
  readonly extra: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: {
      retryable?: boolean;
      cause?: unknown;
      details?: readonly string[];
      retryAfterSeconds?: number;
      extra?: Record<string, unknown>;
    } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.retryable = opts.retryable ?? (code === 'UNAVAILABLE' || code === 'OVERLOADED');
    this.details = opts.details;
    this.retryAfterSeconds = opts.retryAfterSeconds;
    this.extra = opts.extra;
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;

/** Postgres SQLSTATE classes that mean "the database cannot serve us right now", not "your data is bad". */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[1-4]|58)/;
const UNAVAILABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH']);

/** True when an error from pg/kysely means the database is down or unreachable (worth a 503 and a retry). */
export function isDatabaseUnavailable(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown } | null;
  if (!err || typeof err !== 'object') return false;
  const code = typeof err.code === 'string' ? err.code : '';
  if (UNAVAILABLE_NODE_CODES.has(code) || UNAVAILABLE_SQLSTATE.test(code)) return true;
  const msg = typeof err.message === 'string' ? err.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED/i.test(
    msg,
  );
}

/** Deadlocks and serialization failures: the same transaction may simply be run again. */
export function isTransientConflict(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}
