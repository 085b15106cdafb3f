import type { Change, FieldValue } from './change.ts';
import { isValidFieldName, toId18 } from './names.ts';
import { makeVersion, parseSalesforceDateTime } from './version.ts';

/**
 * A record as Salesforce's REST (or Bulk) query returns it -> a Change: the one decoder of backfills,
 * resyncs and the stream's re-reads. `attributes`, nested objects (compound fields, relationships)
 * and Id/IsDeleted are not fields; `IsDeleted = true` (queryAll) becomes a delete.
 *
 * The version rule. SystemModstamp has second precision while CDC versions are commitTimestamps in
 * milliseconds. A record last modified in second S, read at `readAt`, reflects every commit up to
 * the read, so its version is max(S, min(readAt, S + 999 ms)): newer than the events it already
 * reflects (a late event of the same second must not undo the read), older than any write committed
 * after the read. When the time of the read is not known (a Bulk job's snapshot), the version is S
 * itself, which never beats a newer pushed change. A re-read that an event asked for is at least as
 * new as that event: `floor` is its version.
 */
export interface RestReadOptions {
  /** When the read was sent (epoch ms); undefined when not known. */
  readAt?: number | undefined;
  /** The version of the event that asked for this re-read. */
  floor?: string | undefined;
  /** Only these fields (a re-read of `{ diff }` text fields). */
  only?: readonly string[] | undefined;
}

export function decodeRestRecord(object: string, record: Record<string, unknown>, o: RestReadOptions = {}): Change | { error: string } {
  const id = toId18(record.Id);
  if (!id) return { error: `${object} record without a valid Id` };
  const ms = parseSalesforceDateTime(record.SystemModstamp);
  if (ms === undefined && o.floor === undefined) return { error: `${object} ${id}: SystemModstamp missing or unreadable` };
  const own = ms === undefined ? '' : makeVersion(o.readAt === undefined ? ms : Math.max(ms, Math.min(o.readAt, ms - (ms % 1000) + 999)));
  const version = o.floor !== undefined && o.floor > own ? o.floor : own;
  const fields: Record<string, FieldValue> = {};
  for (const [k, v] of Object.entries(record)) {
    if (k === 'attributes' || k === 'Id' || k === 'IsDeleted' || !isValidFieldName(k) || (o.only && !o.only.includes(k))) continue;
    if (v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) fields[k] = v;
  }
  return { object, operation: record.IsDeleted === true ? 'delete' : 'update', id, fields, version };
}
