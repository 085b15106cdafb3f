import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import { readHistorySample } from './status.repository.ts';
import type { StatusHistory } from './status-schema.ts';

/**
 * What the console's charts draw: every `intervalMs`, the ingest rate (changes applied per second,
 * from the orgs' change cursors), the largest stream lag and the outbox depth; the last hour kept
 * in memory (`GET /admin/status/history`). A restarted process starts a new hour.
 */
export interface StatusHistorySampler {
  start(): void;
  stop(): void;
  history(): StatusHistory;
  /** One sample now (tests; the timer calls it too). */
  sample(): Promise<void>;
}

export function createStatusHistory(o: { db: Db; intervalMs: number; log?: Logger | undefined }): StatusHistorySampler {
  const keep = Math.max(2, Math.ceil(3_600_000 / o.intervalMs));
  const points: StatusHistory['points'] = [];
  let last: { at: number; changes: bigint } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function sample() {
    const s = await readHistorySample(o.db);
    const at = Date.now();
    const rate = last && at > last.at ? Number(s.changes - last.changes) / ((at - last.at) / 1000) : null;
    last = { at, changes: s.changes };
    points.push({
      at: new Date(at).toISOString(),
      changesPerSecond: rate === null ? null : Math.max(0, rate),
      lagMs: s.lagMs,
      outboxDepth: s.outboxDepth,
    });
    if (points.length > keep) points.splice(0, points.length - keep);
  }
  const tick = () => {
    running ??= sample()
      .catch((e: Error) => o.log?.warn({ err: e.message }, 'status history sample failed'))
      .finally(() => {
        running = undefined;
      });
  };
  return {
    start() {
      if (timer) return;
      tick();
      timer = setInterval(tick, o.intervalMs);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
    history: () => ({ intervalSeconds: o.intervalMs / 1000, points: [...points] }),
    sample,
  };
}
