import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { sleep } from '../../src/lib/backoff.ts';
import { ADMIN_TOKEN, SECRET, hmacHeaders, pushBody, rec } from '../support/app.ts';
import { alive, freePort, runCli, startServe, tempDataDir } from '../support/serve.ts';
import { waitFor } from '../support/wait.ts';

// `serve` with the embedded PostgreSQL: a fresh folder, a CLI command beside a running serve,
// and a SIGKILLed serve that must not strand its database server.
const T0 = Date.UTC(2024, 2, 10, 12);
const owner = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'owner.json'), 'utf8')) as { pid: number; postmasterPid: number };

async function push(url: string, n: number, name: string) {
  const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(n, T0 + n, { Name: name }) }]);
  return fetch(`${url}/ingest/apex`, { method: 'POST', body, headers: hmacHeaders(body) });
}

t.test('npm start on a fresh folder serves, and SIGTERM stops it and its database', { timeout: 180_000 }, async (t) => {
  const dataDir = tempDataDir('sfmirror-fresh-');
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const srv = await startServe(
    { SFMIRROR_DATA_DIR: dataDir, SFMIRROR_INGEST_SECRETS: SECRET, SFMIRROR_ADMIN_TOKEN: ADMIN_TOKEN },
    { npmStart: true, timeoutMs: 90_000 },
  );
  const { url, proc, exited } = srv;
  t.equal((await push(url, 1, 'fresh')).status, 200);
  const { postmasterPid } = owner(dataDir);
  t.ok(alive(postmasterPid), 'embedded PostgreSQL runs');
  t.ok(
    fs
      .readFileSync(`/proc/${owner(dataDir).pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a) => ['--max-semi-space-size=4', '--max-old-space-size=512', '--initial-old-space-size=128'].includes(a)).length === 3,
    'with the memory flags',
  );

  // A CLI command while serve runs connects to the running server instead of starting another.
  const st = await runCli(['status', '--json'], { SFMIRROR_DATA_DIR: dataDir });
  t.equal(st.code, 0, st.stderr);
  const status = JSON.parse(st.stdout);
  t.equal(status.orgs[0].objects[0].rows, 1, 'status sees the pushed record');
  t.equal(owner(dataDir).postmasterPid, postmasterPid, 'same server');
  const plain = await runCli(['status'], { SFMIRROR_DATA_DIR: dataDir });
  t.match(plain.stdout, /org salesforce \(00D000000000001EAA, env\): change cursor 1/);
  t.match(plain.stdout, /Account\s+1\s+0\s+\d{4}-/, 'one line per object: rows, deleted, last change');

  // Signal sfmirror itself (npm's child); npm then exits with sfmirror's code.
  process.kill(owner(dataDir).pid, 'SIGTERM');
  t.equal(await exited, 0, 'exit code 0 after SIGTERM');
  t.notOk(alive(proc.pid!), 'npm exited too');
  await waitFor('embedded PostgreSQL stopped with serve', () => !alive(postmasterPid), { timeoutMs: 10_000 });
});

t.test('a SIGKILLed serve does not strand its database; the next start reclaims a leftover one', { timeout: 180_000 }, async (t) => {
  const dataDir = tempDataDir('sfmirror-kill-');
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const env = { SFMIRROR_DATA_DIR: dataDir, SFMIRROR_INGEST_SECRETS: SECRET };
  const s1 = await startServe(env, { bin: true });
  t.ok(
    fs
      .readFileSync(`/proc/${s1.proc.pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a) => ['--max-semi-space-size=4', '--max-old-space-size=512', '--initial-old-space-size=128'].includes(a)).length === 3,
    'started as `npx sfmirror serve` starts it, serve runs with the memory flags',
  );
  t.equal((await push(s1.url, 1, 'before kill')).status, 200);
  const pm1 = owner(dataDir).postmasterPid;
  s1.proc.kill('SIGKILL');
  await s1.exited;
  await waitFor('the watcher stopped PostgreSQL after serve was killed', () => !alive(pm1), { timeoutMs: 10_000 });

  const s2 = await startServe(env);
  const st = await runCli(['status', '--json'], { SFMIRROR_DATA_DIR: dataDir });
  t.equal(JSON.parse(st.stdout).orgs[0].objects[0].rows, 1, 'data survived');
  // Now strand a server on purpose: kill the watcher first, then serve.
  const pm2 = owner(dataDir).postmasterPid;
  const watchers = fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(String(pm2)) && Number(p) !== pm2;
      } catch {
        return false;
      }
    });
  t.equal(watchers.length, 1, 'one watcher process');
  process.kill(Number(watchers[0]), 'SIGKILL');
  s2.proc.kill('SIGKILL');
  await s2.exited;
  await sleep(1000);
  t.ok(alive(pm2), 'a stranded PostgreSQL is left running');
  const s3 = await startServe(env);
  t.notOk(alive(pm2), 'the next serve reclaimed it');
  t.equal((await push(s3.url, 2, 'after reclaim')).status, 200);
  const pm3 = owner(dataDir).postmasterPid;
  s3.proc.kill('SIGTERM');
  t.equal(await s3.exited, 0);
  await waitFor('PostgreSQL stopped with the reclaiming serve', () => !alive(pm3), { timeoutMs: 10_000 });
});

t.test('a second serve on the same data folder is refused', { timeout: 120_000 }, async (t) => {
  const dataDir = tempDataDir('sfmirror-two-');
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const s1 = await startServe({ SFMIRROR_DATA_DIR: dataDir });
  const second = await runCli(['serve'], { SFMIRROR_DATA_DIR: dataDir, PORT: String(await freePort()) });
  t.equal(second.code, 1);
  t.match(second.stderr, /another sfmirror process .* runs the embedded PostgreSQL/);
  s1.proc.kill('SIGTERM');
  t.equal(await s1.exited, 0);
});
