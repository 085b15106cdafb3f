import type { Change, FieldTypes } from '../changes/change.ts';
import type { Mirror } from '../mirror/apply.ts';

/**
 * Group commit for pushes: while `inflight` (2) transactions of an org are being applied, pushes of
 * that org that arrive meanwhile wait and are then applied together in ONE transaction (up to
 * `maxChanges`), each answered with its own counts after that commit. Under load this turns many
 * small transactions, which serialise on the org's change cursor, into fewer larger ones; a lone
 * push goes straight through. Two at once, not one: the second prepares its batch and locks its rows
 * while the first commits, then takes the change cursor when the first lets it go (README
 * "Benchmarks": about 1.5x the pushes of one at a time at 4 and 16 connections; more than two
 * gained nothing). When a grouped transaction fails, its pushes are applied again one by one, so
 * only the push that caused the failure gets the error (a bad record never fails its neighbours,
 * which their senders would retry forever).
 *
 *   idle --submit--> applying --done, queue empty--> idle
 *                      |   ^
 *                      +---+ done, queue not empty: apply the queued pushes as one batch
 *                      |
 *                      +--group of 2+ failed--> apply each push alone, each answered by its own outcome
 */
type Pending = {
  changes: readonly Change[];
  types: FieldTypes | undefined;
  resolve: (r: { applied: number; ignored: number }) => void;
  reject: (e: unknown) => void;
};

export function createGroupCommitter(mirror: Mirror, opts: { maxChanges: number; source?: string; inflight?: number }) {
  const queues = new Map<string, { running: number; waiting: Pending[] }>();
  const inflight = opts.inflight ?? 2;
  const source = opts.source ?? 'apex';

  async function applyAlone(org: string, p: Pending) {
    try {
      const result = await mirror.apply(org, p.changes, { types: p.types, source });
      const applied = result.outcomes.reduce((a, b) => a + b, 0);
      p.resolve({ applied, ignored: p.changes.length - applied });
    } catch (e) {
      p.reject(e);
    }
  }

  async function drain(org: string) {
    const q = queues.get(org)!;
    while (q.waiting.length) {
      const group: Pending[] = [];
      let size = 0;
      while (q.waiting.length && (group.length === 0 || size + q.waiting[0]!.changes.length <= opts.maxChanges)) {
        const p = q.waiting.shift()!;
        group.push(p);
        size += p.changes.length;
      }
      if (group.length === 1) await applyAlone(org, group[0]!);
      else {
        try {
          const result = await mirror.apply(
            org,
            group.flatMap((p) => p.changes),
            { types: mergeTypes(group.map((p) => p.types)), source },
          );
          let offset = 0;
          for (const p of group) {
            let applied = 0;
            for (let i = 0; i < p.changes.length; i++) applied += result.outcomes[offset + i]!;
            offset += p.changes.length;
            p.resolve({ applied, ignored: p.changes.length - applied });
          }
        } catch {
          for (const p of group) await applyAlone(org, p);
        }
      }
    }
    q.running--;
  }

  return {
    submit(org: string, changes: readonly Change[], types?: FieldTypes): Promise<{ applied: number; ignored: number }> {
      const q = queues.get(org) ?? queues.set(org, { running: 0, waiting: [] }).get(org)!;
      const done = new Promise<{ applied: number; ignored: number }>((resolve, reject) =>
        q.waiting.push({ changes, types, resolve, reject }),
      );
      if (q.running < inflight) {
        q.running++;
        void drain(org);
      }
      return done;
    },
  };
}

function mergeTypes(all: Array<FieldTypes | undefined>): FieldTypes {
  // Null-prototype maps: an object named `constructor` must not reach Object.prototype's.
  const out: Record<string, Record<string, string>> = Object.create(null);
  for (const t of all)
    for (const [object, fields] of Object.entries(t ?? {})) {
      if (!Object.hasOwn(out, object)) out[object] = Object.create(null);
      Object.assign(out[object]!, fields);
    }
  return out;
}
