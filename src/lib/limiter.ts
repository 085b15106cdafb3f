import { AppError } from './errors.ts';

/**
 * A bounded gate: at most `max` tasks run at once and at most `queue` wait; beyond that callers are
 * told at once to come back later (an OVERLOADED error) instead of piling up in memory.
 */
export function createLimiter(max: number, queue: number) {
  let running = 0;
  const waiting: Array<() => void> = [];
  let idleWaiters: Array<() => void> = [];
  const release = () => {
    running--;
    const next = waiting.shift();
    if (next) {
      running++;
      next();
    } else if (running === 0) {
      for (const w of idleWaiters) w();
      idleWaiters = [];
    }
  };
  return {
    get running() {
      return running;
    },
    get waiting() {
      return waiting.length;
    },
    /** Resolves once nothing runs or waits (graceful shutdown finishes in-flight work). */
    idle(): Promise<void> {
      return running === 0 && waiting.length === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve));
    },
    async run<T>(task: () => Promise<T>): Promise<T> {
      if (running >= max) {
        if (waiting.length >= queue) throw new AppError('OVERLOADED', 'too many pushes in flight; retry shortly');
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else {
        running++;
      }
      try {
        return await task();
      } finally {
        release();
      }
    },
  };
}
