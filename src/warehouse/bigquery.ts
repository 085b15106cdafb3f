import { BigQuery } from '@google-cloud/bigquery';
import type * as StorageLib from '@google-cloud/bigquery-storage';
import { OAuth2Client, type AuthClient } from 'google-auth-library';
import protobuf from 'protobufjs';
import type { BqField } from './bq-schema.ts';

/**
 * The few BigQuery calls the warehouse makes, behind an interface we own (README, "Development": vendor libraries stay in their wrappers):
 * datasets and tables get/create/patch/delete over REST (@google-cloud/bigquery), and rows over
 * the Storage Write API's gRPC (@google-cloud/bigquery-storage, its managedwriter): appends at an
 * offset to a committed-type stream (history, exactly once) and change-data-capture upserts to a
 * table's default stream (latest state). Vendor types and errors stay in this file; callers see
 * `WarehouseError` with the decision to make (`kind`), or an `AppendOutcome`.
 */
export interface TableSpec {
  readonly fields?: readonly BqField[];
  /** Day partitions on this TIMESTAMP column. */
  readonly partitionField?: string;
  readonly clusterFields?: readonly string[];
  /** Standard SQL of a view (then no fields). */
  readonly view?: string;
  /** Primary key, declared NOT ENFORCED (BigQuery never checks it): the table takes CDC upserts. */
  readonly primaryKey?: readonly string[];
  /** `max_staleness` of a CDC table, as a BigQuery INTERVAL literal (`0-0 0 0:15:0`). */
  readonly maxStaleness?: string;
}

/** A row change for a CDC table: `_CHANGE_TYPE` and `_CHANGE_SEQUENCE_NUMBER` (hex, `/`-separated sections). */
export interface CdcRow {
  readonly json: Record<string, unknown>;
  readonly type: 'UPSERT' | 'DELETE';
  readonly sequence: string;
}

/**
 * What became of one append (the Storage Write API appends a request's rows all or none):
 * - ok: appended;
 * - exists: the offset is below the stream's end (ALREADY_EXISTS): these rows were appended before;
 * - out_of_range: the offset is past the stream's end (OUT_OF_RANGE): the stream lost rows we sent;
 * - stream_gone: the stream was finalized or is no longer known (NOT_FOUND): use a new one;
 * - row_errors: nothing appended; the listed rows can never be (the others can, without them).
 */
export type AppendOutcome =
  | { kind: 'ok' }
  | { kind: 'exists'; message: string }
  | { kind: 'out_of_range'; message: string }
  | { kind: 'stream_gone'; message: string }
  | { kind: 'row_errors'; rows: Array<{ index: number; message: string }> };

export interface WarehouseTable {
  ensureDataset(dataset: string): Promise<void>;
  /** The table's columns, or undefined when it does not exist. */
  getTable(dataset: string, table: string): Promise<{ fields: BqField[]; isView: boolean; primaryKey: string[] } | undefined>;
  /** Creates a table or view; 'exists' when it was already there. */
  createTable(dataset: string, table: string, spec: TableSpec): Promise<'created' | 'exists'>;
  patchTable(dataset: string, table: string, spec: TableSpec): Promise<void>;
  deleteTable(dataset: string, table: string): Promise<void>;
  /** Opens a committed-type write stream on a table; returns its name. */
  createStream(dataset: string, table: string): Promise<string>;
  /** Appends rows (typed for `fields`, the table's columns) to a committed stream at `offset`. */
  append(stream: string, fields: readonly BqField[], rows: ReadonlyArray<Record<string, unknown>>, offset: number): Promise<AppendOutcome>;
  /** Appends CDC changes to the default stream of a table with a primary key (at least once). */
  upsert(dataset: string, table: string, fields: readonly BqField[], rows: readonly CdcRow[]): Promise<AppendOutcome>;
  /** Bytes of row data sent over the Storage Write API so far (the cost model of the benchmark). */
  bytesSent(): number;
  close(): Promise<void>;
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
  /** `host:port` of another Storage Write API endpoint (emulators, tests): plaintext gRPC, no Google credentials. */
  readonly storageEndpoint?: string | undefined;
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
    // The race below reports p's failure; this only stops an unhandled rejection after a timeout.
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
    ...(spec.primaryKey ? { tableConstraints: { primaryKey: { columns: [...spec.primaryKey] } } } : {}),
    ...(spec.maxStaleness ? { maxStaleness: spec.maxStaleness } : {}),
  });
  const storage = createStorageWriter(opts);

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
        const m = meta as {
          schema?: { fields?: BqField[] };
          type?: string;
          view?: unknown;
          tableConstraints?: { primaryKey?: { columns?: string[] } };
        };
        return {
          fields: (m.schema?.fields ?? []).map((f) => ({ name: f.name, type: f.type, ...(f.mode ? { mode: f.mode } : {}) })),
          isView: m.type === 'VIEW' || !!m.view,
          primaryKey: m.tableConstraints?.primaryKey?.columns ?? [],
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
    createStream: storage.createStream,
    append: storage.append,
    upsert: storage.upsert,
    bytesSent: storage.bytesSent,
    close: storage.close,
  };
}

