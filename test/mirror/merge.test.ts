import t from 'tap';
import fc from 'fast-check';
import type { Change } from '../../src/changes/change.ts';
import { makeVersion } from '../../src/changes/version.ts';
import { decodeState, emptyState, encodeVersions, mergeChange, type RecordState } from '../../src/mirror/merge.ts';
import { BASE_MS, change } from '../support/changes.ts';

// The model: apply changes one after another in version order, the way Salesforce made them.
function model(changes: Change[]) {
  const sorted = [...changes].sort((a, b) => (a.version < b.version ? -1 : 1));
  const fields: Record<string, unknown> = {};
  let deleted = false;
  for (const c of sorted) {
    Object.assign(fields, c.fields);
    deleted = c.operation === 'delete';
  }
  return { fields, deleted };
}

const arbChanges = fc.uniqueArray(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 12 }).chain((times) =>
  fc.tuple(
    ...times.map((ms) =>
      fc
        .record({
          op: fc.constantFrom('insert', 'update', 'delete', 'undelete' as const),
          name: fc.option(fc.constantFrom('a', 'b', null), { nil: undefined }),
          phone: fc.option(fc.constantFrom('1', '2', null), { nil: undefined }),
        })
        .map(({ op, name, phone }) => {
          const f: Record<string, string | null> = {};
          if (op !== 'delete' && name !== undefined) f.Name = name;
          if (op !== 'delete' && phone !== undefined) f.Phone = phone;
          return change(op, 1, BASE_MS + ms, f);
        }),
    ),
  ),
);

t.test('any delivery order and any duplicates give the state of in-order application', async (t) => {
  fc.assert(
    fc.property(arbChanges, fc.nat(), (changes, seed) => {
      const delivered = [...changes, ...changes.filter((_, i) => (seed >> i) & 1)];
      const rnd = fc.sample(fc.shuffledSubarray(delivered, { minLength: delivered.length }), { seed, numRuns: 1 })[0]!;
      const state = emptyState();
      for (const c of rnd) mergeChange(state, c);
      const want = model(changes);
      return JSON.stringify(sortKeys(state.fields)) === JSON.stringify(sortKeys(want.fields)) && state.deleted === want.deleted;
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 random histories converge');
});

t.test('equal versions: delete beats update, undelete must be strictly newer, ties are deterministic', async (t) => {
  const upd = change('update', 1, BASE_MS, { Name: 'x' });
  const del = change('delete', 1, BASE_MS);
  for (const order of [
    [upd, del],
    [del, upd],
  ]) {
    const s = emptyState();
    for (const c of order) mergeChange(s, c);
    t.equal(s.deleted, true, 'delete wins at an equal version, in either order');
  }
  const s = emptyState();
  mergeChange(s, del);
  t.equal(mergeChange(s, change('undelete', 1, BASE_MS)), false, 'undelete at the same version changes nothing');
  t.equal(s.deleted, true);
  t.equal(mergeChange(s, change('undelete', 1, BASE_MS + 1)), true);
  t.equal(s.deleted, false, 'a strictly newer undelete revives');

  const a = change('update', 1, BASE_MS, { Name: 'a' });
  const b = change('update', 1, BASE_MS, { Name: 'b' });
  const s1 = emptyState();
  mergeChange(s1, a);
  mergeChange(s1, b);
  const s2 = emptyState();
  mergeChange(s2, b);
  mergeChange(s2, a);
  t.same(s1.fields, s2.fields, 'two values at one version settle the same way in either order');
});

t.test('an identical re-send changes nothing; partial updates keep absent fields; null clears', async (t) => {
  const s = emptyState();
  t.equal(mergeChange(s, change('insert', 1, BASE_MS, { Name: 'Acme', Phone: '1' })), true);
  t.equal(mergeChange(s, change('insert', 1, BASE_MS, { Name: 'Acme', Phone: '1' })), false, 're-send ignored');
  mergeChange(s, change('update', 1, BASE_MS + 5, { Phone: null }));
  t.same(s.fields, { SystemModstamp: new Date(BASE_MS + 5).toISOString(), Name: 'Acme', Phone: null });
  t.equal(
    mergeChange(s, change('update', 1, BASE_MS + 2, { Name: 'Old', Phone: '9' })),
    true,
    'an older change still sets fields nobody newer set',
  );
  t.equal(s.fields.Name, 'Old', 'Name (set at +0) takes the +2 value');
  t.equal(s.fields.Phone, null, 'Phone (cleared at +5) keeps the newer null');
});

t.test('state survives its stored form', async (t) => {
  const s: RecordState = emptyState();
  mergeChange(s, change('insert', 1, BASE_MS, { Name: 'A', Phone: null }));
  mergeChange(s, change('delete', 1, BASE_MS + 3));
  const back = decodeState({ ...s.fields }, encodeVersions(s), s.deleted);
  t.same(back, s);
  t.equal(makeVersion(BASE_MS) < makeVersion(BASE_MS + 1), true);
  t.equal(makeVersion(999) < makeVersion(1000), true, 'fixed width: string order is time order');
});

function sortKeys(o: Record<string, unknown>) {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}
