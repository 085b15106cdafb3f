import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from '../../src/lib/backoff.ts';
import { freePort } from '../../src/db/embedded.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = path.join(ROOT, 'src/bin/sfmirror.ts');

export { freePort };

/** The environment of a child sfmirror: nothing inherited that could point it elsewhere. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn', ...extra };
  // Benchmarks: `BENCH_NODE_OPTIONS='--cpu-prof --cpu-prof-dir=/tmp/prof' npm run bench -- ...` gives
  // each child sfmirror these Node flags, e.g. a V8 CPU profile written when it exits (README, "Benchmarks").
  if (process.env.BENCH_NODE_OPTIONS) env.NODE_OPTIONS = process.env.BENCH_NODE_OPTIONS;
  return env;
}

export interface ServeProcess {
  proc: ChildProcess;
  url: string;
  output(): string;
  exited: Promise<number | null>;
}

/** Starts `sfmirror serve` (or another command) as a child and waits for /readyz when serving. */
export async function startServe(
  env: Record<string, string>,
  opts: { command?: string[]; npmStart?: boolean; bin?: boolean; timeoutMs?: number; nodeFlags?: string[] } = {},
): Promise<ServeProcess> {
  const port = env.PORT ?? String(await freePort());
  // `npm start` runs in its own process group so the test can signal npm and sfmirror together.
  const proc = opts.npmStart
    ? spawn('npm', ['start'], { cwd: ROOT, detached: true, env: childEnv({ ...env, PORT: port }), stdio: ['ignore', 'pipe', 'pipe'] })
    : opts.bin // as `npx sfmirror` runs it: the file itself, through its #! line
      ? spawn(path.join(ROOT, 'bin/sfmirror.js'), opts.command ?? ['serve'], {
          cwd: ROOT,
          env: childEnv({ ...env, PORT: port }),
          stdio: ['ignore', 'pipe', 'pipe'],
        })
      : spawn(process.execPath, [...(opts.nodeFlags ?? []), CLI, ...(opts.command ?? ['serve'])], {
          cwd: ROOT,
          env: childEnv({ ...env, PORT: port }),
          stdio: ['ignore', 'pipe', 'pipe'],
        });
  let out = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  proc.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + (opts.timeoutMs ?? 60_000);
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  for (;;) {
    if (gone) throw new Error(`sfmirror exited before it was ready:\n${out}`);
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > until) {
      proc.kill('SIGKILL');
      throw new Error(`sfmirror was not ready in time:\n${out}`);
    }
    await sleep(100);
  }
  return { proc, url, output: () => out, exited };
}

/** Runs a CLI command to completion. */
export async function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => {
    stdout += d;
  });
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
  return { code, stdout, stderr };
}

/** A data folder under /dev/shm that the embedded server's user can reach (mkdtemp makes 0700). */
export function tempDataDir(prefix: string): string {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, prefix));
  fs.chmodSync(dir, 0o755);
  return dir;
}

export const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
