import os from 'node:os';
import type { Db } from '../db/database.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { sleep } from '../lib/backoff.ts';
import type { Mirror } from '../mirror/apply.ts';
import { claimJob } from './jobs.repository.ts';
import { claimResync } from '../mirror/resync-requests.repository.ts';
import { runResync } from './resync.ts';
import { NO_ACCESS, runJob, type BackfillSource } from './runner.ts';
import type { BulkTuning } from './bulk-window.ts';
import { dayOf } from './windows.ts';

/**
 * The backfill worker inside `serve`: every poll it claims due jobs one at a time. A job that never
 * ran is worked at once (the seed from start_date); afterwards once a day, after the reconcile time
 * (UTC), from its last_date. Jobs of orgs without API access fail with a clear reason. It also works
 * the resync requests the stream records (the stream never imports backfill: they meet in a table).
 */
export interface WorkerOptions {
  db: Db;
  mirror: Mirror;
  /** The Salesforce reader of an org, or undefined when sfmirror has no API access to it. */
  sourceFor: (org: string) => BackfillSource | undefined;
  /** Orgs whose resync requests this worker works (those it has API access to; a function when that changes). */
  resyncOrgs: readonly string[] | (() => readonly string[]);
  clock: Clock;
  log: Logger;
  pollMs: number;
  /** Minutes after 00:00 UTC when the daily reconciliation may start. */
  reconcileAtMinutes: number;
  pageSize: number;
  leaseMs: number;
  /** Bulk API 2.0 for big days (undefined: REST only). */
  bulk?: BulkTuning | undefined;
  /** Share of the org's daily API allowance backfills may use; undefined: not watched. */
  apiBudgetShare?: number | undefined;
  /** How long a job paused at the API limit waits before it is looked at again. */
  pausedRecheckMs?: number | undefined;
}

export function startBackfillWorker(opts: WorkerOptions) {
  const owner = `${os.hostname()}:${process.pid}:serve`;
  const stop = new AbortController();
  // Resync requests the stream recorded: each worked once per poll at most (a failing one waits).
  async function workResyncs(owner: string, signal: AbortSignal) {
    for (const org of typeof opts.resyncOrgs === 'function' ? opts.resyncOrgs() : opts.resyncOrgs) {
      const source = opts.sourceFor(org);
      if (!source) continue;
      for (let i = 0; i < 20 && !signal.aborted; i++) {
        const r = await claimResync(opts.db, owner, opts.leaseMs, org);
        if (!r) break;
        const outcome = await runResync(
          {
            db: opts.db,
            mirror: opts.mirror,
            source,
            owner,
            leaseMs: opts.leaseMs,
            pageSize: opts.pageSize,
            bulk: opts.bulk,
            apiBudgetShare: opts.apiBudgetShare,
            log: opts.log,
          },
          r,
        );
        if (outcome.state !== 'done') break;
      }
    }
  }

  const loop = (async () => {
    while (!stop.signal.aborted) {
      try {
        const now = opts.clock.now();
        const minutes = now.getUTCHours() * 60 + now.getUTCMinutes();
        for (;;) {
          if (stop.signal.aborted) break;
          const job = await claimJob(opts.db, owner, dayOf(now), opts.leaseMs, {
            neverRunOnly: minutes < opts.reconcileAtMinutes,
            ...(opts.pausedRecheckMs === undefined ? {} : { pausedRecheckMs: opts.pausedRecheckMs }),
          });
          if (!job) break;
          opts.log.info({ job: job.id, org: job.org, object: job.object, from: job.lastDate }, 'backfill run');
          await runJob(
            {
              db: opts.db,
              mirror: opts.mirror,
              source: opts.sourceFor(job.org) ?? NO_ACCESS,
              clock: opts.clock,
              owner,
              log: opts.log,
              leaseMs: opts.leaseMs,
              pageSize: opts.pageSize,
              bulk: opts.bulk,
              apiBudgetShare: opts.apiBudgetShare,
            },
            job,
          );
        }
        await workResyncs(owner, stop.signal);
      } catch (e) {
        opts.log.warn({ err: (e as Error).message }, 'backfill worker: poll failed; trying again');
      }
      await sleep(opts.pollMs, stop.signal);
    }
  })();
  return {
    /** Stops claiming; a job being worked finishes its current page and keeps its lease until expiry. */
    async stop() {
      stop.abort();
      await loop;
    },
  };
}
