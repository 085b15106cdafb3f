import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { exportJWK, SignJWT } from 'jose';
import { accountId, change } from '../support/changes.ts';
import { startTestDatabase } from '../support/pg.ts';
import { OWNER_A, OWNER_B, T0, account, apply, contact, contactId, device, get, listAll, newClient, readApp } from './support.ts';

const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const app = await readApp(tdb);
t.teardown(() => app.close());

// Accounts 1..20: odd ones owned by A, even ones by B. Contacts 1..4: all owned by A.
await apply(
  app,
  Array.from({ length: 20 }, (_, i) => account(i + 1, T0 + i, { Name: `Acme ${i + 1}`, OwnerId: (i + 1) % 2 ? OWNER_A : OWNER_B })),
);
await apply(
  app,
  [1, 2, 3, 4].map((n) => contact(n, T0, { LastName: `Doe ${n}`, OwnerId: OWNER_A })),
);
const owners = async (url: string, token: string, headers: Record<string, string> = {}) =>
  new Set((await listAll(app, url, token, headers)).map((r) => r.OwnerId));

const ISSUER = 'https://id.example.com/';
const AUDIENCE = 'sfmirror-mobile';
const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pem = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const nowS = () => Math.floor(Date.now() / 1000);

function userToken(
  claims: Record<string, unknown>,
  opts: { key?: KeyObject; exp?: number; iss?: string; aud?: string; kid?: string } = {},
) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', ...(opts.kid ? { kid: opts.kid } : {}) })
    .setIssuer(opts.iss ?? ISSUER)
    .setAudience(opts.aud ?? AUDIENCE)
    .setSubject(String(claims.sfuid ?? 'x'))
    .setIssuedAt()
    .setExpirationTime(opts.exp ?? nowS() + 600)
    .sign(opts.key ?? keys.privateKey);
}
const user = async (sfuid: string, opts = {}) => ({ 'x-user-token': await userToken({ sfuid }, opts) });

t.test('a fixed row filter (--where) holds in lists, gets and the feed', async (t) => {
  const token = await newClient(db, 'team-a', { objects: 'Account,Contact', where: ['OwnerId=' + OWNER_A] });
  t.same(await owners('/api/v1/objects/Account', token), new Set([OWNER_A]));
  t.equal((await listAll(app, '/api/v1/objects/Account', token)).length, 10);
  t.equal((await get(app, `/api/v1/objects/Account/${accountId(1)}`, token)).statusCode, 200);
  t.equal((await get(app, `/api/v1/objects/Account/${accountId(2)}`, token)).statusCode, 404, "another owner's record is not there");
  t.equal((await listAll(app, `/api/v1/objects/Account?Id=${accountId(2)}`, token)).length, 0, 'not by filter either');
  const feed = (await get(app, '/api/v1/changes?since=0&limit=100', token)).json();
  t.equal(feed.changes.length, 14, '10 accounts and 4 contacts');
  t.ok(
    feed.changes.every((c: { record: { OwnerId: string } }) => c.record.OwnerId === OWNER_A),
    'a fresh device learns nothing of other rows, not even their ids',
  );
  const scoped = await newClient(db, 'scoped', { objects: 'Account,Contact', where: ['Account.OwnerId=' + OWNER_B] });
  t.same(await owners('/api/v1/objects/Account', scoped), new Set([OWNER_B]), 'Object.Field applies to that object');
  t.equal((await listAll(app, '/api/v1/objects/Contact', scoped)).length, 4, 'and not to others');
  const broken = await newClient(db, 'broken', { objects: 'Account', where: ['Missing__c=1'] });
  t.equal(
    (await listAll(app, '/api/v1/objects/Account', broken)).length,
    0,
    'a policy on a field that is not mirrored hides every row (fail closed)',
  );
});

t.test('end-user JWTs: missing, expired, forged or misaddressed tokens are refused', async (t) => {
  const token = await newClient(db, 'mobile', {
    objects: 'Account,Contact',
    jwtIssuer: ISSUER,
    jwtAudience: AUDIENCE,
    jwtKeyPem: pem,
    jwtClaim: ['sfuid=OwnerId'],
  });
  const url = '/api/v1/objects/Account';
  const cases: Array<[string, Record<string, string>, number, RegExp]> = [
    ['no user token', {}, 401, /X-User-Token/],
    ['expired', await user(OWNER_A, { exp: nowS() - 3600 }), 401, /expired/],
    ['signed by another key', await user(OWNER_A, { key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey }), 401, /refused/],
    ['another audience', await user(OWNER_A, { aud: 'someone-else' }), 401, /refused/],
    ['another issuer', await user(OWNER_A, { iss: 'https://evil.example.com/' }), 401, /refused/],
    ['not a JWT', { 'x-user-token': 'abc.def.ghi' }, 401, /refused/],
    [
      'unsigned (alg none)',
      {
        'x-user-token': `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sfuid: OWNER_B, iss: ISSUER, aud: AUDIENCE, exp: nowS() + 60 })).toString('base64url')}.`,
      },
      401,
      /refused/,
    ],
    ['no claim to filter on', { 'x-user-token': await userToken({ other: 1 }) }, 403, /claim sfuid/],
  ];
  for (const [name, headers, status, why] of cases) {
    const res = await get(app, url, token, headers);
    t.equal(res.statusCode, status, name);
    t.match(res.json().message, why, name);
  }
  t.equal(
    (await get(app, url, 'wrong-client-token-000000', await user(OWNER_A))).statusCode,
    401,
    'a valid user token does not replace the client token',
  );
});

