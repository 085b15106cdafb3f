import t from 'tap';
import sqlParser from 'node-sql-parser';
import { checkName, datasetFor, latestState, rowOf, tableFields, viewSql } from '../../src/warehouse/bq-schema.ts';
import { classify } from '../../src/warehouse/bigquery.ts';

// The latest-state view (BigQuery SQL, checked by a BigQuery-dialect parser) and its logic.
const parser = new sqlParser.Parser();
const opt = { database: 'bigquery' };

t.test('the view SQL parses as BigQuery SQL and says what it should', async (t) => {
  const sql = viewSql('my-project', 'salesforce_acme', 'my_object__c');
  const ast = parser.astify(sql, opt) as unknown as Record<string, any>;
  t.same(parser.tableList(sql, opt), ['select::null::my-project.salesforce_acme.my_object__c_changes'], 'reads the change table only');
  const inner = ast.from[0].expr.ast;
  const win = inner.columns.find((c: any) => c.as === '_sfm_rank').expr;
  t.equal(parser.exprToSQL(win, opt).slice(0, 12).toUpperCase(), 'ROW_NUMBER()', 'one row per Id: ROW_NUMBER');
  const spec = win.over.as_window_specification.window_specification;
  t.same(
    spec.partitionby.map((p: any) => p.expr.column.expr.value),
    ['Id'],
    'partitioned by Id',
  );
  t.same(
    spec.orderby.map((o: any) => o.type),
    ['DESC', 'DESC'],
    'newest first',
  );
  t.equal(spec.orderby[0].expr.column.expr.value, '_sfm_seq', 'ordered by the change cursor');
  t.equal(spec.orderby[1].expr.type, 'cast', 'then by the change id as a number');
  const where = parser.exprToSQL(ast.where, opt);
  t.match(where, /_sfm_rank` = 1|_sfm_rank = 1/, 'keeps the newest row');
  t.match(where, /IFNULL\(`?IsDeleted`?, FALSE\) = FALSE/, 'drops deleted records');
  t.throws(() => parser.astify(sql.replace(') AS latest', ' AS latest'), opt), 'the parser does reject broken SQL');
});

t.test('names are validated before they reach SQL', async (t) => {
  t.throws(() => viewSql('p', 'd`; DROP TABLE x; --', 'account'), /not a usable BigQuery dataset name/);
  t.throws(() => viewSql('p', 'd', 'Account'), /table name/, 'tables are lower case');
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
