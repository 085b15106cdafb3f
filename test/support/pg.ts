import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openEmbedded, type EmbeddedServer } from '../../src/db/embedded.ts';
import { createDatabase, type DatabaseHandle } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrator.ts';
import { sleep } from '../../src/lib/backoff.ts';

/**
 * Real PostgreSQL for tests: one cluster per test file, copied from a template cluster that is
 * initdb'd once per machine (initdb costs seconds, a copy and start well under one). Settings trade
 * durability for speed: tests only, never users' data.
 */
export const FAST_SETTINGS = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' };

const shm = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
const TEMPLATE = path.join(shm, 'sfmirror-test-template-pg18');

export async function templateDir(): Promise<string> {
  const ready = path.join(TEMPLATE, 'ready');
  if (fs.existsSync(ready)) return TEMPLATE;
  const lock = `${TEMPLATE}.lock`;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      // Another test file is building it; a lock older than 2 minutes is from a killed run.
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 120_000) fs.rmSync(lock, { recursive: true, force: true });
      } catch {
        /* gone */
      }
      await sleep(200);
      if (fs.existsSync(ready)) return TEMPLATE;
    }
  }
  try {
    if (!fs.existsSync(ready)) {
      fs.rmSync(TEMPLATE, { recursive: true, force: true });
      const server = await openEmbedded({ dataDir: TEMPLATE, mode: 'serve', settings: FAST_SETTINGS });
      await server.stop();
      fs.rmSync(path.join(TEMPLATE, 'postgres.log'), { force: true });
      fs.writeFileSync(ready, '');
    }
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
  return TEMPLATE;
}

export interface TestDatabase {
  url: string;
  dataDir: string;
  server: EmbeddedServer;
  handle: DatabaseHandle;
  /** Stops the cluster (e.g. to test outages); `restart` brings it back on the same port. */
  stop(): Promise<void>;
  restart(): Promise<void>;
}

type Teardown = { teardown(fn: () => unknown): void };

/** Folders of test clusters whose test process died (a killed run) are removed: /dev/shm is memory. */
function sweepDeadClusters() {
  for (const name of fs.readdirSync(shm)) {
    if (!name.startsWith('sfmirror-test-') || name === path.basename(TEMPLATE)) continue;
    const dir = path.join(shm, name);
    try {
      const owner = JSON.parse(fs.readFileSync(path.join(dir, 'owner.json'), 'utf8')) as { pid: number; postmasterPid: number };
      if (!alive(owner.pid) && !alive(owner.postmasterPid)) fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // No owner file: a cluster being created right now, or one that never started; old ones go.
      try {
        if (Date.now() - fs.statSync(dir).mtimeMs > 3_600_000) fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        /* gone */
      }
    }
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

/** A fresh migrated cluster for one test file; stopped in teardown. */
export async function startTestDatabase(t: Teardown, opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  sweepDeadClusters();
  const dataDir = fs.mkdtempSync(path.join(shm, 'sfmirror-test-'));
  fs.chmodSync(dataDir, 0o755);
  let server = await openEmbedded({ dataDir, mode: 'serve', settings: FAST_SETTINGS, templateDir: await templateDir() });
  const handle = createDatabase(server.url, { poolSize: 10, connectTimeoutMs: 2000 });
  if (opts.migrate !== false) {
    const { error } = await migrate(handle.db);
    if (error) throw error;
  }
  const td: TestDatabase = {
    url: server.url,
    dataDir,
    get server() {
      return server;
    },
    handle,
    stop: () => server.stop(),
    async restart() {
      server = await openEmbedded({ dataDir, mode: 'serve', settings: FAST_SETTINGS, port: server.port });
    },
  } as TestDatabase;
  t.teardown(async () => {
    await handle.close().catch(() => {});
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return td;
}
