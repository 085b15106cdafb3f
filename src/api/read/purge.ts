import type { Db } from '../../db/database.ts';
import type { Clock } from '../../lib/clock.ts';
import type { Logger } from '../../lib/logger.ts';
import { markAndCutoff, orgAliases, orgTables, purgeTable } from './purge.repository.ts';

/**
 * The tombstone purge job of `serve`: deleted records stay as tombstones for `retentionDays`
 * (counted from when sfmirror applied the delete, not from its SystemModstamp), then leave the
 * mirror; the org's purge watermark rises so change cursors from before it answer 410.
 * Every run first records the org's cursor with the time, which is how "old enough" is known.
 */
export interface PurgeOptions {
  db: Db;
  clock: Clock;
  log?: Logger | undefined;
  retentionDays: number;
  /** Time between runs; the first run is at start. */
  intervalMs?: number | undefined;
}

export type PurgeReport = { org: string; purged: number; error?: string }[];

export function createTombstonePurger(opts: PurgeOptions) {
  const intervalMs = opts.intervalMs ?? 3_600_000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<PurgeReport> | undefined;

  /** One pass over every org; one org's failure is reported, not thrown (the others still run). */
  async function runOnce(): Promise<PurgeReport> {
    const now = opts.clock.now();
    const cutoffTime = new Date(now.getTime() - opts.retentionDays * 86_400_000);
    const report: PurgeReport = [];
    for (const org of await orgAliases(opts.db)) {
      try {
        const cutoff = await markAndCutoff(opts.db, org, now, cutoffTime);
        let purged = 0;
        if (cutoff > 0n) for (const table of await orgTables(opts.db, org)) purged += await purgeTable(opts.db, org, table, cutoff, now);
        if (purged) opts.log?.info({ org, purged, cutoff: String(cutoff) }, 'tombstones purged');
        report.push({ org, purged });
      } catch (e) {
        opts.log?.warn({ org, err: (e as Error).message }, 'tombstone purge failed; next run retries');
        report.push({ org, purged: 0, error: (e as Error).message });
      }
    }
    return report;
  }

  const tick = () => {
    running ??= runOnce()
      .catch((e: Error) => {
        opts.log?.warn({ err: e.message }, 'tombstone purge failed; next run retries');
        return [];
      })
      .finally(() => {
        running = undefined;
      });
  };

  return {
    runOnce,
    start() {
      if (timer) return;
      tick();
      timer = setInterval(tick, intervalMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}
