import t from 'tap';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../../src/db/database.ts';
import { sleep } from '../../src/lib/backoff.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { createSecretBox } from '../../src/lib/secret-box.ts';
import { loadConfig } from '../../src/config/config.ts';
import { createOrgSessions } from '../../src/bin/org-sessions.ts';
import { signHmac } from '../../src/ingest/signature.ts';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg, type SalesforceOrg } from '../support/salesforce-org.ts';
import { runCli, startServe, type ServeProcess } from '../support/serve.ts';

import { waitFor } from '../support/wait.ts';

// Several orgs in one deployment (issue 7), through `sfmirror serve` as users run it: the org
// configured by environment and an org connected by OAuth are mirrored side by side into two
// schemas; a revoked refresh token becomes a state, not a crash loop; `orgs` commands.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const acme = await startSalesforceOrg(t, { connectTimeout: 1, orgId: '00D0000000000A1', userId: '0050000000000A1' });
const beta = await startSalesforceOrg(t, { connectTimeout: 1, orgId: '00D0000000000B2', userId: '0050000000000B2' });
const KEY = randomBytes(32).toString('base64');
const ADMIN = 'admin-token-0123456789';
const SECRET = 'deployment-wide-secret-0123';
const env = {
  DATABASE_URL: tdb.url,
  SF_INSTANCE_URL: acme.url,
  SF_LOGIN_URL: acme.url,
  SF_CLIENT_ID: acme.clientId,
  SF_REFRESH_TOKEN: acme.refreshToken,
  SFMIRROR_ENCRYPTION_KEY: KEY,
  SFMIRROR_ADMIN_TOKEN: ADMIN,
  SFMIRROR_INGEST_SECRETS: SECRET,
  SFMIRROR_OAUTH_REDIRECT_URI: 'http://127.0.0.1:9/oauth/callback',
  SFMIRROR_OAUTH_LOGIN_HOSTS: `${acme.url},${beta.url}`,
  SFMIRROR_ORGS_POLL_MS: '200',
  SFMIRROR_CDC_LEADER_POLL_MS: '200',
  SFMIRROR_CDC_WATCHDOG_GRACE_MS: '2000',
  SFMIRROR_CDC_FLUSH_IDLE_MS: '20',
};
let serve: ServeProcess | undefined;
t.teardown(async () => {
  if (serve && serve.proc.exitCode === null && serve.proc.signalCode === null) {
    serve.proc.kill('SIGKILL');
    await serve.exited;
  }
});
serve = await startServe(env);
const api = (path: string, init: RequestInit = {}) =>
  fetch(`${serve!.url}${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN}`, ...(init.headers ?? {}) } });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const orgStatus = async (alias: string): Promise<any> =>
  ((await (await api(`/admin/status?org=${alias}`)).json()) as { orgs?: unknown[] }).orgs?.[0];

async function names(schema: string): Promise<string[]> {
  const exists = (await sql<{ t: string | null }>`select to_regclass(${`${schema}.account`})::text as t`.execute(db)).rows[0]?.t;
  if (!exists) return [];
  return (
    await sql<{ name: string }>`select name from ${sql.id(schema, 'account')} where not isdeleted order by name`.execute(db)
  ).rows.map((r) => r.name);
}
const truth = (org: SalesforceOrg) => [...org.live('Account').values()].map((r) => String(r.Name)).sort();
const mirrored = (_d: Db, schema: string, org: SalesforceOrg) => async () =>
  JSON.stringify(await names(schema)) === JSON.stringify(truth(org)) && truth(org).length > 0;

async function connect(alias: string, org: SalesforceOrg) {
  const r = await api(`/oauth/authorize?alias=${alias}&loginUrl=${encodeURIComponent(org.url)}`);
  if (r.status !== 200) throw new Error(`authorize: ${r.status} ${await r.text()}`);
  const browser = await fetch(((await r.json()) as { url: string }).url, { redirect: 'manual' });
  const back = new URL(browser.headers.get('location')!);
  return fetch(`${serve!.url}/oauth/callback?${back.searchParams}`);
}

