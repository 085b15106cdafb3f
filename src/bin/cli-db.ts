import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Config } from '../config/config.ts';
import { embeddedClusterExists, openEmbedded, runningEmbeddedUrl } from '../db/embedded.ts';
import { AppError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';

/**
 * `sfmirror db-url` and `sfmirror psql`: reaching sfmirror's PostgreSQL by hand. The embedded
 * server listens on 127.0.0.1 on a port chosen at each start, as user `postgres`, database
 * `postgres`, with the password in SFMIRROR_DATA_DIR/pg-password; these commands say all of it.
 */
export const DB_URL_HELP = `Usage: sfmirror db-url

Prints the PostgreSQL connection string sfmirror uses: DATABASE_URL when set; otherwise the
embedded server's (postgres://postgres:<password>@127.0.0.1:<port>/postgres), which exists only
while 'sfmirror serve' runs (its port is chosen at each start). Use it with any client:
  psql "$(npx sfmirror db-url)"
The mirror is schema 'salesforce' (SF_ORG_ALIAS; one schema per org alias), sfmirror's own
tables are schema 'sfmirror'. Treat the mirror as read-only: sfmirror owns its tables.`;

export const PSQL_HELP = `Usage: sfmirror psql [PSQL ARGUMENTS]

Runs psql (the PostgreSQL client, which must be installed) on sfmirror's database; every argument
goes to psql, e.g. sfmirror psql -c 'select sfid, name from salesforce.account limit 5'.
With the embedded PostgreSQL and no 'serve' running, the server is started for the session.`;

const notRunning = (dataDir: string) =>
  new AppError(
    'UNAVAILABLE',
    `the embedded PostgreSQL in ${dataDir} is not running: start 'sfmirror serve' (its port is chosen at each start), or use 'sfmirror psql', which starts it for the session`,
  );

export async function runDbUrl(config: Config, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  if (config.DATABASE_URL) {
    out.write(`${config.DATABASE_URL}\n`);
    return 0;
  }
  const dataDir = path.resolve(config.SFMIRROR_DATA_DIR);
  if (!embeddedClusterExists(dataDir)) {
    err.write(`sfmirror: no sfmirror database in ${dataDir}: start 'sfmirror serve' there, or set SFMIRROR_DATA_DIR or DATABASE_URL\n`);
    return 2;
  }
  const url = runningEmbeddedUrl(dataDir);
  if (!url) throw notRunning(dataDir);
  out.write(`${url}\n`);
  return 0;
}

export async function runPsql(config: Config, log: Logger, args: string[], err: NodeJS.WritableStream): Promise<number> {
  let url = config.DATABASE_URL;
  let stop = async () => {};
  if (!url) {
    const dataDir = path.resolve(config.SFMIRROR_DATA_DIR);
    if (!embeddedClusterExists(dataDir)) {
      err.write(`sfmirror: no sfmirror database in ${dataDir}: start 'sfmirror serve' there, or set SFMIRROR_DATA_DIR or DATABASE_URL\n`);
      return 2;
    }
    const embedded = await openEmbedded({ dataDir, mode: 'client', log });
    url = embedded.url;
    stop = () => embedded.stop();
  }
  try {
    const child = spawn('psql', [url, ...args], { stdio: 'inherit' });
    // psql reads Ctrl-C itself (it cancels the running query); this process must not die of it.
    const ignore = () => {};
    process.on('SIGINT', ignore);
    try {
      return await new Promise<number>((resolve, reject) => {
        child.on('error', (e: NodeJS.ErrnoException) =>
          e.code === 'ENOENT'
            ? reject(
                new AppError(
                  'CONFIG',
                  "psql is not installed: install the PostgreSQL client (e.g. apt-get install postgresql-client), or connect any client to the URL 'sfmirror db-url' prints",
                ),
              )
            : reject(e),
        );
        child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
      });
    } finally {
      process.off('SIGINT', ignore);
    }
  } finally {
    await stop();
  }
}
