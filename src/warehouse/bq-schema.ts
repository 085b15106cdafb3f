import { fitValue, type PgType } from '../mirror/field-types.ts';

/**
 * What the warehouse writes to BigQuery, pure: names (validated, then quoted with backticks), the
 * change table's columns typed from the mirror's field types, a row for an outbox entry, and the
 * CDC row of the latest-state table (README.md, "BigQuery").
 */
export type BqType = 'STRING' | 'BOOL' | 'INT64' | 'BIGNUMERIC' | 'DATE' | 'TIMESTAMP';
export interface BqField {
  readonly name: string;
  readonly type: BqType;
  readonly mode?: 'REQUIRED' | 'NULLABLE';
}

/** Mirror column type -> BigQuery type. BIGNUMERIC: Salesforce doubles and currencies exceed NUMERIC's scale of 9. */
const PG_TO_BQ: Record<PgType, BqType> = {
  text: 'STRING',
  boolean: 'BOOL',
  integer: 'INT64',
  bigint: 'INT64',
  numeric: 'BIGNUMERIC',
  date: 'DATE',
  timestamptz: 'TIMESTAMP',
};
export const bqTypeFor = (pgType: string): BqType => PG_TO_BQ[pgType as PgType] ?? 'STRING';

/** Columns every change table has after the record's own; `_sfm_seq` orders rows of one record (see sequenceOf). */
export const META_FIELDS: readonly BqField[] = [
  { name: '_sfm_op', type: 'STRING', mode: 'REQUIRED' },
  { name: '_sfm_change_id', type: 'STRING', mode: 'REQUIRED' },
  { name: '_sfm_version', type: 'STRING', mode: 'REQUIRED' },
  { name: '_sfm_seq', type: 'INT64', mode: 'REQUIRED' },
  { name: '_sfm_committed_at', type: 'TIMESTAMP', mode: 'REQUIRED' },
];
const BASE_FIELDS: readonly BqField[] = [
  { name: 'Id', type: 'STRING', mode: 'REQUIRED' },
  { name: 'IsDeleted', type: 'BOOL' },
  { name: 'SystemModstamp', type: 'TIMESTAMP' },
];

// BigQuery allows more, but Salesforce names fit this, and anything else is refused before it
// reaches a statement. Column names compare case-insensitively in BigQuery.
const COLUMN = /^[A-Za-z][A-Za-z0-9_]{0,299}$/;
const DATASET = /^[A-Za-z0-9_]{1,1024}$/;
const TABLE = /^[a-z][a-z0-9_]{0,1000}$/;
const PROJECT = /^[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}$/;

export class BadWarehouseName extends Error {}

export function checkName(kind: 'column' | 'dataset' | 'table' | 'project', name: string): string {
  const re = kind === 'column' ? COLUMN : kind === 'dataset' ? DATASET : kind === 'table' ? TABLE : PROJECT;
  if (!re.test(name)) throw new BadWarehouseName(`not a usable BigQuery ${kind} name: ${JSON.stringify(name)}`);
  return name;
}

/** The dataset of an org: the configured one for the org configured by environment, a suffixed one for others. */
export function datasetFor(org: string, defaults: { dataset: string; alias: string }): string {
  return checkName('dataset', org === defaults.alias ? defaults.dataset : `${defaults.dataset}_${org}`);
}

export const changeTableOf = (table: string) => checkName('table', `${table}_changes`);
export const latestTableOf = (table: string) => checkName('table', table);

/** `max_staleness` as the INTERVAL literal BigQuery's table option takes (`Y-M D H:M:S`). */
export function maxStalenessOf(minutes: number): string {
  const m = Math.max(0, Math.floor(minutes));
  return `0-0 ${Math.floor(m / 1440)} ${Math.floor((m % 1440) / 60)}:${m % 60}:0`;
}

/**
 * `_CHANGE_SEQUENCE_NUMBER` of a change: its `_sfm_seq` in hexadecimal. The mirror gives each
 * change of a record a higher `_sfm_seq` (reserved in commit order), so BigQuery's CDC keeps the
 * newest state of a record whatever order, or how many times, changes arrive.
 */
export const sequenceOf = (seq: string | bigint): string => BigInt(seq).toString(16).toUpperCase();

/**
 * The change table's columns: Id and IsDeleted, one per mirrored field (in the mirror's order,
 * Salesforce's spelling), then the `_sfm_*` metadata. `known` keeps columns a table already has,
 * so a column is never dropped or retyped (BigQuery only lets a table gain columns).
 */
