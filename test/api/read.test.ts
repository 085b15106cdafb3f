import t from 'tap';
import { sql } from 'kysely';
import { revokeClient } from '../../src/api/read/clients.repository.ts';
import { encodeChangeCursor, encodeListCursor } from '../../src/api/read/cursor.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { ensureOrgAlias } from '../../src/mirror/orgs.repository.ts';
import { accountId, change } from '../support/changes.ts';
import { startTestDatabase } from '../support/pg.ts';
import { ENV_TOKEN, OWNER_A, OWNER_B, T0, account, apply, contact, get, listAll, newClient, readApp } from './support.ts';

const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const app = await readApp(tdb);
t.teardown(() => app.close());

// Accounts 1..30 (30 deleted), account n modified at T0 + n s; contacts 1..5.
await apply(
  app,
  Array.from({ length: 30 }, (_, i) => i + 1).map((n) =>
    account(n, T0 + n * 1000, {
      Name: `Acme ${n}`,
      OwnerId: n % 2 ? OWNER_A : OWNER_B,
      AnnualRevenue: n * 1000,
      NumberOfEmployees: n,
      Active__c: n % 3 === 0,
      Founded__c: `2020-01-${String(n).padStart(2, '0')}`,
    }),
  ),
);
await apply(app, [change('delete', 30, T0 + 60_000)]);
await apply(
  app,
  [1, 2, 3, 4, 5].map((n) => contact(n, T0, { LastName: `Doe ${n}`, OwnerId: OWNER_A })),
);
const backend = ENV_TOKEN;

t.test('auth: missing, wrong and revoked tokens are 401; env and database clients are admitted', async (t) => {
  const missing = await get(app, '/api/v1/objects/Account', undefined);
  t.equal(missing.statusCode, 401);
  t.match(missing.json().message, /missing Authorization/);
  t.equal((await get(app, '/api/v1/objects/Account', 'not-a-real-token-000000')).statusCode, 401, 'wrong token');
  t.equal((await get(app, '/api/v1/objects/Account', backend)).statusCode, 200, 'env token');
  const token = await newClient(db, 'phone', { objects: 'Account' });
  t.match(token, /^sfm_[A-Za-z0-9_-]{43}$/);
  const stored = await sql<{ token_hash: string }>`select token_hash from sfmirror.api_clients where name = 'phone'`.execute(db);
  t.not(stored.rows[0]!.token_hash, token, 'only the hash is stored');
  t.equal((await get(app, '/api/v1/objects/Account', token)).statusCode, 200, 'database client');
  t.ok(await revokeClient(db, 'phone'));
  const revoked = await get(app, '/api/v1/objects/Account', token);
  t.equal(revoked.statusCode, 401, 'revoked');
  t.match(revoked.json().message, /unknown or revoked/);
  t.equal((await get(app, '/api/v1/changes?since=0', token)).statusCode, 401, 'every route');
});

