import t from 'tap';
import { sql } from 'kysely';
import type { FormulaSource } from '../../src/formulas/rereader.ts';
import { formulaStatus } from '../../src/formulas/status.ts';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { metricValue } from '../stream/harness.ts';
import { waitFor } from '../support/wait.ts';
import { startFormulas } from './harness.ts';

// Formula freshness end to end (issue 15): the stand-in org computes formulas on every read and
// never sends them in change events; CDC -> mirror -> re-read queue -> REST re-read -> mirror.apply.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const DAY = 86_400_000;
const org = await startSalesforceOrg(t, {
  connectTimeout: 1,
  types: { Contact: { Phone: 'phone', Birthdate: 'date', FirstName: 'string', LastName: 'string' }, Opportunity: { CloseDate: 'date' } },
  references: { Contact: { AccountId: ['Account'] } },
  formulas: {
    Contact: {
      Full_Label__c: { formula: "FirstName & ' ' & LastName", compute: (r) => `${r.FirstName ?? ''} ${r.LastName ?? ''}` },
      Account_Name__c: { formula: 'Account.Name', compute: (r, ctx) => (ctx.get('Account', r.AccountId)?.Name as string) ?? null },
    },
    Opportunity: {
      Days_Open__c: {
        formula: 'TODAY() - CloseDate',
        type: 'double',
        compute: (r, ctx) => Math.floor((ctx.now.getTime() - Date.parse(String(r.CloseDate))) / DAY),
      },
    },
  },
});

// Every REST re-read of formulas, by object and ids (what "no others" is checked against).
const reads: Array<{ object: string; ids: string[] }> = [];
let duringRead: (() => Promise<void>) | undefined;
const recording = (s: FormulaSource): FormulaSource => ({
  ...s,
  readLimits: () => s.readLimits(),
  apiUsage: () => s.apiUsage(),
  startBulkRead: (o, w) => s.startBulkRead(o, w),
  awaitBulkRead: (j, o) => s.awaitBulkRead(j, o),
  readBulkPage: (o, j, l, m) => s.readBulkPage(o, j, l, m),
  async readRecords(object, ids, fields) {
    reads.push({ object, ids: [...ids] });
    const out = await s.readRecords(object, ids, fields);
    const hook = duringRead;
    duringRead = undefined;
    await hook?.();
    return out;
  },
});

const f = await startFormulas(tdb, org, { source: recording, tuning: { refreshIntervalMs: 1500 } });
t.teardown(() => f.stop());
f.rereader.start();
await waitFor('live', () => f.service!.status()?.state === 'live');

const row = async (object: string, id: string) =>
  (
    await sql<{
      f: Record<string, unknown>;
      seq: string;
    }>`select _sfm_fields as f, _sfm_seq::text as seq from ${sql.id('salesforce', object.toLowerCase())} where sfid = ${id}`
      .execute(db)
      .catch((e: { code?: string }) => {
        if (e.code === '42P01') return { rows: [] };
        throw e;
      })
  ).rows[0];
const field = async (object: string, id: string, name: string) => (await row(object, id))?.f[name];
const apiCalls = (object: string) => metricValue(f.metrics, 'sfmirror_formula_api_calls_total', { object });

const a = org.insert('Account', { Name: 'Acme' });
const b = org.insert('Account', { Name: 'Beta' });
const c1 = org.insert('Contact', { FirstName: 'Ann', LastName: 'Lee', AccountId: a });
const c2 = org.insert('Contact', { FirstName: 'Bob', LastName: 'Lee', AccountId: a });
const c3 = org.insert('Contact', { FirstName: 'Cy', LastName: 'Ray', AccountId: b });

