import t from 'tap';
import { createFieldFilter, filterChanges, parseFieldPatterns } from '../../src/changes/field-filter.ts';
import { formulasOf, watchIndex } from '../../src/formulas/catalog.ts';
import { parseFormula } from '../../src/formulas/parse.ts';
import { toFieldDescribe, type SObjectDescribe } from '../../src/salesforce/describe.ts';

t.test('parseFormula finds fields, lookup paths, time functions and globals', async (t) => {
  t.same(parseFormula("FirstName & ' ' & LastName"), { fields: ['FirstName', 'LastName'], paths: [], time: false, globals: [] });
  const x = parseFormula('IF(ISBLANK(Account.Owner.Name), Parent__r.Field__c, "Account.Fake & $User.Id") /* Comment.Field */');
  t.same(x.paths, [
    ['Account', 'Owner', 'Name'],
    ['Parent__r', 'Field__c'],
  ]);
  t.same(x.fields, [], 'function names, literals and comments are not fields');
  t.same(x.globals, []);
  t.equal(parseFormula('TODAY() - CloseDate').time, true);
  t.equal(parseFormula('NOW() > Due__c').time, true);
  t.equal(parseFormula('Amount * 1.5e3').time, false);
  t.same(parseFormula('Amount * 1.5').fields, ['Amount']);
  t.same(parseFormula('$User.FirstName & $Setup.Config__c.Rate__c & TRUE & null').globals, ['$User.FirstName', '$Setup.Config__c.Rate__c']);
});

const describeOf = (name: string, fields: Array<Parameters<typeof toFieldDescribe>[0]>): SObjectDescribe => ({
  name,
  fields: fields.map(toFieldDescribe),
});
const ORG: Record<string, SObjectDescribe> = {
  Contact: describeOf('Contact', [
    { name: 'Id', type: 'id' },
    { name: 'FirstName', type: 'string' },
    { name: 'AccountId', type: 'reference', relationshipName: 'Account', referenceTo: ['Account'] },
    { name: 'Label__c', type: 'string', calculated: true, calculatedFormula: 'FirstName' },
    { name: 'Owner_Name__c', type: 'string', calculated: true, calculatedFormula: 'Account.Owner.Name' },
    { name: 'Age__c', type: 'double', calculated: true, calculatedFormula: 'TODAY() - Birthdate' },
    { name: 'Me__c', type: 'boolean', calculated: true, calculatedFormula: 'OwnerId = $User.Id' },
    { name: 'Nope__c', type: 'string', calculated: true, calculatedFormula: 'Nothing__r.Name' },
    { name: 'Deep__c', type: 'string', calculated: true, calculatedFormula: 'Account.Score__c' },
  ]),
  Account: describeOf('Account', [
    { name: 'Name', type: 'string' },
    { name: 'OwnerId', type: 'reference', relationshipName: 'Owner', referenceTo: ['User'] },
    { name: 'Score__c', type: 'double', calculated: true, calculatedFormula: 'AnnualRevenue / 1000' },
    { name: 'Total__c', type: 'currency', calculated: true, calculatedFormula: null },
  ]),
  User: describeOf('User', [{ name: 'Name', type: 'string' }]),
};

