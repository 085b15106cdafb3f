#!/usr/bin/env node
import { ConfigError, loadConfig, type Config } from '../config/config.ts';
import { createLogger, type Logger } from '../lib/logger.ts';
import { isAppError } from '../lib/errors.ts';
import { readStatus, type StatusContext } from '../api/status.ts';
import type { Db } from '../db/database.ts';
import { openForCommand } from './database.ts';
import { formatStatus } from './cli-status.ts';
import { CLIENT_OPTIONS, CLIENTS_HELP, clientsCommandOf, runClients } from './cli-clients.ts';
import { BACKFILL_HELP, BACKFILL_OPTIONS, backfillCommandOf, backfillDeps, runBackfill } from './cli-backfill.ts';
import { ORGS_HELP, ORGS_OPTIONS, orgsCommandOf, runOrgs } from './cli-orgs.ts';
import { createSecretBox } from '../lib/secret-box.ts';
import { serve } from './serve.ts';
import { startupSummary } from './summary.ts';
import { RESYNC_HELP, RESYNC_OPTIONS, resyncCommandOf, runResyncCommand } from './cli-resync.ts';
import { WAREHOUSE_HELP, WAREHOUSE_OPTIONS, runWarehouse, warehouseCommandOf } from './cli-warehouse.ts';
import { DB_URL_HELP, PSQL_HELP, runDbUrl, runPsql } from './cli-db.ts';
import { parseCommandLine, type CommandSpec, type Values } from './commands.ts';

/**
 * The `sfmirror` command. The only place that reads process.env and registers shutdown.
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad configuration (one line per problem).
 */
const TOP_HELP = `sfmirror: a live mirror of a Salesforce org in PostgreSQL (and BigQuery), driven by push

Usage: sfmirror <command> [options]     (sfmirror <command> --help: its options)

Commands:
  serve            run the service: ingest, read and operator APIs, health and metrics
  migrate          apply database migrations and exit
  status [--json]  what /admin/status shows: orgs, objects, rows, checkpoints, problems
  db-url           print the PostgreSQL connection string (the embedded one while serve runs)
  psql [ARGS]      open psql on sfmirror's database (arguments go to psql)
  clients          read API clients: add NAME --objects A,B [...] | list | revoke NAME
  backfill         backfill jobs: start --object X --start-date D | pause | resume | status | run
  orgs             connected orgs: list | remove ALIAS --yes | keys add|list|revoke
  resync           re-read a whole object, deletes included: --object X [--org ALIAS]
  warehouse        BigQuery: enable | disable | rebuild --object X [--org A] | retry-dead-letters | dbt-sources

Options:
  -h, --help       show help (also: sfmirror <command> --help)
  -v, --version    print the version

Configuration comes from the environment (see README.md): DATABASE_URL (unset: embedded
PostgreSQL in SFMIRROR_DATA_DIR, default ./.sfmirror), HOST, PORT, SFMIRROR_INGEST_SECRETS,
SFMIRROR_INGEST_PUBLIC_KEYS, SFMIRROR_ADMIN_TOKEN, SF_* and BIGQUERY_* variables, LOG_LEVEL.`;

/** What a command runs with: its database is open (unless the command needs none). */
interface Context {
  config: Config;
  log: Logger;
  db: Db;
  values: Values;
}

type Command<C> = CommandSpec<C> & { run(cmd: C, ctx: Context): Promise<number> };
const command = <C>(c: Command<C>) => c as unknown as Command<unknown>;
const noArguments = (name: string) => (args: string[], _v: Values, usageError: (m: string) => never) => {
  if (args.length) usageError(`'${name}' takes no arguments (got ${args.join(' ')})`);
};

