import t from 'tap';
import fc from 'fast-check';
import { Kysely, PostgresDialect, sql } from 'kysely';
import type { Change } from '../../src/changes/change.ts';
import type { Database } from '../../src/db/database.ts';
import { createMirror } from '../../src/mirror/apply.ts';
import { createSchemaManager } from '../../src/mirror/schema.ts';
import { readCheckpoint } from '../../src/mirror/mirror.repository.ts';
import { startTestDatabase } from '../support/pg.ts';
import { BASE_MS, accountId, change, createTestMirror, shuffle } from '../support/changes.ts';

const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const mirror = await createTestMirror(db);

type Row = { sfid: string; isdeleted: boolean; name: string | null; _sfm_fields: Record<string, unknown>; _sfm_seq: string };
const rows = async (ids?: string[]) =>
  (
    await sql<Row>`select sfid, isdeleted, name, _sfm_fields, _sfm_seq from salesforce.account ${ids ? sql`where sfid = any(${ids})` : sql``} order by sfid`.execute(
      db,
    )
  ).rows;

t.test('insert, partial update, null, delete (tombstone), undelete', async (t) => {
  const r1 = await mirror.apply('salesforce', [change('insert', 1, BASE_MS, { Name: 'Acme', Phone: '555' })]);
  t.same({ applied: r1.applied, ignored: r1.ignored }, { applied: 1, ignored: 0 });
  await mirror.apply('salesforce', [change('update', 1, BASE_MS + 1000, { Phone: null })]);
  let [row] = await rows([accountId(1)]);
  t.equal(row!.name, 'Acme', 'absent field left as it is');
  t.equal(row!._sfm_fields.Phone, null, 'explicit null clears');
  t.equal(row!._sfm_fields.Id, accountId(1));
  await mirror.apply('salesforce', [change('delete', 1, BASE_MS + 2000)]);
  [row] = await rows([accountId(1)]);
  t.equal(row!.isdeleted, true, 'delete leaves a tombstone');
  t.equal(row!.name, 'Acme', 'with its last values');
  await mirror.apply('salesforce', [change('undelete', 1, BASE_MS + 3000, { Name: 'Acme' })]);
  [row] = await rows([accountId(1)]);
  t.equal(row!.isdeleted, false, 'undelete revives');
  const sm = await sql<{ systemmodstamp: Date }>`select systemmodstamp from salesforce.account where sfid = ${accountId(1)}`.execute(db);
  t.equal(sm.rows[0]!.systemmodstamp.getTime(), BASE_MS + 3000, "systemmodstamp is Salesforce's value as last received");
});

t.test('an identical re-send is ignored and bumps nothing', async (t) => {
  const c = change('insert', 2, BASE_MS, { Name: 'Twice' });
  await mirror.apply('salesforce', [c]);
  const [before] = await rows([accountId(2)]);
  const r = await mirror.apply('salesforce', [c, c]);
  t.same({ applied: r.applied, ignored: r.ignored }, { applied: 0, ignored: 2 });
  const [after] = await rows([accountId(2)]);
  t.equal(after!._sfm_seq, before!._sfm_seq, '_sfm_seq unchanged');
});

t.test('equal versions: delete beats update; undelete must be strictly newer', async (t) => {
  await mirror.apply('salesforce', [change('update', 3, BASE_MS, { Name: 'x' }), change('delete', 3, BASE_MS)]);
  await mirror.apply('salesforce', [change('delete', 4, BASE_MS)]);
  await mirror.apply('salesforce', [change('update', 4, BASE_MS, { Name: 'x' })]);
  await mirror.apply('salesforce', [change('undelete', 4, BASE_MS, { Name: 'y' })]);
  const rs = await rows([accountId(3), accountId(4)]);
  t.same(
    rs.map((r) => r.isdeleted),
    [true, true],
  );
  await mirror.apply('salesforce', [change('undelete', 4, BASE_MS + 1)]);
  t.equal((await rows([accountId(4)]))[0]!.isdeleted, false);
});

t.test('a delete of a record never seen leaves a tombstone that an older insert does not revive', async (t) => {
  await mirror.apply('salesforce', [change('delete', 5, BASE_MS + 10)]);
  await mirror.apply('salesforce', [change('insert', 5, BASE_MS, { Name: 'late' })]);
  const [row] = await rows([accountId(5)]);
  t.equal(row!.isdeleted, true);
  t.equal(row!.name, 'late', 'fields nobody newer set are still recorded');
});