export function tableFields(mirrorColumns: ReadonlyArray<{ field: string; pgType: string }>, known: readonly BqField[] = []): BqField[] {
  const out: BqField[] = [];
  const seen = new Set<string>();
  const add = (f: BqField) => {
    const k = f.name.toLowerCase();
    if (seen.has(k)) return;
    seen.add(k);
    out.push(f);
  };
  for (const f of known) add(f);
  for (const f of BASE_FIELDS) add(f);
  for (const c of mirrorColumns) if (COLUMN.test(c.field)) add({ name: c.field, type: bqTypeFor(c.pgType) });
  for (const f of META_FIELDS) add(f);
  return out;
}

export interface ChangeRow {
  id: string;
  op: string;
  version: string;
  seq: string;
  committedAt: Date;
  record: Readonly<Record<string, unknown>>;
}

const PG_OF: Record<BqType, PgType> = {
  STRING: 'text',
  BOOL: 'boolean',
  INT64: 'bigint',
  BIGNUMERIC: 'numeric',
  DATE: 'date',
  TIMESTAMP: 'timestamptz',
};

/**
 * The row of a change: typed values for the table's columns. A value that does not fit
 * its column is sent as NULL (the mirror keeps it in `_sfm_fields` and reports it), as the mirror
 * does; record keys without a column are returned in `unknown` so the caller can extend the table.
 */
const lookups = new WeakMap<readonly BqField[], Map<string, BqField | null>>();

export function rowOf(c: ChangeRow, fields: readonly BqField[]): { json: Record<string, unknown>; unknown: string[] } {
  // Record keys -> column, per field list (one per table version), so a batch does the case
  // folding once per key rather than once per row.
  let byKey = lookups.get(fields);
  if (!byKey) lookups.set(fields, (byKey = new Map()));
  const byName = {
    get(key: string): BqField | undefined {
      let f = byKey.get(key);
      if (f === undefined) {
        const k = key.toLowerCase();
        f = fields.find((x) => x.name.toLowerCase() === k) ?? null;
        byKey.set(key, f);
      }
      return f ?? undefined;
    },
  };
  const json: Record<string, unknown> = {};
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(c.record)) {
    const f = byName.get(key);
    if (!f || f.name.startsWith('_sfm')) {
      if (!f) unknown.push(key);
      continue;
    }
    if (value === null || value === undefined) {
      json[f.name] = null;
      continue;
    }
    const fit = fitValue(PG_OF[f.type], value as string | number | boolean);
    json[f.name] = fit.ok ? fit.value : null;
  }
  json._sfm_op = c.op;
  json._sfm_change_id = c.id;
  json._sfm_version = c.version;
  json._sfm_seq = c.seq;
  json._sfm_committed_at = c.committedAt.toISOString();
  return { json, unknown };
}

/**
 * The CDC row of a change for the latest-state table: UPSERT, or DELETE for a record that is
 * deleted (IsDeleted), ordered by the change's `_sfm_seq`.
 */
export function cdcRowOf(
  c: ChangeRow,
  fields: readonly BqField[],
): { json: Record<string, unknown>; type: 'UPSERT' | 'DELETE'; sequence: string } {
  const { json } = rowOf(c, fields);
  const deleted = json.IsDeleted === true || c.op === 'delete';
  return { json, type: deleted ? 'DELETE' : 'UPSERT', sequence: sequenceOf(c.seq) };
}

/**
 * The latest state in a history table, as SQL would pick it (README, "BigQuery": the query of history): per Id
 * the row of the newest change (highest `_sfm_seq`, the change id breaking ties), kept only when
 * the record is not deleted. Tests compare it with the latest-state table.
 */
export function latestState<T extends Record<string, unknown>>(rows: readonly T[]): T[] {
  const best = new Map<string, T>();
  const key = (r: T) => [BigInt(String(r._sfm_seq)), BigInt(String(r._sfm_change_id))] as const;
  for (const r of rows) {
    const id = String(r.Id);
    const cur = best.get(id);
    if (!cur) {
      best.set(id, r);
      continue;
    }
    const [s1, c1] = key(r);
    const [s0, c0] = key(cur);
    if (s1 > s0 || (s1 === s0 && c1 > c0)) best.set(id, r);
  }
  return [...best.values()].filter((r) => r.IsDeleted !== true);
}
