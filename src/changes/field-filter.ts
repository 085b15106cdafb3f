import type { Change, FieldTypes } from './change.ts';

/**
 * SFMIRROR_FIELDS (include) and SFMIRROR_EXCLUDE_FIELDS (exclude): `Object.Field` patterns with `*`
 * wildcards, case-insensitive as Salesforce API names are (`Contact.SSN__c,Lead.*Phone*`, `*.Secret*`).
 * A field is mirrored when it matches an include pattern (or no include list is set) and no exclude
 * pattern. An include list names fields of the objects it mentions: objects it does not mention keep
 * every field, so `SFMIRROR_FIELDS=Contact.FirstName,Contact.LastName` narrows Contact only.
 * `Id`, `IsDeleted` and `SystemModstamp` are the mirror's own columns and are always kept.
 */
export interface FieldFilter {
  /** True when `object.field` may be mirrored. */
  allows(object: string, field: string): boolean;
  /** Whether any pattern is set (false: every field passes, the filter costs nothing). */
  readonly active: boolean;
  readonly include: readonly string[];
  readonly exclude: readonly string[];
}

const ALWAYS = new Set(['id', 'isdeleted', 'systemmodstamp']);
const PATTERN = /^[A-Za-z0-9_*]+\.[A-Za-z0-9_*]+$/;

const toRegExp = (p: string) => new RegExp(`^${p.replace(/\*/g, '.*')}$`, 'i');

/** Throws one message for the first malformed pattern (config.ts reports it with the variable's name). */
export function parseFieldPatterns(raw: string | undefined): string[] {
  const out = (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const p of out)
    if (!PATTERN.test(p)) throw new Error(`"${p}" is not Object.Field (wildcards: *), e.g. Contact.SSN__c or Lead.*Phone*`);
  return out;
}

export function createFieldFilter(include: readonly string[] = [], exclude: readonly string[] = []): FieldFilter {
  const inc = include.map((p) => {
    const [o, f] = p.split('.') as [string, string];
    return { object: toRegExp(o), field: toRegExp(f) };
  });
  const exc = exclude.map((p) => {
    const [o, f] = p.split('.') as [string, string];
    return { object: toRegExp(o), field: toRegExp(f) };
  });
  const memo = new Map<string, boolean>();
  function decide(object: string, field: string) {
    if (ALWAYS.has(field.toLowerCase())) return true;
    if (exc.some((p) => p.object.test(object) && p.field.test(field))) return false;
    const forObject = inc.filter((p) => p.object.test(object));
    return forObject.length === 0 || forObject.some((p) => p.field.test(field));
  }
  return {
    active: inc.length + exc.length > 0,
    include,
    exclude,
    allows(object, field) {
      if (inc.length + exc.length === 0) return true;
      const k = `${object}.${field}`.toLowerCase();
      let v = memo.get(k);
      if (v === undefined) {
        v = decide(object, field);
        if (memo.size < 100_000) memo.set(k, v);
      }
      return v;
    },
  };
}

/** The changes without the fields the operator excluded (pushes, CDC events, backfill pages alike). */
export function filterChanges(filter: FieldFilter, changes: readonly Change[]): readonly Change[] {
  if (!filter.active) return changes;
  return changes.map((c) => {
    let fields: Record<string, Change['fields'][string]> | undefined;
    for (const f of Object.keys(c.fields)) {
      if (filter.allows(c.object, f)) continue;
      fields ??= { ...c.fields };
      delete fields[f];
    }
    return fields ? { ...c, fields } : c;
  });
}

/** A push's `types` map without excluded fields (so no column is made for them). */
export function filterTypes(filter: FieldFilter, types: FieldTypes | undefined): FieldTypes | undefined {
  if (!filter.active || !types) return types;
  return Object.fromEntries(
    Object.entries(types).map(([object, fields]) => [
      object,
      Object.fromEntries(Object.entries(fields).filter(([f]) => filter.allows(object, f))),
    ]),
  );
}
