import t from 'tap';
import fc from 'fast-check';
import { sql } from 'kysely';
import { decodeAll } from '../../src/backfill/bulk-window.ts';
import { restRecordsAsCsv } from '../../src/salesforce/bulk-values.ts';
import type { SfRecord } from '../../src/salesforce/client.ts';
import { startTestDatabase } from '../support/pg.ts';
import { BASE_MS, accountId, createTestMirror } from '../support/changes.ts';
import { applyBothWays, pagesOf } from '../support/mirror-state.ts';

// REST pages take the CSV path (src/backfill/bulk-window.ts, applyRestPage): written as the Bulk CSV
// of their records (restRecordsAsCsv) and applied by mirror.applyCsvPage, they must end where the
// row path (decodeRestRecord, mirror.apply) ends: the same rows, applied counts, outbox rows and type
// problems. A page whose JSON the CSV cannot reproduce is refused before anything is written.

const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const csvMirror = await createTestMirror(db, 'restcsv');
const rowMirror = await createTestMirror(db, 'restrows');
const TYPES: Record<string, string> = {
  Id: 'id',
  IsDeleted: 'boolean',
  SystemModstamp: 'datetime',
  Name: 'string',
  AnnualRevenue: 'currency',
  NumberOfEmployees: 'int',
  Rating__c: 'double',
  Active__c: 'boolean',
  Founded__c: 'date',
  Seen__c: 'datetime',
};
await sql`insert into sfmirror.settings (key, value) values ('warehouse', '{"enabled": true}')
  on conflict (key) do update set value = excluded.value`.execute(db);

// As Salesforce's REST query answers: every selected field present, null when empty, typed JSON.
const arbRecord = fc.record({
  rec: fc.integer({ min: 0, max: 5 }),
  at: fc.integer({ min: 0, max: 4 }), // few distinct versions: equal-version ties are common
  zulu: fc.boolean(),
  deleted: fc.boolean(),
  values: fc.record({
    Name: fc.constantFrom('a', 'b', 'Acme, "quoted"\nline\r\n', ' spaced ', 'ünïcødé 😀', '\\N', 'NULL', null),
    AnnualRevenue: fc.constantFrom(1, 2.5, -3, 1234567.25, 0.1 + 0.2, 1e21, -1e-7, 0, null),
    NumberOfEmployees: fc.constantFrom(7, 0, -12, 2.5, null),
    Rating__c: fc.constantFrom(4.25, 5e-324, Number.MAX_SAFE_INTEGER, null),
    Active__c: fc.constantFrom(true, false, null),
    Founded__c: fc.constantFrom('2001-02-03', '1999-12-31', null, 'soon'),
    Seen__c: fc.constantFrom('2024-03-10T12:00:00.000Z', '2020-01-01T00:00:00.000+0000', '2020-01-01T01:30:00.000+0130', null, 'later'),
  }),
});
type Rec = typeof arbRecord extends fc.Arbitrary<infer R> ? R : never;

function restRecord(r: Rec, base: number): SfRecord {
  const stamp = new Date(BASE_MS + r.at * 1000).toISOString();
  return {
    attributes: { type: 'Account', url: `/services/data/v62.0/sobjects/Account/${accountId(base + r.rec)}` },
    Id: accountId(base + r.rec),
    IsDeleted: r.deleted,
    SystemModstamp: r.zulu ? stamp : stamp.replace('Z', '+0000'),
    ...r.values,
  } as unknown as SfRecord;
}

let run = 0;
t.test('property: a REST page through the CSV path ends where the row path ends', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(arbRecord, { minLength: 1, maxLength: 24 }),
      fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 }),
      fc.nat(),
      async (recs, sizes, seed) => {
        const base = 1000 + run++ * 10;
        const pages = [];
        for (const page of pagesOf(recs, sizes, seed, (r) => r.rec)) {
          const records = page.map((p) => restRecord(p, base));
          const csv = restRecordsAsCsv(records, TYPES);
          if (!('csv' in csv)) return fail(`unfit: ${csv.unfit}`);
          pages.push({ csv: csv.csv, changes: decodeAll('Account', records, undefined, 'test'), size: page.length });
        }
        const differs = await applyBothWays(db, { csv: csvMirror, rows: rowMirror }, { csv: 'restcsv', rows: 'restrows' }, TYPES, pages);
        if (differs) return fail(differs);
        return true;
      },
    ),
    { numRuns: 60 },
  );
  t.pass('60 random histories: the same rows, applied counts, outbox rows and type problems');

  function fail(m: string) {
    t.fail(m);
    return false;
  }
});

t.test('a REST page the CSV would not reproduce is refused, with the reason', async (t) => {
  const rec = (extra: Record<string, unknown>) =>
    ({
      attributes: { type: 'Account' },
      Id: accountId(1),
      IsDeleted: false,
      SystemModstamp: '2024-03-10T12:00:00.000+0000',
      Name: 'a',
      ...extra,
    }) as unknown as SfRecord;
  const unfit = (records: SfRecord[]) => {
    const r = restRecordsAsCsv(records, TYPES);
    return 'unfit' in r ? r.unfit : 'fit';
  };
  t.equal(unfit([]), 'no records');
  t.equal(unfit([rec({ Name: 5 })]), 'Name holds a number, its describe type is not numeric');
  t.equal(unfit([rec({ Name: true })]), 'Name holds a boolean, its describe type is not boolean');
  t.equal(unfit([rec({ AnnualRevenue: '2.50' })]), 'AnnualRevenue holds a string, its describe type is not text');
  t.equal(unfit([rec({ Active__c: 'true' })]), 'Active__c holds a string, its describe type is not text');
  t.equal(unfit([rec({ IsDeleted: 'true' })]), 'IsDeleted holds a string, its describe type is not text');
  t.equal(unfit([rec({ Name: '' })]), "Name holds an empty string (Bulk's null)");
  t.equal(unfit([rec({ Owner: { Name: 'x' } })]), 'Owner holds a nested value');
  t.equal(unfit([rec({ Unknown__c: 3 })]), 'Unknown__c holds a number, its describe type is not numeric');
  t.equal(unfit([rec({ 'Owner.Name': 'x' })]), '"Owner.Name" is not a field name');
  t.equal(unfit([rec({}), rec({ Phone: null })]), 'the records do not all have the same fields');
  const { Name: _n, ...noName } = rec({}) as Record<string, unknown>;
  t.equal(unfit([rec({}), { ...noName, Phone: 'x' } as unknown as SfRecord]), 'the records do not all have the same fields');
  t.equal(unfit([rec({ Name: 'x,"y"\n', AnnualRevenue: 1e21, Active__c: null })]), 'fit');
  const fit = restRecordsAsCsv([rec({ Name: 'x,"y"\n', AnnualRevenue: 1e21, Active__c: null })], TYPES);
  t.same(fit, {
    csv: `Id,IsDeleted,SystemModstamp,Name,AnnualRevenue,Active__c\n"${accountId(1)}",false,"2024-03-10T12:00:00.000+0000","x,""y""\n",1e+21,\n`,
  });
});
