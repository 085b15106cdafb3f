/**
 * The house rules (README, "Development") that a reviewer should not have to police, checked on every
 * `npm run lint` (and so in `.ci/run`). Each rule has a name, the reason it exists, and, where
 * code that predates it still breaks it, a named exception with the issue that removes it.
 * Run: `node tools/check-layers.ts` (exit 1 and one line per violation when a rule is broken).
 *
 * It reads the TypeScript sources with the compiler's own parser (no type checking: fast), so an
 * import is an import whatever its formatting, and comments are seen as comments.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '..');

/**
 * Which top-level folders of src/ each folder may import (its own is always allowed). The dependency
 * direction README gives: bin -> api, stream, backfill, warehouse -> ingest/mirror -> changes, db -> lib.
 * stream and backfill never import each other: they meet in `mirror` (resync requests are rows).
 */
export const MAY_IMPORT: Record<string, readonly string[]> = {
  lib: [],
  config: ['lib', 'changes'],
  db: ['lib'],
  changes: ['lib'],
  salesforce: ['lib', 'changes'],
  mirror: ['lib', 'db', 'changes'],
  ingest: ['lib', 'db', 'changes', 'mirror'],
  stream: ['lib', 'db', 'changes', 'mirror', 'salesforce'],
  backfill: ['lib', 'db', 'changes', 'mirror', 'salesforce'],
  warehouse: ['lib', 'db', 'changes', 'mirror'],
  // Formula freshness re-reads records through Salesforce, spending the backfill's API budget.
  formulas: ['lib', 'db', 'changes', 'mirror', 'salesforce', 'backfill'],
  // The operator console's page and sessions; api admits console sessions to the operator routes.
  console: ['lib', 'db'],
  api: ['lib', 'db', 'changes', 'mirror', 'ingest', 'salesforce', 'stream', 'backfill', 'warehouse', 'formulas', 'console'],
  bin: [
    'lib',
    'config',
    'db',
    'changes',
    'salesforce',
    'mirror',
    'ingest',
    'stream',
    'backfill',
    'warehouse',
    'formulas',
    'console',
    'api',
  ],
};

