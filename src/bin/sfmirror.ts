#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config/config.ts';
import { createLogger, type Logger } from '../lib/logger.ts';
import { isAppError } from '../lib/errors.ts';
import { migrate } from '../db/migrator.ts';
import { readStatus } from '../api/status.ts';
import { openDatabase } from './database.ts';
import { formatStatus } from './cli-status.ts';
import { CLIENT_OPTIONS, CLIENTS_HELP, clientsCommandOf, runClients } from './cli-clients.ts';
import { BACKFILL_HELP, BACKFILL_OPTIONS, backfillCommandOf, backfillDeps, runBackfill } from './cli-backfill.ts';
import { ORGS_HELP, ORGS_OPTIONS, orgsCommandOf, runOrgs } from './cli-orgs.ts';
import { createSecretBox } from '../lib/secret-box.ts';
import { serve } from './serve.ts';
import { RESYNC_HELP, resyncCommandOf, runResyncCommand } from './cli-resync.ts';
import { WAREHOUSE_HELP, runWarehouse, warehouseCommandOf } from './cli-warehouse.ts';

/**
 * The `sfmirror` command. The only place that reads process.env and registers shutdown.
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad configuration (one line per problem).
 */
const HELP: Record<string, string> = {
  '': `sfmirror: a live mirror of a Salesforce org in PostgreSQL (and BigQuery), driven by push

Usage: sfmirror <command> [options]

Commands:
  serve            run the service: ingest, read and operator APIs, health and metrics
  migrate          apply database migrations and exit
  status [--json]  what /admin/status shows: orgs, objects, rows, checkpoints, problems
  clients          read API clients: add NAME --objects A,B [...] | list | revoke NAME
  backfill         backfill jobs: start --object X --start-date D | pause | resume | status | run
  orgs             connected orgs: list | remove ALIAS --yes | keys add|list|revoke
  resync           re-read a whole object, deletes included: --object X [--org ALIAS]
  warehouse        BigQuery: rebuild --object X [--org A] | retry-dead-letters | dbt-sources

Options:
  -h, --help       show help (also: sfmirror <command> --help)
  -v, --version    print the version

Configuration comes from the environment (see README.md): DATABASE_URL (unset: embedded
PostgreSQL in SFMIRROR_DATA_DIR, default ./.sfmirror), HOST, PORT, SFMIRROR_INGEST_SECRETS,
SFMIRROR_INGEST_PUBLIC_KEYS, SFMIRROR_ADMIN_TOKEN, SF_* and BIGQUERY_* variables, LOG_LEVEL.`,
  serve: `Usage: sfmirror serve

Runs the service in the foreground until SIGINT or SIGTERM. Applies migrations first.
Listens on HOST:PORT (default 127.0.0.1:8080). Without DATABASE_URL it starts an embedded
PostgreSQL in SFMIRROR_DATA_DIR (default ./.sfmirror) and stops it on exit.`,
  migrate: `Usage: sfmirror migrate

Applies pending migrations (safe while other sfmirror processes start) and exits.`,
  status: `Usage: sfmirror status [--json] [--org ALIAS]

Prints per org and object: rows, deleted rows, last change applied, checkpoints and type
problems. --json prints the same document as GET /admin/status; --org ALIAS shows one org.`,
  clients: CLIENTS_HELP,
  backfill: BACKFILL_HELP,
  orgs: ORGS_HELP,
  resync: RESYNC_HELP,
  warehouse: WAREHOUSE_HELP,
};

function usageError(message: string): never {
  process.stderr.write(`sfmirror: ${message}\nRun 'sfmirror --help' for usage.\n`);
  process.exit(2);
}

