import os from 'node:os';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import type { ReplayFrom } from '../salesforce/streaming.ts';
import type { Phase } from './machine.ts';
import { saveStreamState } from './stream.repository.ts';

/**
 * What one org's stream shows: in memory (`snapshot()`, for this process), in
 * `sfmirror.stream_state` (for `/admin/status` and `sfmirror status`, from any instance) and as the
 * `sfmirror_stream_state` gauge. The subscriber tells it about state changes and committed batches;
 * it writes at most once a second unless told to (a state change is written at once).
 */
export type StreamState = Phase;

export interface StreamStatus {
  state: StreamState;
  channels: Array<{ channel: string; replayId: ReplayFrom | null; lastEventAt: string | null; lagMs: number | null }>;
  eventsPerSecond: number;
  error: string | null;
}

const HOLDER = `${os.hostname()}:${process.pid}`;

export interface StatusReporterDeps {
  db: Db;
  org: string;
  channels: readonly string[];
  log: Logger;
  metrics?: Metrics | undefined;
  now: () => number;
  /** The replayId shown for a channel with no applied batch yet (what the subscriber will replay from). */
  replayFrom(channel: string): ReplayFrom | undefined;
}

export function createStatusReporter(d: StatusReporterDeps) {
  let state: StreamState = 'stopped';
  let error: string | null = null;
  const applied = new Map<string, { replayId: ReplayFrom; commitTimestamp: number; at: number }>();
  const recent: Array<{ at: number; n: number }> = [];
  let lastPersist = 0;

  function eventsPerSecond() {
    const since = d.now() - 10_000;
    while (recent.length && recent[0]!.at < since) recent.shift();
    return recent.reduce((n, r) => n + r.n, 0) / 10;
  }

  async function persist(force = false) {
    if (!force && d.now() - lastPersist < 1000) return;
    lastPersist = d.now();
    try {
      for (const channel of d.channels) {
        const a = applied.get(channel);
        const from = d.replayFrom(channel);
        await saveStreamState(d.db, d.org, {
          channel,
          state,
          holder: HOLDER,
          replayId: a ? String(a.replayId) : from === undefined ? null : String(from),
          lastEventAt: a ? new Date(a.at) : null,
          lastCommitAt: a ? new Date(a.commitTimestamp) : null,
          lagMs: a ? a.at - a.commitTimestamp : null,
          eventsPerSecond: eventsPerSecond(),
          error,
        });
      }
    } catch (e) {
      d.log.warn({ org: d.org, err: (e as Error).message }, 'could not record the stream state');
    }
  }

  return {
    persist,
    /** A new state (or error): logged, counted and written at once. */
    changed(next: StreamState, err: string | null): Promise<void> | undefined {
      if (next === state && err === error) return undefined;
      const from = state;
      error = err;
      if (next === from) return undefined;
      state = next;
      d.log.info({ org: d.org, from, to: next, error }, 'cdc stream state');
      d.metrics?.streamState.reset();
      d.metrics?.streamState.set({ org: d.org, state: next }, 1);
      return persist(true);
    },
    /** A batch of `n` events up to `value` was committed. */
    committed(channel: string, value: { replayId: ReplayFrom; commitTimestamp: number }, commitTimestamps: readonly number[]) {
      const at = d.now();
      applied.set(channel, { ...value, at });
      recent.push({ at, n: commitTimestamps.length });
      for (const ts of commitTimestamps) d.metrics?.streamLag.observe({ org: d.org }, Math.max(0, at - ts) / 1000);
      d.metrics?.streamEvents.inc({ org: d.org, result: 'committed' }, commitTimestamps.length);
      void persist();
    },
    snapshot(): StreamStatus {
      return {
        state,
        error,
        eventsPerSecond: eventsPerSecond(),
        channels: d.channels.map((c) => {
          const a = applied.get(c);
          return {
            channel: c,
            replayId: a?.replayId ?? null,
            lastEventAt: a ? new Date(a.at).toISOString() : null,
            lagMs: a ? a.at - a.commitTimestamp : null,
          };
        }),
      };
    },
  };
}

export type StatusReporter = ReturnType<typeof createStatusReporter>;