/** Vendor libraries and the only files that may import them (vendor types stay in their wrapper). */
export const VENDORS: ReadonlyArray<{ name: string; packages: RegExp; only: RegExp; why: string }> = [
  { name: 'jsforce', packages: /^jsforce(\/|$)/, only: /^src\/salesforce\//, why: 'jsforce stays in src/salesforce' },
  { name: 'faye', packages: /^faye(\/|$)/, only: /^src\/salesforce\/streaming\.ts$/, why: 'faye stays in its streaming wrapper' },
  {
    name: 'bigquery',
    packages: /^(@google-cloud\/bigquery(-storage)?|google-auth-library|google-gax)(\/|$)/,
    // The warehouse's client files (the REST client, and the Storage Write API client).
    only: /^src\/warehouse\/(bigquery|storage-write|write-client|bq-client)[\w-]*\.ts$/,
    why: "the BigQuery libraries stay in src/warehouse's client",
  },
  { name: 'pg', packages: /^pg(\/|$)/, only: /^src\/(db|bin)\//, why: 'pg stays in src/db (and src/bin, which builds the pool)' },
];

/**
 * Files that still run SQL outside a repository, each with the issue that moves it. Remove a line
 * when its SQL has moved; a file listed here that no longer runs SQL fails the check, so the list
 * cannot go stale.
 */
export const SQL_EXCEPTIONS: Record<string, string> = {};

/** Swallowed errors in files another issue is rewriting: that issue adds the why-comment (or a log). */
export const SILENT_CATCH_EXCEPTIONS: Record<string, string> = {};

/** process.env is read in src/bin and src/config only; the rest gets values passed down. */
export const ENV_EXCEPTIONS: Record<string, string> = {
  'src/db/embedded.ts': 'the embedded PostgreSQL gets PATH and the locale only (minimalEnv), never the rest',
};

/** Error statuses are answered by api/errors.ts's one map (throw an AppError); these files answer their own. */
export const STATUS_EXCEPTIONS: Record<string, string> = {
  'src/api/errors.ts': 'the one map itself',
  'src/api/app.ts': '/readyz answers 503 with its own health document (status, pending migrations)',
};

const QUERY_METHODS = new Set(['selectFrom', 'insertInto', 'updateTable', 'deleteFrom', 'replaceInto', 'mergeInto', 'selectNoFrom']);

export interface Violation {
  file: string;
  line: number;
  rule: string;
  message: string;
}

const folderOf = (rel: string) => /^src\/([^/]+)\//.exec(rel)?.[1];
const isRepository = (rel: string) => rel.endsWith('.repository.ts') || rel.startsWith('src/db/');

/** Whether the text around `pos` (its line, the line before, or inside `node`) carries a comment. */
function hasComment(text: string, node: ts.Node, sf: ts.SourceFile): boolean {
  if (/\/\/|\/\*/.test(node.getText(sf).replace(/^[^{]*/, ''))) return true;
  const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
  const lines = text.split('\n');
  return [lines[line], lines[line - 1]].some((l) => l !== undefined && /\/\/|\/\*|^\s*\*/.test(l));
}

const isEmptyFunction = (n: ts.Node | undefined) =>
  !!n && (ts.isArrowFunction(n) || ts.isFunctionExpression(n)) && ts.isBlock(n.body) && n.body.statements.length === 0;

export function checkFile(rel: string, text: string): { violations: Violation[]; runsSql: boolean } {
  const sf = ts.createSourceFile(rel, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: Violation[] = [];
  const at = (n: ts.Node) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
  const add = (n: ts.Node, rule: string, message: string) => out.push({ file: rel, line: at(n), rule, message });
  const folder = folderOf(rel);
  let runsSql = false;

  const checkImport = (n: ts.Node, spec: string) => {
    if (spec.startsWith('.')) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec));
      const to = folderOf(target);
      if (!folder || !to || to === folder) return;
      const allowed = MAY_IMPORT[folder];
      if (!allowed) add(n, 'layers', `src/${folder} is not a known layer (add it to MAY_IMPORT in tools/check-layers.ts)`);
      else if (!allowed.includes(to)) add(n, 'layers', `src/${folder} may not import src/${to} (${spec})`);
      return;
    }
    for (const v of VENDORS) if (v.packages.test(spec) && !v.only.test(rel)) add(n, `vendor:${v.name}`, `${v.why}: ${rel} imports ${spec}`);
  };

  const visit = (n: ts.Node) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      checkImport(n, n.moduleSpecifier.text);
    } else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const a = n.arguments[0];
      if (a && ts.isStringLiteralLike(a)) checkImport(n, a.text);
    }
    if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) && QUERY_METHODS.has(n.expression.name.text)) runsSql = true;
    if (ts.isTaggedTemplateExpression(n) && ts.isIdentifier(n.tag) && n.tag.text === 'sql') runsSql = true;
    if (
      ts.isPropertyAccessExpression(n) &&
      ts.isIdentifier(n.expression) &&
      n.expression.text === 'process' &&
      n.name.text === 'env' &&
      folder &&
      folder !== 'bin' &&
      folder !== 'config' &&
      !ENV_EXCEPTIONS[rel]
    ) {
      add(n, 'process-env', 'process.env is read only in src/bin and src/config: pass the value down');
    }
    // An error status set by hand bypasses the one map of codes to statuses (api/errors.ts).
    if (
      ts.isCallExpression(n) &&
      ts.isPropertyAccessExpression(n.expression) &&
      (n.expression.name.text === 'status' || n.expression.name.text === 'code') &&
      n.arguments.length === 1 &&
      ts.isNumericLiteral(n.arguments[0]!) &&
      Number(n.arguments[0].text) >= 400 &&
      !STATUS_EXCEPTIONS[rel]
    ) {
      add(
        n,
        'error-status',
        `.${n.expression.name.text}(${n.arguments[0].text}) by hand: throw an AppError, api/errors.ts maps its code to the status`,
      );
    }
    // A swallowed error must say why that is safe.
    const silentOk = !!SILENT_CATCH_EXCEPTIONS[rel];
    if (!silentOk && ts.isCatchClause(n) && n.block.statements.length === 0 && !hasComment(text, n.block, sf)) {
      add(n, 'silent-catch', 'empty catch block without a comment saying why the error may be ignored');
    }
    if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression)) {
      const m = n.expression.name.text;
      const handler = m === 'catch' ? n.arguments[0] : m === 'then' ? n.arguments[1] : undefined;
      if (!silentOk && isEmptyFunction(handler) && !hasComment(text, n, sf)) {
        add(n, 'silent-catch', `.${m}(..., () => {}) swallows an error without a comment saying why that is safe`);
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return { violations: out, runsSql };
}

function* walk(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.name.endsWith('.ts')) yield p;
  }
}