function readConfig(): Config {
  try {
    return loadConfig(process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const p of e.problems) process.stderr.write(`sfmirror: configuration: ${p}\n`);
      process.exit(2);
    }
    throw e;
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = (() => {
    try {
      return parseArgs({
        args: argv,
        allowPositionals: true,
        strict: true,
        options: {
          help: { type: 'boolean', short: 'h' },
          version: { type: 'boolean', short: 'v' },
          json: { type: 'boolean' },
          ...CLIENT_OPTIONS,
          ...BACKFILL_OPTIONS,
          ...ORGS_OPTIONS,
        },
      });
    } catch (e) {
      return usageError((e as Error).message);
    }
  })();
  const command = positionals[0] ?? '';
  if (values.version) {
    const pkg = (await import('../../package.json', { with: { type: 'json' } })).default as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  if (values.help || command === 'help' || command === '') {
    const topic = command === 'help' ? (positionals[1] ?? '') : command;
    if (!(topic in HELP)) usageError(`unknown command '${topic}'`);
    process.stdout.write(`${HELP[topic]}\n`);
    return command === '' && !values.help ? 2 : 0;
  }
  if (!(command in HELP)) usageError(`unknown command '${command}'`);
  if (
    positionals.length > 1 &&
    command !== 'clients' &&
    command !== 'backfill' &&
    command !== 'orgs' &&
    command !== 'resync' &&
    command !== 'warehouse'
  )
    usageError(`'${command}' takes no arguments (got ${positionals.slice(1).join(' ')})`);
  if (values.json && command !== 'status' && command !== 'clients' && command !== 'backfill' && command !== 'orgs')
    usageError(`--json is an option of 'status'`);
  const clients = clientsCommandOf(command, positionals.slice(1), values, usageError);
  const backfill = backfillCommandOf(command, positionals.slice(1), values, usageError);
  const orgs = orgsCommandOf(command, positionals.slice(1), values, usageError);
  const resync = resyncCommandOf(command, positionals.slice(1), values, usageError);
  const warehouse = warehouseCommandOf(command, positionals.slice(1), values, usageError);

  const config = readConfig();
  if (command === 'serve') return runServe(config);
  // CLI commands log to stderr, quietly, so their output stays clean.
  const log = createLogger(config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL, process.stderr);
  const database = await openDatabase(config, log, 'client');
  try {
    if (clients) return await runClients(database.handle.db, clients, process.stdout, process.stderr);
    if (orgs)
      return await runOrgs(
        database.handle.db,
        orgs,
        config.SFMIRROR_ENCRYPTION_KEY ? createSecretBox(config.SFMIRROR_ENCRYPTION_KEY) : undefined,
        process.stdout,
        process.stderr,
      );
    if (backfill) return await runBackfill(backfill, await backfillDeps(config, log, database.handle.db));
    if (resync) return await runResyncCommand(resync, await backfillDeps(config, log, database.handle.db));
    if (warehouse) return await runWarehouse(warehouse, { config, db: database.handle.db, log, out: process.stdout, err: process.stderr });
    if (command === 'migrate') {
      const { results, error } = await migrate(database.handle.db);
      for (const r of results) process.stdout.write(`${r.status} ${r.name}\n`);
      if (error) throw error;
      if (!results.length) process.stdout.write('database is up to date\n');
      return 0;
    }
    const only = values.org as string | undefined;
    const status = await readStatus(database.handle.db, only);
    if (only && !status.orgs.length) {
      process.stderr.write(`sfmirror: no org named ${only}\n`);
      return 1;
    }
    process.stdout.write(values.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatStatus(status)}\n`);
    return 0;
  } finally {
    await database.close();
  }
}

async function runServe(config: Config): Promise<number> {
  const log = createLogger(config.LOG_LEVEL);
  const service = await serve(config, log);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, 'shutting down: finishing in-flight batches');
      const force = setTimeout(() => {
        log.error('shutdown took too long; exiting');
        process.exit(1);
      }, config.SFMIRROR_SHUTDOWN_TIMEOUT_MS);
      force.unref();
      service.close().then(
        () => {
          log.info('stopped');
          resolve(0);
        },
        () => resolve(1),
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const msg = isAppError(e) ? e.message : e instanceof Error ? e.message : String(e);
    process.stderr.write(`sfmirror: ${msg}\n`);
    if (!isAppError(e) && e instanceof Error && process.env.LOG_LEVEL === 'debug') process.stderr.write(`${e.stack}\n`);
    process.exitCode = isAppError(e) && e.code === 'CONFIG' ? 2 : 1;
  },
);

export type { Logger };