t.test('list: fields, equality filters, modifiedSince, bounded pages', async (t) => {
  const page = await get(app, '/api/v1/objects/Account?fields=Id,Name&limit=10', backend);
  t.equal(page.statusCode, 200);
  const body = page.json();
  t.equal(body.records.length, 10);
  t.same(Object.keys(body.records[0]), ['Id', 'Name']);
  t.same(body.records[0], { Id: accountId(1), Name: 'Acme 1' });
  t.type(body.next, 'string');
  const all = await listAll(app, '/api/v1/objects/Account?limit=7', backend);
  t.equal(all.length, 29, 'every live record once; the deleted one excluded');
  t.equal(new Set(all.map((r) => r.Id)).size, 29);
  t.notOk(all[0]!.attributes, 'no attributes key');
  t.equal(all[0]!.AnnualRevenue, 1000, 'Salesforce field names and values');
  const count = async (q: string) => (await listAll(app, `/api/v1/objects/Account?${q}`, backend)).length;
  t.equal(await count('Name=Acme%205'), 1);
  t.equal(await count('name=Acme%205'), 1, 'field names are case-insensitive, as in Salesforce');
  t.equal(await count('NumberOfEmployees=7'), 1);
  t.equal(await count('Active__c=true'), 9);
  t.equal(await count('Active__c=true&OwnerId=005000000000001AAA'), 5);
  t.equal(await count('AnnualRevenue=3000.00'), 1, 'numbers compare as numbers');
  t.equal(await count('Founded__c=2020-01-09'), 1);
  t.equal(await count(`Id=${accountId(4).slice(0, 15)}`), 1, '15-character ids accepted');
  t.equal(await count(`modifiedSince=${encodeURIComponent(new Date(T0 + 20_000).toISOString())}`), 10);
  t.equal(await count('Name=nobody'), 0);
  t.same((await get(app, '/api/v1/objects/Contact?limit=2&fields=LastName', backend)).json().records[0], {
    Id: accountId(1, '003'),
    LastName: 'Doe 1',
  });
  await app.deps.mirror.apply('salesforce', [change('update', 5, T0 + 50_000, { Rating: 'Hot' })], {
    types: { Account: { Rating: 'picklist' } },
  });
  t.same(
    (await get(app, '/api/v1/objects/Account?Rating=Hot&fields=Name,Rating', backend)).json().records,
    [{ Id: accountId(5), Name: 'Acme 5', Rating: 'Hot' }],
    'a field that arrives later is found without a restart',
  );
});

t.test('get by id: the record, ETag and If-None-Match -> 304; deleted and unknown are 404', async (t) => {
  const url = `/api/v1/objects/Account/${accountId(2)}`;
  const res = await get(app, url, backend);
  t.equal(res.statusCode, 200);
  t.match(res.json(), { Id: accountId(2), Name: 'Acme 2', OwnerId: OWNER_B, IsDeleted: false });
  const etag = res.headers.etag as string;
  t.match(etag, /^"[^"]+"$/);
  const again = await get(app, url, backend, { 'if-none-match': etag });
  t.equal(again.statusCode, 304);
  t.equal(again.body, '');
  t.equal(again.headers.etag, etag);
  t.equal((await get(app, url, backend, { 'if-none-match': `"other", W/${etag}` })).statusCode, 304, 'weak and listed tags match');
  t.equal(
    (await get(app, `${url}?fields=Name`, backend, { 'if-none-match': etag })).statusCode,
    200,
    'another projection is another representation',
  );
  await apply(app, [change('update', 2, T0 + 100_000, { Name: 'Acme 2b' })]);
  const changed = await get(app, url, backend, { 'if-none-match': etag });
  t.equal(changed.statusCode, 200, 'a changed record is sent again');
  t.not(changed.headers.etag, etag);
  t.equal(changed.json().Name, 'Acme 2b');
  t.equal((await get(app, `/api/v1/objects/Account/${accountId(30)}`, backend)).statusCode, 404, 'deleted');
  t.equal((await get(app, `/api/v1/objects/Account/${accountId(999)}`, backend)).statusCode, 404, 'unknown');
  t.equal((await get(app, `/api/v1/objects/Account/${accountId(2).slice(0, 15)}`, backend)).json().Id, accountId(2), '15-character id');
});

