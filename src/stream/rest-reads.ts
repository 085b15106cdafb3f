import type { Change } from '../changes/change.ts';
import type { Refetch } from '../changes/cdc-event.ts';
import { decodeRestRecord } from '../changes/rest-record.ts';
import type { Logger } from '../lib/logger.ts';
import type { SalesforceClient } from '../salesforce/client.ts';

/**
 * Re-reads through REST what an event could not carry: GAP_* records (whole; gone or IsDeleted
 * becomes a delete) and `{ diff }` text fields. A re-read is at least as new as the event that asked
 * for it: the event's version is its floor (changes/rest-record.ts has the version rule).
 */
export async function refetchChanges(
  sf: Pick<SalesforceClient, 'readRecords'>,
  refetch: readonly Refetch[],
  log?: Logger,
): Promise<Change[]> {
  const out: Change[] = [];
  for (const f of refetch) {
    const readAt = Date.now();
    const found = await sf.readRecords(f.object, f.ids, f.fields);
    const byId = new Map(found.map((r) => [r.Id, r]));
    for (const id of f.ids) {
      const r = byId.get(id);
      if (r) {
        const c = decodeRestRecord(f.object, r, { readAt, floor: f.version, only: f.fields });
        if ('error' in c) log?.error({ object: f.object, id, error: c.error }, 'cdc re-read: record skipped');
        else out.push(c);
      }
      // A whole-record re-read that finds nothing: the record is gone (hard deleted).
      else if (!f.fields) out.push({ object: f.object, operation: 'delete', id, fields: {}, version: f.version });
    }
  }
  return out;
}
