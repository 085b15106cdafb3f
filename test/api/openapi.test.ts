import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startTestDatabase } from '../support/pg.ts';
import { buildTestApp } from '../support/app.ts';
import { ROOT } from '../support/serve.ts';

// The OpenAPI document as a generator sees it: redocly's recommended rules report 0 errors, and a
// client typed by openapi-typescript compiles against a small consumer under `tsc --strict`.
const tdb = await startTestDatabase(t);
const app = await buildTestApp(tdb);
t.teardown(() => app.close());
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfm-openapi-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const bin = (name: string) => path.join(ROOT, 'node_modules/.bin', name);

const doc = (await app.inject('/docs/json')).json();
const docFile = path.join(dir, 'openapi.json');
fs.writeFileSync(docFile, JSON.stringify(doc));

t.test('/docs serves the interactive UI from this process; /docs/json the document', async (t) => {
  const ui = await app.inject('/docs');
  t.equal(ui.statusCode, 200);
  t.match(ui.headers['content-type'], /text\/html/);
  t.match(ui.body, /swagger-ui/i);
  t.notMatch(ui.body, /https?:\/\/(?!127\.0\.0\.1)[^"']*\.(js|css)/, 'no asset from another host');
  const asset = ui.body.match(/src="\.?\/?([^"]*swagger-ui-bundle\.js)"/)?.[1];
  t.ok(asset, 'the UI loads its bundle from here');
  t.equal((await app.inject(`/docs/${asset!.replace(/^docs\//, '')}`)).statusCode, 200);
  t.equal(doc.openapi.slice(0, 2), '3.');
});

t.test('the document names what a generator needs', async (t) => {
  const ops = Object.entries(
    doc.paths as Record<string, Record<string, { operationId?: string; security?: unknown; responses: object }>>,
  ).flatMap(([p, o]) => Object.entries(o).map(([m, op]) => ({ at: `${m} ${p}`, op })));
  const ids = ops.map((o) => o.op.operationId);
  t.equal(new Set(ids).size, ids.length, 'operationIds are unique');
  t.notOk(
    ops.find((o) => !o.op.operationId || !o.op.security || !('4XX' in o.op.responses)),
    'every operation has an operationId, security and a 4XX answer',
  );
  t.same(doc.paths['/healthz'].get.security, [], 'public routes say so');
  t.same(doc.paths['/ingest/apex'].post.security, [{ sfmirrorSignature: [], sfmirrorTimestamp: [] }]);
  t.same(doc.paths['/ingest/apex'].post.requestBody.content['application/json'].schema, { $ref: '#/components/schemas/ApexPush' });
  for (const name of ['Error', 'Record', 'Change', 'ApexPush']) t.ok(doc.components.schemas[name], `component ${name}`);
  const limit = doc.paths['/api/v1/objects/{object}'].get.parameters.find((p: { name: string }) => p.name === 'limit');
  t.equal(limit.required, false, 'limit has a default, so it is not required');
  t.ok(doc.servers?.length, 'servers');
});

t.test('redocly lint reports 0 errors', { timeout: 120_000 }, async (t) => {
  const r = spawnSync(bin('redocly'), ['lint', docFile, '--format=json'], {
    encoding: 'utf8',
    cwd: dir,
    env: { ...process.env, REDOCLY_TELEMETRY: 'off' },
  });
  const report = JSON.parse(r.stdout) as {
    totals: { errors: number; warnings: number };
    problems: { ruleId: string; message: string; severity: string }[];
  };
  t.equal(
    report.totals.errors,
    0,
    report.problems
      .filter((p) => p.severity === 'error')
      .map((p) => `${p.ruleId}: ${p.message}`)
      .join('\n'),
  );
  t.equal(r.status, 0);
});

t.test('a client typed by openapi-typescript compiles against a consumer under tsc --strict', { timeout: 180_000 }, async (t) => {
  const gen = spawnSync(bin('openapi-typescript'), [docFile, '-o', path.join(dir, 'sfmirror.d.ts')], { encoding: 'utf8' });
  t.equal(gen.status, 0, gen.stderr);
  fs.writeFileSync(
    path.join(dir, 'consumer.ts'),
    `import type { components, operations, paths } from './sfmirror.d.ts';

type Page = paths['/api/v1/objects/{object}']['get']['responses']['200']['content']['application/json'];
type Feed = operations['listChanges']['responses']['200']['content']['application/json'];
type Problem = components['schemas']['Error'];
type Push = components['schemas']['ApexPush'];

export function firstName(page: Page): string | undefined {
  const r: components['schemas']['Record'] | undefined = page.records[0];
  return r === undefined ? undefined : String(r['Name']);
}
export const deleted = (feed: Feed): string[] => feed.changes.filter((c) => c.deleted).map((c) => c.id);
export const explain = (p: Problem): string => \`\${p.statusCode} \${p.message}\`;
export const push: Push = { orgId: '00D000000000001EAA', changes: [{ object: 'Account', operation: 'insert', record: { Id: '001000000000001AAA' } }] };
type Query = NonNullable<operations['listRecords']['parameters']['query']>;
export const query: Query = { fields: 'Id,Name' }; // limit is optional: it has a default
`,
  );
  const tsc = spawnSync(
    bin('tsc'),
    ['--strict', '--noEmit', '--target', 'es2022', '--module', 'nodenext', '--allowImportingTsExtensions', '--skipLibCheck', 'consumer.ts'],
    { encoding: 'utf8', cwd: dir },
  );
  t.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
});
