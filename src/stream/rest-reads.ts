import type { Change, FieldValue } from '../changes/change.ts';
import type { Refetch } from '../changes/cdc-event.ts';
import { makeVersion, parseSalesforceDateTime } from '../changes/version.ts';
import type { SalesforceClient, SfRecord } from '../salesforce/client.ts';

/**
 * Re-reads through REST what an event could not carry: GAP_* records (whole; gone or IsDeleted
 * becomes a delete), `{ diff }` text fields, and whole objects for a resync (by SystemModstamp,
 * deletes included). A re-read is at least as new as the event that asked for it, so its version
 * is the larger of the event's and the record's own.
 *
 * The record's own version: SystemModstamp has second precision while CDC versions are
 * commitTimestamps in milliseconds, so a record last modified in second S reflects every commit up
 * to the moment it was read. Its version is min(time of the read, S + 999 ms): newer than the events
 * it already reflects, older than any write committed after the read.
 */
const maxVersion = (a: string, b: string) => (a > b ? a : b);

export function recordToChange(object: string, r: SfRecord, floor: string | undefined, readAt: number, only?: readonly string[]): Change {
  const ms = parseSalesforceDateTime(r.SystemModstamp);
  const own = ms === undefined ? '' : makeVersion(Math.max(ms, Math.min(readAt, ms - (ms % 1000) + 999)), 0);
  const version = floor ? maxVersion(floor, own) : own || makeVersion(0);
  if (r.IsDeleted === true) return { object, operation: 'delete', id: r.Id, fields: {}, version };
  const fields: Record<string, FieldValue> = {};
  for (const [k, v] of Object.entries(r)) {
    if (k === 'Id' || k === 'IsDeleted' || (only && !only.includes(k))) continue;
    if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) fields[k] = v;
  }
  return { object, operation: 'update', id: r.Id, fields, version };
}

export async function refetchChanges(sf: SalesforceClient, refetch: readonly Refetch[]): Promise<Change[]> {
  const out: Change[] = [];
  for (const f of refetch) {
    const readAt = Date.now();
    const found = await sf.readRecords(f.object, f.ids, f.fields);
    const byId = new Map(found.map((r) => [r.Id, r]));
    for (const id of f.ids) {
      const r = byId.get(id);
      if (r) out.push(recordToChange(f.object, r, f.version, readAt, f.fields));
      // A whole-record re-read that finds nothing: the record is gone (hard deleted).
      else if (!f.fields) out.push({ object: f.object, operation: 'delete', id, fields: {}, version: f.version });
    }
  }
  return out;
}

/**
 * Pages through an object's records modified since `since` (null: all), oldest first, on
 * (SystemModstamp, Id); `onPage` applies each page before the next is read.
 */
export async function readObjectSince(
  sf: SalesforceClient,
  object: string,
  since: Date | null,
  pageSize: number,
  onPage: (changes: Change[]) => Promise<void>,
): Promise<number> {
  let after: { stamp: string; id?: string } = { stamp: (since ?? new Date(0)).toISOString() };
  let total = 0;
  for (;;) {
    const readAt = Date.now();
    const page = await sf.readModifiedSince(object, after, pageSize);
    if (!page.length) return total;
    await onPage(page.map((r) => recordToChange(object, r, undefined, readAt)));
    total += page.length;
    const last = page[page.length - 1]!;
    after = { stamp: new Date(parseSalesforceDateTime(last.SystemModstamp) ?? 0).toISOString(), id: last.Id };
    if (page.length < pageSize) return total;
  }
}
