import { sleep } from '../lib/backoff.ts';

/**
 * One subscriber per org across sfmirror instances sharing a database: a session-level Postgres
 * advisory lock held on a dedicated connection. The holder's session ends when its process dies
 * (SIGKILL included: the server sees the socket close), which frees the lock; a standby polls and
 * takes over within `pollMs`. While holding, the connection is checked every `pollMs`: a lost
 * connection means a lost lock, and `onLost` stops the subscriber before anyone else can start.
 */
export interface LockConnection {
  query(sql: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  release(destroy?: boolean): void;
  on(event: 'error', fn: (e: Error) => void): unknown;
}

export interface LeaderOptions {
  connect(): Promise<LockConnection>;
  key: string;
  pollMs: number;
  onAcquired(): Promise<void>;
  onLost(): Promise<void>;
  onError?(e: Error): void;
}

export function runLeaderLoop(o: LeaderOptions): { stop(): Promise<void>; holding(): boolean } {
  const abort = new AbortController();
  let held = false;
  const loop = (async () => {
    while (!abort.signal.aborted) {
      let conn: LockConnection | undefined;
      let broken = false;
      try {
        conn = await o.connect();
        conn.on('error', () => {
          broken = true;
        });
        while (!abort.signal.aborted && !broken) {
          const r = await conn.query('select pg_try_advisory_lock(hashtextextended($1, 0)) as ok', [o.key]);
          if (r.rows[0]?.ok === true) break;
          await sleep(o.pollMs, abort.signal);
        }
        if (abort.signal.aborted || broken) continue;
        held = true;
        await o.onAcquired();
        while (!abort.signal.aborted) {
          await sleep(o.pollMs, abort.signal);
          if (abort.signal.aborted) break;
          if (broken) throw new Error('lock connection lost');
          await conn.query('select 1');
        }
      } catch (e) {
        o.onError?.(e as Error);
        broken = true;
      } finally {
        if (held) {
          held = false;
          await o.onLost().catch((e: Error) => o.onError?.(e));
        }
        if (conn) {
          if (!broken)
            await conn.query('select pg_advisory_unlock(hashtextextended($1, 0))', [o.key]).catch(() => {
              broken = true;
            });
          conn.release(broken);
        }
      }
      if (!abort.signal.aborted) await sleep(o.pollMs, abort.signal);
    }
  })();
  return {
    holding: () => held,
    async stop() {
      abort.abort();
      await loop;
    },
  };
}
