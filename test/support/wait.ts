import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The one way tests wait for something that happens on its own clock: `what` names it (the
 * failure says what never came), `read` is polled until its value holds, and that value is
 * returned. A value holds when it is truthy, or when `opts.until(value)` says so.
 * Throws after `opts.timeoutMs` (default 45 s; the file's tap timeout is longer).
 */
export async function waitFor<T>(
  what: string,
  read: () => T | Promise<T>,
  opts: { timeoutMs?: number; until?: (value: T) => boolean; intervalMs?: number } = {},
): Promise<T> {
  const end = Date.now() + (opts.timeoutMs ?? 45_000);
  const holds = opts.until ?? ((v: T) => !!v);
  for (;;) {
    const v = await read();
    if (holds(v)) return v;
    if (Date.now() > end) {
      const last = typeof v === 'boolean' || v === undefined ? '' : ` (last: ${JSON.stringify(v)?.slice(0, 300)})`;
      throw new Error(`timed out waiting for: ${what}${last}`);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}
