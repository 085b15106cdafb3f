import { toId18 } from '../../changes/names.ts';
import { AppError } from '../../lib/errors.ts';
import { fitValue, type PgType } from '../../mirror/field-types.ts';
import type { Catalog, ReadObject } from './catalog.ts';
import { refApplies, type ClientSpec, type RowFilter } from './client-spec.ts';
import type { Principal } from './principal.ts';

/**
 * What a principal may see of one object: which fields, and which rows (its row policy as
 * equality conditions on typed columns). Everything that reaches SQL from here is a column from the
 * catalog and a value checked against that column's type.
 */
export interface Condition {
  readonly column: string;
  readonly pgType: PgType;
  readonly value: string;
}

export interface ObjectView {
  readonly object: ReadObject;
  /** Whether the principal may read `field` (API name, any case). */
  canRead(field: string): boolean;
  /** Row policy; null when it cannot hold on this object (a field it names is not mirrored): no row is visible. */
  readonly policy: readonly Condition[] | null;
}

// Exactly these spellings: a stored key `ID` or `ISDELETED` (a sender's variant) is not the envelope's.
const ALWAYS_READABLE = new Set(['Id', 'IsDeleted']);

/** The org a request reads: `?org=`, else the client's own org, else the default org. */
export async function resolveOrg(p: Principal, requested: string | undefined, defaultAlias: string, catalog: Catalog): Promise<string> {
  const orgs = p.spec.orgs;
  const org = requested ?? (Array.isArray(orgs) ? orgs[0]! : defaultAlias);
  const allowed = orgs === '*' || (Array.isArray(orgs) ? orgs.includes(org) : org === defaultAlias);
  if (!allowed || !(await catalog.hasOrg(org)))
    throw new AppError('NOT_FOUND', `org: no org "${String(org).slice(0, 50)}" for this client`);
  return org;
}

export const objectAllowed = (spec: ClientSpec, name: string) =>
  spec.objects === '*' || spec.objects.some((o) => o.toLowerCase() === name.toLowerCase());

/** The condition `field = value`, or a reason why it cannot be one. */
export function equality(o: ReadObject, field: string, raw: string): Condition | { problem: string } {
  const lower = field.toLowerCase();
  if (lower === 'id') {
    const id = toId18(raw);
    return id ? { column: 'sfid', pgType: 'text', value: id } : { problem: 'not a Salesforce id' };
  }
  const col = o.columns.get(lower);
  if (!col) return { problem: `unknown field of ${o.object}` };
  const fit = fitValue(col.pgType, raw);
  if (!fit.ok) return { problem: `${fit.reason} (field ${col.field} is ${col.pgType})` };
  return { column: col.column, pgType: col.pgType, value: String(fit.value) };
}

export function viewOf(p: Principal, o: ReadObject): ObjectView {
  const fields = p.spec.fields;
  const readable = fields && new Set(fields.filter((f) => refApplies(f, o.object)).map((f) => f.field.toLowerCase()));
  let policy: Condition[] | null = [];
  for (const f of p.rowFilters.filter((r: RowFilter) => refApplies(r, o.object))) {
    const c = equality(o, f.field, f.value);
    // Fail closed: a policy that cannot be evaluated hides every row rather than none.
    if ('problem' in c) {
      policy = null;
      break;
    }
    policy.push(c);
  }
  return {
    object: o,
    canRead: (field) => {
      if (ALWAYS_READABLE.has(field)) return true;
      const lower = field.toLowerCase();
      if (lower === 'id' || lower === 'isdeleted') return false;
      return !readable || readable.has(lower);
    },
    policy,
  };
}

/** The record as the app sees it: `fields` (already checked) or every readable field, Id first. */
export function project(view: ObjectView, stored: Record<string, unknown>, fields: readonly string[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = { Id: stored.Id };
  if (fields) {
    for (const f of fields) if (f !== 'Id') out[f] = Object.hasOwn(stored, f) ? (stored[f] ?? null) : null;
    return out;
  }
  for (const [k, v] of Object.entries(stored)) if (k !== 'Id' && view.canRead(k)) out[k] = v;
  return out;
}

/** Checks `?fields=` against the catalog and the allowlist; returns canonical field names. */
export function selectFields(view: ObjectView, param: string | undefined): string[] | undefined {
  if (param === undefined) return undefined;
  const names = param
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!names.length) throw new AppError('BAD_REQUEST', 'fields: give field names, e.g. fields=Id,Name');
  const out: string[] = [];
  for (const n of names) {
    const lower = n.toLowerCase();
    const canonical = lower === 'id' ? 'Id' : lower === 'isdeleted' ? 'IsDeleted' : view.object.columns.get(lower)?.field;
    if (!canonical || !view.canRead(canonical))
      throw new AppError('BAD_REQUEST', `fields: unknown field "${n.slice(0, 80)}" of ${view.object.object}`);
    if (!out.includes(canonical)) out.push(canonical);
  }
  return out;
}
