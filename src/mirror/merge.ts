import type { Change, FieldValue } from '../changes/change.ts';

/**
 * The mirror's merge rule (README.md: "Newer wins, per field"), pure.
 *
 * A record is a set of last-writer-wins registers: one per field, plus one for "deleted". A write
 * (value, version) replaces the register when its version is newer; at an equal version the larger
 * value wins (for "deleted", true beats false: a delete beats an update at the same version, and an
 * undelete must be strictly newer). Each register is therefore the maximum of its writes in a total
 * order, so applying changes in any order and any number of times gives the same state.
 */
export interface RecordState {
  /** Field API name -> value, without Id and IsDeleted. */
  fields: Record<string, FieldValue>;
  /** Field API name -> version of the write that set it. */
  versions: Record<string, string>;
  deleted: boolean;
  /** Version of the last write to the deleted register; null while no change has been applied. */
  deletedVersion: string | null;
}

export const emptyState = (): RecordState => ({ fields: {}, versions: {}, deleted: false, deletedVersion: null });

// Canonical order of values for equal-version ties: deterministic and total.
const valueKey = (v: FieldValue | undefined) => (v === undefined ? '' : JSON.stringify(v));

/** Applies one change to `state` in place; returns whether anything (value or version) changed. */
export function mergeChange(state: RecordState, change: Change): boolean {
  const v = change.version;
  let changed = false;
  for (const [field, value] of Object.entries(change.fields)) {
    // Object.hasOwn: a field named like an Object.prototype member (`constructor`) is a field too.
    const cur = Object.hasOwn(state.versions, field) ? state.versions[field] : undefined;
    if (cur === undefined || v > cur || (v === cur && valueKey(value) > valueKey(state.fields[field]))) {
      if (cur !== v || valueKey(state.fields[field]) !== valueKey(value)) changed = true;
      state.fields[field] = value;
      state.versions[field] = v;
    }
  }
  const wantDeleted = change.operation === 'delete';
  const dv = state.deletedVersion;
  if (dv === null || v > dv || (v === dv && wantDeleted && !state.deleted)) {
    if (dv !== v || state.deleted !== wantDeleted) changed = true;
    state.deleted = wantDeleted;
    state.deletedVersion = v;
  }
  return changed;
}

/**
 * `_sfm_version` as stored, compact because most fields share one version: `d` is the deleted
 * register's version (every change writes it, so it is also the record's newest version), `v` the
 * version of every field of `_sfm_fields` not listed in `x` (`x`: { field: version } for the
 * exceptions). Rows written before migrations/20261203_0019_sql_merge.sql may hold the exceptions
 * grouped as `f`: { version: [fields] }; they are read the same way. The database's merge
 * (sfmirror.merge_record) writes this form too; any encoding that decodes to the same state is as good.
 */
export type StoredVersion = { d?: string | null; v?: string; x?: Record<string, string>; f?: Record<string, string[]> };

export function encodeVersions(state: RecordState): StoredVersion {
  const counts = new Map<string, number>();
  for (const ver of Object.values(state.versions)) counts.set(ver, (counts.get(ver) ?? 0) + 1);
  let common: string | undefined;
  let best = 0;
  for (const [ver, n] of counts)
    if (n > best || (n === best && ver > common!)) {
      common = ver;
      best = n;
    }
  const x: Record<string, string> = {};
  let exceptions = false;
  for (const [field, ver] of Object.entries(state.versions)) {
    if (ver === common) continue;
    x[field] = ver;
    exceptions = true;
  }
  return { d: state.deletedVersion, ...(common ? { v: common } : {}), ...(exceptions ? { x } : {}) };
}

const NOT_FIELDS = new Set(['Id', 'IsDeleted']);

export function decodeState(fields: Record<string, unknown> | null, stored: StoredVersion | null, deleted: boolean): RecordState {
  const state = emptyState();
  if (!stored || !fields) return state;
  if (stored.v) for (const n of Object.keys(fields)) if (!NOT_FIELDS.has(n)) state.versions[n] = stored.v;
  for (const [ver, names] of Object.entries(stored.f ?? {})) for (const n of names) state.versions[n] = ver;
  for (const [n, ver] of Object.entries(stored.x ?? {})) state.versions[n] = ver;
  for (const n of Object.keys(state.versions)) state.fields[n] = (fields[n] ?? null) as FieldValue;
  state.deleted = deleted;
  state.deletedVersion = stored.d ?? null;
  return state;
}

/** The record as the REST API would return it: flat field names, Id and IsDeleted included. */
export function recordOf(id: string, state: RecordState): Record<string, FieldValue> {
  return { Id: id, ...state.fields, IsDeleted: state.deleted };
}
