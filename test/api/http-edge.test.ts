import t from 'tap';
import { startTestDatabase } from '../support/pg.ts';
import { ADMIN_TOKEN, buildTestApp, hmacHeaders, pushBody } from '../support/app.ts';

// The HTTP surface's edges a new user meets first: metric names, request ids, the words of a 400.
const tdb = await startTestDatabase(t);
const app = await buildTestApp(tdb, { readApi: { envTokens: [{ name: 'backend', token: 'backend-token-0123456789' }] } });
t.teardown(() => app.close());
const reader = { authorization: 'Bearer backend-token-0123456789' };

t.test('metrics use the standard process_* and nodejs_* names, never a doubled prefix', async (t) => {
  const body = (await app.inject('/metrics')).body;
  t.match(body, /^process_cpu_seconds_total /m);
  t.match(body, /^nodejs_heap_size_used_bytes /m);
  t.notMatch(body, /sfmirror_process_/);
  t.match(body, /^# TYPE sfmirror_pushes_total counter/m);
});

t.test('x-request-id is echoed; one is made when the caller sends none', async (t) => {
  const mine = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'abc-123' } });
  t.equal(mine.headers['x-request-id'], 'abc-123');
  const made = await app.inject('/healthz');
  t.type(made.headers['x-request-id'], 'string');
  t.ok(String(made.headers['x-request-id']).length > 0);
  const refused = await app.inject({ url: '/admin/status', headers: { 'x-request-id': 'err-1' } });
  t.equal(refused.statusCode, 401);
  t.equal(refused.headers['x-request-id'], 'err-1', 'errors carry it too');
});

t.test("Fastify's validation messages start with the parameter at fault", async (t) => {
  const r = await app.inject({ url: '/api/v1/objects/Account?limit=5000', headers: reader });
  t.equal(r.statusCode, 400);
  t.match(r.json().message, /^limit: must be <= 1000$/);
  const st = await app.inject({ url: `/admin/status?org=${'x'.repeat(50)}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.equal(st.statusCode, 400);
  t.match(st.json().message, /^org: must NOT have more than 40 characters$/);
});

t.test('an 18-character id with a wrong suffix is told apart from a malformed one', async (t) => {
  const body = pushBody(
    [
      { object: 'Account', operation: 'insert', record: { Id: '0015g00000ABCDeAAH', SystemModstamp: '2024-03-10T12:00:00.000Z' } },
      { object: 'Account', operation: 'insert', record: { Id: '001-nope', SystemModstamp: '2024-03-10T12:00:00.000Z' } },
    ],
    '00D5g000004ABCDEAM',
  );
  const r = await app.inject({ method: 'POST', url: '/ingest/apex', payload: body, headers: hmacHeaders(body) });
  t.equal(r.statusCode, 400);
  const details = r.json().details.join('\n');
  t.match(
    details,
    /orgId: "00D5g000004ABCDEAM" is not a Salesforce id: its last 3 characters are a checksum of the first 15 and should be EA4/,
  );
  t.match(details, /changes\[0\]\.record\.Id: "0015g00000ABCDeAAH" is not a Salesforce id: .* should be AAP/);
  t.match(details, /changes\[1\]\.record\.Id: "001-nope" is not a Salesforce id \(15 or 18 letters and digits\)/);
  const get = await app.inject({ url: '/api/v1/objects/Account/0015g00000ABCDeAAH', headers: reader });
  t.equal(get.statusCode, 400);
  t.match(get.json().message, /^id: "0015g00000ABCDeAAH" is not a Salesforce id: .* should be AAP/);
});

t.test('CORS for the read API: off by default, on for the configured origins only', async (t) => {
  const plain = await app.inject({ url: '/api/v1/changes?since=0', headers: { ...reader, origin: 'https://app.example.com' } });
  t.equal(plain.headers['access-control-allow-origin'], undefined, 'off by default');
  t.equal(
    (await app.inject({ method: 'OPTIONS', url: '/api/v1/objects/Account', headers: { origin: 'https://app.example.com' } })).statusCode,
    404,
  );

  const cors = await buildTestApp(tdb, {
    corsOrigins: ['https://app.example.com'],
    readApi: { envTokens: [{ name: 'backend', token: 'backend-token-0123456789' }] },
  });
  t.teardown(() => cors.close());
  const pre = await cors.inject({
    method: 'OPTIONS',
    url: '/api/v1/objects/Account',
    headers: {
      origin: 'https://app.example.com',
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'authorization',
    },
  });
  t.equal(pre.statusCode, 204, 'the preflight needs no token');
  t.equal(pre.headers['access-control-allow-origin'], 'https://app.example.com');
  t.match(pre.headers['access-control-allow-headers'], /authorization/);
  const get = await cors.inject({ url: '/api/v1/changes?since=0', headers: { ...reader, origin: 'https://app.example.com' } });
  t.equal(get.statusCode, 200);
  t.equal(get.headers['access-control-allow-origin'], 'https://app.example.com');
  t.match(get.headers['access-control-expose-headers'], /etag/);
  const other = await cors.inject({ url: '/api/v1/changes?since=0', headers: { ...reader, origin: 'https://evil.example.com' } });
  t.equal(other.headers['access-control-allow-origin'], undefined, 'another origin gets no CORS header');
  const otherPre = await cors.inject({ method: 'OPTIONS', url: '/api/v1/changes', headers: { origin: 'https://evil.example.com' } });
  t.equal(otherPre.statusCode, 403);
  t.equal(
    (await cors.inject({ url: '/admin/status', headers: { origin: 'https://app.example.com' } })).headers['access-control-allow-origin'],
    undefined,
    'only the read API',
  );
});
