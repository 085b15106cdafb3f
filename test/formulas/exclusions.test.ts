import t from 'tap';
import { sql } from 'kysely';
import { createFieldFilter } from '../../src/changes/field-filter.ts';
import { makeVersion } from '../../src/changes/version.ts';
import { emptyExcludedFields } from '../../src/formulas/exclusions.repository.ts';
import { enableWarehouse } from '../../src/warehouse/warehouse.repository.ts';
import { buildTestApp, hmacHeaders, pushBody } from '../support/app.ts';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { waitFor } from '../support/wait.ts';
import { startFormulas } from './harness.ts';

// SFMIRROR_FIELDS / SFMIRROR_EXCLUDE_FIELDS on every path (issue 15): an excluded field is never
// queried (REST, Bulk), dropped from CDC events and Apex pushes before the mirror, so it never
// reaches a mirror row or the outbox BigQuery is fed from; one already mirrored is emptied on start.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
await enableWarehouse(db, { project: 'p', dataset: 'd' });
const org = await startSalesforceOrg(t, { connectTimeout: 1, types: { Lead: { MobilePhone: 'phone', Phone: 'phone' } } });
const filter = createFieldFilter([], ['Contact.SSN__c', 'Lead.*Phone*']);
const f = await startFormulas(tdb, org, { filter });
t.teardown(() => f.stop());
await waitFor('live', () => f.service!.status()?.state === 'live');

const everything = async () => {
  const out: string[] = [];
  for (const table of ['contact', 'lead']) {
    const exists = await sql<{ t: string | null }>`select to_regclass(${`salesforce.${table}`})::text as t`.execute(db);
    if (!exists.rows[0]?.t) continue;
    const rows = await sql<{ r: unknown }>`select to_jsonb(x) as r from ${sql.id('salesforce', table)} x`.execute(db);
    out.push(...rows.rows.map((r) => JSON.stringify(r.r)));
  }
  const outbox = await sql<{ r: unknown }>`select record as r from sfmirror.outbox`.execute(db);
  out.push(...outbox.rows.map((r) => JSON.stringify(r.r)));
  return out.join('\n');
};

t.test('CDC events: excluded fields are dropped before the mirror and the outbox', async (t) => {
  const c = org.insert('Contact', { LastName: 'Doe', SSN__c: '123-45-6789' });
  const l = org.insert('Lead', { LastName: 'Lee', MobilePhone: '555-0100', Phone: '555-0101', Email: 'l@x' });
  org.update('Contact', c, { SSN__c: '987-65-4321', FirstName: 'Jo' });
  await waitFor('mirrored', async () => {
    const r = await sql<{ n: string }>`select count(*) as n from salesforce.contact where _sfm_fields->>'FirstName' = 'Jo'`
      .execute(db)
      .catch(() => ({ rows: [{ n: '0' }] }));
    return r.rows[0]!.n === '1';
  });
  await waitFor(
    'lead mirrored',
    async () =>
      (await sql<{ n: string }>`select count(*) as n from salesforce.lead`.execute(db).catch(() => ({ rows: [{ n: '0' }] }))).rows[0]!.n ===
      '1',
  );
  const all = await everything();
  t.notMatch(all, /123-45-6789|987-65-4321|555-01/, 'no excluded value anywhere in the mirror or the outbox');
  t.match(all, /l@x/, 'other fields arrive');
  const cols = await sql<{ c: string }>`select table_name || '.' || column_name as c from information_schema.columns
    where table_schema = 'salesforce'`.execute(db);
  const names = cols.rows.map((r) => r.c);
  for (const bad of ['contact.ssn__c', 'lead.mobilephone', 'lead.phone']) t.notOk(names.includes(bad), `no column ${bad}`);
  t.ok(names.includes('lead.email'));
  t.ok(l);
});

t.test('REST and Bulk reads never query an excluded field', async (t) => {
  const ids = [...org.live('Lead').keys()];
  const rest = await f.session.readRecords('Lead', ids);
  t.ok(rest.length === 1 && !('MobilePhone' in rest[0]!) && !('Phone' in rest[0]!) && rest[0]!.Email === 'l@x');
  const page = await f.session.readModifiedSince('Contact', { stamp: new Date(0).toISOString() }, 100);
  t.ok(page.length === 1 && !('SSN__c' in page[0]!));
  await f.session.startBulkRead('Contact', {});
  const query = org.bulk.stats.jobs.at(-1)!.query;
  t.notMatch(query, /SSN__c/, 'the Bulk API 2.0 job does not select it');
  t.match(query, /LastName/);
});

t.test('an Apex push: excluded fields and their types are dropped', async (t) => {
  const app = await buildTestApp(tdb, { mirror: f.mirror });
  t.teardown(() => app.close());
  const id = org.newId('Contact');
  const body = pushBody(
    [
      {
        object: 'Contact',
        operation: 'insert',
        record: { Id: id, SystemModstamp: new Date().toISOString(), LastName: 'Pushed', SSN__c: '111-22-3333', Secret_Note__c: 'kept' },
      },
    ],
    org.orgId,
    { Contact: { SSN__c: 'string', LastName: 'string', Secret_Note__c: 'textarea' } },
  );
  const res = await app.inject({ method: 'POST', url: '/ingest/apex', payload: body, headers: hmacHeaders(body) });
  t.equal(res.statusCode, 200, res.body);
  const all = await everything();
  t.notMatch(all, /111-22-3333/);
  t.match(all, /Pushed/);
  t.match(all, /kept/, 'fields not excluded arrive');
});

t.test('a field excluded after it was mirrored is emptied on start, and status lists the exclusions', async (t) => {
  const id = org.newId('Account');
  await f.inner.apply('salesforce', [
    { object: 'Account', operation: 'insert', id, fields: { Name: 'Old', Tax_Id__c: 'T-1' }, version: makeVersion(Date.now()) },
  ]);
  const emptied = await emptyExcludedFields(db, createFieldFilter([], ['Account.Tax_Id__c']));
  t.same(emptied, [{ org: 'salesforce', object: 'Account', field: 'Tax_Id__c', rows: 1 }]);
  const r = await sql<{
    f: Record<string, unknown>;
    tax: string | null;
  }>`select _sfm_fields as f, tax_id__c as tax from salesforce.account where sfid = ${id}`.execute(db);
  t.same([r.rows[0]!.f.Tax_Id__c, r.rows[0]!.tax, r.rows[0]!.f.Name], [undefined, null, 'Old']);
  t.same(await emptyExcludedFields(db, createFieldFilter([], ['Account.Tax_Id__c'])), [
    { org: 'salesforce', object: 'Account', field: 'Tax_Id__c', rows: 0 },
  ]);
});
