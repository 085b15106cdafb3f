import type { FieldDescribe, SObjectDescribe } from '../salesforce/describe.ts';
import { parseFormula } from './parse.ts';

/**
 * Each formula field of an org and how sfmirror keeps it fresh, from describe:
 * - `same-record`: reads only fields of its own record; re-read after a change to the record
 *   arrives without formula values (a CDC event never has them).
 * - `cross-object`: reads fields through lookups (`Account.Name`); also re-read when a record on
 *   the path changes (found through the lookup columns in the mirror).
 * - `time`: uses TODAY(), NOW() or TIMENOW(); re-read by the periodic refresh.
 * - `unfollowable`: reads `$User`, `$Setup`, custom metadata, a parent's formula or roll-up, or a
 *   path describe cannot resolve (polymorphic beyond its targets, an object sfmirror cannot
 *   describe); re-read by the periodic refresh too.
 * - `roll-up`: a roll-up summary field (calculated, no formula text). Salesforce stores and
 *   recalculates it on the parent; treated like `unfollowable` (periodic) besides the same-record re-read.
 */
export type FormulaKind = 'same-record' | 'cross-object' | 'time' | 'unfollowable' | 'roll-up';

/** A path from a formula's object through lookups: `lookups[i]` on the object before, pointing to `objects[i]`. */
export interface FormulaLink {
  readonly lookups: readonly string[];
  readonly objects: ReadonlyArray<readonly string[]>;
  /** The field the formula reads on the last object. */
  readonly field: string;
}

export interface FormulaField {
  readonly object: string;
  readonly field: string;
  readonly kind: FormulaKind;
  readonly formula: string | null;
  readonly links: readonly FormulaLink[];
  /** Why the refresh is periodic (the first global or unresolved path), for status. */
  readonly note?: string | undefined;
}

export interface ObjectFormulas {
  readonly object: string;
  readonly fields: readonly FormulaField[];
  /** Some formula needs the periodic refresh. */
  readonly periodic: boolean;
}

type Describe = (object: string) => Promise<SObjectDescribe | undefined>;

const byName = (d: SObjectDescribe | undefined, name: string) => d?.fields.find((f) => f.name.toLowerCase() === name.toLowerCase());
const byRelationship = (d: SObjectDescribe | undefined, rel: string) =>
  d?.fields.find((f) => f.relationshipName?.toLowerCase() === rel.toLowerCase() && f.referenceTo.length > 0);

/** Resolves `['Account', 'Owner', 'Name']` from `object` through describe; a string says why it cannot. */
async function resolvePath(object: string, path: readonly string[], describe: Describe): Promise<FormulaLink | string> {
  const lookups: string[] = [];
  const objects: string[][] = [];
  let current: string[] = [object];
  for (const rel of path.slice(0, -1)) {
    let found: FieldDescribe | undefined;
    for (const o of current) {
      found = byRelationship(await describe(o), rel);
      if (found) break;
    }
    if (!found) return `${path.join('.')}: no lookup named ${rel}`;
    lookups.push(found.name);
    current = [...found.referenceTo];
    objects.push(current);
  }
  const field = path[path.length - 1]!;
  for (const o of current) {
    const f = byName(await describe(o), field);
    if (f?.calculated) return `${path.join('.')}: reads a formula or roll-up of ${o}`;
    if (f) return { lookups, objects, field: f.name };
  }
  return `${path.join('.')}: no field ${field} on ${current.join('/')}`;
}

export async function formulasOf(object: string, describe: Describe): Promise<ObjectFormulas | undefined> {
  const d = await describe(object);
  if (!d) return undefined;
  const fields: FormulaField[] = [];
  for (const f of d.fields) {
    if (!f.calculated) continue;
    if (!f.calculatedFormula) {
      fields.push({ object: d.name, field: f.name, kind: 'roll-up', formula: null, links: [] });
      continue;
    }
    const refs = parseFormula(f.calculatedFormula);
    const links: FormulaLink[] = [];
    let note: string | undefined = refs.globals[0] && `${refs.globals[0]} is not followed`;
    for (const p of refs.paths) {
      const r = await resolvePath(d.name, p, describe);
      if (typeof r === 'string') note ??= r;
      else links.push(r);
    }
    // Another formula of the same record read by this one is re-read with it; a lookup change is a same-record change.
    const kind: FormulaKind = refs.time ? 'time' : note ? 'unfollowable' : links.length ? 'cross-object' : 'same-record';
    fields.push({ object: d.name, field: f.name, kind, formula: f.calculatedFormula, links, note: refs.time ? 'uses the clock' : note });
  }
  if (!fields.length) return undefined;
  return { object: d.name, fields, periodic: fields.some((f) => f.kind === 'time' || f.kind === 'unfollowable' || f.kind === 'roll-up') };
}

/** A parent object a cross-object formula watches: changes to `fields` of it re-read the formula object's records on the path. */
export interface Watch {
  /** The object whose records are queued. */
  readonly object: string;
  /** Lookups from `object` up to the changed object, nearest first. */
  readonly lookups: readonly string[];
  /** Objects at each lookup (the changed object is among the last). */
  readonly objects: ReadonlyArray<readonly string[]>;
  /** Fields of the changed object whose change matters (lower-case). */
  readonly fields: ReadonlySet<string>;
}

/** For each (lower-case) object name: the watches that a change to it triggers. */
export function watchIndex(all: readonly ObjectFormulas[]): Map<string, Watch[]> {
  const out = new Map<string, Watch[]>();
  const add = (changed: string, w: Watch) => {
    const k = changed.toLowerCase();
    const list = out.get(k) ?? out.set(k, []).get(k)!;
    const same = list.find((x) => x.object === w.object && x.lookups.join('.') === w.lookups.join('.'));
    if (same) for (const f of w.fields) (same.fields as Set<string>).add(f);
    else list.push(w);
  };
  for (const o of all)
    for (const f of o.fields)
      for (const l of f.links)
        for (let step = 0; step < l.lookups.length; step++) {
          // A change to an object at `step` matters when it changes the next lookup, or the field read at the end.
          const relevant = step === l.lookups.length - 1 ? l.field : l.lookups[step + 1]!;
          for (const changed of l.objects[step]!)
            add(changed, {
              object: o.object,
              lookups: l.lookups.slice(0, step + 1),
              objects: l.objects.slice(0, step + 1),
              fields: new Set([relevant.toLowerCase()]),
            });
        }
  return out;
}