t.test('a table has a column for every described field, formulas and fields null everywhere included', async (t) => {
  await waitFor('contacts mirrored', async () => (await field('Contact', c3, 'Full_Label__c')) === 'Cy Ray');
  const cols = await sql<{ column_name: string }>`select column_name from information_schema.columns
    where table_schema = 'salesforce' and table_name = 'contact'`.execute(db);
  const names = cols.rows.map((r) => r.column_name);
  for (const c of ['phone', 'birthdate', 'full_label__c', 'account_name__c', 'accountid']) t.ok(names.includes(c), `column ${c} exists`);
  const phones = await sql<{ n: string }>`select count(phone) as n from salesforce.contact`.execute(db);
  t.equal(phones.rows[0]!.n, '0', 'phone is null everywhere and still has its column: select phone works');
});

t.test('a CDC update of FirstName refreshes Full_Label__c (same-record formula)', async (t) => {
  t.equal(await field('Contact', c1, 'Full_Label__c'), 'Ann Lee', 'the CREATE event had no formula value; the re-read filled it');
  t.equal(await field('Contact', c1, 'Account_Name__c'), 'Acme');
  org.update('Contact', c1, { FirstName: 'Anna' });
  await waitFor('Full_Label__c fresh', async () => (await field('Contact', c1, 'Full_Label__c')) === 'Anna Lee');
  t.equal(await field('Contact', c1, 'FirstName'), 'Anna');
});

t.test("an Account's Name change refreshes Account_Name__c of its Contacts and no others", async (t) => {
  await waitFor('queue empty', async () => (await formulaStatus(db, 'salesforce')).objects.every((o) => o.waiting === 0));
  const before3 = (await row('Contact', c3))!.seq;
  reads.length = 0;
  const started = Date.now();
  org.update('Account', a, { Name: 'Acme 2' });
  await waitFor(
    'children fresh',
    async () =>
      (await field('Contact', c1, 'Account_Name__c')) === 'Acme 2' && (await field('Contact', c2, 'Account_Name__c')) === 'Acme 2',
  );
  t.comment(`parent change -> children fresh: ${Date.now() - started} ms (collection window 50 ms in this test)`);
  const contactIds = reads.filter((r) => r.object === 'Contact').flatMap((r) => r.ids);
  t.same(contactIds.sort(), [c1, c2].sort(), 'only the Contacts of that Account were re-read');
  t.equal((await row('Contact', c3))!.seq, before3, "the other Account's Contact is untouched");
  t.equal(await field('Contact', c3, 'Account_Name__c'), 'Beta');
});

t.test('API calls per 1,000 changed records: about one per 200', async (t) => {
  const ids: string[] = [];
  org.transaction(() => {
    for (let i = 0; i < 1000; i++) ids.push(org.insert('Contact', { FirstName: `F${i}`, LastName: 'Bulk', AccountId: b }));
  });
  const before = await apiCalls('Contact');
  await waitFor('1,000 created and fresh', async () => {
    const r = await sql<{
      n: string;
    }>`select count(*) as n from salesforce.contact where _sfm_fields->>'Full_Label__c' like '% Bulk'`.execute(db);
    return r.rows[0]!.n === '1000';
  });
  const created = (await apiCalls('Contact')) - before;
  org.transaction(() => {
    for (const [i, id] of ids.entries()) org.update('Contact', id, { FirstName: `G${i}` });
  });
  const mid = await apiCalls('Contact');
  await waitFor('1,000 updated and fresh', async () => {
    const r = await sql<{
      n: string;
    }>`select count(*) as n from salesforce.contact where _sfm_fields->>'Full_Label__c' like 'G% Bulk'`.execute(db);
    return r.rows[0]!.n === '1000';
  });
  const updated = (await apiCalls('Contact')) - mid;
  const mid2 = await apiCalls('Contact');
  org.update('Account', b, { Name: 'Beta 2' });
  await waitFor('1,001 children fresh', async () => {
    const r = await sql<{
      n: string;
    }>`select count(*) as n from salesforce.contact where _sfm_fields->>'Account_Name__c' = 'Beta 2'`.execute(db);
    return r.rows[0]!.n === '1001';
  });
  const parent = (await apiCalls('Contact')) - mid2;
  t.comment(`API calls: 1,000 creates -> ${created}; 1,000 updates -> ${updated}; one parent of 1,001 -> ${parent}`);
  t.ok(created <= 10 && updated <= 10 && parent <= 10, `at most 10 calls per 1,000 records (${created}, ${updated}, ${parent})`);
  t.ok(created >= 5 && updated >= 5, '200 ids per query at most');
});

