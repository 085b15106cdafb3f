import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { OAuth2Client } from 'google-auth-library';

/**
 * BigQuery's REST API as @google-cloud/bigquery calls it:
 * datasets get/insert, tables get/insert/patch/delete, tabledata.insertAll with insertId
 * de-duplication in a window and BigQuery's answer for invalid rows under `skipInvalidRows: false`
 * (every row reported: the bad ones `invalid`, the others `stopped`, none inserted). Rows live in
 * memory. Faults: `fault` decides per insertAll request (5xx, quota 403, hang, answer-after-insert
 * delay, partial insertErrors, whole-request 400). Listens on 127.0.0.1 only.
 */
export type Field = { name: string; type: string; mode?: string };
export interface StandInTable {
  fields: Field[];
  view?: { query: string; useLegacySql?: boolean } | undefined;
  timePartitioning?: { type: string; field?: string } | undefined;
  clustering?: { fields: string[] } | undefined;
  /** Declared primary key (NOT ENFORCED): the table takes CDC changes (test/support/bigquery-storage.ts). */
  primaryKey?: string[] | undefined;
  maxStaleness?: string | undefined;
  rows: Array<Record<string, unknown>>;
  created: number;
}

export type Fault =
  | { kind: 'status'; status: number; reason: string }
  /** Never answers (the client times out); inserts nothing. */
  | { kind: 'hang' }
  /** Inserts, then answers after `ms` (a client with a shorter timeout retries a batch that landed). */
  | { kind: 'slow'; ms: number }
  /** Per row: a reason to fail it with (the others are inserted), or undefined. */
  | { kind: 'partial'; reasonFor: (json: Record<string, unknown>, index: number) => string | undefined }
  /** The whole request refused with 400 when any row is invalid (instead of per-row insertErrors). */
  | { kind: 'reject-invalid-request' };

export interface InsertRequest {
  dataset: string;
  table: string;
  rows: Array<{ insertId?: string; json: Record<string, unknown> }>;
  skipInvalidRows?: boolean;
}

export interface BigQueryStandIn {
  url: string;
  project: string;
  datasets: Map<string, Map<string, StandInTable>>;
  /** false (benchmarks): rows are counted, not kept. */
  keepRows: boolean;
  /** Rows of a table (stored copies, insertId in `_insertId`). */
  rows(dataset: string, table: string): Array<Record<string, unknown>>;
  /** Decides a fault for each insertAll request; undefined = behave. */
  fault: ((req: InsertRequest) => Fault | undefined) | undefined;
  /** Rows BigQuery itself refuses (as if too large or out of range): return the reason. */
  poison: ((json: Record<string, unknown>) => string | undefined) | undefined;
  /** insertAll requests seen, and requests that carried an insertId another open request carried. */
  stats: {
    insertAll: number;
    rowsReceived: number;
    rowsStored: number;
    duplicatesDropped: number;
    concurrentSameId: number;
    calls: string[];
  };
  authClient(): OAuth2Client;
  close(): Promise<void>;
}

const err = (res: http.ServerResponse, status: number, reason: string, message: string) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { code: status, message, errors: [{ reason, message }] } }));
};
const ok = (res: http.ServerResponse, body: unknown, status = 200) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(body === undefined ? '' : JSON.stringify(body));
};

/** Whether a JSON value fits a BigQuery column as insertAll checks it; the reason when not. */
export function checkValue(f: Field, v: unknown): string | undefined {
  if (v === null || v === undefined) return f.mode === 'REQUIRED' ? `Missing required field: ${f.name}.` : undefined;
  const s = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
  const bad = `Cannot convert value to ${f.type.toLowerCase()}.`;
  switch (f.type) {
    case 'STRING':
      return typeof v === 'string' ? undefined : bad;
    case 'BOOL':
    case 'BOOLEAN':
      return v === true || v === false || s === 'true' || s === 'false' ? undefined : bad;
    case 'INT64':
    case 'INTEGER':
      return s !== undefined && /^[+-]?\d{1,19}$/.test(s) ? undefined : bad;
    case 'BIGNUMERIC':
    case 'NUMERIC':
    case 'FLOAT64':
    case 'FLOAT':
      return s !== undefined && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s) ? undefined : bad;
    case 'DATE':
      return s !== undefined && /^\d{4}-\d{2}-\d{2}$/.test(s) ? undefined : bad;
    case 'TIMESTAMP':
      return s !== undefined && Number.isFinite(Date.parse(s)) ? undefined : bad;
    default:
      return undefined;
  }
}

