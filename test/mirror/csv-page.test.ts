import t from 'tap';
import fc from 'fast-check';
import { sql } from 'kysely';
import { decodeAll } from '../../src/backfill/bulk-window.ts';
import { readCheckpoint } from '../../src/mirror/mirror.repository.ts';
import { decodeBulkCsv } from '../../src/salesforce/bulk-values.ts';
import { startTestDatabase } from '../support/pg.ts';
import { BASE_MS, accountId, createTestMirror } from '../support/changes.ts';
import { applyBothWays, mirrorState, pagesOf } from '../support/mirror-state.ts';

// The backfill's CSV path (mirror.applyCsvPage, src/mirror/csv-page.repository.ts) against the row
// path it replaces for Bulk pages: the same pages, decoded in JavaScript and applied by
// mirror.apply (itself checked against merge.ts in sql-merge.test.ts), must leave the same rows
// (typed columns, _sfm_fields, per-field versions, tombstones), the same applied counts, the same
// outbox rows and the same type problems. Pages are shuffled, re-sent and of mixed sizes.

const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const csvMirror = await createTestMirror(db, 'bycsv');
const rowMirror = await createTestMirror(db, 'byrows');
const TYPES: Record<string, string> = {
  Name: 'string',
  AnnualRevenue: 'currency',
  NumberOfEmployees: 'int',
  Active__c: 'boolean',
  Founded__c: 'date',
  Seen__c: 'datetime',
};
const FIELDS = Object.keys(TYPES);
await sql`insert into sfmirror.settings (key, value) values ('warehouse', '{"enabled": true}')
  on conflict (key) do update set value = excluded.value`.execute(db);

type Snapshot = { rec: number; at: number; deleted: boolean; values: Record<string, string | number | boolean | null> };

