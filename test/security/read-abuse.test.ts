import { generateKeyPairSync, randomBytes } from 'node:crypto';
import t from 'tap';
import { SignJWT } from 'jose';
import { startTestDatabase } from '../support/pg.ts';
import { OWNER_A, OWNER_B, T0, account, apply, get, newClient, readApp } from '../api/support.ts';

// The read API against clients that probe beyond their policy: forged and borrowed cursors, field
// names that differ only in case, filters on fields they may not read, algorithm confusion in user
// tokens, and token guessing.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const app = await readApp(tdb);
t.teardown(() => app.close());

await apply(
  app,
  Array.from({ length: 10 }, (_, i) => account(i + 1, T0 + i, { Name: `Acme ${i + 1}`, OwnerId: (i + 1) % 2 ? OWNER_A : OWNER_B })),
);
const idsOf = (owner: string) =>
  Array.from({ length: 10 }, (_, i) => i + 1)
    .filter((n) => (n % 2 ? OWNER_A : OWNER_B) === owner)
    .map((n) => `001${String(n).padStart(12, '0')}`);

t.test('a made-up change cursor is refused instead of listing rows outside the policy', async (t) => {
  const token = await newClient(db, 'team-a', { objects: 'Account', where: [`OwnerId=${OWNER_A}`] });
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  for (const forged of [
    b64({ v: 1, g: 'salesforce', s: '1', w: '0' }),
    `${b64({ v: 2, g: 'salesforce', s: '1', w: '0' })}.${randomBytes(18).toString('base64url')}`,
  ]) {
    const res = await get(app, `/api/v1/changes?since=${forged}&limit=100`, token);
    const text = res.body;
    for (const id of idsOf(OWNER_B)) t.notOk(text.includes(id.slice(0, 15)), `no id of another owner (${id})`);
    t.equal(res.statusCode, 400, 'refused');
  }
});

t.test("one client's cursor is refused for another client", async (t) => {
  const a = await newClient(db, 'cur-a', { objects: 'Account', where: [`OwnerId=${OWNER_A}`] });
  const b = await newClient(db, 'cur-b', { objects: 'Account', where: [`OwnerId=${OWNER_B}`] });
  const page = (await get(app, '/api/v1/changes?since=0&limit=1', a)).json() as { next: string };
  t.equal((await get(app, `/api/v1/changes?since=${page.next}`, a)).statusCode, 200, 'its own client may use it');
  const borrowed = await get(app, `/api/v1/changes?since=${page.next}`, b);
  t.equal(borrowed.statusCode, 400);
  t.match(borrowed.json().message, /^since:/);
  const list = (await get(app, '/api/v1/objects/Account?limit=1', a)).json() as { next: string };
  t.equal((await get(app, `/api/v1/objects/Account?limit=1&cursor=${list.next}`, b)).statusCode, 400, 'list cursors too');
});

t.test('field names differing only in case do not pass the field allowlist', async (t) => {
  // Stored keys spelled ID and ISDELETED (a sender's variant of the envelope's Id and IsDeleted).
  await apply(app, [account(50, T0 + 100, { Name: 'Cased', OwnerId: OWNER_A, ID: 'not-an-id', ISDELETED: 'secret' })]);
  const token = await newClient(db, 'names-only', { objects: 'Account', fields: 'Name' });
  const rec = (await get(app, '/api/v1/objects/Account/001000000000050', token)).json() as Record<string, unknown>;
  t.same(Object.keys(rec).sort(), ['Id', 'IsDeleted', 'Name'], `only allowed fields: ${Object.keys(rec).join(',')}`);
  const feed = (await get(app, '/api/v1/changes?since=0&limit=100', token)).json() as {
    changes: Array<{ record?: Record<string, unknown> }>;
  };
  t.ok(
    feed.changes.every((c) => !c.record || (!('ID' in c.record) && !('ISDELETED' in c.record))),
    'the feed carries neither',
  );
});

t.test('modifiedSince is refused for a client that may not read SystemModstamp', async (t) => {
  const token = await newClient(db, 'no-stamp', { objects: 'Account', fields: 'Name' });
  const res = await get(app, '/api/v1/objects/Account?modifiedSince=2024-03-10T12:00:00.005Z', token);
  t.equal(res.statusCode, 400);
  t.match(res.json().message, /^modifiedSince:/);
  const allowed = await newClient(db, 'with-stamp', { objects: 'Account', fields: 'Name,SystemModstamp' });
  t.equal((await get(app, '/api/v1/objects/Account?modifiedSince=2024-03-10T12:00:00.005Z', allowed)).statusCode, 200);
});

t.test('an HS256 user token against an RSA key is a 401, not a 503', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const token = await newClient(db, 'rsa-users', {
    objects: 'Account',
    jwtIssuer: 'https://id.example.com/',
    jwtAudience: 'app',
    jwtKeyPem: pem,
    jwtClaim: ['sfuid=OwnerId'],
  });
  // The classic confusion: HMAC keyed with the public key's PEM text.
  const forged = await new SignJWT({ sfuid: OWNER_B })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer('https://id.example.com/')
    .setAudience('app')
    .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
    .sign(new TextEncoder().encode(pem));
  const res = await get(app, '/api/v1/objects/Account', token, { 'x-user-token': forged });
  t.equal(res.statusCode, 401, res.body);
});

t.test('unknown tokens from one address are rate limited before they cost a lookup', async (t) => {
  const statuses: number[] = [];
  for (let i = 0; i < 40; i++)
    statuses.push((await get(app, '/api/v1/objects/Account', `guess-${i}-${randomBytes(8).toString('hex')}`)).statusCode);
  t.ok(
    statuses.slice(0, 10).every((s) => s === 401),
    'the first guesses are plain 401s',
  );
  t.ok(
    statuses.slice(30).every((s) => s === 429),
    `later ones are 429 (${statuses.join(',')})`,
  );
});
