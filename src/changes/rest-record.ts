import type { Change, FieldValue } from './change.ts';
import { isValidFieldName, toId18 } from './names.ts';
import { makeVersion, parseSalesforceDateTime } from './version.ts';

/**
 * A record as Salesforce's REST query returns it -> a Change. Used by backfills and re-reads.
 * `attributes`, nested objects (compound fields, relationships) and Id/IsDeleted are not fields;
 * `IsDeleted = true` (queryAll) becomes a delete. The version is the record's SystemModstamp, so a
 * read never overwrites a newer pushed change.
 */
export function decodeRestRecord(object: string, record: Record<string, unknown>): Change | { error: string } {
  const id = toId18(record.Id);
  if (!id) return { error: `${object} record without a valid Id` };
  const ms = parseSalesforceDateTime(record.SystemModstamp);
  if (ms === undefined) return { error: `${object} ${id}: SystemModstamp missing or unreadable` };
  const fields: Record<string, FieldValue> = {};
  for (const [k, v] of Object.entries(record)) {
    if (k === 'attributes' || k === 'Id' || k === 'IsDeleted' || !isValidFieldName(k)) continue;
    if (v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) fields[k] = v;
  }
  return { object, operation: record.IsDeleted === true ? 'delete' : 'update', id, fields, version: makeVersion(ms) };
}
