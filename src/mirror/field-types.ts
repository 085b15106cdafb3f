import type { FieldValue } from '../changes/change.ts';
import { parseSalesforceDateTime } from '../changes/version.ts';

/**
 * Salesforce field types -> Postgres column types (README.md, "The PostgreSQL mirror"), and the
 * check that decides whether a value fits its column. The check runs before SQL so that a value that
 * does not fit never aborts a batch: it stays in `_sfm_fields`, the column gets NULL, and the problem
 * is recorded. Every accepted value is one Postgres casts without error.
 */
export type PgType = 'text' | 'boolean' | 'integer' | 'bigint' | 'numeric' | 'date' | 'timestamptz';

const SF_TO_PG: Record<string, PgType> = {
  boolean: 'boolean',
  int: 'integer',
  integer: 'integer',
  long: 'bigint',
  double: 'numeric',
  currency: 'numeric',
  percent: 'numeric',
  date: 'date',
  datetime: 'timestamptz',
};

/** Compound types: Salesforce also exposes their components as fields of their own. */
export const COMPOUND_TYPES = new Set(['address', 'location']);

/** Unknown types (string, picklist, id, reference, textarea, time, ... and anything new) are text. */
export function pgTypeFor(sfType: string | null | undefined): PgType {
  return (sfType && SF_TO_PG[sfType.toLowerCase()]) || 'text';
}

export type Fit = { ok: true; value: FieldValue } | { ok: false; reason: string };

const INT = /^[+-]?\d+$/;
const NUMERIC = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

const isoCache = new Map<string, string | null>();

/** Whether `value` fits a column of `pgType`; returns the value to store in the column. */
export function fitValue(pgType: PgType, value: FieldValue): Fit {
  if (value === null) return { ok: true, value: null };
  switch (pgType) {
    case 'text':
      return {
        ok: true,
        value: typeof value === 'string' ? (value.includes('\u0000') ? value.replace(/\u0000/g, '') : value) : String(value),
      };
    case 'boolean':
      if (typeof value === 'boolean') return { ok: true, value };
      if (value === 'true' || value === 'false') return { ok: true, value: value === 'true' };
      return { ok: false, reason: 'not a boolean' };
    case 'integer':
    case 'bigint': {
      // The common case without BigInt: a JSON number well inside the column's range.
      if (
        typeof value === 'number' &&
        Number.isInteger(value) &&
        (pgType === 'integer' ? Math.abs(value) < 2 ** 31 : Number.isSafeInteger(value))
      )
        return { ok: true, value: String(value) };
      const s = typeof value === 'number' ? (Number.isInteger(value) ? String(value) : '') : typeof value === 'string' ? value.trim() : '';
      if (!INT.test(s)) return { ok: false, reason: `not an ${pgType === 'integer' ? 'integer' : 'integer (long)'}` };
      const n = BigInt(s);
      const limit = pgType === 'integer' ? 2n ** 31n : 2n ** 63n;
      if (n < -limit || n >= limit) return { ok: false, reason: `out of ${pgType} range` };
      return { ok: true, value: s };
    }
    case 'numeric': {
      // A JSON number is always finite, and String() writes it in a form the pattern accepts.
      if (typeof value === 'number') return { ok: true, value: String(value) };
      const s = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : '';
      if (!NUMERIC.test(s)) return { ok: false, reason: 'not a number' };
      return { ok: true, value: s };
    }
    case 'date': {
      const m = typeof value === 'string' ? DATE.exec(value) : null;
      if (!m) return { ok: false, reason: 'not a date (YYYY-MM-DD)' };
      const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
      if (
        d.getUTCFullYear() !== Number(m[1]) ||
        d.getUTCMonth() !== Number(m[2]) - 1 ||
        d.getUTCDate() !== Number(m[3]) ||
        Number(m[1]) < 1
      ) {
        return { ok: false, reason: 'not a calendar date' };
      }
      return { ok: true, value };
    }
    case 'timestamptz': {
      if (typeof value !== 'string') return { ok: false, reason: 'not an ISO 8601 datetime' };
      // A batch repeats the same instants (CreatedDate, LastModifiedDate, SystemModstamp): parsed once.
      let iso = isoCache.get(value);
      if (iso === undefined) {
        const ms = parseSalesforceDateTime(value);
        iso = ms === undefined || new Date(ms).getUTCFullYear() > 9999 ? null : new Date(ms).toISOString();
        if (isoCache.size >= 4096) isoCache.clear();
        isoCache.set(value, iso);
      }
      return iso === null ? { ok: false, reason: 'not an ISO 8601 datetime' } : { ok: true, value: iso };
    }
  }
}