t.test("two orgs, two schemas: the environment's and one connected by OAuth", { timeout: 120_000 }, async (t) => {
  await waitFor('acme live', async () => (await orgStatus('salesforce'))?.stream.channels[0]?.state === 'live', { timeoutMs: 30_000 });
  const done = await connect('beta', beta);
  t.equal(done.status, 200);
  t.match(await done.json(), { alias: 'beta', orgId: beta.orgId, userId: beta.userId });
  await waitFor('beta live', async () => (await orgStatus('beta'))?.stream.channels[0]?.state === 'live', { timeoutMs: 30_000 });
  acme.insert('Account', { Name: 'acme one' });
  beta.insert('Account', { Name: 'beta one' });
  beta.insert('Account', { Name: 'beta two' });
  await waitFor('acme mirrored into salesforce.account', mirrored(db, 'salesforce', acme));
  await waitFor('beta mirrored into beta.account', mirrored(db, 'beta', beta));
  t.same(await names('salesforce'), ['acme one'], "no beta record in acme's schema");
  t.same(await names('beta'), ['beta one', 'beta two']);
  const s = await orgStatus('beta');
  t.equal(s.orgId, beta.orgId);
  t.equal(s.connection.state, 'connected');
  t.equal(s.connection.instanceUrl, beta.url);
  t.equal((await orgStatus('salesforce')).connection.state, 'connected', "the environment's org shows its working credentials");
});

t.test("a connected org's session reads Salesforce for its backfills and describes", async (t) => {
  const config = loadConfig({ ...env, DATABASE_URL: tdb.url });
  const sessions = createOrgSessions({ db, config, box: createSecretBox(config.SFMIRROR_ENCRYPTION_KEY!), log: createLogger('silent') });
  t.same((await sessions.sync()).added, ['beta']);
  const page = await sessions.sessionFor('beta')!.readModifiedSince('Account', { stamp: '2000-01-01T00:00:00Z' }, 10);
  t.same(page.map((r) => r.Name).sort(), ['beta one', 'beta two']);
  t.equal(sessions.sessionFor('salesforce'), undefined, "the environment's org is not an OAuth org");
  const locked = createOrgSessions({ db, config, box: createSecretBox([randomBytes(32)]), log: createLogger('silent') });
  t.same((await locked.sync()).added, [], 'with a wrong key, nothing opens');
  t.equal((await orgStatus('beta')).connection.state, 'locked');
  await sql`update sfmirror.orgs set auth_state = 'connected', auth_error = null where alias = 'beta'`.execute(db);
});

t.test('a refresh token Salesforce revoked: a clear state, no crash loop, the other org unaffected', { timeout: 120_000 }, async (t) => {
  beta.revokeRefreshTokens();
  await waitFor('beta revoked in status', async () => (await orgStatus('beta'))?.connection.state === 'revoked', { timeoutMs: 30_000 });
  const s = await orgStatus('beta');
  t.match(s.connection.error, /invalid_grant expired access\/refresh token/);
  const cli = await runCli(['status', '--org', 'beta'], { DATABASE_URL: tdb.url });
  t.equal(cli.code, 0, cli.stderr);
  t.match(cli.stdout, /connection: REVOKED .*connect it again \(GET \/oauth\/authorize\?alias=beta\)/);
  await sleep(1000);
  const refusals = beta.stats.tokenRefusals;
  await sleep(3000);
  t.equal(beta.stats.tokenRefusals, refusals, 'nobody keeps asking Salesforce with the dead token');
  t.equal(serve!.proc.exitCode, null, 'serve is still running');
  acme.insert('Account', { Name: 'acme two' });
  await waitFor('acme still mirrored', mirrored(db, 'salesforce', acme));

  const again = await connect('beta', beta);
  t.equal(again.status, 200, 'connecting again through OAuth');
  await waitFor(
    'beta connected and live',
    async () => {
      const o = await orgStatus('beta');
      return o?.connection.state === 'connected' && o.stream.channels[0]?.state === 'live';
    },
    { timeoutMs: 30_000 },
  );
  beta.insert('Account', { Name: 'beta three' });
  await waitFor('beta mirrored again', mirrored(db, 'beta', beta));

  // The CLI works connected orgs too: a hard delete no event told us about, found by a resync.
  const gone = [...beta.live('Account').entries()].find(([, r]) => r.Name === 'beta one')![0];
  beta.remove('Account', gone, { silent: true, hard: true });
  const r = await runCli(['resync', '--object', 'Account', '--org', 'beta'], {
    DATABASE_URL: tdb.url,
    SFMIRROR_ENCRYPTION_KEY: KEY,
    SF_CLIENT_ID: beta.clientId,
  });
  t.equal(r.code, 0, r.stderr + r.stdout);
  t.same(await names('beta'), ['beta three', 'beta two'], 'the hard-deleted record is a tombstone now');
});

