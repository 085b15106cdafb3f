import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { startTestDatabase } from '../support/pg.ts';
import { parseArgs } from 'node:util';
import { CLIENT_OPTIONS, clientsCommandOf } from '../../src/bin/cli-clients.ts';
import { addClient } from '../../src/api/read/clients.repository.ts';
import { runCli } from '../support/serve.ts';
import { OWNER_A, OWNER_B, T0, account, apply, get, readApp } from './support.ts';

const tdb = await startTestDatabase(t);
const app = await readApp(tdb);
t.teardown(() => app.close());
const env = { DATABASE_URL: tdb.url };
await apply(app, [account(1, T0, { Name: 'Mine', OwnerId: OWNER_A }), account(2, T0, { Name: 'Theirs', OwnerId: OWNER_B })]);

t.test('clients add prints a working token once; list shows it; revoke ends it', async (t) => {
  const add = await runCli(
    ['clients', 'add', 'phone', '--objects', 'Account,Contact', '--fields', 'Name', '--where', `OwnerId=${OWNER_A}`],
    env,
  );
  t.equal(add.code, 0, add.stderr);
  const token = add.stdout.trim();
  t.match(token, /^sfm_[A-Za-z0-9_-]{43}$/, 'stdout is the token alone');
  t.match(add.stderr, /shown only now/);
  const list = await get(app, '/api/v1/objects/Account', token);
  t.same(
    list.json().records.map((r: { Name: string }) => r.Name),
    ['Mine'],
    'the token works, within its policy',
  );
  t.equal(
    await addClient(tdb.handle.db, 'phone', { objects: ['Account'] }),
    undefined,
    'an active name is not replaced (the CLI says: revoke it first)',
  );
  const ls = await runCli(['clients', 'list'], env);
  t.equal(ls.code, 0);
  t.match(ls.stdout, /^phone\tactive\tobjects=Account,Contact fields=Name where OwnerId=005000000000001AAA/m);
  t.notMatch(ls.stdout, token, 'list never shows tokens');
  const revoke = await runCli(['clients', 'revoke', 'phone'], env);
  t.equal(revoke.code, 0, revoke.stderr);
  t.equal((await get(app, '/api/v1/objects/Account', token)).statusCode, 401);
  const json = JSON.parse((await runCli(['clients', 'list', '--json'], env)).stdout);
  t.match(json, [{ name: 'phone', objects: ['Account', 'Contact'], revokedAt: String }]);
  const readd = await addClient(tdb.handle.db, 'phone', { objects: ['Account'] });
  t.ok(readd, 'a revoked name can be reused');
  t.equal((await get(app, '/api/v1/objects/Account', readd!)).json().records.length, 2);
});

t.test('clients add with an end-user JWT key file', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfmirror-jwt-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pub = path.join(dir, 'pub.pem');
  const priv = path.join(dir, 'priv.pem');
  fs.writeFileSync(pub, keys.publicKey.export({ type: 'spki', format: 'pem' }));
  fs.writeFileSync(priv, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const jwt = ['--jwt-issuer', 'https://id.example.com/', '--jwt-audience', 'app'];
  const ok = await runCli(
    ['clients', 'add', 'mobile', '--objects', 'Account', ...jwt, '--jwt-key-file', pub, '--jwt-claim', 'sfuid=OwnerId'],
    env,
  );
  t.equal(ok.code, 0, ok.stderr);
  const res = await get(app, '/api/v1/objects/Account', ok.stdout.trim());
  t.equal(res.statusCode, 401, 'the client needs a user token now');
  const args = ['add', 'mobile2', '--objects', 'Account', ...jwt, '--jwt-key-file', priv, '--jwt-claim', 'sfuid=OwnerId'];
  const { positionals, values } = parseArgs({ args, allowPositionals: true, strict: true, options: CLIENT_OPTIONS });
  let message = '';
  try {
    clientsCommandOf('clients', positionals, values, (m) => {
      throw new Error(m);
    });
  } catch (e) {
    message = (e as Error).message;
  }
  t.match(message, /--jwt-key-file holds a PRIVATE key/, 'a private key is refused');
});

t.test('usage errors exit 2 and name the problem', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['clients'], /give add, list or revoke/],
    [['clients', 'add', 'x'], /--objects: give the objects/],
    [['clients', 'add', 'x', '--objects', 'Bad Name;drop'], /"Bad Name;drop" is not an object API name/],
    [['clients', 'add', 'x', '--objects', 'Account', '--where', 'OwnerId'], /--where: "OwnerId" is not Field=value/],
    [
      ['clients', 'add', 'x', '--objects', 'Account', '--jwt-issuer', 'i'],
      /--jwt-audience is required[\s\S]*exactly one of --jwt-key-file and --jwks-url[\s\S]*--jwt-claim/,
    ],
    [['clients', 'add', 'x', '--objects', 'Account', '--jwt-key-file', '/nonexistent.pem'], /cannot read "\/nonexistent.pem"/],
    [['clients', 'add', 'bad name', '--objects', 'Account'], /NAME/],
    [['status', '--objects', 'Account'], /--objects is an option of 'clients add'/],
  ];
  // Parsed in-process (each CLI start costs a second); one run checks the exit code and output.
  const usageError = (m: string): never => {
    throw new Error(m);
  };
  for (const [args, why] of cases) {
    const { positionals, values } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: { ...CLIENT_OPTIONS, json: { type: 'boolean' } },
    });
    let message = 'no usage error';
    try {
      clientsCommandOf(positionals[0]!, positionals.slice(1), values, usageError);
    } catch (e) {
      message = (e as Error).message;
    }
    t.match(message, why, args.join(' '));
  }
  const run = await runCli(['clients', 'add', 'x', '--objects', 'Bad Name;drop'], env);
  t.equal(run.code, 2);
  t.match(run.stderr, /^sfmirror: --objects: "Bad Name;drop" is not an object API name/);
  const help = await runCli(['clients', '--help'], {});
  t.equal(help.code, 0);
  t.match(help.stdout, /--jwt-claim claim=Field/);
});