t.test('a formula re-read racing a newer change of another field loses nothing', async (t) => {
  await waitFor('queue empty', async () => (await formulaStatus(db, 'salesforce')).objects.every((o) => o.waiting === 0));
  // The re-read's answer is computed; before it is applied, the record changes again (Phone, LastName).
  duringRead = async () => {
    org.update('Contact', c2, { Phone: '999', LastName: 'Kay' });
    await waitFor('newer change mirrored', async () => (await field('Contact', c2, 'Phone')) === '999');
  };
  org.update('Contact', c2, { FirstName: 'Zed' });
  await waitFor('converged', async () => (await field('Contact', c2, 'Full_Label__c')) === 'Zed Kay');
  const r = (await row('Contact', c2))!.f;
  t.equal(r.Phone, '999', 'the newer Phone survived the re-read');
  t.equal(r.LastName, 'Kay');
  t.equal(r.FirstName, 'Zed');
  const cols = await sql<{
    phone: string;
    full_label__c: string;
  }>`select phone, full_label__c from salesforce.contact where sfid = ${c2}`.execute(db);
  t.same(cols.rows[0], { phone: '999', full_label__c: 'Zed Kay' }, 'typed columns agree');
});

t.test('when the API budget is spent, re-reads wait and status says so', async (t) => {
  await waitFor('queue empty', async () => (await formulaStatus(db, 'salesforce')).objects.every((o) => o.waiting === 0));
  org.bulk.setApiRequests(1000, 100); // 900 of 1,000 used: over the 50% share
  org.update('Contact', c1, { FirstName: 'Paused' });
  await waitFor('paused', async () => (await formulaStatus(db, 'salesforce')).paused !== null);
  const s = await formulaStatus(db, 'salesforce');
  t.match(s.paused, /API limit/);
  const contact = s.objects.find((o) => o.object === 'Contact')!;
  t.ok(contact.waiting >= 1, 'the record waits in the queue');
  t.same(
    contact.fields.map((x) => [x.field, x.kind]),
    [
      ['Full_Label__c', 'same-record'],
      ['Account_Name__c', 'cross-object'],
    ],
  );
  t.equal(await field('Contact', c1, 'FirstName'), 'Paused', 'the change itself is mirrored');
  t.equal(await field('Contact', c1, 'Full_Label__c'), 'Anna Lee', 'its formula waits');
  org.bulk.setApiRequests(1_000_000, 1_000_000);
  await waitFor('resumed', async () => (await field('Contact', c1, 'Full_Label__c')) === 'Paused Lee');
  await waitFor('not paused', async () => (await formulaStatus(db, 'salesforce')).paused === null);
});

t.test('a time formula is re-read when the periodic refresh runs after the clock moved a day', async (t) => {
  const o = org.insert('Opportunity', { Name: 'Deal', CloseDate: '2026-01-01' });
  const expected = () => org.live('Opportunity').get(o)!.Days_Open__c;
  await waitFor('first value', async () => (await field('Opportunity', o, 'Days_Open__c')) === expected());
  const first = (await field('Opportunity', o, 'Days_Open__c')) as number;
  org.advanceClock(DAY);
  await waitFor('a day later', async () => (await field('Opportunity', o, 'Days_Open__c')) === first + 1, { timeoutMs: 20_000 });
  const s = await formulaStatus(db, 'salesforce');
  const opp = s.objects.find((x) => x.object === 'Opportunity')!;
  t.same(opp.fields, [{ field: 'Days_Open__c', kind: 'time', note: 'uses the clock' }]);
  t.ok(opp.lastPeriodicRefresh, 'status shows the last periodic refresh');
  const cols = await sql<{ days_open__c: string }>`select days_open__c from salesforce.opportunity where sfid = ${o}`.execute(db);
  t.equal(Number(cols.rows[0]!.days_open__c), first + 1, 'numeric column from describe');
});
