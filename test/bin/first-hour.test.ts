import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { freePort, ROOT, tempDataDir } from '../support/serve.ts';

// README's "The first hour" blocks (each after a `<!-- first-hour -->` line), run verbatim in one
// bash, as a new user copies them: start serve, push a signed change, read it back four ways.
// The blocks name 127.0.0.1:8080; to run them unchanged without taking the machine's port 8080, the
// shell runs in its own network namespace (root, `unshare -n`). Elsewhere the port is swapped.
const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/<!-- first-hour -->\n```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);

const isolated = process.getuid?.() === 0 && spawnSync('unshare', ['-n', 'true']).status === 0 && spawnSync('ip', ['-V']).status === 0;

t.test("README's first hour runs verbatim against a fresh serve", { timeout: 240_000 }, async (t) => {
  t.ok(blocks.length >= 3, 'the README has its first-hour blocks');
  const script = blocks.join('\n');
  t.match(script, /npm start &/);
  t.match(script, /SFMIRROR_INGEST_SECRETS=\$\(openssl rand -hex 24\)/);
  const dataDir = tempDataDir('sfm-first-hour-');
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const port = isolated ? 8080 : await freePort();
  const body = isolated ? script : script.replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`);
  // After the blocks: wait for serve to stop (the last block stops it), so nothing outlives the test.
  const file = path.join(dataDir, 'first-hour.sh');
  fs.writeFileSync(file, `${body}\nwait\n`);
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    SFMIRROR_DATA_DIR: path.join(dataDir, 'data'),
    ...(isolated ? {} : { PORT: String(port) }),
  };
  const proc = isolated
    ? spawn('unshare', ['-n', 'bash', '-c', 'ip link set lo up && exec bash "$0"', file], { cwd: ROOT, env, detached: true })
    : spawn('bash', [file], { cwd: ROOT, env, detached: true });
  let out = '';
  proc.stdout.on('data', (d) => {
    out += d;
  });
  proc.stderr.on('data', (d) => {
    out += d;
  });
  t.teardown(() => {
    try {
      process.kill(-proc.pid!, 'SIGKILL'); // only if it is still running: the group this test started
    } catch {
      /* already gone */
    }
  });
  const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
  t.equal(code, 0, out);
  t.match(out, /\{"applied":1,"ignored":0\}/, 'the signed push was applied');
  t.match(out, /org salesforce \(00D000000000001EAA/, 'status shows the org');
  t.match(out, /001000000000001AAA \| Acme/, 'psql shows the row');
  t.match(out, /"Id":"001000000000001AAA".*"Name":"Acme"/, 'the read API returns the record');
  t.match(out, /"orgs":\[\{"alias":"salesforce"/, 'the operator API answers with the admin token');
  t.notMatch(out, /\b401\b|Unauthorized/, 'nothing was refused');
});
