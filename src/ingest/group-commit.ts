import type { Change, FieldTypes } from '../changes/change.ts';
import type { Mirror } from '../mirror/apply.ts';

/**
 * Group commit for pushes: while one transaction of an org is being applied, pushes of that org that
 * arrive meanwhile wait and are then applied together in ONE transaction (up to `maxChanges`),
 * each answered with its own counts after that commit. Under load this turns many small
 * transactions, which serialise on the org's change cursor, into fewer larger ones; a lone push
 * goes straight through. A failed transaction fails every push in it (each sender retries).
 *
 *   idle --submit--> applying --done, queue empty--> idle
 *                      |   ^
 *                      +---+ done, queue not empty: apply the queued pushes as one batch
 */
type Pending = {
  changes: readonly Change[];
  types: FieldTypes | undefined;
  resolve: (r: { applied: number; ignored: number }) => void;
  reject: (e: unknown) => void;
};

export function createGroupCommitter(mirror: Mirror, opts: { maxChanges: number; source?: string }) {
  const queues = new Map<string, { running: boolean; waiting: Pending[] }>();

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
      const changes = group.length === 1 ? group[0]!.changes : group.flatMap((p) => p.changes);
      const types = group.length === 1 ? group[0]!.types : mergeTypes(group.map((p) => p.types));
      try {
        const result = await mirror.apply(org, changes, { types, source: opts.source ?? 'apex' });
        let offset = 0;
        for (const p of group) {
          let applied = 0;
          for (let i = 0; i < p.changes.length; i++) applied += result.outcomes[offset + i]!;
          offset += p.changes.length;
          p.resolve({ applied, ignored: p.changes.length - applied });
        }
      } catch (e) {
        for (const p of group) p.reject(e);
      }
    }
    q.running = false;
  }

  return {
    submit(org: string, changes: readonly Change[], types?: FieldTypes): Promise<{ applied: number; ignored: number }> {
      const q = queues.get(org) ?? queues.set(org, { running: false, waiting: [] }).get(org)!;
      const done = new Promise<{ applied: number; ignored: number }>((resolve, reject) =>
        q.waiting.push({ changes, types, resolve, reject }),
      );
      if (!q.running) {
        q.running = true;
        void drain(org);
      }
      return done;
    },
  };
}

function mergeTypes(all: Array<FieldTypes | undefined>): FieldTypes {
  const out: Record<string, Record<string, string>> = {};
  for (const t of all) for (const [object, fields] of Object.entries(t ?? {})) Object.assign((out[object] ??= {}), fields);
  return out;
}
