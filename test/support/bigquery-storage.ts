import { createRequire } from 'node:module';
import path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { grpc } from 'google-gax';
import protobuf from 'protobufjs';
import { checkValue, type BigQueryStandIn, type Field, type StandInTable } from './bigquery.ts';

/**
 * BigQuery's Storage Write API (`google.cloud.bigquery.storage.v1.BigQueryWrite`) over plaintext
 * gRPC on 127.0.0.1, built from the proto files `@google-cloud/bigquery-storage` ships, so the real
 * client library (managedwriter) is what the tests exercise. Tables are the REST stand-in's
 * (test/support/bigquery.ts): rows appended here show in `rest.rows(dataset, table)`.
 *
 * As Google documents it:
 * - CreateWriteStream makes COMMITTED (rows visible on append), PENDING or BUFFERED streams;
 *   `<table>/streams/_default` always exists and is at-least-once (an offset there is refused).
 * - An append with an offset below the stream's end answers ALREADY_EXISTS, one past it
 *   OUT_OF_RANGE; an append is all or nothing: one invalid row refuses the request with
 *   INVALID_ARGUMENT and `row_errors` naming every bad row.
 * - A writer field the table lacks is a schema mismatch (INVALID_ARGUMENT, no row appended).
 * - `_CHANGE_TYPE` (UPSERT, DELETE) and `_CHANGE_SEQUENCE_NUMBER` are taken on the default stream
 *   of a table with a primary key: per key, the change with the highest sequence number wins
 *   (sections of hex digits separated by `/`, compared in order), whatever the arrival order.
 * - Finalize stops appends (the rows stay); a stream can be lost (`loseStream`: NOT_FOUND).
 * Faults per append (`fault`): UNAVAILABLE, a hang, an append whose answer is lost (the rows
 * land, the call fails with UNAVAILABLE) or comes late. Rows the service refuses: `rest.poison`.
 */
export type StorageFault =
  | { kind: 'unavailable' }
  /** The call ends with this gRPC status (e.g. RESOURCE_EXHAUSTED for a quota). */
  | { kind: 'status'; code: number }
  /** Never answers and appends nothing (the client gives up at its deadline). */
  | { kind: 'hang' }
  /** Appends, then the call fails with UNAVAILABLE: the rows are in, the client does not know it. */
  | { kind: 'lose-answer' }
  /** Appends, answers after `ms` (a client with a shorter deadline re-sends a batch that landed). */
  | { kind: 'slow'; ms: number };

export interface AppendInfo {
  stream: string;
  dataset: string;
  table: string;
  offset: number | undefined;
  rows: Array<Record<string, unknown>>;
}

export interface StreamState {
  name: string;
  dataset: string;
  table: string;
  type: 'COMMITTED' | 'PENDING' | 'BUFFERED' | '_default';
  rowCount: number;
  finalized: boolean;
  /** Rows of a PENDING stream, applied on commit. */
  held: Array<Record<string, unknown>>;
}

export interface StorageStandIn {
  /** `host:port`, as BIGQUERY_STORAGE_API_ENDPOINT takes it. */
  endpoint: string;
  streams: Map<string, StreamState>;
  fault: ((append: AppendInfo) => StorageFault | undefined) | undefined;
  stats: {
    appends: number;
    rowsReceived: number;
    rowsStored: number;
    bytesReceived: number;
    alreadyExists: number;
    outOfRange: number;
    rowErrors: number;
    streamsCreated: number;
    cdcApplied: number;
    /** Rows and row bytes appended to committed streams (history) and to default streams (CDC). */
    committedRows: number;
    committedBytes: number;
    defaultRows: number;
    defaultBytes: number;
  };
  /** Stream loss as BigQuery may do it: finalized (appends refused) or gone (NOT_FOUND). */
  loseStream(name: string, how: 'finalize' | 'delete'): void;
  close(): Promise<void>;
}