t.test('property: shuffled, duplicated, re-batched deliveries end in the in-order state', async (t) => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          rec: fc.integer({ min: 0, max: 2 }),
          op: fc.constantFrom('insert', 'update', 'delete', 'undelete' as const),
          name: fc.option(fc.constantFrom('a', 'b', 'c', null), { nil: undefined }),
          amount: fc.option(fc.constantFrom(1, 2.5, null), { nil: undefined }),
        }),
        { minLength: 1, maxLength: 25 },
      ),
      fc.integer({ min: 1, max: 8 }),
      fc.nat(),
      async (specs, batchSize, seed) => {
        const base = 1000 + run++ * 10;
        // Distinct versions (a change's position in the history) so "in order" is well defined.
        const history: Change[] = specs.map((s, i) => {
          const f: Record<string, string | number | null> = {};
          if (s.op !== 'delete') {
            if (s.name !== undefined) f.Name = s.name;
            if (s.amount !== undefined) f.AnnualRevenue = s.amount;
          }
          return change(s.op, base + s.rec, BASE_MS + i * 1000, f);
        });
        let r = seed;
        const random = () => (r = (r * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
        const delivered = shuffle([...history, ...history.filter(() => random() < 0.3)], random);
        for (let i = 0; i < delivered.length; i += batchSize) {
          await mirror.apply('salesforce', delivered.slice(i, i + batchSize), { types: { Account: { AnnualRevenue: 'currency' } } });
        }
        // Model: replay in order.
        const want = new Map<string, { fields: Record<string, unknown>; deleted: boolean }>();
        for (const c of history) {
          const m = want.get(c.id) ?? { fields: {}, deleted: false };
          Object.assign(m.fields, c.fields);
          m.deleted = c.operation === 'delete';
          want.set(c.id, m);
        }
        const got = await rows([...want.keys()]);
        if (got.length !== want.size) return false;
        for (const row of got) {
          const m = want.get(row.sfid)!;
          const { Id: _id, IsDeleted, ...fields } = row._sfm_fields;
          if (IsDeleted !== m.deleted || row.isdeleted !== m.deleted) return false;
          if (JSON.stringify(sorted(fields)) !== JSON.stringify(sorted(m.fields))) return false;
        }
        return true;
      },
    ),
    { numRuns: 60 },
  );
  t.pass('60 random histories converge in the database');
});

t.test('typed columns from a types map; values that do not fit stay in JSON and are reported', async (t) => {
  const types = {
    Account: { NumberOfEmployees: 'int', AnnualRevenue: 'currency', IsActive__c: 'boolean', Founded__c: 'date', LastSeen__c: 'datetime' },
  };
  const good = change('insert', 20, BASE_MS, {
    NumberOfEmployees: 12,
    AnnualRevenue: 1.5,
    IsActive__c: true,
    Founded__c: '2001-02-03',
    LastSeen__c: '2024-01-01T10:00:00.000+0000',
  });
  const bad = change('insert', 21, BASE_MS, { NumberOfEmployees: 'many', Founded__c: '2001-02-30' });
  const r = await mirror.apply('salesforce', [good, bad], { types });
  t.equal(r.applied, 2, 'a bad value does not block the batch');
  t.equal(r.typeProblems, 2);
  const cols = await sql<
    Record<string, unknown>
  >`select sfid, numberofemployees, annualrevenue, isactive__c, founded__c::text as founded, lastseen__c, _sfm_fields from salesforce.account where sfid = any(${[accountId(20), accountId(21)]}) order by sfid`.execute(
    db,
  );
  const [g, b] = cols.rows;
  t.equal(g!.numberofemployees, 12);
  t.equal(g!.annualrevenue, '1.5');
  t.equal(g!.isactive__c, true);
  t.equal(g!.founded, '2001-02-03');
  t.equal((g!.lastseen__c as Date).toISOString(), '2024-01-01T10:00:00.000Z');
  t.equal(b!.numberofemployees, null, 'column empty');
  t.equal((b!._sfm_fields as Record<string, unknown>).NumberOfEmployees, 'many', 'value kept in _sfm_fields');
  const problems = await db.selectFrom('sfmirror.type_problems').selectAll().orderBy('field').execute();
  t.same(
    problems.map((p) => p.field),
    ['Founded__c', 'NumberOfEmployees'],
  );
  const types2 = await db
    .selectFrom('sfmirror.mirror_columns')
    .select(['field', 'pg_type'])
    .where('table_name', '=', 'account')
    .where('field', '=', 'NumberOfEmployees')
    .execute();
  t.same(types2, [{ field: 'NumberOfEmployees', pg_type: 'integer' }]);
});