/** FieldDescriptorProto.Type (numbers) -> protobufjs types: the scalar types BigQuery's adapter produces. */
const PROTO_TYPES: Record<number, string> = { 1: 'double', 2: 'float', 3: 'int64', 5: 'int32', 8: 'bool', 9: 'string', 12: 'bytes' };
const LABEL_REQUIRED = 2;

type Encoder = { descriptor: ReturnType<typeof StorageLib.adapt.convertStorageSchemaToProto2Descriptor>; type: protobuf.Type };

/**
 * The Storage Write API client and grpc-js, loaded on first use: they weigh seconds of start-up,
 * which CLI commands and a serve without the warehouse should not pay.
 */
type Lib = { adapt: typeof StorageLib.adapt; managedwriter: typeof StorageLib.managedwriter; grpc: typeof import('google-gax').grpc };
let libPromise: Promise<Lib> | undefined;
const loadLib = (): Promise<Lib> =>
  (libPromise ??= Promise.all([import('@google-cloud/bigquery-storage'), import('google-gax')]).then(([s, g]) => ({
    adapt: s.adapt,
    managedwriter: s.managedwriter,
    grpc: g.grpc,
  })));

/** gRPC status codes (google.rpc.Code), as the Storage Write API answers them. */
const CODE = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
const CODE_NAME = new Map<number, string>(Object.entries(CODE).map(([k, v]) => [v, k]));

/** The proto descriptor BigQuery's adapter makes for a table's columns (plus the CDC pseudo-columns), and its encoder. */
function encoderOf(adapt: Lib['adapt'], fields: readonly BqField[], cdc: boolean): Encoder {
  const storageSchema = adapt.convertBigQuerySchemaToStorageTableSchema({
    fields: fields.map((f) => ({ name: f.name, type: f.type, mode: f.mode ?? 'NULLABLE' })),
  });
  const descriptor = cdc
    ? adapt.convertStorageSchemaToProto2Descriptor(storageSchema, 'row', adapt.withChangeType(), adapt.withChangeSequenceNumber())
    : adapt.convertStorageSchemaToProto2Descriptor(storageSchema, 'row');
  const type = new protobuf.Type('row');
  for (const f of descriptor.field ?? []) {
    const t = PROTO_TYPES[Number(f.type)];
    if (!t) throw new Error(`column ${f.name}: no proto type for ${f.type}`);
    type.add(new protobuf.Field(f.name!, f.number!, t, f.label === LABEL_REQUIRED ? 'required' : undefined));
  }
  new protobuf.Root().add(type);
  return { descriptor, type };
}

/** A row's value as the Storage Write API takes it for the column's type (TIMESTAMP: microseconds, DATE: days). */
function protoValue(f: BqField, v: unknown): unknown {
  switch (f.type) {
    case 'TIMESTAMP': {
      const ms = v instanceof Date ? v.getTime() : Date.parse(String(v));
      return Number.isFinite(ms) ? ms * 1000 : undefined;
    }
    case 'DATE': {
      const ms = Date.parse(`${String(v)}T00:00:00Z`);
      return Number.isFinite(ms) ? Math.round(ms / 86_400_000) : undefined;
    }
    case 'INT64': {
      const n = Number(v);
      return Number.isSafeInteger(n) ? n : (protobuf.util.Long as unknown as { fromString(s: string): unknown }).fromString(String(v));
    }
    case 'BOOL':
      return v === true || v === 'true';
    default:
      return String(v);
  }
}

