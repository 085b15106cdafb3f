import t from 'tap';
import fc from 'fast-check';
import { sql } from 'kysely';
import { isValidFieldName, isValidSobjectName, toId18 } from '../../src/changes/names.ts';
import { startTestDatabase } from '../support/pg.ts';
import { ORG_ID, buildTestApp, hmacHeaders, pushBody, rec } from '../support/app.ts';

// Robustness: thousands of signed but malformed bodies. Every one must get a 4xx, nothing may be
// written, and the process must keep serving.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const app = await buildTestApp(tdb, { objects: ['Account', 'Contact'] });
t.teardown(() => app.close());

const T0 = Date.UTC(2024, 2, 10, 12);
const valid = () => ({ orgId: ORG_ID, changes: [{ object: 'Account', operation: 'insert', record: rec(1, T0, { Name: 'ok' }) }] });
type Body = ReturnType<typeof valid>;

const notA = (ok: (v: unknown) => boolean) => fc.anything({ maxDepth: 3 }).filter((v) => !ok(v));
const sqlish = fc.constantFrom(
  'Account; DROP TABLE x',
  'Acc"ount',
  "Acc'ount",
  'a b',
  'pg_class',
  '__c',
  'Account--',
  '"; select 1; --',
  'Name)',
  'x'.repeat(64),
  'ÄCCOUNT',
  '',
  '1Account',
);
const huge = fc.integer({ min: 200_000, max: 600_000 }).map((n) => 'x'.repeat(n));
// Deep nesting is spliced into the text after JSON.stringify (which would overflow its own stack).
const deep = fc.integer({ min: 50, max: 100_000 }).map((n) => ({ __deep: n }));
const expandDeep = (text: string) => text.replace(/\{"__deep":(\d+)\}/g, (_, n) => '['.repeat(Number(n)) + ']'.repeat(Number(n)));

const mutations: Array<fc.Arbitrary<(b: Body) => unknown>> = [
  notA((v) => typeof v === 'string' && toId18(v)?.startsWith('00D') === true).map((v) => (b: Body) => ({ ...b, orgId: v })),
  fc.oneof(notA(Array.isArray), fc.constant([])).map((v) => (b: Body) => ({ ...b, changes: v })),
  notA((v) => typeof v === 'object' && v !== null && !Array.isArray(v)).map((v) => (b: Body) => ({ ...b, changes: [v] })),
  fc
    .oneof(
      notA((v) => typeof v === 'string'),
      sqlish,
      huge,
      fc.constant('Opportunity'),
    )
    .map((v) => (b: Body) => ({ ...b, changes: [{ ...b.changes[0]!, object: v }] })),
  notA((v) => ['insert', 'update', 'delete', 'undelete'].includes(v as string)).map((v) => (b: Body) => ({
    ...b,
    changes: [{ ...b.changes[0]!, operation: v }],
  })),
  notA((v) => typeof v === 'object' && v !== null && !Array.isArray(v)).map((v) => (b: Body) => ({
    ...b,
    changes: [{ ...b.changes[0]!, record: v }],
  })),
  fc
    .oneof(
      notA((v) => toId18(v) !== undefined),
      fc.constant('001000000000001ZZZ'),
      huge,
    )
    .map((v) => (b: Body) => ({ ...b, changes: [{ ...b.changes[0]!, record: { ...b.changes[0]!.record, Id: v } }] })),
  fc
    .oneof(
      fc.anything({ maxDepth: 2 }).filter((v) => typeof v !== 'string'),
      fc.constantFrom('yesterday', '2024-13-45T99:99:99Z', '2024-03-10', ''),
    )
    .map((v) => (b: Body) => ({ ...b, changes: [{ ...b.changes[0]!, record: { ...b.changes[0]!.record, SystemModstamp: v } }] })),
  fc
    .oneof(sqlish, fc.string())
    .filter((k) => !isValidFieldName(k) && !['attributes', 'Id', 'IsDeleted', 'SystemModstamp'].includes(k))
    .map((k) => (b: Body) => ({ ...b, changes: [{ ...b.changes[0]!, record: { ...b.changes[0]!.record, [k]: 'v' } }] })),
  fc
    .oneof(huge, deep, fc.array(fc.anything(), { minLength: 0, maxLength: 3 }), fc.dictionary(fc.string(), fc.anything(), { minKeys: 1 }))
    .map((v) => (b: Body) => ({ ...b, changes: [{ ...b.changes[0]!, record: { ...b.changes[0]!.record, Description: v } }] })),
  fc
    .string({ minLength: 1 })
    .filter((k) => !['orgId', 'changes', 'types'].includes(k))
    .map((k) => (b: Body) => ({ ...b, [k]: 1 })),
  fc
    .oneof(
      notA((v) => typeof v === 'object' && v !== null && !Array.isArray(v)),
      fc.constant({ Account: { Name: 'no spaces allowed' } }),
      sqlish.filter((s) => !isValidSobjectName(s)).map((s) => ({ [s]: {} })),
    )
    // `types` may be absent or null: values that serialise to nothing or to null (NaN does) are valid.
    .filter((v) => {
      const j = JSON.stringify(v);
      return j !== undefined && j !== 'null';
    })
    .map((v) => (b: Body) => ({ ...b, types: v })),
  deep.map((v) => () => v),
  fc.constant(() => ({ ...valid(), changes: Array.from({ length: 10_001 }, () => valid().changes[0]) })),
];

t.test('every malformed push gets a 4xx and writes nothing', async (t) => {
  const statuses = new Map<number, number>();
  let checked = 0;
  const failures: string[] = [];
  for (const mutate of fc.sample(fc.oneof(...mutations), { numRuns: 2500, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 1e9) })) {
    const body = mutate(valid());
    const text = expandDeep(JSON.stringify(body) ?? 'undefined');
    const res = await app.inject({ method: 'POST', url: '/ingest/apex', payload: text, headers: hmacHeaders(text) });
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    checked++;
    if (res.statusCode < 400 || res.statusCode >= 500)
      failures.push(`status ${res.statusCode} for ${text.slice(0, 300)}: ${res.body.slice(0, 300)}`);
  }
  // Raw garbage (not JSON at all, invalid UTF-8).
  for (let i = 0; i < 300; i++) {
    const raw = Buffer.from(Array.from({ length: 1 + (i % 97) * 7 }, (_, j) => (i * 31 + j * 17) % 256));
    const res = await app.inject({ method: 'POST', url: '/ingest/apex', payload: raw, headers: hmacHeaders(raw) });
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    checked++;
    if (res.statusCode < 400 || res.statusCode >= 500)
      failures.push(`status ${res.statusCode} for garbage ${raw.toString('hex').slice(0, 80)}`);
  }
  t.same(failures.slice(0, 5), [], `no body was accepted or crashed the handler (${failures.length} did)`);
  t.ok(checked >= 2800, `${checked} bodies; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
  const tables = await sql<{
    n: string;
  }>`select count(*) as n from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema', 'sfmirror')`.execute(
    db,
  );
  t.equal(tables.rows[0]!.n, '0', 'no mirror table was created');
  const orgs = await db.selectFrom('sfmirror.orgs').select('org_id').where('org_id', 'is not', null).execute();
  t.same(orgs, [], 'no org was registered');
});

t.test('the process still serves, and a good push still lands', async (t) => {
  t.equal((await app.inject('/healthz')).statusCode, 200);
  const body = pushBody(valid().changes);
  const res = await app.inject({ method: 'POST', url: '/ingest/apex', payload: body, headers: hmacHeaders(body) });
  t.equal(res.statusCode, 200, res.body);
  t.ok(isValidSobjectName('Account'));
});
