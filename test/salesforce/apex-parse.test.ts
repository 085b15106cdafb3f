// Every Apex class and trigger under salesforce/ must parse: no org can compile it from here, so
// the grammar of @apexdevtools/apex-parser is the first gate a syntax error meets.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ApexErrorListener, ApexParserFactory } from '@apexdevtools/apex-parser';

const root = join(import.meta.dirname, '..', '..', 'salesforce');

class CollectingListener extends ApexErrorListener {
  readonly errors: string[] = [];
  apexSyntaxError(line: number, column: number, msg: string): void {
    this.errors.push(`${line}:${column} ${msg}`);
  }
}

/** Syntax errors of one source: lexer and parser both report to the listener. */
function syntaxErrors(source: string, kind: 'class' | 'trigger'): string[] {
  const listener = new CollectingListener();
  const { parser } = ApexParserFactory.createLexerAndParser(source, listener);
  if (kind === 'class') parser.compilationUnit();
  else parser.triggerUnit();
  return listener.errors;
}

function apexFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && /\.(cls|trigger)$/.test(entry.name))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

const files = apexFiles(root);

t.test('the project has the expected Apex', async (t) => {
  const names = files.map((file) => relative(root, file));
  t.ok(names.length >= 20, `found ${names.length} files`);
  for (const object of ['Account', 'Contact', 'Lead', 'Opportunity', 'Case']) {
    t.ok(names.includes(`force-app/main/default/triggers/Sfmirror${object}Trigger.trigger`), `${object} trigger`);
  }
});

t.test('every .cls and .trigger parses without a syntax error', async (t) => {
  for (const file of files) {
    const kind = file.endsWith('.trigger') ? 'trigger' : 'class';
    t.same(syntaxErrors(readFileSync(file, 'utf8'), kind), [], relative(root, file));
  }
});

t.test('each trigger is one line into SfmirrorTriggerHandler, after every operation', async (t) => {
  for (const file of files.filter((f) => f.endsWith('.trigger'))) {
    const source = readFileSync(file, 'utf8');
    t.match(source, /\(after insert, after update, after delete, after undelete\)/, relative(root, file));
    t.match(source, /\{\s*SfmirrorTriggerHandler\.handle\(\);\s*\}/, relative(root, file));
  }
});

// Negative controls: a checker that accepts everything would pass the tests above too.
t.test('broken Apex is reported', async (t) => {
  t.not(syntaxErrors('public class Broken { void m() { Integer x = ; } }', 'class').length, 0, 'missing expression');
  t.not(syntaxErrors('public class Unclosed { void m() { }', 'class').length, 0, 'missing brace');
  t.not(syntaxErrors("public class BadEscape { String s = 'a\\qb'; }", 'class').length, 0, 'lexer error');
  t.not(syntaxErrors('trigger T on Account (after insert) { SfmirrorTriggerHandler.handle() }', 'trigger').length, 0, 'missing semicolon');
  t.same(syntaxErrors('public class Fine { void m() { Integer x = 1; } }', 'class'), [], 'and valid Apex is not');
});

// The parser checks grammar only. These cheap cross-checks catch the next most likely compile
// errors: a misspelt class or field, and a test reaching a private member not marked @TestVisible.
const stripped = (source: string): string =>
  source
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '')
    .replace(/'(?:[^'\\]|\\.)*'/g, "''");

const triggerNames = new Set(files.filter((f) => f.endsWith('.trigger')).map((f) => /(\w+)\.trigger$/.exec(f)![1]!));
const classSources = new Map(files.filter((f) => f.endsWith('.cls')).map((f) => [/(\w+)\.cls$/.exec(f)![1]!, readFileSync(f, 'utf8')]));

t.test('every Sfmirror class and custom field the Apex names exists', async (t) => {
  const fieldFiles = readdirSync(join(root, 'force-app', 'main', 'default', 'objects'), { recursive: true })
    .map(String)
    .filter((p) => p.endsWith('.field-meta.xml'))
    .map((p) => /(\w+)\.field-meta\.xml$/.exec(p)![1]!);
  const objects = readdirSync(join(root, 'force-app', 'main', 'default', 'objects'));
  for (const file of files) {
    const code = stripped(readFileSync(file, 'utf8'));
    for (const [name] of code.matchAll(/\bSfmirror[A-Z][A-Za-z0-9]*\b/g)) {
      t.ok(classSources.has(name) || triggerNames.has(name), `${relative(root, file)}: class ${name}`);
    }
    for (const [name] of code.matchAll(/\b\w+__(?:c|mdt)\b/g)) {
      t.ok(fieldFiles.includes(name) || objects.includes(name), `${relative(root, file)}: ${name}`);
    }
  }
});

t.test('members used from another class are public or @TestVisible for tests', async (t) => {
  for (const [user, source] of classSources) {
    const isTest = /@isTest/i.test(source);
    for (const [, owner, member] of stripped(source).matchAll(/\b(Sfmirror[A-Z][A-Za-z0-9]*)\.([a-z]\w*)\b/g)) {
      if (owner === user) continue;
      const ownerSource = stripped(classSources.get(owner!) ?? '');
      // A member of the top-level class sits at exactly one indentation level (4 spaces).
      const declaration = new RegExp(`^ {4}\\S[\\w<>,. ]*\\s${member}\\s*(?:[=;(]|$)`, 'm').exec(ownerSource);
      if (!declaration) {
        t.fail(`${user} uses ${owner}.${member}, which ${owner} does not declare`);
        continue;
      }
      const line = declaration[0];
      const previous = ownerSource.slice(0, declaration.index).trimEnd().split('\n').at(-1) ?? '';
      const visible = /\b(public|global)\b/.test(line) || (isTest && /@TestVisible/.test(previous + line));
      t.ok(visible, `${user} -> ${owner}.${member}`);
    }
  }
});
