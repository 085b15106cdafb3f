import type { Change } from '../changes/change.ts';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { SObjectDescribe } from '../salesforce/describe.ts';
import { formulasOf, watchIndex, type ObjectFormulas, type Watch } from './catalog.ts';
import * as repo from './formulas.repository.ts';

/**
 * Turns applied changes into formula re-reads (README, "Formula fields"). Salesforce's Change Data
 * Capture guide: "Formula fields aren't supported in Change Data Capture" (Change Event Trigger
 * Considerations), so a CDC change never carries them, and a cross-object formula changes with no
 * event on its own record at all. After a batch is applied:
 * - a record whose change lacks some of its object's formula fields is queued (same-record);
 * - a record changed in a field that a cross-object formula reads (or in a lookup on its path)
 *   queues the records pointing to it, found through the lookup columns of the mirror, hop by hop.
 * The catalog (catalog.ts) comes from describe and is rebuilt when it ages or a new object appears.
 */
export interface Catalog {
  readonly objects: ReadonlyMap<string, ObjectFormulas>;
  readonly watches: ReadonlyMap<string, Watch[]>;
  /** Lower-case names of the objects the catalog looked at. */
  readonly known: ReadonlySet<string>;
  /** The same objects, spelled as the mirror first saw them. */
  readonly names: readonly string[];
}

export interface TrackerDeps {
  db: Db;
  describe(org: string, object: string): Promise<SObjectDescribe | undefined>;
  /** SFMIRROR_FORMULA_REREAD_DELAY_MS: the collection window. */
  delayMs: number;
  /** How long a catalog is trusted (describe refresh interval). */
  ttlMs: number;
  log?: Logger | undefined;
  now?: () => number;
}

export function createFormulaTracker(d: TrackerDeps) {
  const now = d.now ?? Date.now;
  const catalogs = new Map<string, { at: number; value: Promise<Catalog> }>();

  async function build(org: string): Promise<Catalog> {
    const mirrored = await repo.mirroredObjects(d.db, org);
    const describe = async (o: string) =>
      d.describe(org, o).catch((e: Error) => {
        d.log?.warn({ org, object: o, err: e.message }, 'describe failed; formulas of this object are not tracked for now');
        return undefined;
      });
    const objects = new Map<string, ObjectFormulas>();
    for (const object of mirrored) {
      const f = await formulasOf(object, describe);
      if (f) objects.set(object.toLowerCase(), f);
    }
    await repo.saveCatalog(
      d.db,
      org,
      [...objects.values()].map((o) => ({
        object: o.object,
        fields: o.fields.map((f) => ({ field: f.field, kind: f.kind, ...(f.note ? { note: f.note } : {}) })),
      })),
    );
    return {
      objects,
      watches: watchIndex([...objects.values()]),
      known: new Set(mirrored.map((o) => o.toLowerCase())),
      names: mirrored,
    };
  }

  /** The org's formula catalog (cached `ttlMs`; rebuilt at once when `objects` names one it has not seen). */
  async function catalog(org: string, objects: Iterable<string> = []): Promise<Catalog> {
    let hit = catalogs.get(org);
    if (hit && now() - hit.at < d.ttlMs) {
      const c = await hit.value;
      if ([...objects].every((o) => c.known.has(o.toLowerCase()))) return c;
    }
    hit = { at: now(), value: build(org) };
    catalogs.set(org, hit);
    hit.value.catch(() => catalogs.delete(org));
    return hit.value;
  }

  /** Queues the re-reads that applied `changes` call for (`outcomes[i]` 1 = applied). */
  async function noteApplied(org: string, changes: readonly Change[], outcomes: Uint8Array) {
    const touched = new Set(changes.map((c) => c.object));
    const cat = await catalog(org, touched);
    if (cat.objects.size === 0) return;
    const same = new Map<string, Set<string>>();
    const parents = new Map<Watch, Set<string>>();
    changes.forEach((c, i) => {
      if (outcomes[i] !== 1) return;
      const own = cat.objects.get(c.object.toLowerCase());
      if (own && c.operation !== 'delete' && own.fields.some((f) => !(f.field in c.fields))) {
        (same.get(own.object) ?? same.set(own.object, new Set()).get(own.object)!).add(c.id);
      }
      for (const w of cat.watches.get(c.object.toLowerCase()) ?? []) {
        const matters = c.operation !== 'update' || Object.keys(c.fields).some((f) => w.fields.has(f.toLowerCase()));
        if (matters) (parents.get(w) ?? parents.set(w, new Set()).get(w)!).add(c.id);
      }
    });
    for (const [object, ids] of same) await repo.enqueue(d.db, org, object, [...ids], 'same-record', d.delayMs);
    for (const [w, ids] of parents) {
      const found = await pointingTo(org, w, [...ids]);
      await repo.enqueue(d.db, org, w.object, found, 'cross-object', d.delayMs);
    }
  }

  /** Walks a watch's lookups from the changed records back to the formula's object. */
  async function pointingTo(org: string, w: Watch, changed: string[]): Promise<string[]> {
    let ids = changed;
    for (let step = w.lookups.length - 1; step >= 0 && ids.length; step--) {
      const holders = step === 0 ? [w.object] : w.objects[step - 1]!;
      const next = new Set<string>();
      for (const o of holders) for (const id of await repo.childrenOf(d.db, org, o, w.lookups[step]!, ids)) next.add(id);
      ids = [...next];
    }
    return ids;
  }

  return { catalog, noteApplied, forget: (org: string) => catalogs.delete(org) };
}

export type FormulaTracker = ReturnType<typeof createFormulaTracker>;
