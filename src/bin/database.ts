import type { Config } from '../config/config.ts';
import { createDatabase, type DatabaseHandle } from '../db/database.ts';
import { openEmbedded, type EmbeddedServer } from '../db/embedded.ts';
import type { Logger } from '../lib/logger.ts';

/**
 * The database a command uses: DATABASE_URL, or the embedded PostgreSQL in SFMIRROR_DATA_DIR.
 * `serve` owns the embedded server; other commands connect to the one `serve` runs, or start one
 * for the length of the command.
 */
export async function openDatabase(
  config: Config,
  log: Logger,
  mode: 'serve' | 'client',
): Promise<{ handle: DatabaseHandle; embedded?: EmbeddedServer; close(): Promise<void> }> {
  let embedded: EmbeddedServer | undefined;
  let url = config.DATABASE_URL;
  if (!url) {
    embedded = await openEmbedded({ dataDir: config.SFMIRROR_DATA_DIR, mode, log });
    url = embedded.url;
  }
  const handle = createDatabase(url, {
    poolSize: mode === 'serve' ? config.SFMIRROR_DB_POOL_SIZE : 2,
    connectTimeoutMs: config.SFMIRROR_DB_CONNECT_TIMEOUT_MS,
    log,
  });
  return {
    handle,
    ...(embedded ? { embedded } : {}),
    async close() {
      await handle.close();
      await embedded?.stop();
    },
  };
}
