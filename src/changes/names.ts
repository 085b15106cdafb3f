/**
 * Names that come from outside (object and field API names, org aliases, ids) are validated here
 * before they reach anything that builds SQL; the SQL itself still quotes them (Kysely `sql.id`).
 */

// Salesforce API names: a letter, then letters, digits and single underscores; custom names end in
// __c, __r, __e, __mdt, __x...; a namespace prefix adds `ns__`. Postgres truncates identifiers at 63
// bytes, so longer names would collide silently: refuse them.
const API_NAME = /^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*(?:__[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*){0,2}$/;

// A mirror table's indexes are named `<table>_sfm_seq_idx` and `<table>_systemmodstamp_idx`; no
// Salesforce object ends in `_idx` (custom ones end in __c, __e, ...), so refusing such names keeps a
// table from taking an index's name (src/mirror/schema.ts).
export function isValidSobjectName(name: unknown): name is string {
  return typeof name === 'string' && name.length <= 63 && API_NAME.test(name) && !/_idx$/i.test(name);
}

export function isValidFieldName(name: unknown): name is string {
  return typeof name === 'string' && name.length <= 63 && API_NAME.test(name);
}

const RESERVED_ALIASES = new Set(['sfmirror', 'public', 'information_schema']);

/** An org alias names a Postgres schema and a BigQuery dataset suffix. */
export function isValidAlias(alias: unknown): alias is string {
  return typeof alias === 'string' && /^[a-z][a-z0-9_]{0,39}$/.test(alias) && !RESERVED_ALIASES.has(alias) && !alias.startsWith('pg_');
}

const ID_CHARS = /^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$/;
const SUFFIX = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';

/**
 * Salesforce ids: 15-character (case-sensitive) or 18-character (with a case-safe checksum suffix).
 * Returns the 18-character form, or undefined when the input is not an id (or its checksum is wrong).
 */
export function toId18(id: unknown): string | undefined {
  if (typeof id !== 'string' || !ID_CHARS.test(id)) return undefined;
  const full = id18Of(id.slice(0, 15));
  if (id.length === 18 && id.slice(15).toUpperCase() !== full.slice(15)) return undefined;
  return full;
}

/**
 * Why `id` is not a Salesforce id, in words for an error message (after `<field>: "<id>" `), or
 * undefined when it is one. An 18-character id with a wrong suffix is told apart from a wrong shape.
 */
export function idProblem(id: unknown): string | undefined {
  if (toId18(id) !== undefined) return undefined;
  if (typeof id === 'string' && ID_CHARS.test(id) && id.length === 18) {
    return `is not a Salesforce id: its last 3 characters are a checksum of the first 15 and should be ${id18Of(id.slice(0, 15)).slice(15)}`;
  }
  return 'is not a Salesforce id (15 or 18 letters and digits)';
}

function id18Of(base: string): string {
  let suffix = '';
  for (let block = 0; block < 3; block++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) {
      const c = base.charCodeAt(block * 5 + i);
      if (c >= 65 && c <= 90) bits |= 1 << i;
    }
    suffix += SUFFIX[bits];
  }
  return base + suffix;
}
