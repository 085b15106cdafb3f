import t from 'tap';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { sleep } from '../../src/lib/backoff.ts';
import { toId18 } from '../../src/changes/names.ts';
import { createSecretBox } from '../../src/lib/secret-box.ts';
import { createOrgKeyCache } from '../../src/ingest/org-keys.ts';
import { addOrgKey, revokeOrgKey } from '../../src/mirror/org-connections.repository.ts';
import { ensureOrgAlias } from '../../src/mirror/orgs.repository.ts';
import { startTestDatabase } from '../support/pg.ts';
import { ADMIN_TOKEN, buildTestApp, hmacHeaders, pushBody, rec, rsaHeaders } from '../support/app.ts';

// Per-org signing keys (issue 7): a push signed with org A's key may only write org A, and an org
// with keys of its own no longer accepts the deployment-wide keys.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const box = createSecretBox([randomBytes(32)]);
const ORG_A = toId18('00D0000000000A1')!;
const ORG_B = toId18('00D0000000000B2')!;
const ORG_C = toId18('00D0000000000C3')!;
const app = await buildTestApp(tdb, { orgKeys: createOrgKeyCache({ db, box, ttlMs: 300, missReloadMs: 0 }) });
t.teardown(() => app.close());
for (const [alias, id] of [
  ['salesforce', ORG_A],
  ['beta', ORG_B],
  ['gamma', ORG_C],
] as const) {
  await ensureOrgAlias(db, alias, 'oauth');
  await db.updateTable('sfmirror.orgs').set({ org_id: id }).where('alias', '=', alias).execute();
}

async function addHmacKey(alias: string): Promise<{ id: number; secret: string }> {
  const secret = randomBytes(24).toString('base64url');
  const id = await addOrgKey(db, { alias, kind: 'hmac', secretEnc: 'pending' });
  await sql`update sfmirror.org_ingest_keys set secret_enc = ${box.seal(secret, `ingest_key:${id}`)} where id = ${id}`.execute(db);
  return { id, secret };
}
const push = (body: string, headers: Record<string, string>) => app.inject({ method: 'POST', url: '/ingest/apex', payload: body, headers });
const account = (n: number, name: string) => ({
  object: 'Account',
  operation: 'insert',
  record: rec(n, Date.parse('2026-11-30T10:00:00Z') + n, { Name: name }),
});
const rows = async (schema: string) => {
  const exists = (await sql<{ t: string | null }>`select to_regclass(${`${schema}.account`})::text as t`.execute(db)).rows[0]?.t;
  if (!exists) return [];
  return (await sql<{ name: string }>`select name from ${sql.id(schema, 'account')} order by name`.execute(db)).rows.map((r) => r.name);
};

t.test("a push signed with org B's key lands in B; claiming org A with it is refused", async (t) => {
  const b = await addHmacKey('beta');
  const own = pushBody([account(1, 'beta-1')], ORG_B);
  const ok = await push(own, hmacHeaders(own, { secret: b.secret }));
  t.equal(ok.statusCode, 200, ok.body);
  t.same(await rows('beta'), ['beta-1']);

  const claim = pushBody([account(2, 'forged into A')], ORG_A);
  const refused = await push(claim, hmacHeaders(claim, { secret: b.secret }));
  t.equal(refused.statusCode, 403);
  t.match(refused.json().message, /signed with a key of org "beta" but claims org 00D0000000000A1/);
  t.same(await rows('salesforce'), [], 'nothing written to A');

  const unknown = pushBody([account(3, 'nowhere')], toId18('00D0000000000Z9')!);
  t.equal((await push(unknown, hmacHeaders(unknown, { secret: b.secret }))).statusCode, 403, 'nor an org nobody registered');
});

t.test('deployment-wide keys write orgs without keys of their own, and only those', async (t) => {
  const a = pushBody([account(4, 'A by env key')], ORG_A);
  t.equal((await push(a, hmacHeaders(a))).statusCode, 200, "org A has no keys: the environment's secret works");
  t.same(await rows('salesforce'), ['A by env key']);
  const b = pushBody([account(5, 'B by env key')], ORG_B);
  const r = await push(b, hmacHeaders(b));
  t.equal(r.statusCode, 403);
  t.match(r.json().message, /org "beta" has signing keys of its own/);
  const rsa = await push(b, rsaHeaders(b));
  t.equal(rsa.statusCode, 403, "the environment's RSA key neither");
  t.same(await rows('beta'), ['beta-1']);
});

t.test('RSA public keys per org; a revoked key stops working', async (t) => {
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const id = await addOrgKey(db, {
    alias: 'gamma',
    kind: 'rsa',
    publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
  });
  const body = pushBody([account(6, 'gamma by its cert')], ORG_C);
  const r = await push(body, rsaHeaders(body, { key: pair.privateKey }));
  t.equal(r.statusCode, 200, `a key added a moment ago works at once: ${r.body}`);
  const intoB = pushBody([account(7, 'gamma into B')], ORG_B);
  t.equal((await push(intoB, rsaHeaders(intoB, { key: pair.privateKey }))).statusCode, 403);
  t.ok(await revokeOrgKey(db, 'gamma', id));
  await sleep(400); // the cache's lifetime (5 s in serve): a revoked key works until it ends
  const after = pushBody([account(8, 'after revoke')], ORG_C);
  const gone = await push(after, rsaHeaders(after, { key: pair.privateKey }));
  t.equal(gone.statusCode, 401);
  t.same(await rows('gamma'), ['gamma by its cert']);
});

t.test("status shows each org's connection and keys; ?org= picks one", async (t) => {
  const r = await app.inject({ method: 'GET', url: '/admin/status?org=beta', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.equal(r.statusCode, 200);
  const s = r.json();
  t.same(
    s.orgs.map((o: { alias: string }) => o.alias),
    ['beta'],
  );
  t.equal(s.orgs[0].connection.state, 'connected');
  t.equal(s.orgs[0].connection.signingKeys, 1);
  const none = await app.inject({ method: 'GET', url: '/admin/status?org=nope', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.equal(none.statusCode, 404);
});
