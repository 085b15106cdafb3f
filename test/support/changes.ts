import type { Change, FieldValue, Operation } from '../../src/changes/change.ts';
import { toId18 } from '../../src/changes/names.ts';
import { makeVersion } from '../../src/changes/version.ts';
import type { Db } from '../../src/db/database.ts';
import { createMirror } from '../../src/mirror/apply.ts';
import { createSchemaManager } from '../../src/mirror/schema.ts';
import { ensureOrgAlias } from '../../src/mirror/orgs.repository.ts';

export const BASE_MS = Date.UTC(2024, 2, 10, 12, 0, 0);

/** An 18-character Account id for a small number. */
export const accountId = (n: number, prefix = '001') => toId18(`${prefix}${String(n).padStart(12, '0')}`)!;

export function change(operation: Operation, n: number, atMs: number, fields: Record<string, FieldValue> = {}, object = 'Account'): Change {
  return {
    object,
    operation,
    id: accountId(n, object === 'Contact' ? '003' : '001'),
    fields: { SystemModstamp: new Date(atMs).toISOString(), ...fields },
    version: makeVersion(atMs),
  };
}

export async function createTestMirror(db: Db, org = 'salesforce') {
  await ensureOrgAlias(db, org);
  const schema = createSchemaManager(db);
  return createMirror({ db, schema });
}

export function shuffle<T>(items: T[], random: () => number = Math.random): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
