import type { CdcEvent, ReplayId } from '../changes/cdc-event.ts';
import { backoffDelay, sleep } from '../lib/backoff.ts';
import type { Logger } from '../lib/logger.ts';

/**
 * Groups CDC events into batches of whole transactions. The header has no end-of-transaction
 * marker, so a transaction is complete when an event with another transactionKey arrives on its
 * channel, or after `idleMs` without events. Complete transactions queue up while a batch is being
 * applied and go together into the next one (group commit), never split, at most about `maxBatch`
 * events. A batch that cannot be committed is retried with backoff until it is (its replayId is
 * only checkpointed with it); once stopping, it is left for the replay on the next start.
 */
export type Pending = { channel: string; replayId: ReplayId; commitTimestamp: number; key: string; event: CdcEvent | undefined };

export interface BatcherOptions {
  maxBatch: number;
  idleMs: number;
  apply(channel: string, items: readonly Pending[]): Promise<void>;
  isStopped(): boolean;
  log: Logger;
}

export function createBatcher(o: BatcherOptions) {
  type Channel = { current: Pending[]; ready: Pending[]; timer: NodeJS.Timeout | undefined };
  const channels = new Map<string, Channel>();
  let flushing: Promise<void> | undefined;
  let retryListener: (e: unknown, attempt: number) => void = () => {};

  const chan = (name: string) => channels.get(name) ?? channels.set(name, { current: [], ready: [], timer: undefined }).get(name)!;
  const close = (c: Channel) => {
    clearTimeout(c.timer);
    c.timer = undefined;
    c.ready.push(...c.current.splice(0));
  };

  function add(item: Pending) {
    const c = chan(item.channel);
    if (c.current.length && c.current[c.current.length - 1]!.key !== item.key) close(c);
    c.current.push(item);
    clearTimeout(c.timer);
    c.timer = setTimeout(() => {
      close(c);
      kick();
    }, o.idleMs);
    if (c.ready.length) kick();
  }

  function take(c: Channel): Pending[] {
    let n = 0;
    while (n < c.ready.length && (n < o.maxBatch || c.ready[n]!.key === c.ready[n - 1]!.key)) n++;
    return c.ready.splice(0, n);
  }

  function kick() {
    flushing ??= (async () => {
      for (;;) {
        const next = [...channels].find(([, c]) => c.ready.length);
        if (!next) return;
        const [name, c] = next;
        const batch = take(c);
        for (let attempt = 0; ; attempt++) {
          try {
            await o.apply(name, batch);
            break;
          } catch (e) {
            if (o.isStopped()) {
              o.log.warn(
                { channel: name, events: batch.length },
                'stopping: an uncommitted cdc batch is left to the replay on the next start',
              );
              c.ready.length = 0;
              break;
            }
            retryListener(e, attempt + 1);
            await sleep(backoffDelay(attempt, 200, 10_000));
          }
        }
      }
    })().finally(() => {
      flushing = undefined;
    });
  }

  return {
    add,
    onRetry(fn: (e: unknown, attempt: number) => void) {
      retryListener = fn;
    },
    /** Applies everything received, the open transactions included; resolves when done. */
    async drain() {
      for (const c of channels.values()) close(c);
      kick();
      while (flushing) await flushing;
    },
    /** Events received and not yet committed. */
    backlog: () => [...channels.values()].reduce((n, c) => n + c.ready.length + c.current.length, 0),
  };
}
