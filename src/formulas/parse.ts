/**
 * What a formula depends on, read from its text (describe's `calculatedFormula`): fields of the same
 * record (`FirstName`), paths through lookups (`Account.Name`, `Account.Owner.Name`, `Parent__r.Field__c`),
 * functions of time (`TODAY()`, `NOW()`, `TIMENOW()`), and globals sfmirror cannot follow (`$User`,
 * `$Setup`, `$CustomMetadata`, `$Organization`, `$Label`, ...). Pure; no describe needed (catalog.ts
 * resolves paths against describe).
 */
export interface FormulaRefs {
  /** Same-record field names as written. */
  readonly fields: readonly string[];
  /** Relationship paths, each ending with the field read on the last object: `['Account', 'Owner', 'Name']`. */
  readonly paths: ReadonlyArray<readonly string[]>;
  /** `TODAY()`, `NOW()`, `TIMENOW()`: the value changes with the clock. */
  readonly time: boolean;
  /** `$User.Id`, `$Setup.Config__c.Rate__c`, ...: values sfmirror cannot watch. */
  readonly globals: readonly string[];
}

const TIME_FUNCTIONS = new Set(['TODAY', 'NOW', 'TIMENOW']);
const KEYWORDS = new Set(['TRUE', 'FALSE', 'NULL']);

/** Removes string literals and comments, which may hold anything, identifiers included. */
function stripLiterals(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"' || c === "'") {
      for (i++; i < text.length && text[i] !== c; i++) if (text[i] === '\\') i++;
      out += ' "" ';
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 1;
      out += ' ';
    } else out += c;
  }
  return out;
}

export function parseFormula(text: string): FormulaRefs {
  const src = stripLiterals(text);
  const fields = new Set<string>();
  const paths = new Map<string, string[]>();
  const globals = new Set<string>();
  let time = false;
  const ident = /[$A-Za-z_][\w$]*(?:\s*\.\s*[$A-Za-z_][\w$]*)*/g;
  for (let m = ident.exec(src); m; m = ident.exec(src)) {
    const before = src[m.index - 1];
    if (before !== undefined && /[\w$.]/.test(before)) continue; // the tail of a number such as 1.5e3
    const name = m[0].replace(/\s+/g, '');
    const after = src.slice(m.index + m[0].length).trimStart();
    if (after.startsWith('(')) {
      if (TIME_FUNCTIONS.has(name.toUpperCase())) time = true;
      continue;
    }
    if (KEYWORDS.has(name.toUpperCase())) continue;
    if (name.startsWith('$')) {
      globals.add(name);
      continue;
    }
    const parts = name.split('.');
    if (parts.length === 1) fields.add(name);
    else paths.set(name.toLowerCase(), parts);
  }
  return { fields: [...fields], paths: [...paths.values()], time, globals: [...globals] };
}
