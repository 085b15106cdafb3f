import fs from 'node:fs';
import { createPublicKey } from 'node:crypto';
import t from 'tap';
import { sql } from 'kysely';
import { fixedClock } from '../../src/lib/clock.ts';
import { loadConfig } from '../../src/config/config.ts';
import { startTestDatabase } from '../support/pg.ts';
import { SECRET, buildTestApp, hmacHeaders } from '../support/app.ts';

// The contract between the Apex side and the service: payloads in the exact shape the Apex builder
// produces (salesforce/test-fixtures, asserted by fixtures.test.ts) are accepted by the real
// /ingest/apex and land in the mirror; the Apex signing vector verifies with the public certificate.
const FIXTURES = new URL('../../salesforce/test-fixtures/', import.meta.url);
const fixture = (name: string) => fs.readFileSync(new URL(name, FIXTURES), 'utf8');
const vector = JSON.parse(fixture('vector.json')) as {
  timestamp: string;
  body: string;
  signatureHeader: string;
  certificatePem: string;
  publicKeyPem: string;
};

const tdb = await startTestDatabase(t);
const { db } = tdb.handle;

t.test('the signing vector: the string Apex signs verifies through /ingest/apex with the exported certificate', async (t) => {
  // SFMIRROR_INGEST_PUBLIC_KEYS parsing, exactly as an admin would paste the certificate.
  const config = loadConfig({ SFMIRROR_INGEST_PUBLIC_KEYS: vector.certificatePem });
  const app = await buildTestApp(tdb, {
    keys: { secrets: [], publicKeys: config.SFMIRROR_INGEST_PUBLIC_KEYS },
    clock: fixedClock(new Date(Number(vector.timestamp) * 1000 + 30_000)),
  });
  t.teardown(() => app.close());
  const headers = {
    'content-type': 'application/json',
    'x-sfmirror-timestamp': vector.timestamp,
    'x-sfmirror-signature': vector.signatureHeader,
  };
  const res = await app.inject({ method: 'POST', url: '/ingest/apex', payload: vector.body, headers });
  t.equal(res.statusCode, 200, res.body);
  const tampered = await app.inject({
    method: 'POST',
    url: '/ingest/apex',
    payload: vector.body.replace('Z\\u00fcrich', 'Zurich').replace('Zürich', 'Zurich'),
    headers,
  });
  t.equal(tampered.statusCode, 401, 'a changed body fails');
  const other = await buildTestApp(tdb, {
    keys: { secrets: [], publicKeys: [createPublicKey(vector.publicKeyPem)] },
    clock: fixedClock(new Date(Number(vector.timestamp) * 1000 + 301_000)),
  });
  t.teardown(() => other.close());
  t.equal(
    (await other.inject({ method: 'POST', url: '/ingest/apex', payload: vector.body, headers })).statusCode,
    401,
    'outside the 5-minute window it is refused',
  );
  await sql`drop schema salesforce cascade`.execute(db);
  await db.deleteFrom('sfmirror.mirror_objects').execute();
  await db.updateTable('sfmirror.orgs').set({ org_id: null, last_seq: 0 }).execute();
});

t.test('the Apex payloads land in the mirror as expected', async (t) => {
  const app = await buildTestApp(tdb, { keys: { secrets: [SECRET], publicKeys: [] } });
  t.teardown(() => app.close());
  const send = async (name: string) => {
    const body = fixture(name);
    const res = await app.inject({ method: 'POST', url: '/ingest/apex', payload: body, headers: hmacHeaders(body) });
    t.equal(res.statusCode, 200, `${name}: ${res.body}`);
    return res.json() as { applied: number; ignored: number };
  };
  t.same(await send('insert.json'), { applied: 2, ignored: 0 });
  t.same(await send('insert-contact.json'), { applied: 1, ignored: 0 });
  const acct = async () =>
    (await sql<Record<string, unknown>>`select * from salesforce.account where sfid = '001000000000001AAA'`.execute(db)).rows[0]!;
  let a = await acct();
  t.equal(a.billingcity, 'Zürich', 'UTF-8 survives');
  t.equal(a.annualrevenue, '1250000.5', 'currency -> numeric');
  t.equal(typeof a.numberofemployees, 'number', 'int -> integer');
  t.ok(a.createddate instanceof Date, 'datetime -> timestamptz');
  t.equal(a.isdeleted, false);

  t.same(await send('update.json'), { applied: 1, ignored: 0 });
  a = await acct();
  t.equal(a.name, 'Acme AG');
  t.equal(a.phone, null, 'the cleared field is null');
  t.equal(a.billingcity, 'Zürich', 'fields the update did not carry are kept');

  await send('delete.json');
  a = await acct();
  t.equal(a.isdeleted, true, 'tombstone');
  t.equal(a.name, 'Acme AG', 'with its last values');

  await send('undelete.json');
  a = await acct();
  t.equal(a.isdeleted, false, 'revived');

  const contact = (
    await sql<Record<string, unknown>>`select birthdate::text as birthdate, hasoptedoutofemail, email from salesforce.contact`.execute(db)
  ).rows[0]!;
  t.equal(contact.birthdate, '1815-12-10', 'date -> date');
  t.equal(typeof contact.hasoptedoutofemail, 'boolean', 'boolean -> boolean');

  const replay = await send('update.json');
  t.same(replay, { applied: 0, ignored: 1 }, 'a retried push from the Apex outbox is harmless');
  const problems = await db.selectFrom('sfmirror.type_problems').selectAll().execute();
  t.same(problems, [], 'every fixture value fits its column');
});
