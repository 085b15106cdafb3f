import type { Clock } from '../../lib/clock.ts';

/**
 * Per-key token buckets, in memory (one process; several `serve` processes each allow the rate).
 * `rate` tokens per second refill up to `burst`; a request takes one. Pure apart from the clock
 * passed in, so tests drive time.
 */
export interface RateLimiter {
  /** Takes a token for `key`: ok, or the seconds to wait before one is available. */
  take(key: string): { ok: true } | { ok: false; retryAfterSeconds: number };
}

/** Buckets kept before idle (full) ones are dropped, so many end users cannot grow memory unbounded. */
const MAX_KEYS = 10_000;

export function createRateLimiter(opts: { rate: number; burst: number; clock: Clock }): RateLimiter {
  const { rate, clock } = opts;
  const burst = Math.max(1, opts.burst);
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refill = (b: { tokens: number; at: number }, now: number) => {
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
  };
  return {
    take(key) {
      if (rate <= 0) return { ok: true };
      const now = clock.now().getTime();
      let b = buckets.get(key);
      if (!b) {
        if (buckets.size >= MAX_KEYS)
          for (const [k, x] of buckets) {
            refill(x, now);
            if (x.tokens >= burst) buckets.delete(k);
          }
        b = { tokens: burst, at: now };
        buckets.set(key, b);
      }
      refill(b, now);
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return { ok: true };
      }
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / rate)) };
    },
  };
}
