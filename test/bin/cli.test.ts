import t from 'tap';
import { runCli } from '../support/serve.ts';

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
  t.match(badOpt.stderr, /Unknown option '--nope'/);
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
    const r = await runCli(['status'], { SFMIRROR_DATA_DIR: path.join(privateParent, 'data') });
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