/** `keepRows: false` (benchmarks): rows are counted in `stats.rowsStored`, not kept. */
export async function startBigQuery(
  t: { teardown(fn: () => unknown): void },
  opts: { project?: string; dedupWindowMs?: number; keepRows?: boolean } = {},
): Promise<BigQueryStandIn> {
  const project = opts.project ?? 'p';
  const datasets = new Map<string, Map<string, StandInTable>>();
  const seenIds = new Map<string, number>();
  const inFlight = new Map<string, number>();
  const hanging = new Set<http.ServerResponse>();
  const stats = { insertAll: 0, rowsReceived: 0, rowsStored: 0, duplicatesDropped: 0, concurrentSameId: 0, calls: [] as string[] };
  const window = opts.dedupWindowMs ?? 60_000;

  const standIn: BigQueryStandIn = {
    url: '',
    project,
    datasets,
    keepRows: opts.keepRows !== false,
    stats,
    fault: undefined,
    poison: undefined,
    rows: (d, tb) => datasets.get(d)?.get(tb)?.rows ?? [],
    authClient: () => new OAuth2Client({ credentials: { access_token: 'test', expiry_date: Date.now() + 3.6e6 } }),
    close: async () => {},
  };

  async function insertAll(res: http.ServerResponse, dataset: string, table: StandInTable, name: string, body: InsertRequest) {
    stats.insertAll++;
    const rows = body.rows ?? [];
    stats.rowsReceived += rows.length;
    const ids = rows.map((r) => r.insertId).filter((x): x is string => !!x);
    if (ids.some((id) => inFlight.has(id))) stats.concurrentSameId++;
    for (const id of ids) inFlight.set(id, (inFlight.get(id) ?? 0) + 1);
    const done = () => {
      for (const id of ids) {
        const n = inFlight.get(id)! - 1;
        if (n) inFlight.set(id, n);
        else inFlight.delete(id);
      }
    };
    const fault = standIn.fault?.({ ...body, dataset, table: name });
    if (fault?.kind === 'status') {
      done();
      return err(res, fault.status, fault.reason, `injected ${fault.reason}`);
    }
    if (fault?.kind === 'hang') {
      hanging.add(res);
      res.on('close', () => {
        hanging.delete(res);
        done();
      });
      return;
    }
    const names = new Set(table.fields.map((f) => f.name.toLowerCase()));
    const known = new Set<string>();
    const problems = rows.map((r) => {
      for (const k of Object.keys(r.json)) {
        if (known.has(k)) continue;
        if (!names.has(k.toLowerCase())) return `no such field: ${k}.`;
        known.add(k);
      }
      for (const f of table.fields) {
        const p = checkValue(f, r.json[f.name]);
        if (p) return p;
      }
      return standIn.poison?.(r.json);
    });
    if (problems.some(Boolean)) {
      done();
      if (fault?.kind === 'reject-invalid-request') return err(res, 400, 'invalid', problems.find(Boolean)!);
      if (body.skipInvalidRows !== true) {
        return ok(res, {
          kind: 'bigquery#tableDataInsertAllResponse',
          insertErrors: rows.map((_, index) => ({
            index,
            errors: [
              problems[index]
                ? { reason: 'invalid', location: '', message: problems[index] }
                : { reason: 'stopped', location: '', message: '' },
            ],
          })),
        });
      }
    }
    const insertErrors: Array<{ index: number; errors: Array<{ reason: string; message: string }> }> = [];
    const now = Date.now();
    rows.forEach((r, index) => {
      const reason = fault?.kind === 'partial' ? fault.reasonFor(r.json, index) : problems[index] ? 'invalid' : undefined;
      if (reason) {
        insertErrors.push({ index, errors: [{ reason, message: `injected ${reason}` }] });
        return;
      }
      if (r.insertId) {
        const seen = seenIds.get(`${dataset}.${name}.${r.insertId}`);
        if (seen !== undefined && now - seen < window) {
          stats.duplicatesDropped++;
          return;
        }
        seenIds.set(`${dataset}.${name}.${r.insertId}`, now);
      }
      stats.rowsStored++;
      if (opts.keepRows !== false) table.rows.push({ ...r.json, _insertId: r.insertId });
    });
    const answer = () => {
      done();
      ok(res, insertErrors.length ? { insertErrors } : { kind: 'bigquery#tableDataInsertAllResponse' });
    };
    if (fault?.kind === 'slow') {
      hanging.add(res);
      setTimeout(() => {
        hanging.delete(res);
        if (!res.destroyed) answer();
        else done();
      }, fault.ms);
    } else answer();
  }

  function tableResource(dataset: string, name: string, tb: StandInTable) {
    return {
      kind: 'bigquery#table',
      id: `${project}:${dataset}.${name}`,
      tableReference: { projectId: project, datasetId: dataset, tableId: name },
      type: tb.view ? 'VIEW' : 'TABLE',
      ...(tb.view ? { view: tb.view } : { schema: { fields: tb.fields } }),
      ...(tb.timePartitioning ? { timePartitioning: tb.timePartitioning } : {}),
      ...(tb.clustering ? { clustering: tb.clustering } : {}),
      ...(tb.primaryKey ? { tableConstraints: { primaryKey: { columns: tb.primaryKey } } } : {}),
      ...(tb.maxStaleness ? { maxStaleness: tb.maxStaleness } : {}),
    };
  }

  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => {
      raw += d;
    });
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (!url.pathname.endsWith('/insertAll')) stats.calls.push(`${req.method} ${url.pathname}`);
      if (!/^Bearer \S+$/.test(req.headers.authorization ?? ''))
        return err(res, 401, 'unauthorized', 'Request had invalid authentication credentials.');
      const m = /^\/bigquery\/v2\/projects\/([^/]+)\/datasets(?:\/([^/]+))?(?:\/tables(?:\/([^/]+))?(?:\/(insertAll))?)?$/.exec(
        url.pathname,
      );
      if (!m || m[1] !== project) return err(res, 404, 'notFound', `Not found: ${url.pathname}`);
      const [, , d, tb, action] = m;
      const body = raw ? JSON.parse(raw) : {};
      const hasTables = url.pathname.includes('/tables');
      if (!d) {
        if (req.method !== 'POST') return err(res, 405, 'invalid', 'method');
        const id = body.datasetReference?.datasetId as string;
        if (datasets.has(id)) return err(res, 409, 'duplicate', `Already Exists: Dataset ${project}:${id}`);
        datasets.set(id, new Map());
        return ok(res, { kind: 'bigquery#dataset', id: `${project}:${id}`, datasetReference: { projectId: project, datasetId: id } });
      }
      const ds = datasets.get(d);
      if (!ds) return err(res, 404, 'notFound', `Not found: Dataset ${project}:${d}`);
      if (!hasTables)
        return ok(res, { kind: 'bigquery#dataset', id: `${project}:${d}`, datasetReference: { projectId: project, datasetId: d } });
      if (!tb) {
        if (req.method !== 'POST') return err(res, 405, 'invalid', 'method');
        const id = body.tableReference?.tableId as string;
        if (ds.has(id)) return err(res, 409, 'duplicate', `Already Exists: Table ${project}:${d}.${id}`);
        const created: StandInTable = {
          fields: body.schema?.fields ?? [],
          view: body.view,
          timePartitioning: body.timePartitioning,
          clustering: body.clustering,
          primaryKey: body.tableConstraints?.primaryKey?.columns,
          maxStaleness: body.maxStaleness,
          rows: [],
          created: Date.now(),
        };
        ds.set(id, created);
        return ok(res, tableResource(d, id, created));
      }
      const table = ds.get(tb);
      if (!table) return err(res, 404, 'notFound', `Not found: Table ${project}:${d}.${tb}`);
      if (action === 'insertAll' && req.method === 'POST') return void insertAll(res, d, table, tb, body as InsertRequest);
      if (req.method === 'GET') return ok(res, tableResource(d, tb, table));
      if (req.method === 'DELETE') {
        ds.delete(tb);
        return ok(res, undefined, 204);
      }
      if (req.method === 'PATCH' || req.method === 'PUT') {
        if (body.schema?.fields) {
          const next = body.schema.fields as Field[];
          for (const f of table.fields) {
            const n = next.find((x) => x.name.toLowerCase() === f.name.toLowerCase());
            if (!n) return err(res, 400, 'invalid', `Provided Schema does not match Table. Field ${f.name} is missing in new schema`);
            if (n.type !== f.type)
              return err(res, 400, 'invalid', `Provided Schema does not match Table. Field ${f.name} has changed type`);
          }
          for (const n of next.slice(table.fields.length))
            if (n.mode === 'REQUIRED') return err(res, 400, 'invalid', `Cannot add required field ${n.name}`);
          table.fields = next;
        }
        if (body.view) table.view = body.view;
        return ok(res, tableResource(d, tb, table));
      }
      return err(res, 405, 'invalid', 'method');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  standIn.close = async () => {
    for (const r of hanging) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.teardown(() => standIn.close());
  return standIn;
}