t.test('allowlists: other objects are 404, other fields absent', async (t) => {
  const token = await newClient(db, 'names-only', { objects: 'Account', fields: 'Name,Contact.LastName' });
  const list = await get(app, '/api/v1/objects/Account?limit=3', token);
  t.same(list.json().records[0], { Id: accountId(1), Name: 'Acme 1', IsDeleted: false });
  t.same(Object.keys((await get(app, `/api/v1/objects/Account/${accountId(3)}`, token)).json()).sort(), ['Id', 'IsDeleted', 'Name']);
  t.equal((await get(app, '/api/v1/objects/Contact', token)).statusCode, 404);
  t.equal((await get(app, `/api/v1/objects/Contact/${accountId(1, '003')}`, token)).statusCode, 404);
  const f = await get(app, '/api/v1/objects/Account?fields=Name,AnnualRevenue', token);
  t.equal(f.statusCode, 400);
  t.match(f.json().message, /^fields: unknown field "AnnualRevenue"/);
  const filter = await get(app, '/api/v1/objects/Account?AnnualRevenue=1000', token);
  t.equal(filter.statusCode, 400, 'no filtering on a hidden field');
  t.match(filter.json().message, /^AnnualRevenue:/);
  const feed = await get(app, '/api/v1/changes?since=0&limit=100', token);
  const changes = feed.json().changes as Array<{ object: string; record?: Record<string, unknown> }>;
  t.ok(changes.length > 0);
  t.ok(
    changes.every((c) => c.object === 'Account' && Object.keys(c.record!).sort().join() === 'Id,IsDeleted,Name'),
    'the feed carries only allowed objects and fields',
  );
  t.equal((await get(app, '/api/v1/changes?since=0&objects=Contact', token)).statusCode, 400);
});

