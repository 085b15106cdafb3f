import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import type { Mirror } from '../mirror/apply.ts';
import type { SalesforceClient } from '../salesforce/client.ts';
import type { Pending } from './batcher.ts';
import { refetchChanges } from './rest-reads.ts';
import { checkpointSource, saveStreamCheckpoint, type StreamCheckpoint } from './stream.repository.ts';

/**
 * Where a batch of CDC events goes: their changes (and what REST re-reads for GAP events and
 * `{ diff }` fields) through `mirror.apply` with the channel's replayId checkpoint in the same
 * transaction, or the checkpoint alone when nothing is left to apply. Events that say CDC cannot
 * tell what changed (GAP_OVERFLOW, wildcard ids) become resync requests first. No faye here: the
 * sink is tested against PostgreSQL with decoded events (test/stream/sink.test.ts).
 */
export interface SinkDeps {
  db: Db;
  mirror: Mirror;
  /** REST reads of the org (GAP records, diff fields). */
  sf: Pick<SalesforceClient, 'readRecords'>;
  org: string;
  isAllowed(object: string): boolean;
  /** Records a resync request (the backfill worker works it). */
  requestResync(r: { object: string; reason: string; source: string; since: Date | null; label: string }): Promise<void>;
  /** How far before the event's commitTimestamp a resync starts reading. */
  resyncMarginMs: number;
  log: Logger;
  metrics?: Metrics | undefined;
}

export function createSink(d: SinkDeps) {
  return {
    /** Applies one batch of a channel; returns the checkpoint it committed. Throws when nothing was committed. */
    async apply(channel: string, items: readonly Pending[]): Promise<StreamCheckpoint & { commitTimestamp: number }> {
      const events = items.flatMap((i) => (i.event ? [i.event] : []));
      const changes = events.flatMap((e) => e.changes).filter((c) => d.isAllowed(c.object));
      const refetched = await refetchChanges(
        d.sf,
        events.flatMap((e) => e.refetch).filter((f) => d.isAllowed(f.object)),
        d.log,
      );
      for (const e of events) {
        if (!e.resync || !d.isAllowed(e.resync.object)) continue;
        d.log.error(
          { org: d.org, object: e.resync.object, reason: e.resync.reason },
          'CDC cannot tell which records changed: resynchronising the object',
        );
        await d.requestResync({
          object: e.resync.object,
          reason: e.resync.reason,
          source: checkpointSource(channel),
          since: new Date(e.header.commitTimestamp - d.resyncMarginMs),
          label: e.resync.reason === 'GAP_OVERFLOW' ? 'gap_overflow' : 'wildcard',
        });
      }
      const last = items[items.length - 1]!;
      const value = { replayId: last.replayId, commitTimestamp: last.commitTimestamp };
      const all = [...changes, ...refetched];
      if (all.length) await d.mirror.apply(d.org, all, { checkpoint: { source: checkpointSource(channel), value }, source: 'cdc' });
      else await saveStreamCheckpoint(d.db, d.org, channel, value);
      return value;
    },
  };
}