t.test("a user never sees another user's rows: lists, gets, the feed; a row leaving the scope is removed", async (t) => {
  const token = await newClient(db, 'mobile2', {
    objects: 'Account,Contact',
    jwtIssuer: ISSUER,
    jwtAudience: AUDIENCE,
    jwtKeyPem: pem,
    jwtClaim: ['sfuid=OwnerId'],
  });
  const a = await user(OWNER_A);
  const b = await user(OWNER_B);
  t.same(await owners('/api/v1/objects/Account', token, a), new Set([OWNER_A]));
  t.same(await owners('/api/v1/objects/Account', token, b), new Set([OWNER_B]));
  t.equal((await listAll(app, '/api/v1/objects/Contact', token, b)).length, 0);
  t.equal((await get(app, `/api/v1/objects/Account/${accountId(2)}`, token, a)).statusCode, 404);
  t.equal((await get(app, `/api/v1/objects/Account/${accountId(2)}`, token, b)).statusCode, 200);
  t.equal((await get(app, `/api/v1/objects/Contact/${contactId(1)}`, token, b)).statusCode, 404);

  const devA = device();
  const devB = device();
  t.notOk(await devA.sync(app, token, { headers: a }));
  t.notOk(await devB.sync(app, token, { headers: b }));
  t.equal(devA.store.size, 14);
  t.equal(devB.store.size, 10);
  t.ok([...devA.store.values()].every((r) => r.OwnerId === OWNER_A));

  // Account 1 moves from A to B; account 3 is deleted; contact 1 changes within A.
  await apply(app, [
    change('update', 1, T0 + 60_000, { OwnerId: OWNER_B }),
    change('delete', 3, T0 + 60_000),
    contact(1, T0 + 60_000, { LastName: 'Moved' }),
  ]);
  const seen: string[] = [];
  const res = await get(app, `/api/v1/changes?since=${devA.cursor}`, token, a);
  for (const c of res.json().changes) seen.push(`${c.id}:${c.deleted}:${c.record ? Object.keys(c.record).length : 0}`);
  t.ok(seen.includes(`${accountId(1)}:true:0`), 'the row that left A comes to A as removed, without its values');
  await devA.sync(app, token, { headers: a });
  await devB.sync(app, token, { headers: b });
  t.notOk(devA.store.has(`Account/${accountId(1)}`), 'gone from A');
  t.notOk(devA.store.has(`Account/${accountId(3)}`), 'deleted');
  t.equal(devA.store.get(`Contact/${contactId(1)}`)?.LastName, 'Moved');
  t.equal(devB.store.get(`Account/${accountId(1)}`)?.OwnerId, OWNER_B, 'arrived at B');
  t.ok([...devA.store.values()].every((r) => r.OwnerId === OWNER_A));
  t.ok([...devB.store.values()].every((r) => r.OwnerId === OWNER_B));
});

t.test('end-user JWTs verified against a JWKS URL', async (t) => {
  const jwk = { ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const server = http.createServer((req, res) => {
    if (req.url === '/broken') {
      res.statusCode = 500;
      res.end('down');
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  const jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  const token = await newClient(db, 'mobile-jwks', {
    objects: 'Account',
    jwtIssuer: ISSUER,
    jwtAudience: AUDIENCE,
    jwksUrl,
    jwtClaim: ['sfuid=OwnerId'],
  });
  t.same(await owners('/api/v1/objects/Account', token, await user(OWNER_B, { kid: 'k1' })), new Set([OWNER_B]));
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  t.equal(
    (await get(app, '/api/v1/objects/Account', token, await user(OWNER_B, { kid: 'k1', key: other }))).statusCode,
    401,
    'forged with the known kid',
  );
  t.equal(
    (await get(app, '/api/v1/objects/Account', token, await user(OWNER_B, { kid: 'unknown', key: other }))).statusCode,
    401,
    'an unknown key id',
  );
  const broken = await newClient(db, 'mobile-jwks-down', {
    objects: 'Account',
    jwtIssuer: ISSUER,
    jwtAudience: AUDIENCE,
    jwksUrl: jwksUrl.replace(/\/\.well-known.*/, '/broken'),
    jwtClaim: ['sfuid=OwnerId'],
  });
  const down = await get(app, '/api/v1/objects/Account', broken, await user(OWNER_B, { kid: 'k1' }));
  t.equal(down.statusCode, 503, 'keys that cannot be fetched are an outage, not a refusal');
  t.ok(down.headers['retry-after']);
});