function encodeRow(enc: Encoder, fields: readonly BqField[], json: Record<string, unknown>, cdc?: CdcRow): Uint8Array {
  const msg: Record<string, unknown> = {};
  for (const f of fields) {
    const v = json[f.name];
    if (v === null || v === undefined) continue;
    const p = protoValue(f, v);
    if (p !== undefined) msg[f.name] = p;
  }
  if (cdc) {
    msg._CHANGE_TYPE = cdc.type;
    msg._CHANGE_SEQUENCE_NUMBER = cdc.sequence;
  }
  return enc.type.encode(enc.type.create(msg)).finish();
}

/**
 * The Storage Write API side: one managedwriter connection per (stream, schema), opened on first
 * use and dropped after any failure (a fresh connection never pairs a late answer with the next
 * request). Write retries of the library stay off: the drain decides (it keeps the rows, the
 * offsets and the backoff in PostgreSQL).
 */
function createStorageWriter(opts: BigQueryOptions) {
  const endpoint = opts.storageEndpoint ? /^\[?([^\]]+?)\]?:(\d+)$/.exec(opts.storageEndpoint) : null;
  if (opts.storageEndpoint && !endpoint) throw new Error(`BIGQUERY_STORAGE_API_ENDPOINT must be host:port, got ${opts.storageEndpoint}`);
  type Client = InstanceType<Lib['managedwriter']['WriterClient']>;
  let clientPromise: Promise<{ lib: Lib; client: Client }> | undefined;
  const connect = () =>
    (clientPromise ??= loadLib().then((lib) => ({
      lib,
      client: new lib.managedwriter.WriterClient(
        endpoint
          ? {
              apiEndpoint: endpoint[1]!,
              port: Number(endpoint[2]),
              // The library's own grpc-js copy: grpc-js refuses credentials made by another copy.
              sslCreds: lib.grpc.credentials.createInsecure(),
              // Without it google-gax looks for Google credentials.
              universeDomain: 'googleapis.com',
            }
          : { projectId: opts.projectId },
      ),
    })));
  type Open = {
    connection: Awaited<ReturnType<Client['createStreamConnection']>>;
    writer: InstanceType<Lib['managedwriter']['Writer']>;
    broken: boolean;
  };
  const open = new Map<string, Promise<Open>>();
  const encoders = new Map<string, Encoder>();
  let sent = 0;
  const tablePath = (dataset: string, table: string) => `projects/${opts.projectId}/datasets/${dataset}/tables/${table}`;

  function connectionFor(stream: string, key: string, enc: Encoder): Promise<Open> {
    const k = `${stream}\u0000${key}`;
    let p = open.get(k);
    if (!p) {
      p = (async () => {
        const { lib, client } = await connect();
        const connection = await client.createStreamConnection({ streamId: stream });
        const o: Open = {
          connection,
          writer: new lib.managedwriter.Writer({ connection, protoDescriptor: enc.descriptor }),
          broken: false,
        };
        // An unhandled connection error would end the process; this one only retires the connection.
        connection.onConnectionError(() => drop(k, o));
        connection.on('close', () => drop(k, o));
        return o;
      })();
      open.set(k, p);
      p.catch(() => open.delete(k));
    }
    return p;
  }
  function drop(k: string, o: Open) {
    if (o.broken) return;
    o.broken = true;
    void open.get(k)?.then((x) => x === o && open.delete(k));
    try {
      o.connection.close();
    } catch {
      // already closed
    }
  }

  function outcomeOf(
    code: number | undefined,
    message: string,
    rowErrors: Array<{ index?: unknown; message?: string | null }>,
    defaultStream: boolean,
  ): AppendOutcome {
    if (code === CODE.ALREADY_EXISTS) return { kind: 'exists', message };
    if (code === CODE.OUT_OF_RANGE) return { kind: 'out_of_range', message };
    if (rowErrors.length)
      return { kind: 'row_errors', rows: rowErrors.map((r) => ({ index: Number(r.index ?? -1), message: r.message ?? 'invalid row' })) };
    if (code === CODE.NOT_FOUND && defaultStream) throw new WarehouseError('not_found', message, { status: 404 });
    if (code === CODE.NOT_FOUND || (code === CODE.INVALID_ARGUMENT && /finali[sz]ed|STREAM_FINALIZED/i.test(message)))
      return { kind: 'stream_gone', message };
    if (code === CODE.PERMISSION_DENIED || code === CODE.UNAUTHENTICATED)
      throw new WarehouseError('denied', message, { status: code === CODE.UNAUTHENTICATED ? 401 : 403 });
    if (code === CODE.INVALID_ARGUMENT || code === CODE.FAILED_PRECONDITION)
      throw new WarehouseError('invalid', message, { status: 400, reason: 'invalid' });
    throw new WarehouseError('retryable', message, { reason: code === undefined ? undefined : CODE_NAME.get(code) });
  }

  async function send(stream: string, key: string, enc: Encoder, rows: Uint8Array[], offset: number | undefined): Promise<AppendOutcome> {
    const k = `${stream}\u0000${key}`;
    let o: Open;
    try {
      o = await connectionFor(stream, key, enc);
    } catch (e) {
      throw new WarehouseError('retryable', (e as Error).message, { cause: e });
    }
    for (const r of rows) sent += r.length;
    let timer: NodeJS.Timeout | undefined;
    try {
      const pending = o.writer.appendRows({ serializedRows: rows }, offset);
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new WarehouseError('retryable', `BigQuery did not answer within ${opts.timeoutMs} ms`, { reason: 'timeout' })),
          opts.timeoutMs,
        );
      });
      const result = pending.getResult();
      // The race below reports the failure; this only stops an unhandled rejection after a timeout.
      result.catch(() => {});
      const response = await Promise.race([result, deadline]);
      if (!response.error) return { kind: 'ok' };
      const out = outcomeOf(
        response.error.code ?? undefined,
        response.error.message ?? 'append failed',
        response.rowErrors ?? [],
        offset === undefined,
      );
      if (out.kind === 'stream_gone' || out.kind === 'out_of_range') drop(k, o);
      return out;
    } catch (e) {
      // A timeout or a failed connection: this connection is done (its late answers must not be
      // taken for the next request's).
      drop(k, o);
      if (e instanceof WarehouseError) throw e;
      const g = e as { code?: number; message?: string };
      return outcomeOf(g.code, g.message ?? String(e), [], offset === undefined);
    } finally {
      clearTimeout(timer);
    }
  }

  async function encoder(fields: readonly BqField[], cdc: boolean): Promise<{ key: string; enc: Encoder }> {
    const key = `${cdc ? 'cdc' : 'rows'}:${fields.map((f) => `${f.name}:${f.type}:${f.mode ?? ''}`).join(',')}`;
    let enc = encoders.get(key);
    if (!enc) encoders.set(key, (enc = encoderOf((await loadLib()).adapt, fields, cdc)));
    return { key, enc };
  }

  return {
    async createStream(dataset: string, table: string): Promise<string> {
      try {
        const { lib, client } = await connect();
        return await client.createWriteStream(
          { streamType: lib.managedwriter.CommittedStream, destinationTable: tablePath(dataset, table) },
          {
            timeout: opts.timeoutMs,
            retry: null,
          } as never,
        );
      } catch (e) {
        const g = e as { code?: number; message?: string };
        const cause = (e as { cause?: { code?: number } }).cause;
        const code = g.code ?? cause?.code;
        const message = g.message ?? String(e);
        if (code === CODE.NOT_FOUND || /not.?found/i.test(message)) throw new WarehouseError('not_found', message, { status: 404 });
        if (code === CODE.PERMISSION_DENIED || code === CODE.UNAUTHENTICATED) throw new WarehouseError('denied', message);
        throw new WarehouseError('retryable', message, { cause: e });
      }
    },
    async append(stream: string, fields: readonly BqField[], rows: ReadonlyArray<Record<string, unknown>>, offset: number) {
      const { key, enc } = await encoder(fields, false);
      return send(
        stream,
        key,
        enc,
        rows.map((r) => encodeRow(enc, fields, r)),
        offset,
      );
    },
    async upsert(dataset: string, table: string, fields: readonly BqField[], rows: readonly CdcRow[]) {
      const { key, enc } = await encoder(fields, true);
      return send(
        `${tablePath(dataset, table)}/streams/_default`,
        key,
        enc,
        rows.map((r) => encodeRow(enc, fields, r.json, r)),
        undefined,
      );
    },
    bytesSent: () => sent,
    async close() {
      // Closing: a stream that failed to open or to close has nothing left to send.
      for (const p of open.values()) void p.then((o) => drop('', o)).catch(() => {});
      open.clear();
      if (!clientPromise) return;
      const { client } = await clientPromise;
      try {
        client.close();
      } catch {
        // a connection that never opened has nothing to close
      }
    },
  };
}