t.test('orgs commands: list, keys, remove', { timeout: 120_000 }, async (t) => {
  const cliEnv = { DATABASE_URL: tdb.url, SFMIRROR_ENCRYPTION_KEY: KEY };
  const list = await runCli(['orgs', 'list'], cliEnv);
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, /^beta\t00D0000000000B2\w*\toauth\tconnected\t/m);
  t.match(list.stdout, /^salesforce\t00D0000000000A1\w*\tenv\tconnected\t/m);
  const json = JSON.parse((await runCli(['orgs', 'list', '--json'], cliEnv)).stdout);
  t.same(
    json.map((o: { alias: string }) => o.alias),
    ['beta', 'salesforce'],
  );

  // A key of acme's own: pushes for acme must now carry it; the deployment-wide secret is refused.
  const added = await runCli(['orgs', 'keys', 'add', 'salesforce', '--label', 'acme apex'], cliEnv);
  t.equal(added.code, 0, added.stderr);
  const secret = added.stdout.trim();
  t.match(secret, /^[A-Za-z0-9_-]{43}$/);
  t.notOk(
    JSON.stringify((await sql`select * from sfmirror.org_ingest_keys`.execute(db)).rows).includes(secret),
    'the secret is stored encrypted',
  );
  const body = JSON.stringify({
    orgId: acme.orgId,
    changes: [
      {
        object: 'Account',
        operation: 'update',
        record: { Id: [...acme.live('Account').keys()][0], SystemModstamp: new Date().toISOString(), Name: 'pushed' },
      },
    ],
  });
  const send = (s: string) => {
    const ts = Math.floor(Date.now() / 1000);
    return fetch(`${serve!.url}/ingest/apex`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'x-sfmirror-timestamp': String(ts), 'x-sfmirror-signature': signHmac(s, ts, body) },
    });
  };
  t.equal((await send(secret)).status, 200, "signed with acme's own key");
  const refused = await send(SECRET);
  t.equal(refused.status, 403, 'the deployment-wide secret no longer writes acme');
  const keys = await runCli(['orgs', 'keys', 'list', 'salesforce'], cliEnv);
  t.match(keys.stdout, /^\d+\tsalesforce\thmac\tacme apex\t/m);

  const noYes = await runCli(['orgs', 'remove', 'beta'], cliEnv);
  t.equal(noYes.code, 2);
  t.match(noYes.stderr, /add --yes/);
  t.equal((await runCli(['orgs', 'remove', 'nope', '--yes'], cliEnv)).code, 1, 'unknown org');
  const removed = await runCli(['orgs', 'remove', 'beta', '--yes'], cliEnv);
  t.equal(removed.code, 0, removed.stderr);
  t.match(removed.stdout, /org beta removed, with its schema "beta" \(1 table\(s\)\)/);
  t.equal((await sql<{ n: string | null }>`select to_regnamespace('beta')::text as n`.execute(db)).rows[0]?.n, null, 'schema dropped');
  const subscribes = beta.stats.subscribes.length;
  await sleep(1500);
  beta.insert('Account', { Name: 'after removal' });
  await sleep(1000);
  t.equal(
    (await sql<{ n: string | null }>`select to_regnamespace('beta')::text as n`.execute(db)).rows[0]?.n,
    null,
    'the stream of a removed org stopped: nothing comes back',
  );
  t.equal(beta.stats.subscribes.length, subscribes, 'no new subscription');
  t.equal((await api('/admin/status?org=beta')).status, 404);

  const bad = await runCli(['orgs', 'keys', 'add', 'salesforce', '--public-key', '/nonexistent.pem'], cliEnv);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--public-key: cannot read/);
  serve!.proc.kill('SIGTERM');
  t.equal(await serve!.exited, 0, 'graceful stop with several orgs');
});