const cell = (v: unknown) => {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

/** A Bulk API 2.0 results page as the stand-in (and Salesforce) writes it: header, '' for null. */
function csvOf(snaps: readonly Snapshot[], base: number, opts: { quoteHeader?: boolean } = {}) {
  const header = ['Id', 'IsDeleted', 'SystemModstamp', ...FIELDS];
  const lines = [header.map((h) => (opts.quoteHeader ? `"${h}"` : h)).join(',')];
  for (const s of snaps)
    lines.push(
      [accountId(base + s.rec), s.deleted, new Date(BASE_MS + s.at * 1000).toISOString(), ...FIELDS.map((f) => s.values[f])]
        .map(cell)
        .join(','),
    );
  return `${lines.join('\n')}\n`;
}

const arbSnapshot = fc.record({
  rec: fc.integer({ min: 0, max: 5 }),
  at: fc.integer({ min: 0, max: 4 }), // few distinct versions: equal-version ties are common
  deleted: fc.boolean(),
  values: fc.record({
    Name: fc.constantFrom('a', 'b', 'Acme, "quoted"\nline', null),
    AnnualRevenue: fc.constantFrom(1, 2.5, -3, 1234567.25, '2.50', '-0.0', '1e3', null, 'many'),
    NumberOfEmployees: fc.constantFrom(7, 0, -12, 2.5, null),
    Active__c: fc.constantFrom(true, false, null),
    Founded__c: fc.constantFrom('2001-02-03', '1999-12-31', null, 'soon'),
    Seen__c: fc.constantFrom('2024-03-10T12:00:00.000Z', '2020-01-01T00:00:00.000+0000', null),
  }),
});

const { rowsOf, outboxOf } = mirrorState(db);

let run = 0;
t.test('property: a CSV page ends where the row path ends (rows, counts, outbox, type problems)', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(arbSnapshot, { minLength: 1, maxLength: 24 }),
      fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 }),
      fc.nat(),
      async (snaps, sizes, seed) => {
        const base = 1000 + run++ * 10;
        const pages = pagesOf(snaps, sizes, seed, (s) => s.rec).map((page) => {
          const csv = csvOf(page, base);
          return { csv, changes: decodeAll('Account', decodeBulkCsv(csv, TYPES), undefined, 'test'), size: page.length };
        });
        const differs = await applyBothWays(db, { csv: csvMirror, rows: rowMirror }, { csv: 'bycsv', rows: 'byrows' }, TYPES, pages);
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

t.test('a page the CSV path refuses writes nothing and leaves the checkpoint where it was', async (t) => {
  const checkpoint = (value: unknown) => ({ source: 'backfill:99', value });
  const good = csvOf([{ rec: 1, at: 1, deleted: false, values: { Name: 'kept' } }], 9000);
  const first = await csvMirror.applyCsvPage('bycsv', 'Account', good, { types: TYPES, checkpoint: checkpoint({ page: 1 }) });
  t.match(first, { rows: 1, applied: 1 });
  const before = await rowsOf('bycsv');
  const outbox = (await outboxOf('bycsv')).length;

  const cases: Array<[string, string, RegExp]> = [
    // PostgreSQL's CSV reader stops on the last line, after the first rows were copied.
    [
      'an unterminated quote on the last line',
      `${csvOf([{ rec: 2, at: 2, deleted: false, values: { Name: 'x' } }], 9000)}${accountId(9003)},false,"oops\n`,
      /refused/,
    ],
    // The cast fails inside the merge statement, after the COPY succeeded.
    [
      'a date that is not in the calendar',
      csvOf([{ rec: 2, at: 2, deleted: false, values: { Founded__c: '2023-02-30' } }], 9000),
      /refused/,
    ],
    ['an integer out of range', csvOf([{ rec: 2, at: 2, deleted: false, values: { NumberOfEmployees: 99999999999 } }], 9000), /refused/],
    [
      'an id twice',
      csvOf(
        [
          { rec: 2, at: 2, deleted: false, values: {} },
          { rec: 2, at: 3, deleted: false, values: {} },
        ],
        9000,
      ),
      /more than once/,
    ],
  ];
  for (const [what, csv, why] of cases) {
    const r = await csvMirror.applyCsvPage('bycsv', 'Account', csv, { types: TYPES, checkpoint: checkpoint({ page: 2 }) });
    t.ok('fallback' in r && why.test(r.fallback), `${what}: the caller takes the row path (${'fallback' in r ? r.fallback : 'applied'})`);
    t.same(await rowsOf('bycsv'), before, `${what}: no row written`);
    t.equal((await outboxOf('bycsv')).length, outbox, `${what}: no outbox row`);
    t.same(await readCheckpoint(db, 'bycsv', 'backfill:99'), { page: 1 }, `${what}: the checkpoint stays at the last committed page`);
  }
  const none = await csvMirror.applyCsvPage('bycsv', 'Account', 'Name,Phone\nx,y\n', { types: TYPES });
  t.match(none, { fallback: /no Id or SystemModstamp/ }, 'a page without Id or SystemModstamp is not for this path');
});

t.test('quoted headers, a header-only page, rows without a valid Id or SystemModstamp', async (t) => {
  const r = await csvMirror.applyCsvPage(
    'bycsv',
    'Account',
    csvOf([{ rec: 4, at: 1, deleted: true, values: { Name: 'q' } }], 9100, { quoteHeader: true }),
    {
      types: TYPES,
    },
  );
  t.match(r, { rows: 1, applied: 1, skipped: 0 });
  const row = (
    await sql<{ isdeleted: boolean; name: string }>`select isdeleted, name from bycsv.account where sfid = ${accountId(9104)}`.execute(db)
  ).rows[0];
  t.same(row, { isdeleted: true, name: 'q' }, 'IsDeleted true (queryAll) is a tombstone, its values kept');

  t.match(await csvMirror.applyCsvPage('bycsv', 'Account', 'Id,SystemModstamp,Name\n', { types: TYPES }), { rows: 0, applied: 0 });
  const bad = [
    'Id,SystemModstamp,Name',
    `${accountId(9105)},2024-03-10T12:00:00.000Z,valid`,
    `${accountId(9106).slice(0, 15)}ZZZ,2024-03-10T12:00:00.000Z,wrong checksum`,
    `${accountId(9107)},,no stamp`,
    `${accountId(9108).slice(0, 15)},2024-03-10T12:00:00.000Z,fifteen`,
  ].join('\n');
  const mixed = await csvMirror.applyCsvPage('bycsv', 'Account', `${bad}\n`, { types: TYPES });
  t.match(mixed, { rows: 4, applied: 2, skipped: 2 }, 'rows decodeRestRecord refuses are skipped, not applied');
  const names = (
    await sql<{
      name: string;
    }>`select name from bycsv.account where name in ('valid', 'fifteen', 'wrong checksum', 'no stamp') order by name`.execute(db)
  ).rows;
  t.same(
    names.map((n) => n.name),
    ['fifteen', 'valid'],
    'a 15-character id is stored in its 18-character form',
  );
});
