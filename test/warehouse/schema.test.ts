import t from 'tap';
import {
  cdcRowOf,
  checkName,
  datasetFor,
  latestState,
  latestTableOf,
  maxStalenessOf,
  rowOf,
  sequenceOf,
  tableFields,
} from '../../src/warehouse/bq-schema.ts';
import { classify } from '../../src/warehouse/bigquery.ts';
import { compareSequence } from '../support/bigquery-storage.ts';

// What the warehouse writes: names, columns, history rows, CDC rows of the latest-state table.

t.test('CDC rows: UPSERT or DELETE, ordered by a sequence number from _sfm_seq', async (t) => {
  const fields = tableFields([{ field: 'Name', pgType: 'text' }]);
  const base = { id: '7', version: 'v', committedAt: new Date(0) };
  const up = cdcRowOf({ ...base, op: 'update', seq: '255', record: { Id: 'x', Name: 'n', IsDeleted: false } }, fields);
  t.match(up, { type: 'UPSERT', sequence: 'FF', json: { Id: 'x', Name: 'n', _sfm_seq: '255' } });
  t.equal(cdcRowOf({ ...base, op: 'delete', seq: '256', record: { Id: 'x', IsDeleted: true } }, fields).type, 'DELETE');
  t.equal(
    cdcRowOf({ ...base, op: 'seed', seq: '3', record: { Id: 'x', IsDeleted: true } }, fields).type,
    'DELETE',
    'a deleted record seeded',
  );
  t.equal(cdcRowOf({ ...base, op: 'undelete', seq: '4', record: { Id: 'x', IsDeleted: false } }, fields).type, 'UPSERT');
  // BigQuery compares sequence numbers as hexadecimal numbers, not as text.
  t.equal(compareSequence(sequenceOf('16'), sequenceOf('9')), 1, '0x10 after 0x9');
  t.equal(compareSequence(sequenceOf(2n ** 62n), sequenceOf('1')), 1, 'large cursors too');
  t.equal(sequenceOf(2n ** 64n - 1n).length, 16, 'a bigint cursor fits one 16-digit section');
  t.equal(maxStalenessOf(15), '0-0 0 0:15:0', 'max_staleness 15 minutes');
  t.equal(maxStalenessOf(1500), '0-0 1 1:0:0', 'a day and an hour');
  t.equal(maxStalenessOf(0), '0-0 0 0:0:0', 'zero: always fresh');
});

t.test('names are validated before they reach SQL', async (t) => {
  t.throws(() => datasetFor('d`; DROP TABLE x; --', { dataset: 'sf', alias: 'x' }), /not a usable BigQuery dataset name/);
  t.throws(() => latestTableOf('Account'), /table name/, 'tables are lower case');
  t.throws(() => checkName('project', 'p`x'), /project name/);
  t.equal(
    datasetFor('salesforce', { dataset: 'salesforce', alias: 'salesforce' }),
    'salesforce',
    'the default org: the configured dataset',
  );
  t.equal(datasetFor('acme', { dataset: 'sf', alias: 'salesforce' }), 'sf_acme', 'other orgs: a suffix');
  const fields = tableFields([
    { field: 'Name', pgType: 'text' },
    { field: 'bad`name', pgType: 'text' },
    { field: 'name', pgType: 'text' },
  ]);
  t.same(
    fields.map((f) => f.name),
    ['Id', 'IsDeleted', 'SystemModstamp', 'Name', '_sfm_op', '_sfm_change_id', '_sfm_version', '_sfm_seq', '_sfm_committed_at'],
    'bad and duplicate (case-insensitive) names are left out',
  );
  const kept = tableFields([{ field: 'Name', pgType: 'integer' }], [{ name: 'Name', type: 'STRING' }]);
  t.equal(kept.find((f) => f.name === 'Name')?.type, 'STRING', 'an existing column keeps its type');
});

t.test('rows: typed values; a value that does not fit is NULL; unknown keys reported', async (t) => {
  const fields = tableFields([
    { field: 'N__c', pgType: 'integer' },
    { field: 'D__c', pgType: 'date' },
    { field: 'T__c', pgType: 'timestamptz' },
    { field: 'B__c', pgType: 'boolean' },
  ]);
  const { json, unknown } = rowOf(
    {
      id: '7',
      op: 'update',
      version: 'v',
      seq: '3',
      committedAt: new Date(0),
      record: { Id: 'x', N__c: 'abc', D__c: '2024-02-30', T__c: '2024-03-10T10:00:00+0100', B__c: 'true', Other__c: 1 },
    },
    fields,
  );
  t.same(json, {
    Id: 'x',
    N__c: null,
    D__c: null,
    T__c: '2024-03-10T09:00:00.000Z',
    B__c: true,
    _sfm_op: 'update',
    _sfm_change_id: '7',
    _sfm_version: 'v',
    _sfm_seq: '3',
    _sfm_committed_at: '1970-01-01T00:00:00.000Z',
  });
  t.same(unknown, ['Other__c']);
});

t.test('latest state: newest change per Id, a change id counted once, deleted records gone', async (t) => {
  const r = (id: string, seq: number, change: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    Id: id,
    _sfm_seq: String(seq),
    _sfm_change_id: String(change),
    IsDeleted: false,
    ...extra,
  });
  const rows = [
    r('a', 1, 1, { Name: 'a1' }),
    r('a', 2, 5, { Name: 'a2', _sfm_version: '000' }),
    r('a', 2, 5, { Name: 'a2', _sfm_version: '000' }), // a re-sent copy
    r('b', 3, 6, { Name: 'b1' }),
    r('b', 4, 7, { Name: 'b1', IsDeleted: true }),
    r('c', 5, 8, { Name: 'seeded' }),
    r('c', 5, 9, { Name: 'seeded' }), // a change and its seed copy
  ];
  t.same(
    latestState(rows).map((x) => [x.Id, x.Name, x._sfm_change_id]),
    [
      ['a', 'a2', '5'],
      ['c', 'seeded', '9'],
    ],
  );
});

t.test('errors are classified by the decision to make', async (t) => {
  t.equal(classify({ code: 503, message: 'x' }).kind, 'retryable');
  t.equal(classify({ code: 403, message: 'x', errors: [{ reason: 'rateLimitExceeded' }] }).kind, 'retryable', 'rate limit: wait');
  t.equal(classify({ code: 403, message: 'x', errors: [{ reason: 'accessDenied' }] }).kind, 'denied');
  t.equal(classify({ code: 404, message: 'x' }).kind, 'not_found');
  t.equal(classify({ code: 400, message: 'x', errors: [{ reason: 'invalid' }] }).kind, 'invalid');
  t.equal(classify(new Error('socket hang up')).kind, 'retryable', 'network errors: wait');
});
