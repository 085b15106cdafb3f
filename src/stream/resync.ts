import { hostname } from 'node:os';
import type { Db } from '../db/database.ts';
import { claimResync, finishResync, renewResync } from '../mirror/resync-requests.repository.ts';
import { backoffDelay, sleep } from '../lib/backoff.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import type { Mirror } from '../mirror/apply.ts';
import type { SalesforceClient } from '../salesforce/client.ts';
import { readObjectSince } from './rest-reads.ts';
import * as repo from './stream.repository.ts';

/**
 * Resync requests of the stream (a refused replayId, GAP_OVERFLOW, wildcard ids): recorded as rows
 * in `sfmirror.resync_requests`. In `serve` the backfill worker picks them up (STYLE.md: the stream
 * never imports backfill; they meet in that table) and this worker only records them; with
 * `workRequests` (the stream running on its own) it re-reads the object's records modified since
 * the request's `since` through REST itself, deletes included. Requests are claimed with a lease, so
 * two workers never work one; a failed one goes back to pending with its error: never dropped.
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
  /** Work the requests here (REST re-read) rather than leave them to the backfill worker. */
  workRequests: boolean;
}

const LEASE_MS = 120_000;

export function createResyncWorker(d: ResyncDeps) {
  const owner = `${hostname()}:${process.pid}:stream`;
  let loop: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  async function work() {
    for (let attempt = 0; !stopped; ) {
      again = false;
      try {
        for (let r = await claimResync(d.db, owner, LEASE_MS, d.org); r; r = await claimResync(d.db, owner, LEASE_MS, d.org)) {
          if (stopped) {
            await finishResync(d.db, r.id, owner, 'pending', 0);
            return;
          }
          if (!d.isAllowed(r.object)) {
            await finishResync(d.db, r.id, owner, 'done', 0, 'not mirrored (SF_OBJECTS)');
            continue;
          }
          d.log.warn({ org: d.org, object: r.object, since: r.since, reason: r.reason }, 'resync started');
          const id = r.id;
          let n = 0;
          try {
            n = await readObjectSince(d.sf, r.object, r.since, d.pageSize, async (changes) => {
              await d.mirror.apply(d.org, changes, { source: 'cdc-resync' });
              await renewResync(d.db, id, owner, LEASE_MS, (n += changes.length));
            });
          } catch (e) {
            await finishResync(d.db, id, owner, 'pending', n, (e as Error).message);
            throw e;
          }
          await finishResync(d.db, id, owner, 'done', n);
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
    // Handed over to the backfill worker (serve): the stream only records requests.
    if (!d.workRequests) return;
    if (loop) {
      again = true;
      return;
    }
    loop = work()
      .catch((e: Error) => d.log.error({ org: d.org, err: e.message }, 'resync worker stopped on an error'))
      .finally(() => {
        loop = undefined;
        d.onChange();
        if (again && !stopped) kick();
      });
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
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
