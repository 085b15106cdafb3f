import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkFile, checkTableTypes, checkTree } from '../../tools/check-layers.ts';

// The house rules of `npm run lint` (tools/check-layers.ts): each one catches what it names, and the
// tree as it stands keeps them.
const rules = (rel: string, text: string) => checkFile(rel, text).violations.map((v) => v.rule);

t.test('stream and backfill never import each other; lower layers never import higher ones', async (t) => {
  t.same(rules('src/stream/x.ts', "import { runJob } from '../backfill/runner.ts';"), ['layers']);
  t.same(rules('src/backfill/x.ts', "import type { StreamCheckpoint } from '../stream/stream.repository.ts';"), ['layers']);
  t.same(rules('src/lib/x.ts', "import type { Db } from '../db/database.ts';"), ['layers'], 'src/lib imports nothing of src');
  t.same(rules('src/mirror/x.ts', "export { x } from '../api/app.ts';"), ['layers'], 're-exports count');
  t.same(rules('src/stream/x.ts', "import { apply } from '../mirror/apply.ts';\nimport { b } from './batcher.ts';"), []);
  t.same(rules('src/bin/x.ts', "import { runJob } from '../backfill/runner.ts';"), []);
});

t.test('vendor libraries stay in their wrappers', async (t) => {
  t.same(rules('src/stream/x.ts', "import jsforce from 'jsforce';"), ['vendor:jsforce']);
  t.same(rules('src/salesforce/client.ts', "import jsforce from 'jsforce';"), []);
  t.same(rules('src/salesforce/client.ts', "import faye from 'faye';"), ['vendor:faye']);
  t.same(rules('src/salesforce/streaming.ts', "import faye from 'faye';"), []);
  t.same(rules('src/warehouse/drain.ts', "import { BigQuery } from '@google-cloud/bigquery';"), ['vendor:bigquery']);
  t.same(rules('src/warehouse/bigquery.ts', "import { BigQuery } from '@google-cloud/bigquery';"), []);
  t.same(rules('src/api/app.ts', "import type pg from 'pg';"), ['vendor:pg']);
});

t.test('SQL is seen wherever it is written', async (t) => {
  t.equal(checkFile('src/api/x.ts', 'await db.selectFrom("sfmirror.orgs").execute();').runsSql, true);
  t.equal(checkFile('src/api/x.ts', 'await sql`select 1`.execute(db);').runsSql, true);
  t.equal(checkFile('src/api/x.ts', 'await db.transaction().execute(f);').runsSql, false, 'the caller may own the transaction');
});

t.test('process.env outside src/bin and src/config; errors swallowed without a why', async (t) => {
  t.same(rules('src/stream/x.ts', 'const a = process.env.A;'), ['process-env']);
  t.same(rules('src/config/config.ts', 'const a = process.env.A;'), []);
  t.same(rules('src/stream/x.ts', 'p.catch(() => {});'), ['silent-catch']);
  t.same(rules('src/stream/x.ts', '// the request may be gone already: nothing to abort\np.catch(() => {});'), []);
  t.same(rules('src/stream/x.ts', 'p.then(f, () => {});'), ['silent-catch']);
  t.same(rules('src/stream/x.ts', 'try { f(); } catch {}'), ['silent-catch']);
  t.same(rules('src/stream/x.ts', 'try { f(); } catch {\n  /* already closed */\n}'), []);
  t.same(rules('src/stream/x.ts', 'p.catch((e) => log.warn(e));'), []);
});

t.test('error statuses go through the one map in api/errors.ts', async (t) => {
  t.same(rules('src/api/x.ts', "return reply.status(409).send({ code: 'EXISTS' });"), ['error-status']);
  t.same(rules('src/console/x.ts', 'reply.code(403).send(body);'), ['error-status']);
  t.same(rules('src/api/x.ts', 'return reply.status(201).send(job);'), [], "a success status is the route's own");
  t.same(rules('src/api/errors.ts', 'reply.status(statusCode).send(b); reply.status(404).send(b);'), [], 'the map itself');
});

t.test('every sfmirror table a migration makes is typed in Database, and no other', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'sfm-layers-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'migrations'));
  mkdirSync(path.join(root, 'src/db'), { recursive: true });
  writeFileSync(
    path.join(root, 'migrations/0001_a.sql'),
    'create table sfmirror.kept (a int);\ncreate unlogged table sfmirror.new_one (a int);\ncreate table sfmirror.gone (a int);',
  );
  writeFileSync(path.join(root, 'migrations/0002_b.sql'), '-- create table sfmirror.commented (a int);\ndrop table sfmirror.gone;');
  writeFileSync(path.join(root, 'src/db/database.ts'), "interface Database {\n  'sfmirror.kept': K;\n  'sfmirror.gone': G;\n}");
  t.same(
    checkTableTypes(root).map((v) => v.message),
    ['sfmirror.new_one (made by a migration) is not typed in Database', 'sfmirror.gone is typed in Database but no migration makes it'],
  );
});

t.test('the tree keeps every rule', async (t) => {
  t.same(checkTree(), [], 'no violation in src/');
});
