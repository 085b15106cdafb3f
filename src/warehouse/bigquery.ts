import { BigQuery } from '@google-cloud/bigquery';
import { OAuth2Client, type AuthClient } from 'google-auth-library';
import type { BqField } from './bq-schema.ts';

/**
 * The few BigQuery calls the warehouse makes, behind an interface we own (STYLE.md, principle 2):
 * datasets and tables get/create/patch/delete, and tabledata.insertAll. Vendor types and errors
 * stay in this file; callers see `WarehouseError` with the decision to make (`kind`).
 */
export interface TableSpec {
  readonly fields?: readonly BqField[];
  /** Day partitions on this TIMESTAMP column. */
  readonly partitionField?: string;
  readonly clusterFields?: readonly string[];
  /** Standard SQL of a view (then no fields). */
  readonly view?: string;
}

export interface InsertRow {
  readonly insertId: string;
  readonly json: Record<string, unknown>;
}

/** Rows of one insertAll call that BigQuery did not take, by index into the request. */
export interface InsertFailure {
  readonly index: number;
  readonly reason: string;
  readonly message: string;
}

export interface WarehouseTable {
  ensureDataset(dataset: string): Promise<void>;
  /** The table's columns, or undefined when it does not exist. */
  getTable(dataset: string, table: string): Promise<{ fields: BqField[]; isView: boolean } | undefined>;
  /** Creates a table or view; 'exists' when it was already there. */
  createTable(dataset: string, table: string, spec: TableSpec): Promise<'created' | 'exists'>;
  patchTable(dataset: string, table: string, spec: TableSpec): Promise<void>;
  deleteTable(dataset: string, table: string): Promise<void>;
  /** insertAll with `skipInvalidRows: false`; resolves with the rows not inserted (none: all accepted). */
  insertAll(dataset: string, table: string, rows: readonly InsertRow[]): Promise<InsertFailure[]>;
}

/**
 * - retryable: outage, timeout, 5xx, quota or rate limit: try again later, the outbox keeps the rows;
 * - invalid: the request as a whole was refused (400): some row in it can never be accepted;
 * - not_found: the dataset or table is gone (re-create it);
 * - denied: credentials or permissions (401/403): an operator must act; retried slowly.
 */
export type WarehouseErrorKind = 'retryable' | 'invalid' | 'not_found' | 'denied';

