/**
 * What sfmirror keeps of an object's describe (`GET /sobjects/X/describe`): per field its type, whether
 * Salesforce computes it (`calculated`: formula and roll-up summary fields) and the formula text
 * (`calculatedFormula`, Schema.DescribeFieldResult.getCalculatedFormula in the Apex reference), and for
 * lookups the relationship name and target objects (`relationshipName`, `referenceTo`) that formulas
 * walk through (`Account.Name` on Contact is relationship `Account` of field `AccountId`).
 */
export interface FieldDescribe {
  readonly name: string;
  /** describe's `type`, lower-case (`string`, `reference`, `currency`, ...). */
  readonly type: string;
  readonly calculated: boolean;
  readonly calculatedFormula: string | null;
  readonly relationshipName: string | null;
  readonly referenceTo: readonly string[];
}

export interface SObjectDescribe {
  readonly name: string;
  readonly fields: readonly FieldDescribe[];
}

/** One field of describe's JSON as Salesforce (or jsforce's typing of it) returns it. */
export function toFieldDescribe(f: {
  name: string;
  type: unknown;
  calculated?: boolean | null;
  calculatedFormula?: string | null;
  relationshipName?: string | null;
  referenceTo?: readonly string[] | null;
}): FieldDescribe {
  return {
    name: f.name,
    type: String(f.type).toLowerCase(),
    calculated: f.calculated === true,
    calculatedFormula: f.calculatedFormula ?? null,
    relationshipName: f.relationshipName ?? null,
    referenceTo: f.referenceTo ?? [],
  };
}

export type DescribeSource = (org: string, object: string) => Promise<SObjectDescribe | undefined>;

/**
 * Describes per (org, object), kept `ttlMs` and shared by the schema (columns from describe) and
 * the formula catalog. `refresh` forgets one entry: a payload that names a field describe did not
 * list means the org has a new field. A failed describe is kept a minute (then asked again).
 */
export function createDescribeCache(source: DescribeSource, opts: { ttlMs: number; now?: () => number }) {
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { at: number; value: Promise<SObjectDescribe | undefined> }>();
  const key = (org: string, object: string) => `${org}\u0000${object.toLowerCase()}`;
  function get(org: string, object: string): Promise<SObjectDescribe | undefined> {
    const k = key(org, object);
    const hit = cache.get(k);
    if (hit && now() - hit.at < opts.ttlMs) return hit.value;
    const value = source(org, object);
    cache.set(k, { at: now(), value });
    // A failed describe (no token, a revoked grant) is asked again after at most a minute, not on every batch.
    value.catch(() => {
      const e = cache.get(k);
      if (e?.value === value) e.at = now() - opts.ttlMs + Math.min(opts.ttlMs, 60_000);
    });
    return value;
  }
  return {
    get,
    /** Field name -> type, the shape the schema manager takes. */
    async types(org: string, object: string): Promise<Record<string, string> | undefined> {
      const d = await get(org, object);
      return d && Object.fromEntries(d.fields.map((f) => [f.name, f.type]));
    },
    refresh(org: string, object: string) {
      cache.delete(key(org, object));
    },
    /** The objects described so far for `org` (what the scheduled refresh walks). */
    objects(org: string): string[] {
      return [...cache.keys()].filter((k) => k.startsWith(`${org}\u0000`)).map((k) => k.slice(org.length + 1));
    },
  };
}

export type DescribeCache = ReturnType<typeof createDescribeCache>;