export function checkTree(root = ROOT): Violation[] {
  const out: Violation[] = [];
  for (const file of walk(path.join(root, 'src'))) {
    const rel = path.relative(root, file).split(path.sep).join('/');
    const r = checkFile(rel, readFileSync(file, 'utf8'));
    out.push(...r.violations);
    if (r.runsSql && !isRepository(rel) && !SQL_EXCEPTIONS[rel]) {
      out.push({
        file: rel,
        line: 1,
        rule: 'sql',
        message: 'Kysely queries live in *.repository.ts files and src/db (README, "Development")',
      });
    }
    if (!r.runsSql && SQL_EXCEPTIONS[rel]) {
      out.push({
        file: rel,
        line: 1,
        rule: 'sql',
        message: 'runs no SQL any more: remove it from SQL_EXCEPTIONS in tools/check-layers.ts',
      });
    }
  }
  for (const rel of Object.keys(SQL_EXCEPTIONS)) {
    try {
      readFileSync(path.join(root, rel));
    } catch {
      out.push({ file: rel, line: 1, rule: 'sql', message: 'is gone: remove it from SQL_EXCEPTIONS in tools/check-layers.ts' });
    }
  }
  out.push(...checkTableTypes(root));
  return out;
}

/**
 * Every table a migration creates in schema `sfmirror` (and not dropped later) is typed in
 * src/db/database.ts's `Database`, so queries on it are checked by tsc (and a typed table no
 * migration makes is stale).
 */
export function checkTableTypes(root = ROOT): Violation[] {
  const made = new Set<string>();
  const dir = path.join(root, 'migrations');
  for (const f of readdirSync(dir)
    .filter((x) => x.endsWith('.sql'))
    .sort()) {
    const text = readFileSync(path.join(dir, f), 'utf8').replace(/--.*$/gm, '');
    for (const m of text.matchAll(/\b(create|drop)\s+(?:unlogged\s+)?table\s+(?:if\s+(?:not\s+)?exists\s+)?sfmirror\.(\w+)/gi))
      m[1]!.toLowerCase() === 'create' ? made.add(m[2]!) : made.delete(m[2]!);
  }
  const db = 'src/db/database.ts';
  const typed = new Set([...readFileSync(path.join(root, db), 'utf8').matchAll(/'sfmirror\.(\w+)':/g)].map((m) => m[1]!));
  const out: Violation[] = [];
  for (const t of made)
    if (!typed.has(t))
      out.push({ file: db, line: 1, rule: 'table-types', message: `sfmirror.${t} (made by a migration) is not typed in Database` });
  // The migrator makes its own table (src/db/migrator.ts).
  for (const t of typed)
    if (!made.has(t) && t !== 'schema_migrations')
      out.push({ file: db, line: 1, rule: 'table-types', message: `sfmirror.${t} is typed in Database but no migration makes it` });
  return out;
}

if (import.meta.main) {
  const v = checkTree();
  for (const x of v) process.stderr.write(`${x.file}:${x.line}: [${x.rule}] ${x.message}\n`);
  if (v.length) {
    process.stderr.write(`${v.length} house rule(s) broken (tools/check-layers.ts says why each rule exists)\n`);
    process.exit(1);
  }
  process.stdout.write('house rules hold (tools/check-layers.ts)\n');
}
