import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import pg from 'pg';
import { startServe, tempDataDir } from '../support/serve.ts';
import { SECRET } from '../support/app.ts';

// What the embedded PostgreSQL can see of sfmirror's secrets, and what sfmirror's own connection may
// do with the server. Before the fix, `select pg_read_binary_file('/proc/<postmaster>/environ')`
// over sfmirror's connection returned the admin token, ingest secrets and the encryption key.
const dataDir = tempDataDir('sfmirror-sec-pg-');
const secrets = {
  SFMIRROR_ADMIN_TOKEN: 'admin-secret-token-abcdef0123456789',
  SFMIRROR_INGEST_SECRETS: SECRET,
  SFMIRROR_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
  SF_CLIENT_SECRET: 'client-secret-9876543210',
};
const srv = await startServe({ SFMIRROR_DATA_DIR: dataDir, ...secrets });
t.teardown(async () => {
  srv.proc.kill('SIGTERM');
  await srv.exited;
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const owner = JSON.parse(fs.readFileSync(path.join(dataDir, 'owner.json'), 'utf8')) as { postmasterPid: number; port: number };
const environOf = (pid: number) => fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);

t.test('the postmaster and the watcher start with a minimal environment', async (t) => {
  const env = environOf(owner.postmasterPid);
  for (const [name, value] of Object.entries(secrets)) {
    t.notOk(
      env.some((e) => e.startsWith(`${name}=`) || e.includes(value)),
      `postmaster environment has no ${name}`,
    );
  }
  // tap's process-info hook adds its own variables (and NODE_OPTIONS) to every child it sees spawned.
  const names = env.map((e) => e.split('=')[0]!).filter((n) => !n.startsWith('_TAPJS_') && n !== 'NODE_OPTIONS');
  t.same(names.sort(), ['LANG', 'LC_ALL', 'PATH'], 'only PATH and the locale');
  // The watcher (sentinel) is the node process whose arguments name the postmaster's pid.
  const watcher = fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .find((d) => {
      try {
        const args = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
        return args.includes('-e') && args.includes(String(owner.postmasterPid)) && args.includes(String(srv.proc.pid));
      } catch {
        return false;
      }
    });
  t.ok(watcher, 'found the watcher process');
  const wenv = environOf(Number(watcher));
  for (const name of Object.keys(secrets))
    t.notOk(
      wenv.some((e) => e.startsWith(`${name}=`)),
      `watcher environment has no ${name}`,
    );
});

t.test('sfmirror connects as a role that is no superuser and cannot read server files', async (t) => {
  const password = fs.readFileSync(path.join(dataDir, 'sfmirror-password'), 'utf8').trim();
  const c = new pg.Client({ host: '127.0.0.1', port: owner.port, user: 'sfmirror', password, database: 'postgres' });
  await c.connect();
  t.teardown(() => c.end());
  const role = await c.query<{ rolsuper: boolean; rolcreaterole: boolean; rolcreatedb: boolean }>(
    'select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user',
  );
  t.same(role.rows[0], { rolsuper: false, rolcreaterole: false, rolcreatedb: false });
  const used = await c.query<{ usename: string }>(
    "select distinct usename from pg_stat_activity where application_name = 'sfmirror' and datname = 'postgres'",
  );
  t.same(
    used.rows.map((r) => r.usename),
    ['sfmirror'],
    'the service connects as sfmirror',
  );
  await t.rejects(
    c.query(`select pg_read_binary_file('/proc/${owner.postmasterPid}/environ')`),
    /permission denied/,
    'no file reads through the database',
  );
  const owners = await c.query<{ nspname: string; owner: string }>(
    "select nspname, pg_get_userbyid(nspowner) as owner from pg_namespace where nspname in ('sfmirror', 'salesforce')",
  );
  t.ok(owners.rows.length >= 1, 'sfmirror schema exists');
  t.ok(
    owners.rows.every((r) => r.owner === 'sfmirror'),
    `schemas owned by the service role: ${JSON.stringify(owners.rows)}`,
  );
});

t.test('the data folder is private and the server log is readable by its owner only', async (t) => {
  t.equal(fs.statSync(dataDir).mode & 0o777, 0o700, 'data folder 0700');
  t.equal(fs.statSync(path.join(dataDir, 'postgres.log')).mode & 0o777, 0o600, 'postgres.log 0600');
  t.equal(fs.statSync(path.join(dataDir, 'sfmirror-password')).mode & 0o777, 0o600, 'service password 0600');
});
