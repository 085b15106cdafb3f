import type { Config } from '../config/config.ts';
import { createDatabase, type DatabaseHandle } from '../db/database.ts';
import path from 'node:path';
import { embeddedClusterExists, openEmbedded, type EmbeddedServer } from '../db/embedded.ts';
import { listMigrations, migrate, pendingMigrations } from '../db/migrator.ts';
import { AppError } from '../lib/errors.ts';
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
    embedded = await openEmbedded({ dataDir: config.SFMIRROR_DATA_DIR, mode, log, avoidPort: mode === 'serve' ? config.PORT : undefined });
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

/**
 * The database of a CLI command. `existing` (a read command) refuses, naming what to do, when there
 * is no sfmirror database: no embedded cluster in SFMIRROR_DATA_DIR (the command was run from
 * another folder), or no sfmirror tables behind DATABASE_URL; it never creates one. `migrated`
 * creates the embedded cluster when needed and applies the migrations first (`out` lists them).
 */
export async function openForCommand(
  config: Config,
  log: Logger,
  need: 'existing' | 'migrated',
  io: { out?: NodeJS.WritableStream | undefined; err: NodeJS.WritableStream },
): Promise<{ handle: DatabaseHandle; close(): Promise<void> }> {
  const dataDir = path.resolve(config.SFMIRROR_DATA_DIR);
  const fresh = !config.DATABASE_URL && !embeddedClusterExists(dataDir);
  if (need === 'existing' && fresh) {
    throw new AppError(
      'CONFIG',
      `no sfmirror database in ${dataDir}: run this command in the folder where 'sfmirror serve' (npm start) runs, or set SFMIRROR_DATA_DIR to its data folder (or DATABASE_URL); 'sfmirror serve' or 'sfmirror migrate' creates one`,
    );
  }
  if (fresh) io.err.write(`sfmirror: creating a new embedded PostgreSQL in ${dataDir} (SFMIRROR_DATA_DIR)\n`);
  const database = await openDatabase(config, log, 'client');
  try {
    if (need === 'existing') {
      const pending = await pendingMigrations(database.handle.db);
      if (pending.length === listMigrations().length) {
        throw new AppError(
          'CONFIG',
          `the database ${config.DATABASE_URL ? 'at DATABASE_URL' : `in ${dataDir}`} has no sfmirror tables yet: run 'sfmirror migrate' (or start 'sfmirror serve') first`,
        );
      }
      if (pending.length) io.err.write(`sfmirror: ${pending.length} migration(s) pending: run 'sfmirror migrate'\n`);
    } else {
      const { results, error } = await migrate(database.handle.db);
      if (io.out) {
        for (const r of results) io.out.write(`${r.status} ${r.name}\n`);
        if (!results.length) io.out.write('database is up to date\n');
      }
      if (error) throw error;
    }
  } catch (e) {
    await database.close();
    throw e;
  }
  return database;
}