t.test('bad parameters answer 400 naming the parameter; injection attempts reach no SQL', async (t) => {
  const before = await sql<{ n: string }>`select count(*) as n from salesforce.account`.execute(db);
  // Made with a key this server does not have: refused like any forged cursor (test/security covers signing).
  const foreign = { key: Buffer.alloc(32), bind: 'x' };
  const otherOrgCursor = encodeChangeCursor(foreign, 'elsewhere', 5n);
  const forged = Buffer.from(JSON.stringify({ v: 1, g: 'salesforce', o: 'account', k: '1; drop table salesforce.account' })).toString(
    'base64url',
  );
  const cases: Array<[string, RegExp]> = [
    ['/api/v1/objects/Account?limit=0', /limit/],
    ['/api/v1/objects/Account?limit=100000', /limit/],
    ['/api/v1/objects/Account?limit=1;select', /limit/],
    ['/api/v1/objects/Account?cursor=garbage!', /^cursor:/],
    [`/api/v1/objects/Account?cursor=${forged}`, /^cursor:/],
    [`/api/v1/objects/Account?cursor=${encodeListCursor(foreign, 'salesforce', 'contact', 1n)}`, /^cursor:/],
    ['/api/v1/objects/Account?modifiedSince=yesterday', /^modifiedSince:/],
    [`/api/v1/objects/Account?${encodeURIComponent("Name'--")}=x`, /^Name'--:/],
    [`/api/v1/objects/Account?NumberOfEmployees=${encodeURIComponent('1 or 1=1')}`, /^NumberOfEmployees: not an integer/],
    ['/api/v1/objects/Account?Active__c=maybe', /^Active__c: not a boolean/],
    ['/api/v1/objects/Account?Founded__c=2020-13-45', /^Founded__c:/],
    ['/api/v1/objects/Account?AnnualRevenue=1e999999', /^AnnualRevenue:/],
    [`/api/v1/objects/Account?Id=${encodeURIComponent("001' or '1'='1")}`, /^Id: not a Salesforce id/],
    [`/api/v1/objects/Account?fields=${encodeURIComponent('Name,"; drop table x')}`, /^fields:/],
    ['/api/v1/objects/Account?Nope__c=1', /^Nope__c:/],
    ['/api/v1/objects/Account?Name=a&Name=b', /^Name: give one value/],
    [`/api/v1/objects/${encodeURIComponent('Account";drop table x;--')}`, /^object:/],
    [`/api/v1/objects/${encodeURIComponent('pg_catalog.pg_user')}`, /^object:/],
    ['/api/v1/objects/Nope__c', /^object: Nope__c is not mirrored/],
    [`/api/v1/objects/Account/${encodeURIComponent("1' or 1=1")}`, /^id:/],
    ['/api/v1/changes', /since/],
    ['/api/v1/changes?since=abc!', /^since:/],
    [`/api/v1/changes?since=${otherOrgCursor}`, /^since:/],
    [`/api/v1/changes?since=0&objects=${encodeURIComponent('Account;drop table x')}`, /^objects:/],
    ['/api/v1/changes?since=0&limit=5000', /limit/],
  ];
  for (const [url, why] of cases) {
    const res = await get(app, url, backend);
    t.equal(res.statusCode, 400, url);
    t.match(res.json().message, why, `${url}: ${res.json().message}`);
  }
  const org = await get(app, `/api/v1/objects/Account?org=${encodeURIComponent("x'; drop schema salesforce")}`, backend);
  t.equal(org.statusCode, 404);
  t.match(org.json().message, /^org:/);
  const after = await sql<{ n: string }>`select count(*) as n from salesforce.account`.execute(db);
  t.same(after.rows, before.rows, 'nothing changed');
});

t.test('?org= picks among the orgs a client may read', async (t) => {
  await ensureOrgAlias(db, 'second');
  await app.deps.mirror.apply('second', [account(77, T0, { Name: 'Second org' })], { types: { Account: { Name: 'string' } } });
  const env = await get(app, '/api/v1/objects/Account?org=second', backend);
  t.same(
    env.json().records.map((r: { Name: string }) => r.Name),
    ['Second org'],
    'env clients read every org',
  );
  const plain = await newClient(db, 'default-only', { objects: 'Account' });
  t.equal((await get(app, '/api/v1/objects/Account?org=second', plain)).statusCode, 404, 'a client reads its org only');
  const second = await newClient(db, 'second-org', { objects: 'Account', org: 'second,salesforce' });
  t.same(
    (await get(app, '/api/v1/objects/Account', second)).json().records.map((r: { Name: string }) => r.Name),
    ['Second org'],
    'its own org by default',
  );
  t.equal((await get(app, '/api/v1/objects/Account?org=salesforce&limit=1', second)).json().records.length, 1);
  const feed = await get(app, '/api/v1/changes?since=0', second);
  t.same(
    feed.json().changes.map((c: { id: string }) => c.id),
    [accountId(77)],
  );
  t.equal(
    (await get(app, `/api/v1/changes?since=${feed.json().next}&org=salesforce`, second)).statusCode,
    400,
    'a cursor of one org is refused in another',
  );
});

t.test('rate limit: 429 with Retry-After per client, then admitted again', async (t) => {
  const clock = fixedClock('2026-01-01T00:00:00Z');
  const limited = await readApp(tdb, {
    clock,
    readApi: {
      envTokens: [
        { name: 'backend', token: ENV_TOKEN },
        { name: 'other', token: 'other-token-0123456789' },
      ],
      rateLimit: 1,
      rateBurst: 2,
      clientCacheMs: 0,
    },
  });
  t.teardown(() => limited.close());
  t.equal((await get(limited, '/api/v1/objects/Account?limit=1', backend)).statusCode, 200);
  t.equal((await get(limited, '/api/v1/objects/Account?limit=1', backend)).statusCode, 200);
  const refused = await get(limited, '/api/v1/objects/Account?limit=1', backend);
  t.equal(refused.statusCode, 429);
  t.equal(refused.headers['retry-after'], '1');
  t.match(refused.json(), { statusCode: 429, code: 'RATE_LIMITED' });
  t.equal(
    (await get(limited, '/api/v1/objects/Account?limit=1', 'other-token-0123456789')).statusCode,
    200,
    'another client has its own bucket',
  );
  clock.advance(1000);
  t.equal((await get(limited, '/api/v1/objects/Account?limit=1', backend)).statusCode, 200, 'a token refilled');
  t.equal((await get(limited, '/api/v1/objects/Account?limit=1', backend)).statusCode, 429);
});

t.test('OpenAPI at /docs covers the read and operator APIs', async (t) => {
  const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
  for (const p of ['/api/v1/objects/{object}', '/api/v1/objects/{object}/{id}', '/api/v1/changes', '/admin/status', '/ingest/apex'])
    t.ok(doc.paths[p], p);
  t.ok(doc.paths['/api/v1/changes'].get.parameters.some((p: { name: string }) => p.name === 'since'));
});
