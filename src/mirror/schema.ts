import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import { COMPOUND_TYPES, pgTypeFor, type PgType } from './field-types.ts';
import * as repo from './schema.repository.ts';

/**
 * The mirror's tables follow Salesforce: a table per object, a column per field, created or
 * extended the first time a change needs them, without a restart. DDL runs in its own short
 * transaction (never inside a data batch) under an advisory lock per table, so concurrent batches
 * that discover the same new field do not race; `sfmirror.mirror_columns` records each column's
 * field name and types, and an in-memory cache makes the common case (nothing new) free.
 */
export interface ColumnInfo {
  readonly field: string;
  readonly column: string;
  readonly pgType: PgType;
  readonly sfType: string | null;
}

export interface TableInfo {
  readonly org: string;
  readonly object: string;
  readonly table: string;
  /** Lower-case field name -> column. */
  readonly columns: ReadonlyMap<string, ColumnInfo>;
}

export interface TypeProblem {
  readonly object: string;
  readonly field: string;
  readonly problem: string;
  readonly sfid?: string | undefined;
  readonly value?: string | undefined;
}

/** Looks up Salesforce field types (lower-case type names) for an object, e.g. through describe. */
export type DescribeFields = (org: string, object: string) => Promise<Readonly<Record<string, string>> | undefined>;

/** Columns every mirror table has; fields with these (lower-case) names map onto them or stay in JSON. */
export const BUILTIN_COLUMNS = new Set(['id', 'sfid', 'isdeleted', 'systemmodstamp']);
const SYSTEM_MODSTAMP: ColumnInfo = { field: 'SystemModstamp', column: 'systemmodstamp', pgType: 'timestamptz', sfType: 'datetime' };

/** The column a field is stored in, or undefined for fields kept only in `_sfm_fields`. */
export function columnNameFor(field: string): string | undefined {
  const c = field.toLowerCase();
  if (c === 'systemmodstamp') return c;
  if (BUILTIN_COLUMNS.has(c) || c.startsWith('_sfm')) return undefined;
  return c;
}

const lookup = (types: Readonly<Record<string, string>> | undefined, field: string) => {
  if (!types) return undefined;
  // Object.hasOwn: `constructor` or `toString` as a field name must not find Object.prototype's.
  if (Object.hasOwn(types, field)) return types[field];
  const lower = field.toLowerCase();
  for (const [k, v] of Object.entries(types)) if (k.toLowerCase() === lower) return v;
  return undefined;
};

export interface SchemaOptions {
  describe?: DescribeFields | undefined;
  /** Create a column for every described field, not only for the fields changes carry (README, "Formula fields"). */
  describeAll?: boolean | undefined;
  /** Forget the cached describe of an object (a payload named a field it did not list). */
  refreshDescribe?: ((org: string, object: string) => void) | undefined;
  log?: Logger | undefined;
}

export function createSchemaManager(db: Db, opts: SchemaOptions = {}) {
  const cache = new Map<string, TableInfo>();
  const reportedTypeChanges = new Set<string>();
  const key = (org: string, table: string) => `${org}\u0000${table}`;

  async function load(org: string, table: string): Promise<TableInfo | undefined> {
    const found = await repo.readMirrorTable(db, org, table);
    if (!found) return undefined;
    const columns = new Map<string, ColumnInfo>([['systemmodstamp', SYSTEM_MODSTAMP]]);
    for (const c of found.columns) columns.set(c.column, c);
    const info: TableInfo = { org, object: found.object, table, columns };
    cache.set(key(org, table), info);
    return info;
  }

  async function createObjects(org: string, object: string, table: string, fields: readonly repo.NewColumn[]) {
    await repo.createMirrorTable(db, org, object, table, fields);
    opts.log?.info({ org, object, added: fields.map((f) => f.field) }, 'mirror table extended');
  }

  /**
   * Makes sure `org`'s table for `object` has a column for each of `fields`. Types come from
   * `types` (a push's map) or describe; a field of unknown type gets a text column.
   * Returns the table and problems to record (a field whose type changed since its column was made).
   */
  async function ensure(
    org: string,
    object: string,
    fields: Iterable<string>,
    types?: Readonly<Record<string, string>>,
  ): Promise<{ table: TableInfo; problems: TypeProblem[] }> {
    const table = object.toLowerCase();
    let info = cache.get(key(org, table)) ?? (await load(org, table));
    const missing = new Map<string, string>();
    for (const f of fields) {
      const column = columnNameFor(f);
      if (column && !info?.columns.has(column) && !missing.has(column)) missing.set(column, f);
    }
    // With API access the table has a column for every field of describe (README, "Formula fields"): describe is
    // asked on every call (a cache hit: describe.ts keeps it for SFMIRROR_DESCRIBE_REFRESH_MS), so a
    // field added in the org gets its column with the next change or scheduled refresh, no restart.
    let described: Readonly<Record<string, string>> | undefined;
    if (opts.describe && (opts.describeAll || [...missing.values()].some((f) => !lookup(types, f)))) {
      const ask = () =>
        opts.describe!(org, object).catch((err: Error) => {
          opts.log?.warn({ org, object, err: err.message }, 'describe failed; new fields get text columns');
          return undefined;
        });
      described = await ask();
      // A payload naming a field describe does not list: the org has a new field; describe again, once.
      if (described && opts.refreshDescribe && [...missing.values()].some((f) => !lookup(described, f) && !lookup(types, f))) {
        opts.refreshDescribe(org, object);
        described = (await ask()) ?? described;
      }
      if (described && opts.describeAll) {
        for (const [f, t] of Object.entries(described)) {
          const column = columnNameFor(f);
          if (column && !COMPOUND_TYPES.has(t) && !info?.columns.has(column) && !missing.has(column)) missing.set(column, f);
        }
      }
    }
    if (!info || missing.size) {
      const defs = [...missing].map(([column, field]) => {
        const t = lookup(types, field) ?? lookup(described, field);
        return { field, column, sfType: t && !COMPOUND_TYPES.has(t) ? t.toLowerCase() : null };
      });
      await createObjects(org, info?.object ?? object, table, defs);
      info = (await load(org, table))!;
    }
    const problems: TypeProblem[] = [];
    if (types) {
      for (const [field, sfType] of Object.entries(types)) {
        const col = info.columns.get(columnNameFor(field) ?? '');
        if (!col || COMPOUND_TYPES.has(sfType) || pgTypeFor(sfType) === col.pgType) continue;
        const k = `${org}.${table}.${col.column}.${sfType}`;
        if (reportedTypeChanges.has(k)) continue;
        reportedTypeChanges.add(k);
        problems.push({
          object: info.object,
          field: col.field,
          problem: `type is now ${sfType} but column ${col.column} is ${col.pgType}${col.sfType ? ` (made for ${col.sfType})` : ' (type unknown when made)'}; values that do not fit stay in _sfm_fields`,
        });
      }
    }
    return { table: info, problems };
  }

  return { ensure, forget: () => cache.clear() };
}

export type SchemaManager = ReturnType<typeof createSchemaManager>;