t.test('a field whose type changed is reported once and never blocks the batch', async (t) => {
  await mirror.apply('salesforce', [change('insert', 25, BASE_MS, { Rating__c: 'hot' })]); // no type known: text
  const r = await mirror.apply(
    'salesforce',
    [change('update', 25, BASE_MS + 1, { Rating__c: '5' }), change('insert', 26, BASE_MS, { Rating__c: 'x' })],
    { types: { Account: { Rating__c: 'double' } } },
  );
  t.equal(r.applied, 2);
  const again = await mirror.apply('salesforce', [change('update', 25, BASE_MS + 2, { Rating__c: '6' })], {
    types: { Account: { Rating__c: 'double' } },
  });
  t.equal(again.typeProblems, 0, 'reported once per process, not per batch');
  const p = await db.selectFrom('sfmirror.type_problems').selectAll().where('field', '=', 'Rating__c').execute();
  t.equal(p.length, 1);
  t.match(p[0]!.problem, /type is now double but column rating__c is text/);
  const v = await sql<{ rating__c: string }>`select rating__c from salesforce.account where sfid = ${accountId(25)}`.execute(db);
  t.equal(v.rows[0]!.rating__c, '6', 'values still land in the existing column when they fit');
});

t.test('a new field gets its column without a restart, also for another instance', async (t) => {
  const other = createMirror({ db, schema: createSchemaManager(db) });
  await mirror.apply('salesforce', [change('insert', 30, BASE_MS, { Name: 'n' })]);
  await other.apply('salesforce', [change('update', 30, BASE_MS + 1, { Brand_New__c: 'hello' })]);
  // The same field spelled in lower case (as a careless sender might) lands in the same column.
  await mirror.apply('salesforce', [change('update', 31, BASE_MS + 1, { brand_new__c: 'lower' })]);
  const r = await sql<{
    sfid: string;
    brand_new__c: string;
    f: Record<string, unknown>;
  }>`select sfid, brand_new__c, _sfm_fields as f from salesforce.account where sfid = any(${[accountId(30), accountId(31)]}) order by sfid`.execute(
    db,
  );
  t.equal(r.rows[0]!.brand_new__c, 'hello');
  t.equal(r.rows[1]!.brand_new__c, 'lower');
  t.same(
    Object.keys(r.rows[1]!.f).filter((k) => /brand/i.test(k)),
    ['Brand_New__c'],
    'field names keep the spelling first seen',
  );
});

t.test('checkpoint in the same transaction; outbox rows only when the warehouse is on', async (t) => {
  await mirror.apply('salesforce', [change('insert', 40, BASE_MS, { Name: 'cp' })], {
    checkpoint: { source: 'test:stream', value: { replayId: 41 } },
  });
  t.same(await readCheckpoint(db, 'salesforce', 'test:stream'), { replayId: 41 });
  t.equal(
    Number((await sql<{ n: string }>`select count(*) as n from sfmirror.outbox`.execute(db)).rows[0]!.n),
    0,
    'warehouse off: no outbox',
  );
  await db
    .insertInto('sfmirror.settings')
    .values({ key: 'warehouse', value: JSON.stringify({ enabled: true }) })
    .execute();
  await mirror.apply('salesforce', [
    change('update', 40, BASE_MS + 1, { Name: 'one' }),
    change('update', 40, BASE_MS + 2, { Name: 'two' }),
    change('update', 40, BASE_MS + 2, { Name: 'two' }),
  ]);
  const out = await db.selectFrom('sfmirror.outbox').selectAll().orderBy('id').execute();
  t.equal(out.length, 2, 'one outbox row per applied change');
  t.same(
    out.map((o) => (o.record as { Name: string }).Name),
    ['one', 'two'],
    'each holds the record after its change',
  );
  t.equal(out[0]!.seq, out[1]!.seq, "both carry the row's seq");
  await db.deleteFrom('sfmirror.settings').execute();
  await db.deleteFrom('sfmirror.outbox').execute();
});

t.test('round trips per batch do not grow with the batch', async (t) => {
  let queries = 0;
  const counting = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: tdb.handle.pool }),
    log: (e) => {
      if (e.level === 'query') queries++;
    },
  });
  const m = createMirror({ db: counting, schema: createSchemaManager(counting) });
  const batch = (n: number, at: number) => Array.from({ length: n }, (_, i) => change('update', 100 + i, at, { Name: `n${i}` }));
  await m.apply('salesforce', batch(200, BASE_MS)); // warms the schema cache
  queries = 0;
  await m.apply('salesforce', batch(10, BASE_MS + 1));
  const small = queries;
  queries = 0;
  await m.apply('salesforce', batch(200, BASE_MS + 2));
  t.equal(queries, small, `${small} queries for 10 records and for 200`);
  t.ok(small <= 8, `few round trips (${small})`);
});

function sorted(o: Record<string, unknown>) {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}