const require = createRequire(import.meta.url);
// Both packages' main module is build/src/index.js; their protos are in build/protos.
const STORAGE_PROTOS = path.join(path.dirname(require.resolve('@google-cloud/bigquery-storage')), '..', 'protos');
const GAX_PROTOS = path.join(path.dirname(require.resolve('google-gax')), '..', 'protos');

const Status = grpc.status;
type Call = grpc.ServerDuplexStream<Record<string, any>, Record<string, any>>;

/** protobuf FieldDescriptorProto.Type names -> protobufjs types. */
const PROTO_TYPES: Record<string, string> = {
  TYPE_DOUBLE: 'double',
  TYPE_FLOAT: 'float',
  TYPE_INT64: 'int64',
  TYPE_UINT64: 'uint64',
  TYPE_INT32: 'int32',
  TYPE_BOOL: 'bool',
  TYPE_STRING: 'string',
  TYPE_BYTES: 'bytes',
  TYPE_UINT32: 'uint32',
  TYPE_SINT64: 'sint64',
  TYPE_SINT32: 'sint32',
};

/** A protobufjs type from the writer's DescriptorProto (flat rows: what the warehouse sends). */
function typeOf(descriptor: { name?: string; field?: Array<Record<string, any>> }): protobuf.Type {
  const type = new protobuf.Type(descriptor.name || 'Row');
  for (const f of descriptor.field ?? []) {
    const t = PROTO_TYPES[String(f.type)];
    if (!t) throw new Error(`unsupported field type ${f.type} of ${f.name}`);
    type.add(new protobuf.Field(f.name, Number(f.number), t, f.label === 'LABEL_REQUIRED' ? 'required' : undefined));
  }
  new protobuf.Root().add(type);
  return type;
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');
/** A decoded proto value as the REST API shows it for the column's type. */
function restValue(f: Field, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (f.type === 'TIMESTAMP' && typeof v === 'string' && /^-?\d+$/.test(v)) return new Date(Number(BigInt(v) / 1000n)).toISOString();
  if (f.type === 'DATE' && typeof v === 'number') {
    const d = new Date(v * 86_400_000);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  }
  return v;
}

/** `_CHANGE_SEQUENCE_NUMBER` as BigQuery compares it: up to four sections of up to 16 hex digits. */
export function compareSequence(a: string, b: string): number {
  const pa = a.split('/').map((x) => BigInt(`0x${x}`));
  const pb = b.split('/').map((x) => BigInt(`0x${x}`));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? -1n;
    const y = pb[i] ?? -1n;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}
const SEQUENCE = /^[0-9A-Fa-f]{1,16}(\/[0-9A-Fa-f]{1,16}){0,3}$/;

export async function startBigQueryStorage(t: { teardown(fn: () => unknown): void }, rest: BigQueryStandIn): Promise<StorageStandIn> {
  const definition = protoLoader.loadSync('google/cloud/bigquery/storage/v1/storage.proto', {
    includeDirs: [STORAGE_PROTOS, GAX_PROTOS],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as any;
  const service = pkg.google.cloud.bigquery.storage.v1.BigQueryWrite.service;
  const streams = new Map<string, StreamState>();
  const stats = {
    appends: 0,
    rowsReceived: 0,
    rowsStored: 0,
    bytesReceived: 0,
    alreadyExists: 0,
    outOfRange: 0,
    rowErrors: 0,
    streamsCreated: 0,
    cdcApplied: 0,
    committedRows: 0,
    committedBytes: 0,
    defaultRows: 0,
    defaultBytes: 0,
  };
  const calls = new Set<Call>();
  // Per CDC table: key -> highest sequence number seen, and whether that change was a delete.
  const cdcState = new Map<StandInTable, Map<string, { seq: string; deleted: boolean }>>();
  let counter = 0;

  const tableOf = (name: string) => {
    const m = /^projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/]+)(?:\/streams\/([^/]+))?$/.exec(name);
    if (!m || m[1] !== rest.project) return undefined;
    const table = rest.datasets.get(m[2]!)?.get(m[3]!);
    return table && !table.view ? { dataset: m[2]!, name: m[3]!, table, stream: m[4] } : undefined;
  };
  const streamOf = (name: string): StreamState | undefined => {
    const known = streams.get(name);
    if (known) return known;
    const tb = tableOf(name);
    if (tb?.stream !== '_default') return undefined;
    const s: StreamState = { name, dataset: tb.dataset, table: tb.name, type: '_default', rowCount: 0, finalized: false, held: [] };
    streams.set(name, s);
    return s;
  };
  const grpcError = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details });
  const rpcStatus = (code: grpc.status, message: string) => ({ code, message, details: [] });

  const standIn: StorageStandIn = {
    endpoint: '',
    streams,
    fault: undefined,
    stats,
    loseStream(name, how) {
      const s = streams.get(name);
      if (!s) return;
      if (how === 'finalize') s.finalized = true;
      else streams.delete(name);
    },
    close: async () => {},
  };

  /** Applies CDC rows to a table with a primary key: per key, the highest sequence number wins. */
  function applyCdc(table: StandInTable, rows: Array<Record<string, unknown>>) {
    const key = table.primaryKey![0]!;
    let state = cdcState.get(table);
    if (!state) cdcState.set(table, (state = new Map()));
    const current = new Map(table.rows.map((r) => [String(r[key]), r]));
    for (const r of rows) {
      const id = String(r[key]);
      const seq = String(r._CHANGE_SEQUENCE_NUMBER ?? '0');
      const prev = state.get(id);
      if (prev && compareSequence(seq, prev.seq) < 0) continue;
      const deleted = r._CHANGE_TYPE === 'DELETE';
      state.set(id, { seq, deleted });
      const { _CHANGE_TYPE, _CHANGE_SEQUENCE_NUMBER, ...row } = r;
      if (deleted) current.delete(id);
      else current.set(id, row);
      stats.cdcApplied++;
    }
    table.rows = [...current.values()];
  }

  function append(call: Call, state: { stream?: string; type?: protobuf.Type }, req: Record<string, any>) {
    stats.appends++;
    const answer = (body: Record<string, unknown>) => {
      if (!call.destroyed && !call.writableEnded) call.write({ ...body, write_stream: state.stream ?? '' });
    };
    if (req.write_stream) state.stream = req.write_stream;
    const rows = req.proto_rows;
    if (rows?.writer_schema?.proto_descriptor) {
      try {
        state.type = typeOf(rows.writer_schema.proto_descriptor);
      } catch (e) {
        return answer({ error: rpcStatus(Status.INVALID_ARGUMENT, (e as Error).message) });
      }
    }
    const stream = state.stream ? streamOf(state.stream) : undefined;
    if (!stream) {
      // As BigQuery does: the connection ends with NOT_FOUND.
      call.emit('error', grpcError(Status.NOT_FOUND, `Requested entity was not found. Entity: ${state.stream}`));
      return;
    }
    const tb = rest.datasets.get(stream.dataset)?.get(stream.table);
    if (!tb) {
      call.emit('error', grpcError(Status.NOT_FOUND, `Table ${stream.dataset}.${stream.table} not found`));
      return;
    }
    if (!state.type) return answer({ error: rpcStatus(Status.INVALID_ARGUMENT, 'the first request must carry writer_schema') });
    const serialized: Buffer[] = rows?.rows?.serialized_rows ?? [];
    stats.rowsReceived += serialized.length;
    for (const b of serialized) stats.bytesReceived += b.length;
    const decoded = serialized.map((b) =>
      state.type!.toObject(state.type!.decode(b), { longs: String, enums: String, bytes: String, defaults: false }),
    );
    const byName = new Map(tb.fields.map((f) => [f.name.toLowerCase(), f]));
    const cdc = !!tb.primaryKey?.length;
    for (const f of state.type.fieldsArray) {
      const pseudo = f.name === '_CHANGE_TYPE' || f.name === '_CHANGE_SEQUENCE_NUMBER';
      if (pseudo && !cdc) return answer({ error: rpcStatus(Status.INVALID_ARGUMENT, `${f.name} needs a table with a primary key`) });
      if (!pseudo && !byName.has(f.name.toLowerCase()))
        return answer({
          error: rpcStatus(Status.INVALID_ARGUMENT, `Input schema has more fields than BigQuery schema, extra fields: '${f.name}'`),
        });
    }
    const offset = req.offset ? Number(req.offset.value ?? 0) : undefined;
    const info: AppendInfo = { stream: stream.name, dataset: stream.dataset, table: stream.table, offset, rows: [] };
    const json = decoded.map((d) => {
      const row: Record<string, unknown> = {};
      for (const f of tb.fields) {
        const k = state.type!.fieldsArray.find((x) => x.name.toLowerCase() === f.name.toLowerCase())?.name;
        row[f.name] = k === undefined ? null : restValue(f, d[k]);
      }
      if (cdc) {
        row._CHANGE_TYPE = d._CHANGE_TYPE;
        row._CHANGE_SEQUENCE_NUMBER = d._CHANGE_SEQUENCE_NUMBER;
      }
      return row;
    });
    info.rows = json;
    const fault = standIn.fault?.(info);
    if (fault?.kind === 'unavailable') {
      call.emit('error', grpcError(Status.UNAVAILABLE, 'injected: the service is unavailable'));
      return;
    }
    if (fault?.kind === 'status') {
      call.emit('error', grpcError(fault.code, `injected: status ${Status[fault.code]}`));
      return;
    }
    if (fault?.kind === 'hang') return;
    if (stream.finalized)
      return answer({ error: rpcStatus(Status.INVALID_ARGUMENT, `Stream is finalized: ${stream.name} (STREAM_FINALIZED)`) });
    if (stream.type === '_default' && offset !== undefined)
      return answer({ error: rpcStatus(Status.INVALID_ARGUMENT, 'An offset is not allowed on the default stream') });
    if (offset !== undefined && offset < stream.rowCount) {
      stats.alreadyExists++;
      return answer({
        error: rpcStatus(Status.ALREADY_EXISTS, `The offset is within stream, expected offset ${stream.rowCount}, received ${offset}`),
      });
    }
    if (offset !== undefined && offset > stream.rowCount) {
      stats.outOfRange++;
      return answer({
        error: rpcStatus(Status.OUT_OF_RANGE, `The offset is beyond stream, expected offset ${stream.rowCount}, received ${offset}`),
      });
    }
    const rowErrors: Array<{ index: number; code: string; message: string }> = [];
    json.forEach((r, index) => {
      if (cdc) {
        if (r._CHANGE_TYPE !== 'UPSERT' && r._CHANGE_TYPE !== 'DELETE')
          return void rowErrors.push({ index, code: 'FIELDS_ERROR', message: `_CHANGE_TYPE must be UPSERT or DELETE` });
        if (r._CHANGE_SEQUENCE_NUMBER !== undefined && !SEQUENCE.test(String(r._CHANGE_SEQUENCE_NUMBER)))
          return void rowErrors.push({ index, code: 'FIELDS_ERROR', message: `bad _CHANGE_SEQUENCE_NUMBER` });
      }
      for (const f of tb.fields) {
        const p = checkValue(f, r[f.name]);
        if (p) return void rowErrors.push({ index, code: 'FIELDS_ERROR', message: `${f.name}: ${p}` });
      }
      const p = rest.poison?.(r);
      if (p) rowErrors.push({ index, code: 'FIELDS_ERROR', message: p });
    });
    if (rowErrors.length) {
      stats.rowErrors += rowErrors.length;
      return answer({ error: rpcStatus(Status.INVALID_ARGUMENT, `${rowErrors.length} row(s) invalid`), row_errors: rowErrors });
    }
    const start = stream.rowCount;
    stream.rowCount += json.length;
    stats.rowsStored += json.length;
    const bytes = serialized.reduce((n, b) => n + b.length, 0);
    if (stream.type === '_default') {
      stats.defaultRows += json.length;
      stats.defaultBytes += bytes;
    } else {
      stats.committedRows += json.length;
      stats.committedBytes += bytes;
    }
    if (stream.type === 'PENDING' || stream.type === 'BUFFERED') stream.held.push(...json);
    else if (cdc && json.some((r) => r._CHANGE_TYPE)) {
      if (rest.keepRows) applyCdc(tb, json);
    } else if (rest.keepRows) tb.rows.push(...json);
    if (fault?.kind === 'lose-answer') {
      call.emit('error', grpcError(Status.UNAVAILABLE, 'injected: connection lost after the append'));
      return;
    }
    const result = { append_result: stream.type === '_default' ? {} : { offset: { value: String(start) } } };
    if (fault?.kind === 'slow') setTimeout(() => answer(result), fault.ms);
    else answer(result);
  }

  const server = new grpc.Server();
  server.addService(service, {
    CreateWriteStream(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      const tb = tableOf(call.request.parent);
      if (!tb) return cb(grpcError(Status.NOT_FOUND, `Table not found: ${call.request.parent}`));
      const type = call.request.write_stream?.type ?? 'COMMITTED';
      const name = `${call.request.parent}/streams/s${++counter}`;
      streams.set(name, { name, dataset: tb.dataset, table: tb.name, type, rowCount: 0, finalized: false, held: [] });
      stats.streamsCreated++;
      cb(null, { name, type, write_mode: 'INSERT', create_time: { seconds: String(Math.floor(Date.now() / 1000)) } });
    },
    GetWriteStream(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      const s = streamOf(call.request.name);
      if (!s) return cb(grpcError(Status.NOT_FOUND, `Stream not found: ${call.request.name}`));
      cb(null, { name: s.name, type: s.type === '_default' ? 'COMMITTED' : s.type, write_mode: 'INSERT' });
    },
    FinalizeWriteStream(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      const s = streams.get(call.request.name);
      if (!s) return cb(grpcError(Status.NOT_FOUND, `Stream not found: ${call.request.name}`));
      if (s.type === '_default') return cb(grpcError(Status.INVALID_ARGUMENT, 'the default stream cannot be finalized'));
      s.finalized = true;
      cb(null, { row_count: String(s.rowCount) });
    },
    BatchCommitWriteStreams(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      const errors: unknown[] = [];
      for (const name of call.request.write_streams ?? []) {
        const s = streams.get(name);
        if (!s || s.type !== 'PENDING' || !s.finalized) {
          errors.push({
            code: s ? 'INVALID_STREAM_STATE' : 'STREAM_NOT_FOUND',
            entity: name,
            error_message: 'not a finalized PENDING stream',
          });
          continue;
        }
        const tb = rest.datasets.get(s.dataset)?.get(s.table);
        if (tb && rest.keepRows) tb.rows.push(...s.held);
        s.held = [];
      }
      cb(null, errors.length ? { stream_errors: errors } : { commit_time: { seconds: String(Math.floor(Date.now() / 1000)) } });
    },
    FlushRows(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      const s = streams.get(call.request.write_stream);
      if (!s || s.type !== 'BUFFERED') return cb(grpcError(Status.INVALID_ARGUMENT, 'flush needs a BUFFERED stream'));
      const upTo = Number(call.request.offset?.value ?? s.rowCount - 1);
      const tb = rest.datasets.get(s.dataset)?.get(s.table);
      const n = Math.min(s.held.length, upTo + 1 - (s.rowCount - s.held.length));
      if (tb && rest.keepRows) tb.rows.push(...s.held.slice(0, n));
      s.held = s.held.slice(n);
      cb(null, { offset: String(upTo) });
    },
    AppendRows(call: Call) {
      calls.add(call);
      const state: { stream?: string; type?: protobuf.Type } = {};
      call.on('data', (req) => append(call, state, req));
      call.on('end', () => call.end());
      call.on('close', () => calls.delete(call));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  standIn.endpoint = `127.0.0.1:${port}`;
  standIn.close = async () => {
    for (const c of calls) c.destroy();
    server.forceShutdown();
  };
  t.teardown(() => standIn.close());
  return standIn;
}