export class WarehouseError extends Error {
  readonly kind: WarehouseErrorKind;
  readonly status: number | undefined;
  readonly reason: string | undefined;
  constructor(
    kind: WarehouseErrorKind,
    message: string,
    opts: { status?: number | undefined; reason?: string | undefined; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'WarehouseError';
    this.kind = kind;
    this.status = opts.status;
    this.reason = opts.reason;
  }
}

const RETRYABLE_REASONS = new Set(['quotaExceeded', 'rateLimitExceeded', 'backendError', 'internalError', 'timeout']);

export function classify(e: unknown): WarehouseError {
  if (e instanceof WarehouseError) return e;
  const err = e as { code?: unknown; message?: string; errors?: Array<{ reason?: string; message?: string }> };
  const status = typeof err?.code === 'number' ? err.code : undefined;
  const reason = err?.errors?.[0]?.reason;
  const message = err?.message ?? String(e);
  if (status === undefined || status >= 500 || status === 429 || (reason && RETRYABLE_REASONS.has(reason)))
    return new WarehouseError('retryable', message, { status, reason, cause: e });
  if (status === 404) return new WarehouseError('not_found', message, { status, reason, cause: e });
  if (status === 401 || status === 403) return new WarehouseError('denied', message, { status, reason, cause: e });
  if (status === 400 || status === 413) return new WarehouseError('invalid', message, { status, reason, cause: e });
  return new WarehouseError('retryable', message, { status, reason, cause: e });
}

export interface BigQueryOptions {
  readonly projectId: string;
  /** Another endpoint (emulators, tests): then no Google credentials are looked up. */
  readonly apiEndpoint?: string | undefined;
  /** Given by tests; default: Google's standard credentials, or a static token for an endpoint. */
  readonly authClient?: AuthClient | undefined;
  /** Per-request timeout; keep it well below the outbox lease. */
  readonly timeoutMs: number;
}

/** An auth client that never reaches for Google's metadata server (emulators take any token). */
export function staticTokenAuth(token = 'sfmirror'): AuthClient {
  return new OAuth2Client({ credentials: { access_token: token, expiry_date: Date.now() + 10 * 365 * 86_400_000 } });
}

export function createBigQueryTable(opts: BigQueryOptions): WarehouseTable {
  const authClient = opts.authClient ?? (opts.apiEndpoint ? staticTokenAuth() : undefined);
  const bq = new BigQuery({
    projectId: opts.projectId,
    ...(opts.apiEndpoint ? { apiEndpoint: opts.apiEndpoint } : {}),
    ...(authClient ? { authClient } : {}),
    // Retries are ours (the drain backs off with the rows safe in the outbox); a hidden retry loop
    // inside the client would hold the lease for minutes.
    retryOptions: { autoRetry: false, maxRetries: 0 },
    timeout: opts.timeoutMs,
  } as ConstructorParameters<typeof BigQuery>[0]);
  // The client's own `timeout` does not reach its HTTP layer (node-fetch 3 ignores it), so the
  // deadline is enforced here. A request past it is abandoned, not aborted (the client offers no
  // abort): its rows go back to the outbox, and should the late request still land, the re-sent
  // copy carries the same insertId and the view counts the change once.
  const timed = <T>(p: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new WarehouseError('retryable', `BigQuery did not answer within ${opts.timeoutMs} ms`, { reason: 'timeout' })),
        opts.timeoutMs,
      );
    });
    p.catch(() => {});
    return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
  };
  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await timed(fn());
    } catch (e) {
      throw classify(e);
    }
  };
  const body = (spec: TableSpec) => ({
    ...(spec.fields ? { schema: { fields: spec.fields.map((f) => ({ ...f })) } } : {}),
    ...(spec.partitionField ? { timePartitioning: { type: 'DAY', field: spec.partitionField } } : {}),
    ...(spec.clusterFields ? { clustering: { fields: [...spec.clusterFields] } } : {}),
    ...(spec.view ? { view: { query: spec.view, useLegacySql: false } } : {}),
  });

  return {
    async ensureDataset(dataset) {
      await call(async () => {
        try {
          await timed(bq.dataset(dataset).get({ autoCreate: true }));
        } catch (e) {
          if ((e as { code?: number }).code !== 409) throw e;
        }
      });
    },
    async getTable(dataset, table) {
      try {
        const [meta] = await timed(bq.dataset(dataset).table(table).getMetadata());
        const m = meta as { schema?: { fields?: BqField[] }; type?: string; view?: unknown };
        return {
          fields: (m.schema?.fields ?? []).map((f) => ({ name: f.name, type: f.type, ...(f.mode ? { mode: f.mode } : {}) })),
          isView: m.type === 'VIEW' || !!m.view,
        };
      } catch (e) {
        const w = classify(e);
        if (w.kind === 'not_found') return undefined;
        throw w;
      }
    },
    async createTable(dataset, table, spec) {
      try {
        await timed(bq.dataset(dataset).createTable(table, body(spec)));
        return 'created';
      } catch (e) {
        if ((e as { code?: number }).code === 409) return 'exists';
        throw classify(e);
      }
    },
    async patchTable(dataset, table, spec) {
      await call(() => bq.dataset(dataset).table(table).setMetadata(body(spec)));
    },
    async deleteTable(dataset, table) {
      try {
        await timed(bq.dataset(dataset).table(table).delete());
      } catch (e) {
        const w = classify(e);
        if (w.kind !== 'not_found') throw w;
      }
    },
    async insertAll(dataset, table, rows) {
      if (!rows.length) return [];
      const sent = rows.map((r) => ({ insertId: r.insertId, json: r.json }));
      const indexOf = new Map<object, number>(sent.map((r, i) => [r, i]));
      try {
        await timed(
          bq
            .dataset(dataset)
            .table(table)
            .insert(sent, { raw: true, skipInvalidRows: false, ignoreUnknownValues: false, partialRetries: 0 }),
        );
        return [];
      } catch (e) {
        const partial = e as { name?: string; errors?: Array<{ row?: object; errors?: Array<{ reason?: string; message?: string }> }> };
        if (partial?.name === 'PartialFailureError' && Array.isArray(partial.errors)) {
          return partial.errors.map((x) => ({
            index: x.row ? (indexOf.get(x.row) ?? -1) : -1,
            reason: x.errors?.[0]?.reason ?? 'unknown',
            message:
              x.errors
                ?.map((m) => m.message)
                .filter(Boolean)
                .join('; ') ||
              (x.errors?.[0]?.reason ?? 'rejected'),
          }));
        }
        throw classify(e);
      }
    },
  };
}
