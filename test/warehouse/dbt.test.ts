import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import t from 'tap';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { runWarehouse, warehouseCommandOf } from '../../src/bin/cli-warehouse.ts';
import { loadConfig } from '../../src/config/config.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { tableFields } from '../../src/warehouse/bq-schema.ts';
import { enableWarehouse, saveRegistration } from '../../src/warehouse/warehouse.repository.ts';
import { startTestDatabase } from '../support/pg.ts';

// `sfmirror warehouse dbt-sources`: a sources.yml that dbt's documented source properties accept
// (test/warehouse/fixtures/dbt-sources.schema.json), describing each org's tables.
const tdb = await startTestDatabase(t);
const db = tdb.handle.db;
const schema = JSON.parse(readFileSync(new URL('./fixtures/dbt-sources.schema.json', import.meta.url), 'utf8'));
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

async function run(args: string[], values: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  let out = '';
  let err = '';
  const sink = (f: (s: string) => void) =>
    new Writable({
      write(c, _e, cb) {
        f(String(c));
        cb();
      },
    });
  const cmd = warehouseCommandOf('warehouse', args, values, (m) => {
    throw new Error(m);
  })!;
  const code = await runWarehouse(cmd, {
    config: loadConfig({ DATABASE_URL: tdb.url, ...env }),
    db,
    log: createLogger('silent', process.stderr),
    out: sink((s) => (out += s)),
    err: sink((s) => (err += s)),
  });
  return { code, out, err };
}

t.test('dbt-sources describes every org: latest-state and history tables, typed columns, freshness', async (t) => {
  t.equal((await run(['dbt-sources'])).code, 2, 'without a configured warehouse: an error');
  await enableWarehouse(db, { project: 'my-project', dataset: 'salesforce' });
  const empty = await run(['dbt-sources']);
  t.equal(empty.code, 0);
  t.match(empty.err, /no tables yet/);
  const fields = tableFields([
    { field: 'Name', pgType: 'text' },
    { field: 'AnnualRevenue', pgType: 'numeric' },
  ]);
  await saveRegistration(db, { org: 'salesforce', table: 'account', object: 'Account', dataset: 'salesforce', columns: fields });
  await saveRegistration(db, { org: 'acme', table: 'contact', object: 'Contact', dataset: 'salesforce_acme', columns: fields });
  const r = await run(['dbt-sources']);
  t.equal(r.code, 0, r.err);
  const doc = parse(r.out);
  t.ok(validate(doc), `valid against the dbt source properties schema: ${JSON.stringify(validate.errors)}`);
  t.same(
    doc.sources.map((s: { name: string; database: string; schema: string }) => [s.name, s.database, s.schema]),
    [
      ['sfmirror_acme', 'my-project', 'salesforce_acme'],
      ['sfmirror_salesforce', 'my-project', 'salesforce'],
    ],
    'one source per org: its dataset',
  );
  const sf = doc.sources[1];
  t.equal(sf.loaded_at_field, '_sfm_committed_at', 'freshness on _sfm_committed_at');
  t.same(sf.freshness.warn_after, { count: 1, period: 'hour' });
  t.same(
    sf.tables.map((x: { name: string }) => x.name),
    ['account', 'account_changes'],
    'the latest-state table and its history',
  );
  const latest = sf.tables[0];
  t.same(
    latest.columns.map((c: { name: string; data_type: string }) => [c.name, c.data_type]).slice(0, 5),
    [
      ['Id', 'STRING'],
      ['IsDeleted', 'BOOL'],
      ['SystemModstamp', 'TIMESTAMP'],
      ['Name', 'STRING'],
      ['AnnualRevenue', 'BIGNUMERIC'],
    ],
    'columns with their BigQuery types',
  );
  t.same(latest.columns[0].data_tests, ['not_null', 'unique'], 'Id unique in the latest state');
  t.same(sf.tables[1].columns[0].data_tests, ['not_null'], 'not in history');
  const one = parse((await run(['dbt-sources'], { org: 'acme' })).out);
  t.same(
    one.sources.map((s: { name: string }) => s.name),
    ['sfmirror_acme'],
    '--org: that org only',
  );

  // The schema is strict enough to catch a mistake.
  const bad = structuredClone(doc);
  bad.sources[0].freshness.warn_after.period = 'hours';
  t.notOk(validate(bad), 'a wrong freshness period is refused');
  const extra = structuredClone(doc);
  extra.sources[0].tables[0].columns[0].type = 'STRING';
  t.notOk(validate(extra), 'an undocumented key is refused');
});
