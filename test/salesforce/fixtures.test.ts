// The sample pushes in salesforce/test-fixtures/ are what sfmirror's contract test posts to the real
// POST /ingest/apex. They must keep the shape SfmirrorChangeBuilder and SfmirrorEnvelope produce;
// this test pins that shape so the fixtures cannot drift from the Apex side unnoticed.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const fixtures = join(import.meta.dirname, '..', '..', 'salesforce', 'test-fixtures');
const FILES = ['insert.json', 'insert-contact.json', 'update.json', 'delete.json', 'undelete.json'];
const OPERATIONS = ['insert', 'update', 'delete', 'undelete'];
// Apex Schema.DisplayType names, lower-cased as SfmirrorDescribe sends them.
const DISPLAY_TYPES = [
  'anytype',
  'boolean',
  'combobox',
  'complexvalue',
  'currency',
  'datacategorygroupreference',
  'date',
  'datetime',
  'double',
  'email',
  'encryptedstring',
  'id',
  'integer',
  'json',
  'long',
  'multipicklist',
  'percent',
  'phone',
  'picklist',
  'reference',
  'string',
  'textarea',
  'time',
  'url',
];
const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

interface Change {
  object: string;
  operation: string;
  record: Record<string, unknown>;
}
interface Envelope {
  orgId: string;
  changes: Change[];
  types: Record<string, Record<string, string>>;
}

/** A valid 18-character Salesforce id: its last 3 characters encode the case of the first 15. */
function isSalesforceId18(id: unknown): boolean {
  if (typeof id !== 'string' || !/^[a-zA-Z0-9]{18}$/.test(id)) return false;
  let suffix = '';
  for (let chunk = 0; chunk < 3; chunk++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) if (/[A-Z]/.test(id[chunk * 5 + i]!)) bits |= 1 << i;
    suffix += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345'[bits];
  }
  return id.slice(15) === suffix;
}

const load = (file: string): Envelope => JSON.parse(readFileSync(join(fixtures, file), 'utf8')) as Envelope;
const vector = JSON.parse(readFileSync(join(fixtures, 'vector.json'), 'utf8')) as { body: string };

const envelopes: [string, Envelope][] = [
  ...FILES.map((file) => [file, load(file)] as [string, Envelope]),
  ['vector.json body', JSON.parse(vector.body) as Envelope],
];

t.test('the id check itself', async (t) => {
  t.ok(isSalesforceId18('001000000000001AAA'));
  t.ok(isSalesforceId18('00D000000000001EAA'));
  t.notOk(isSalesforceId18('00D000000000001AAA'), 'wrong case suffix');
  t.notOk(isSalesforceId18('001000000000001'), '15 characters');
});

for (const [name, envelope] of envelopes) {
  t.test(`${name} has the envelope shape`, async (t) => {
    t.same(Object.keys(envelope).sort(), ['changes', 'orgId', 'types']);
    t.ok(isSalesforceId18(envelope.orgId) && envelope.orgId.startsWith('00D'), 'orgId: an 18-character org id');
    t.ok(Array.isArray(envelope.changes) && envelope.changes.length > 0, 'changes');
    for (const change of envelope.changes) {
      t.same(Object.keys(change).sort(), ['object', 'operation', 'record']);
      t.ok(OPERATIONS.includes(change.operation), change.operation);
      t.ok(isSalesforceId18(change.record['Id']), `record Id ${change.record['Id']}`);
      t.match(change.record['SystemModstamp'], ISO_DATETIME, 'SystemModstamp: ISO 8601 UTC with milliseconds');
      if (change.operation === 'delete')
        t.same(Object.keys(change.record).sort(), ['Id', 'SystemModstamp'], 'a delete carries Id and time only');
      t.notOk('attributes' in change.record, 'no Apex attributes key');
      const types = envelope.types[change.object] ?? {};
      t.same(Object.keys(types).sort(), Object.keys(change.record).sort(), 'types name exactly the fields sent');
      for (const [field, type] of Object.entries(types)) {
        t.ok(DISPLAY_TYPES.includes(type), `${field}: ${type}`);
        const value = change.record[field];
        if (value === null) continue;
        if (type === 'datetime') t.match(value, ISO_DATETIME, field);
        if (type === 'date') t.match(value, /^\d{4}-\d{2}-\d{2}$/, field);
        if (type === 'id' || type === 'reference') t.ok(isSalesforceId18(value), field);
      }
    }
  });
}

t.test('the samples tell one story in order: insert, update, delete, undelete', async (t) => {
  const stamps = ['insert.json', 'update.json', 'delete.json', 'undelete.json'].map((file) => {
    const change = load(file).changes.find((c) => c.record['Id'] === '001000000000001AAA')!;
    return change.record['SystemModstamp'] as string;
  });
  t.same([...stamps].sort(), stamps, 'SystemModstamp increases');
  const update = load('update.json').changes[0]!;
  t.ok('Phone' in update.record && update.record['Phone'] === null, 'the update clears a field with an explicit null');
  t.notOk('Industry' in update.record, 'and leaves unchanged fields out');
  t.ok(Object.keys(load('insert.json').changes[0]!.record).length > 10, 'an insert carries the whole record');
});
