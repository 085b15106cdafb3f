import t from 'tap';
import fc from 'fast-check';
import { sql } from 'kysely';
import type { Change } from '../../src/changes/change.ts';
import { decodeState, emptyState, mergeChange, type RecordState, type StoredVersion } from '../../src/mirror/merge.ts';
import { startTestDatabase } from '../support/pg.ts';
import { BASE_MS, accountId, change, createTestMirror, shuffle } from '../support/changes.ts';

// The merge in the database (migrations/20261203_0019_sql_merge.sql, mirror.repository.ts mergeRows)
// against the specification, merge.ts run in memory over the same deliveries: the same state per
// record (values, per-field versions, deleted), the same typed columns, the same count of applied
// changes. Versions repeat on purpose (equal-version ties), records span two tables (the batch that
// locks rows of several tables first), batches have mixed sizes, deliveries are shuffled and duplicated.

const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const mirror = await createTestMirror(db);
const TYPES = { Account: { AnnualRevenue: 'currency', Flag__c: 'boolean' }, Contact: { AnnualRevenue: 'currency', Flag__c: 'boolean' } };

type Stored = {
  sfid: string;
  isdeleted: boolean;
  name: string | null;
  amount: string | null;
  flag: boolean | null;
  f: Record<string, unknown>;
  v: StoredVersion;
};

const arbSpec = fc.record({
  rec: fc.integer({ min: 0, max: 3 }),
  at: fc.integer({ min: 0, max: 5 }), // few distinct versions: ties are common
  op: fc.constantFrom('insert', 'update', 'delete', 'undelete' as const),
  name: fc.option(fc.constantFrom('a', 'b', 'c', '', null), { nil: undefined }),
  amount: fc.option(fc.constantFrom(1, 2.5, -3, null, 'many'), { nil: undefined }),
  flag: fc.option(fc.constantFrom(true, false, null), { nil: undefined }),
});

let run = 0;
t.test('property: the SQL merge ends where merge.ts ends, with the same applied counts', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(arbSpec, { minLength: 1, maxLength: 30 }),
      fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 6 }),
      fc.nat(),
      async (specs, sizes, seed) => {
        const base = 5000 + run++ * 10;
        const history: Change[] = specs.map((s) => {
          const f: Record<string, string | number | boolean | null> = {};
          if (s.op !== 'delete') {
            if (s.name !== undefined) f.Name = s.name;
            if (s.amount !== undefined) f.AnnualRevenue = s.amount;
            if (s.flag !== undefined) f.Flag__c = s.flag;
          }
          return change(s.op, base + (s.rec >> 1), BASE_MS + s.at * 1000, f, s.rec & 1 ? 'Contact' : 'Account');
        });
        let r = seed;
        const random = () => (r = (r * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
        const delivered = shuffle([...history, ...history.filter(() => random() < 0.4)], random);

        const model = new Map<string, RecordState>();
        let modelApplied = 0;
        let applied = 0;
        for (let i = 0, b = 0; i < delivered.length; b++) {
          const batch = delivered.slice(i, i + sizes[b % sizes.length]!);
          i += batch.length;
          for (const c of batch) {
            const k = `${c.object}:${c.id}`;
            const s = model.get(k) ?? model.set(k, emptyState()).get(k)!;
            if (mergeChange(s, c)) modelApplied++;
          }
          applied += (await mirror.apply('salesforce', batch, { types: TYPES })).applied;
        }
        if (applied !== modelApplied) return fail(`applied ${applied}, merge.ts applied ${modelApplied}`);

        for (const [k, want] of model) {
          const [object, id] = k.split(':') as [string, string];
          const j = (
            await sql<{
              j: Record<string, unknown>;
            }>`select to_jsonb(x) as j from ${sql.id('salesforce', object.toLowerCase())} x where sfid = ${id}`.execute(db)
          ).rows[0]?.j;
          // Columns a history never needed do not exist: they read as null.
          const row =
            j &&
            ({
              sfid: j.sfid,
              isdeleted: j.isdeleted,
              name: j.name ?? null,
              amount: j.annualrevenue == null ? null : String(j.annualrevenue),
              flag: j.flag__c ?? null,
              f: j._sfm_fields,
              v: j._sfm_version,
            } as Stored);
          if (!row) return fail(`${k} missing`);
          const got = decodeState(row.f, row.v, row.isdeleted);
          if (JSON.stringify(sortState(got)) !== JSON.stringify(sortState(want)))
            return fail(`${k}: ${JSON.stringify(sortState(got))} != ${JSON.stringify(sortState(want))}`);
          if (row.f.Id !== id || row.f.IsDeleted !== want.deleted) return fail(`${k}: Id/IsDeleted in _sfm_fields`);
          const typed = (v: unknown, ok: (v: unknown) => boolean) => (v === undefined || !ok(v) ? null : v);
          if (row.name !== typed(want.fields.Name, (v) => typeof v === 'string')) return fail(`${k}: name column ${row.name}`);
          const amount = want.fields.AnnualRevenue;
          if (row.amount !== (typeof amount === 'number' ? String(amount) : null)) return fail(`${k}: annualrevenue column ${row.amount}`);
          if (row.flag !== typed(want.fields.Flag__c, (v) => typeof v === 'boolean')) return fail(`${k}: flag column ${row.flag}`);
        }
        return true;
      },
    ),
    { numRuns: 80 },
  );
  t.pass('80 random histories: same states, typed columns and counts');
});

