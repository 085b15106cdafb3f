/**
 * UTC days. Backfill windows are whole UTC days, so a huge object is resumable day by day; inside a
 * day, keyset paging on (SystemModstamp, Id) (SalesforceClient.readModifiedSince) neither skips nor
 * repeats records that share one timestamp (the trap of cursors on SystemModstamp alone).
 */
export type Day = string; // YYYY-MM-DD

export const dayOf = (d: Date): Day => d.toISOString().slice(0, 10);
export const addDays = (day: Day, n: number): Day => dayOf(new Date(Date.parse(`${day}T00:00:00Z`) + n * 86_400_000));
export const daysBetween = (from: Day, to: Day): number =>
  Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000);
export const isDay = (s: unknown): s is Day =>
  typeof s === 'string' &&
  /^\d{4}-\d{2}-\d{2}$/.test(s) &&
  // 2024-13-45 parses to an invalid Date, whose toISOString throws: check before formatting it.
  !Number.isNaN(Date.parse(`${s}T00:00:00Z`)) &&
  dayOf(new Date(`${s}T00:00:00Z`)) === s;

/** Where a job stands inside the day it is importing: the last (SystemModstamp, Id) applied. */
export interface Cursor {
  day: Day;
  stamp?: string;
  id?: string;
  /** The day is read by this Bulk API 2.0 job; `locator` of the next results page; `done` after the last. */
  bulk?: { job: string; locator?: string; done?: boolean };
}