t.test('the catalog gives each formula its kind and resolves paths through describe', async (t) => {
  const describe = async (o: string) => ORG[o];
  const contact = (await formulasOf('Contact', describe))!;
  t.same(
    contact.fields.map((f) => [f.field, f.kind]),
    [
      ['Label__c', 'same-record'],
      ['Owner_Name__c', 'cross-object'],
      ['Age__c', 'time'],
      ['Me__c', 'unfollowable'],
      ['Nope__c', 'unfollowable'],
      ['Deep__c', 'unfollowable'],
    ],
  );
  t.match(contact.fields[4]!.note, /no lookup named Nothing__r/);
  t.match(contact.fields[5]!.note, /reads a formula or roll-up of Account/);
  t.same(contact.fields[1]!.links, [{ lookups: ['AccountId', 'OwnerId'], objects: [['Account'], ['User']], field: 'Name' }]);
  t.equal(contact.periodic, true);
  const account = (await formulasOf('Account', describe))!;
  t.same(
    account.fields.map((f) => [f.field, f.kind]),
    [
      ['Score__c', 'same-record'],
      ['Total__c', 'roll-up'],
    ],
  );
  t.equal(await formulasOf('User', describe), undefined, 'no formulas, no entry');

  const w = watchIndex([contact, account]);
  t.same(
    w.get('user')!.map((x) => [x.object, x.lookups, [...x.fields]]),
    [['Contact', ['AccountId', 'OwnerId'], ['name']]],
    'a User name change walks Account.OwnerId then Contact.AccountId',
  );
  t.same(
    w.get('account')!.map((x) => [x.object, x.lookups, [...x.fields]]),
    [['Contact', ['AccountId'], ['ownerid']]],
    'an Account matters to Contact when its OwnerId changes',
  );
});

t.test('field patterns: include, exclude, wildcards, case, and what always stays', async (t) => {
  t.throws(() => parseFieldPatterns('Contact'), /is not Object.Field/);
  t.same(parseFieldPatterns(' Contact.SSN__c , Lead.*Phone* '), ['Contact.SSN__c', 'Lead.*Phone*']);
  const f = createFieldFilter(['Contact.FirstName', 'Contact.LastName', 'Contact.*Phone'], ['contact.ssn__c', 'Lead.*Phone*', '*.Secret*']);
  t.ok(f.allows('Contact', 'FirstName'));
  t.ok(f.allows('Contact', 'MobilePhone'));
  t.notOk(f.allows('Contact', 'Email'), 'Contact is narrowed by the include list');
  t.ok(f.allows('Contact', 'Id') && f.allows('Contact', 'SystemModstamp'), 'the mirror columns always stay');
  t.notOk(f.allows('Contact', 'SSN__c'));
  t.notOk(f.allows('Lead', 'MobilePhone'));
  t.ok(f.allows('Lead', 'Email'), 'objects the include list does not name keep every field');
  t.notOk(f.allows('Account', 'Secret_Code__c'));
  const [c] = filterChanges(f, [
    { object: 'Lead', operation: 'update', id: '00Q000000000001AAA', fields: { Phone: '1', Email: 'a@b' }, version: '1' },
  ]);
  t.same(c!.fields, { Email: 'a@b' });
  const none = createFieldFilter();
  t.equal(none.active, false);
  const changes = [{ object: 'X', operation: 'update' as const, id: 'a', fields: { A: 1 }, version: '1' }];
  t.equal(filterChanges(none, changes), changes, 'no patterns: the same array, no copy');
});

t.test('the describe cache keeps an answer for its ttl and a failure for a minute', async (t) => {
  const { createDescribeCache } = await import('../../src/salesforce/describe.ts');
  let now = 0;
  let calls = 0;
  let fail = true;
  const cache = createDescribeCache(
    async (_org, object) => {
      calls++;
      if (fail) throw new Error('invalid_grant');
      return { name: object, fields: [] };
    },
    { ttlMs: 3_600_000, now: () => now },
  );
  await t.rejects(cache.get('o', 'Contact'));
  await t.rejects(cache.get('o', 'Contact'));
  t.equal(calls, 1, 'a failure is not asked again on every batch');
  now += 61_000;
  fail = false;
  t.same(await cache.get('o', 'contact'), { name: 'contact', fields: [] });
  t.equal(calls, 2, 'asked again after a minute');
  await cache.get('o', 'Contact');
  t.equal(calls, 2, 'an answer lives its ttl');
  cache.refresh('o', 'Contact');
  await cache.get('o', 'Contact');
  t.equal(calls, 3, 'refresh forgets it');
});