t.test('the merge function alone: partial, re-sent, older, legacy rows', async (t) => {
  type Out = { fields: Record<string, unknown>; version: StoredVersion; deleted: boolean; won: string[] | null; changed: boolean };
  const merge = async (oldF: object, oldV: object, inF: object, inV: object, inMin: string) =>
    (
      await sql<Out>`select * from sfmirror.merge_record(${JSON.stringify(oldF)}::jsonb, ${JSON.stringify(oldV)}::jsonb, false,
        'x', ${JSON.stringify(inF)}::jsonb, ${JSON.stringify(inV)}::jsonb, false, ${Object.keys(inF)}::text[], ${inMin})`.execute(db)
    ).rows[0]!;
  const partial = await merge({ Id: 'x', A: 1, B: 2, IsDeleted: false }, { d: '1', v: '1' }, { B: 3 }, { d: '2', v: '2' }, '2');
  t.same(partial.fields, { Id: 'x', A: 1, B: 3, IsDeleted: false });
  t.same(partial.version, { d: '2', v: '1', x: { B: '2' } }, 'fields the change did not carry keep their versions');
  t.equal(partial.changed, true);
  t.same(decodeState(partial.fields, partial.version, false).versions, { A: '1', B: '2' });

  t.equal(
    (await merge({ Id: 'x', A: 1, IsDeleted: false }, { d: '2', v: '2' }, { A: 1 }, { d: '2', v: '2' }, '2')).changed,
    false,
    'an identical re-send changes nothing',
  );
  t.equal(
    (await merge({ Id: 'x', A: 1, IsDeleted: false }, { d: '2', v: '2' }, { A: 0 }, { d: '1', v: '1' }, '1')).changed,
    false,
    'an older change of known fields changes nothing',
  );
  const olderNew = await merge({ Id: 'x', A: 1, IsDeleted: false }, { d: '2', v: '2' }, { C: 0 }, { d: '1', v: '1' }, '1');
  t.same(
    [olderNew.fields, olderNew.changed, olderNew.won],
    [{ Id: 'x', A: 1, C: 0, IsDeleted: false }, true, ['C']],
    'an older change still sets a field never seen',
  );

  const legacy = await merge(
    { Id: 'x', A: 1, B: 2, C: 3, IsDeleted: false },
    { d: '3', v: '1', f: { '3': ['B', 'C'] } },
    { A: 5, B: 0 },
    { d: '2', v: '2' },
    '2',
  );
  t.same(
    decodeState(legacy.fields, legacy.version, false),
    {
      fields: { A: 5, B: 2, C: 3 },
      versions: { A: '2', B: '3', C: '3' },
      deleted: false,
      deletedVersion: '3',
    },
    'a row in the grouped form of before is merged field by field',
  );
  t.notOk('f' in legacy.version, 'and rewritten in the current form');
});

t.test('a batch that fails in its second table writes nothing: rows, cursor and checkpoint stay', async (t) => {
  const good = change('insert', 900, BASE_MS, { Name: 'first table' });
  const bad = { ...change('insert', 900, BASE_MS, { LastName: 'second table' }, 'Contact') };
  bad.fields = { ...bad.fields, SystemModstamp: 'not a time' };
  const before = await state();
  await t.rejects(mirror.apply('salesforce', [good, bad], { checkpoint: { source: 'test:fail', value: { page: 2 } } }));
  t.same(await state(), before, 'no row, the same change cursor, no checkpoint');
  async function state() {
    return (
      await sql<{ rows: string; last_seq: string; cp: string }>`select
        (select count(*) from salesforce.account where sfid = ${good.id}) as rows,
        (select last_seq from sfmirror.orgs where alias = 'salesforce') as last_seq,
        (select count(*) from sfmirror.checkpoints where source = 'test:fail') as cp`.execute(db)
    ).rows[0];
  }
});

t.test('concurrent batches over two tables, in opposite orders, neither deadlock nor lose a write', async (t) => {
  const ids = [950, 951, 952, 953];
  const batches = Array.from({ length: 12 }, (_, b) =>
    shuffle(
      ids.flatMap((n) => [
        change('update', n, BASE_MS + b * 1000, { Name: `a${b}` }),
        change('update', n, BASE_MS + b * 1000, { LastName: `c${b}` }, 'Contact'),
      ]),
    ),
  );
  const results = await Promise.all(batches.map((b) => mirror.apply('salesforce', b)));
  t.ok(
    results.every((r) => r.applied + r.ignored === 8),
    'every batch committed',
  );
  const names = await sql<{ name: string }>`select name from salesforce.account where sfid = any(${ids.map((n) => accountId(n))})`.execute(
    db,
  );
  t.same(
    names.rows.map((r) => r.name),
    ids.map(() => 'a11'),
    'the newest write wins everywhere',
  );
  const last = await sql<{
    lastname: string;
  }>`select lastname from salesforce.contact where sfid = any(${ids.map((n) => accountId(n, '003'))})`.execute(db);
  t.same(
    last.rows.map((r) => r.lastname),
    ids.map(() => 'c11'),
  );
});

function sortState(s: RecordState) {
  const sort = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
  return { fields: sort(s.fields), versions: sort(s.versions), deleted: s.deleted, deletedVersion: s.deletedVersion };
}

function fail(why: string): boolean {
  console.error(why);
  return false;
}
