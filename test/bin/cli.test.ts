import t from 'tap';
import { spawnSync } from 'node:child_process';
import { ROOT, runCli } from '../support/serve.ts';

t.test('bad configuration exits 2 with one line per problem', async (t) => {
  const r = await runCli(['serve'], {
    PORT: 'abc',
    SFMIRROR_ENCRYPTION_KEY: 'c2hvcnQ=',
    SF_ORG_ALIAS: 'pg_evil',
    SFMIRROR_INGEST_SECRETS: 'short',
  });
  t.equal(r.code, 2);
  const lines = r.stderr.trim().split('\n');
  t.equal(lines.length, 4, r.stderr);
  t.match(r.stderr, /PORT must be a whole number/);
  t.match(r.stderr, /SFMIRROR_ENCRYPTION_KEY must be 32 bytes/);
  t.match(r.stderr, /SF_ORG_ALIAS "pg_evil" is not a usable alias/);
  t.match(r.stderr, /SFMIRROR_INGEST_SECRETS each secret must be at least 16/);
  const pk = await runCli(['serve'], { SFMIRROR_INGEST_PUBLIC_KEYS: '/nonexistent/key.pem' });
  t.equal(pk.code, 2);
  t.match(pk.stderr, /SFMIRROR_INGEST_PUBLIC_KEYS cannot read "\/nonexistent\/key.pem": ENOENT/);
});

t.test('usage: --help, command help, unknown command, bad option', async (t) => {
  const help = await runCli(['--help'], {});
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: sfmirror <command>/);
  t.match(help.stdout, /serve/);
  const sub = await runCli(['status', '--help'], {});
  t.equal(sub.code, 0);
  t.match(sub.stdout, /--json/);
  const unknown = await runCli(['frobnicate'], {});
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command 'frobnicate'/);
  const badOpt = await runCli(['status', '--nope'], {});
  t.equal(badOpt.code, 2);
  t.match(badOpt.stderr, /^sfmirror: unknown option --nope for 'status' \(see 'sfmirror status --help'\)/);
  const noValue = await runCli(['status', '--org'], {});
  t.equal(noValue.code, 2);
  t.match(noValue.stderr, /--org needs a value/);
  const other = await runCli(['migrate', '--json'], {});
  t.equal(other.code, 2);
  t.match(other.stderr, /--json is an option of 'status'.*not of 'migrate'/);
  const backfillHelp = await runCli(['backfill', '--help'], {});
  t.equal(backfillHelp.code, 0);
  t.match(backfillHelp.stdout, /--start-date/);
  t.notMatch(backfillHelp.stdout, /--jwt-issuer/, "each command's help has its own options");
  const version = await runCli(['--version'], {});
  t.match(version.stdout, /^\d+\.\d+\.\d+/);
});

t.test(
  'an embedded data folder the postgres user cannot reach is named, with the variable to set',
  { skip: process.getuid?.() !== 0 ? 'only as root (the server then runs as user postgres)' : false },
  async (t) => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const privateParent = fs.mkdtempSync(path.join(os.tmpdir(), 'sfmirror-private-')); // mode 0700, owned by root
    t.teardown(() => fs.rmSync(privateParent, { recursive: true, force: true }));
    const r = await runCli(['migrate'], { SFMIRROR_DATA_DIR: path.join(privateParent, 'data') });
    t.equal(r.code, 2, r.stderr);
    t.match(r.stderr, /cannot reach .*sfmirror-private-.*set SFMIRROR_DATA_DIR/);
  },
);

t.test('orgs: usage problems exit 2 before touching a database', async (t) => {
  for (const [args, message] of [
    [['orgs'], /orgs: give list, remove or keys \(got nothing\)/],
    [['orgs', 'remove'], /'orgs remove' takes one ALIAS/],
    [['orgs', 'remove', 'Bad-Alias', '--yes'], /"Bad-Alias" is not an org alias/],
    [['orgs', 'list', '--yes'], /--yes is not an option of 'orgs list'/],
    [['orgs', 'keys', 'revoke', 'beta'], /takes ALIAS and the KEY_ID/],
    [['orgs', 'keys', 'add'], /give the org's ALIAS/],
    [['status', '--yes'], /--yes is an option of 'orgs'/],
  ] as const) {
    const r = await runCli([...args], { DATABASE_URL: 'postgres://127.0.0.1:1/none' });
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, message);
  }
  const help = await runCli(['orgs', '--help'], {});
  t.equal(help.code, 0);
  t.match(help.stdout, /sfmirror orgs keys add ALIAS/);
  const keys = await runCli(['serve'], { SFMIRROR_ENCRYPTION_KEY: `${Buffer.alloc(32, 1).toString('base64')},c2hvcnQ=` });
  t.equal(keys.code, 2);
  t.match(keys.stderr, /SFMIRROR_ENCRYPTION_KEY must be 32 bytes in base64 \(key 2 has 5 bytes\)/);
});

t.test('a bad --start-date names the parameter and exits 2 (not "Invalid time value")', async (t) => {
  for (const d of ['2024-13-45', '2024-02-30', 'yesterday']) {
    const r = await runCli(['backfill', 'start', '--object', 'Account', '--start-date', d], {
      DATABASE_URL: 'postgres://127.0.0.1:1/none',
    });
    t.equal(r.code, 2, d);
    t.match(r.stderr, new RegExp(`--start-date must be a date YYYY-MM-DD \\(got ${d}\\)`));
  }
});

t.test('read commands on a folder without sfmirror data say what to do and create nothing', async (t) => {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { tempDataDir } = await import('../support/serve.ts');
  const dir = tempDataDir('sfm-nodata-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dataDir = path.join(dir, '.sfmirror');
  for (const args of [['status'], ['orgs', 'list'], ['clients', 'list'], ['backfill', 'status'], ['warehouse', 'retry-dead-letters']]) {
    const r = await runCli(args, { SFMIRROR_DATA_DIR: dataDir });
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, /no sfmirror database in .*sfm-nodata-.*\.sfmirror: run this command in the folder where 'sfmirror serve'/);
    t.notMatch(r.stderr, /relation .* does not exist/);
  }
  t.notOk(fs.existsSync(path.join(dataDir, 'pg')), 'no cluster was created');
  const url = await runCli(['db-url'], { SFMIRROR_DATA_DIR: dataDir });
  t.equal(url.code, 2);
  t.match(url.stderr, /no sfmirror database in/);
});

const olderNode = ['/usr/bin/node', '/usr/local/bin/node'].find((n) => {
  const v = spawnSync(n, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  return v.status === 0 && Number(v.stdout.split('.')[0]) < 24;
});

t.test(
  'bin/sfmirror.js under an older Node says it needs Node 24 and npx, without a stack trace',
  { skip: olderNode ? false : 'no Node older than 24 on this machine to try' },
  async (t) => {
    const r = spawnSync(olderNode!, ['bin/sfmirror.js', 'status'], { cwd: ROOT, encoding: 'utf8' });
    t.equal(r.status, 2);
    t.match(r.stderr, /^sfmirror needs Node\.js 24 or later; this is Node \d+/);
    t.match(r.stderr, /npx sfmirror/);
    t.notMatch(r.stderr, /at .*\(|ERR_/, 'no stack trace');
  },
);
