import type { Db } from '../db/database.ts';
import { backoffDelay, sleep } from '../lib/backoff.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import type { Mirror } from '../mirror/apply.ts';
import type { SalesforceClient } from '../salesforce/client.ts';
import { readObjectSince } from './rest-reads.ts';
import * as repo from './stream.repository.ts';

/**
 * Works the resync requests the stream records (a refused replayId, GAP_OVERFLOW, wildcard ids):
 * re-reads the object's records modified since the request's `since` through REST, deletes
 * included, and applies them through `mirror.apply` (newer wins, so the live stream may go on
 * meanwhile). The rows are the hand-over to the backfill worker (STYLE.md: the stream never
 * imports backfill); until that worker exists, this REST re-read is how they converge. A failed
 * resync stays pending with its error and is tried again with backoff: never dropped.
 */
export interface ResyncDeps {
  db: Db;
  mirror: Mirror;
  sf: SalesforceClient;
  org: string;
  log: Logger;
  metrics?: Metrics | undefined;
  pageSize: number;
  isAllowed(object: string): boolean;
  onChange(): void;
}

export function createResyncWorker(d: ResyncDeps) {
  let loop: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  async function work() {
    for (let attempt = 0; !stopped; ) {
      again = false;
      try {
        const open = await repo.openResyncs(d.db, d.org);
        for (const r of open) {
          if (stopped) return;
          if (!d.isAllowed(r.object)) { await repo.markResync(d.db, r.id, 'done', 0, 'not mirrored (SF_OBJECTS)'); continue; }
          await repo.markResync(d.db, r.id, 'running', 0);
          d.log.warn({ org: d.org, object: r.object, since: r.since, reason: r.reason }, 'resync started');
          const n = await readObjectSince(d.sf, r.object, r.since, d.pageSize, async (changes) => {
            await d.mirror.apply(d.org, changes, { source: 'cdc-resync' });
          });
          await repo.markResync(d.db, r.id, 'done', n);
          d.log.warn({ org: d.org, object: r.object, records: n }, 'resync done');
        }
        attempt = 0;
        if (!again) return;
      } catch (e) {
        d.log.error({ org: d.org, err: (e as Error).message }, 'resync failed; retrying');
        await sleep(backoffDelay(attempt++, 500, 30_000));
      }
    }
  }

  function kick() {
    if (loop) { again = true; return; }
    loop = work()
      .catch((e: Error) => d.log.error({ org: d.org, err: e.message }, 'resync worker stopped on an error'))
      .finally(() => { loop = undefined; d.onChange(); if (again && !stopped) kick(); });
    d.onChange();
  }

  return {
    kick,
    running: () => loop !== undefined,
    async request(object: string, reason: string, source: string, since: Date | null, label: string) {
      await repo.recordResync(d.db, d.org, { object, reason, source, since });
      d.metrics?.streamResyncs.inc({ org: d.org, object, reason: label });
      kick();
    },
    async stop() { stopped = true; await loop; },
  };
}
