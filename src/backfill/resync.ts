import { decodeRestRecord } from '../changes/rest-record.ts';
import type { Change } from '../changes/change.ts';
import { parseSalesforceDateTime } from '../changes/version.ts';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { Mirror } from '../mirror/apply.ts';
import { finishResync, renewResync, type ResyncRequest } from '../mirror/resync-requests.repository.ts';
import type { BackfillSource } from './runner.ts';
import type { BulkTuning } from './bulk-window.ts';
import { resyncObject } from './full-resync.ts';

/**
 * Works one resync request the stream recorded: re-reads the object's records modified since the
 * request's `since` (all of them when null), deleted ones included, page by page through
 * mirror.apply (newer wins, so the live stream may go on meanwhile). A failure puts the request back
 * to pending with its error: it is tried again at the next poll, never dropped.
 * A request without `since` (GAP_OVERFLOW, wildcard ids, hard deletes past getDeleted's reach) is a
 * whole-object resync that also compares ids, deletes included (full-resync.ts).
 */
export async function runResync(
  deps: {
    db: Db;
    mirror: Mirror;
    source: BackfillSource;
    owner: string;
    leaseMs: number;
    pageSize: number;
    bulk?: BulkTuning | undefined;
    apiBudgetShare?: number | undefined;
    log?: Logger | undefined;
  },
  r: ResyncRequest,
): Promise<{ state: 'done' | 'pending'; records: number }> {
  if (r.since === null) return runWholeObject(deps, r);
  let records = 0;
  let after: { stamp: string; id?: string } = { stamp: (r.since ?? new Date(0)).toISOString() };
  deps.log?.warn({ org: r.org, object: r.object, since: r.since, reason: r.reason }, 'resync started (backfill worker)');
  try {
    const types = { [r.object]: await deps.source.describeFields(r.object) };
    for (;;) {
      const readAt = Date.now();
      const page = await deps.source.readModifiedSince(r.object, after, deps.pageSize);
      // The time of the read settles a record against CDC events of the same second (changes/rest-record.ts).
      const changes = page.map((rec) => decodeRestRecord(r.object, rec, { readAt })).filter((c): c is Change => !('error' in c));
      if (changes.length) await deps.mirror.apply(r.org, changes, { types, source: 'resync' });
      records += page.length;
      if (!(await renewResync(deps.db, r.id, deps.owner, deps.leaseMs, records))) return { state: 'pending', records };
      if (page.length < deps.pageSize) break;
      const last = page[page.length - 1]!;
      after = { stamp: new Date(parseSalesforceDateTime(last.SystemModstamp) ?? 0).toISOString(), id: last.Id };
    }
    await finishResync(deps.db, r.id, deps.owner, 'done', records);
    deps.log?.warn({ org: r.org, object: r.object, records }, 'resync done');
    return { state: 'done', records };
  } catch (e) {
    return leavePending(deps, r, records, e, 'resync failed; it stays pending');
  }
}

async function runWholeObject(
  deps: Parameters<typeof runResync>[0],
  r: ResyncRequest,
): Promise<{ state: 'done' | 'pending'; records: number }> {
  deps.log?.warn({ org: r.org, object: r.object, reason: r.reason }, 'whole-object resync started (backfill worker)');
  let records = 0;
  try {
    const out = await resyncObject(
      {
        ...deps,
        // Keeps the lease while it works; once another worker has it, this one stops at once
        // (two readers of one object would tombstone what the other has not seen yet).
        onProgress: async (p) => {
          records = p.records;
          if (!(await renewResync(deps.db, r.id, deps.owner, deps.leaseMs, p.records))) throw new LeaseLost();
        },
      },
      r.org,
      r.object,
    );
    records = out.records;
    if (out.state === 'paused') {
      // The API budget is spent: the request waits, pending with the reason, for a later poll.
      deps.log?.warn({ org: r.org, object: r.object, records, reason: out.reason }, 'whole-object resync paused');
      await finishResync(deps.db, r.id, deps.owner, 'pending', records, `paused: ${out.reason}`);
      return { state: 'pending', records };
    }
    await finishResync(deps.db, r.id, deps.owner, 'done', records);
    deps.log?.warn({ org: r.org, object: r.object, records, tombstoned: out.tombstoned }, 'whole-object resync done');
    return { state: 'done', records };
  } catch (e) {
    if (e instanceof LeaseLost) {
      deps.log?.warn({ org: r.org, object: r.object, records }, 'whole-object resync lost its lease to another worker; stopped');
      return { state: 'pending', records };
    }
    return leavePending(deps, r, records, e, 'whole-object resync failed; it stays pending');
  }
}

/** Another worker claimed the request (this one's lease expired): stop without writing its state. */
class LeaseLost extends Error {
  constructor() {
    super('the resync lease was lost');
  }
}

/** A failed resync stays pending with its reason, for the next poll (the caller's lease ends). */
async function leavePending(
  deps: Parameters<typeof runResync>[0],
  r: ResyncRequest,
  records: number,
  e: unknown,
  message: string,
): Promise<{ state: 'pending'; records: number }> {
  const reason = (e as Error).message?.slice(0, 1000) || String(e);
  deps.log?.error({ org: r.org, object: r.object, err: reason }, message);
  // When even this fails the lease expires and the request is claimed again: it is never dropped.
  await finishResync(deps.db, r.id, deps.owner, 'pending', records, reason).catch((err: Error) =>
    deps.log?.warn({ org: r.org, object: r.object, err: err.message }, 'could not put the resync back to pending; its lease will expire'),
  );
  return { state: 'pending', records };
}
