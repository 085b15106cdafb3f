import { backoffDelay, sleep } from '../lib/backoff.ts';
import { recordStartFailure } from './stream.repository.ts';
import { runLeaderLoop, type LockConnection } from './leader.ts';
import { createSubscriber, type SubscriberDeps, type SubscriberTuning } from './subscriber.ts';

/**
 * The CDC stream as `serve` runs it: the org's subscriber runs only while this instance holds the
 * org's leader lock (one subscriber per org across instances); a failed start (Salesforce
 * unreachable, token refused) is retried with backoff while the lock is held.
 */
export interface StreamServiceDeps extends Omit<SubscriberDeps, 'tuning' | 'now'> {
  /** Where the leader lock's dedicated connection comes from (a pg.Pool). */
  pool: { connect(): Promise<LockConnection> };
  tuning: SubscriberTuning & { leaderPollMs: number };
}

export function startStreamService(d: StreamServiceDeps) {
  const log = d.log.child({ component: 'cdc' });
  let subscriber: ReturnType<typeof createSubscriber> | undefined;
  let starting: Promise<void> | undefined;
  let abort = new AbortController();
  const leader = runLeaderLoop({
    key: `sfmirror.cdc:${d.org}`,
    pollMs: d.tuning.leaderPollMs,
    connect: async () => d.pool.connect(),
    onError: (e) => log.warn({ org: d.org, err: e.message }, 'cdc leader lock problem'),
    async onAcquired() {
      log.info({ org: d.org }, 'this instance holds the cdc lock: subscribing');
      abort = new AbortController();
      const signal = abort.signal;
      starting = (async () => {
        for (let attempt = 0; !signal.aborted; attempt++) {
          const s = createSubscriber({ ...d, log });
          try {
            await s.start();
            subscriber = s;
            return;
          } catch (e) {
            // The start failed: its error is logged below; a failure to stop what barely started adds nothing.
            await s.stop().catch(() => {});
            log.error({ org: d.org, err: (e as Error).message }, 'cdc stream could not start; retrying');
            // The subscriber's stop() recorded 'stopped': status shows the truth instead (README, "Operations": a stream that cannot start is backing off).
            await recordStartFailure(d.db, d.org, d.channels, (e as Error).message).catch((err: Error) =>
              log.warn({ org: d.org, err: err.message }, 'could not record the stream state'),
            );
            await sleep(backoffDelay(attempt, 500, 30_000), signal);
          }
        }
      })();
    },
    async onLost() {
      abort.abort();
      await starting;
      await subscriber?.stop();
      subscriber = undefined;
      log.info({ org: d.org }, 'cdc lock released: subscriber stopped');
    },
  });
  return {
    status: () => subscriber?.status(),
    isLeader: () => leader.holding(),
    stop: () => leader.stop(),
  };
}