const COMMANDS: Record<string, Command<unknown>> = {
  serve: command({
    help: `Usage: sfmirror serve

Runs the service in the foreground until SIGINT or SIGTERM. Applies migrations first.
Listens on HOST:PORT (default 127.0.0.1:8080). Without DATABASE_URL it starts an embedded
PostgreSQL in SFMIRROR_DATA_DIR (default ./.sfmirror) and stops it on exit.`,
    options: {},
    database: 'serve',
    parse: noArguments('serve'),
    run: async () => 0,
  }),
  migrate: command({
    help: `Usage: sfmirror migrate

Applies pending migrations (safe while other sfmirror processes start) and exits.`,
    options: {},
    database: 'migrated',
    parse: noArguments('migrate'),
    run: async () => 0, // openForCommand migrated and printed what it applied
  }),
  status: command({
    help: `Usage: sfmirror status [--json] [--org ALIAS]

Prints per org and object: rows, deleted rows, last change applied, checkpoints and type
problems. --json prints the same document as GET /admin/status; --org ALIAS shows one org.`,
    options: { json: { type: 'boolean' }, org: { type: 'string' } },
    database: 'existing',
    parse: noArguments('status'),
    async run(_cmd, { config, db, values }) {
      const only = values.org as string | undefined;
      const status = await readStatus(db, only, statusContextOf(config));
      if (only && !status.orgs.length) {
        process.stderr.write(`sfmirror: no org named ${only}\n`);
        return 1;
      }
      process.stdout.write(values.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatStatus(status)}\n`);
      return 0;
    },
  }),
  'db-url': command({
    help: DB_URL_HELP,
    options: {},
    database: 'none',
    parse: noArguments('db-url'),
    run: (_cmd, { config }) => runDbUrl(config, process.stdout, process.stderr),
  }),
  psql: command({
    help: PSQL_HELP,
    options: {},
    passThrough: true,
    database: 'none',
    parse: (args) => args,
    run: (args, { config, log }) => runPsql(config, log, args, process.stderr),
  }),
  clients: command({
    help: CLIENTS_HELP,
    options: { ...CLIENT_OPTIONS, json: { type: 'boolean' } },
    optionsOf: 'clients add',
    database: (args) => (args[0] === 'list' ? 'existing' : 'migrated'),
    parse: (args, values, usageError) => clientsCommandOf('clients', args, values, usageError)!,
    run: (cmd, { db }) => runClients(db, cmd, process.stdout, process.stderr),
  }),
  backfill: command({
    help: BACKFILL_HELP,
    options: { ...BACKFILL_OPTIONS, org: { type: 'string' }, json: { type: 'boolean' } },
    optionsOf: 'backfill start',
    database: (args) => (args[0] === 'status' ? 'existing' : 'migrated'),
    parse: (args, values, usageError) => backfillCommandOf('backfill', args, values, usageError)!,
    run: async (cmd, { config, log, db }) => runBackfill(cmd, await backfillDeps(config, log, db)),
  }),
  orgs: command({
    help: ORGS_HELP,
    options: { ...ORGS_OPTIONS, json: { type: 'boolean' } },
    database: (args) => (args[0] === 'list' || (args[0] === 'keys' && args[1] === 'list') ? 'existing' : 'migrated'),
    parse: (args, values, usageError) => orgsCommandOf('orgs', args, values, usageError)!,
    run: (cmd, { config, db }) =>
      runOrgs(
        db,
        cmd,
        config.SFMIRROR_ENCRYPTION_KEY ? createSecretBox(config.SFMIRROR_ENCRYPTION_KEY) : undefined,
        process.stdout,
        process.stderr,
        statusContextOf(config),
      ),
  }),
  resync: command({
    help: RESYNC_HELP,
    options: RESYNC_OPTIONS,
    database: 'migrated',
    parse: (args, values, usageError) => resyncCommandOf('resync', args, values, usageError)!,
    run: async (cmd, { config, log, db }) => runResyncCommand(cmd, await backfillDeps(config, log, db)),
  }),
  warehouse: command({
    help: WAREHOUSE_HELP,
    options: WAREHOUSE_OPTIONS,
    database: 'existing',
    parse: (args, values, usageError) => warehouseCommandOf('warehouse', args, values, usageError)!,
    run: (cmd, { config, log, db }) => runWarehouse(cmd, { config, db, log, out: process.stdout, err: process.stderr }),
  }),
};

/** What this process knows that status cannot read from the database (BigQuery configured, SF_* access). */
function statusContextOf(config: Config): StatusContext {
  return {
    bigqueryConfigured: Boolean(config.BIGQUERY_PROJECT),
    envApiAlias: config.salesforceConfigured ? config.SF_ORG_ALIAS : undefined,
  };
}

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
  const parsed = parseCommandLine(argv, COMMANDS, TOP_HELP, usageError);
  if ('version' in parsed) {
    const pkg = (await import('../../package.json', { with: { type: 'json' } })).default as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  if ('help' in parsed) {
    (parsed.code ? process.stderr : process.stdout).write(`${parsed.help}\n`);
    return parsed.code;
  }
  const spec = COMMANDS[parsed.name]!;
  const need = typeof spec.database === 'function' ? spec.database(parsed.args) : spec.database;
  const config = readConfig();
  if (need === 'serve') return runServe(config);
  // CLI commands log to stderr, quietly, so their output stays clean.
  const log = createLogger(config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL, process.stderr);
  if (need === 'none') return spec.run(parsed.command, { config, log, db: undefined as unknown as Db, values: parsed.values });
  const database = await openForCommand(config, log, need, {
    out: parsed.name === 'migrate' ? process.stdout : undefined,
    err: process.stderr,
  });
  try {
    return await spec.run(parsed.command, { config, log, db: database.handle.db, values: parsed.values });
  } finally {
    await database.close();
  }
}

async function runServe(config: Config): Promise<number> {
  const log = createLogger(config.LOG_LEVEL);
  const service = await serve(config, log);
  // A person at a terminal gets a summary of what is on; logs stay JSON lines for machines.
  if (process.stderr.isTTY) process.stderr.write(startupSummary(config, service.url));
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
