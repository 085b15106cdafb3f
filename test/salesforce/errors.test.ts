import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { requestToken } from '../../src/salesforce/auth.ts';
import { createSalesforceSession } from '../../src/salesforce/client.ts';
import { classifySalesforceError, SalesforceError, type SalesforceErrorKind } from '../../src/salesforce/errors.ts';

// Salesforce errors carry the decision (src/salesforce/errors.ts): one table of what each failure
// means, and no call to Salesforce that can hang.

t.test('every failure is classified in one place', async (t) => {
  const jsforceError = (errorCode: string, message: string) =>
    Object.assign(new Error(`${errorCode}: ${message}`), { errorCode, name: errorCode });
  const cases: Array<[string, unknown, { status?: number; code?: string } | undefined, SalesforceErrorKind, string]> = [
    ['REST limit', jsforceError('REQUEST_LIMIT_EXCEEDED', 'TotalRequests Limit exceeded.'), undefined, 'limit', 'REQUEST_LIMIT_EXCEEDED'],
    ['Bulk limit', undefined, { status: 403, code: 'LIMIT_EXCEEDED' }, 'limit', 'LIMIT_EXCEEDED'],
    ['revoked grant', undefined, { status: 400, code: 'invalid_grant' }, 'revoked', 'invalid_grant'],
    ['expired session', jsforceError('INVALID_SESSION_ID', 'Session expired'), undefined, 'auth', 'INVALID_SESSION_ID'],
    [
      'getDeleted too far back',
      jsforceError('INVALID_REPLICATION_DATE', 'start too early'),
      undefined,
      'out-of-reach',
      'INVALID_REPLICATION_DATE',
    ],
    ['getDeleted too many ids', jsforceError('EXCEEDED_ID_LIMIT', 'too many'), undefined, 'too-large', 'EXCEEDED_ID_LIMIT'],
    ['a Bulk job Salesforce no longer has', undefined, { status: 404, code: 'NOT_FOUND' }, 'gone', 'NOT_FOUND'],
    ['a bad query', jsforceError('INVALID_FIELD', 'No such column'), undefined, 'invalid', 'INVALID_FIELD'],
    ['a 503 without a code', undefined, { status: 503 }, 'transient', 'HTTP_503'],
    ['a 404 without a code', undefined, { status: 404 }, 'gone', 'HTTP_404'],
    ['a 400 without a code', undefined, { status: 400 }, 'invalid', 'HTTP_400'],
    [
      'connection refused',
      Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }),
      undefined,
      'transient',
      'ECONNREFUSED',
    ],
    ['fetch timeout', new DOMException('The operation was aborted due to timeout', 'TimeoutError'), undefined, 'timeout', 'UNKNOWN'],
  ];
  for (const [what, e, from, kind, code] of cases) {
    const c = classifySalesforceError(e, from);
    t.match(c, { kind, code }, what);
    t.ok(c instanceof SalesforceError, `${what}: a SalesforceError`);
  }
  const already = new SalesforceError('gone', 'X', 'm');
  t.equal(classifySalesforceError(already), already, 'a classified error stays as it is');
  t.equal(new SalesforceError('limit', 'L', 'm').retryable, true);
  t.equal(new SalesforceError('revoked', 'R', 'm').retryable, false);
});

t.test('a Salesforce that never answers: every kind of call fails with a timeout instead of hanging', async (t) => {
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer(() => {
    /* accepts the request and never answers */
  });
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const started = Date.now();
  await t.rejects(
    requestToken({ loginUrl: url, refreshToken: 'r', clientId: 'c', timeoutMs: 300 }),
    { kind: 'timeout' } as object as Error,
    'token request',
  );
  t.ok(Date.now() - started < 5000, 'within its timeout');

  const session = createSalesforceSession({ instanceUrl: url, accessToken: 'a', loginUrl: url, version: '62.0', timeoutMs: 300 });
  await t.rejects(session.describeFields('Account'), { kind: 'timeout' } as object as Error, 'REST call through jsforce');
  await t.rejects(
    session.readBulkPage('Account', '750000000000001', undefined, 10),
    { kind: 'timeout' } as object as Error,
    'Bulk API 2.0 results',
  );
  await t.rejects(
    session.awaitBulkRead('750000000000001', { pollMs: 10, timeoutMs: 10_000 }),
    { kind: 'timeout' } as object as Error,
    'Bulk job state',
  );
});

t.test('a refused token names the decision: revoked for good, or a failure to retry', async (t) => {
  let answer: { status: number; body: object } = {
    status: 400,
    body: { error: 'invalid_grant', error_description: 'expired access/refresh token' },
  };
  const server = http.createServer((_req, res) => {
    res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const o = { loginUrl: url, refreshToken: 'r', clientId: 'c' };
  await t.rejects(requestToken(o), { kind: 'revoked', code: 'invalid_grant', message: /expired access\/refresh token/ } as object as Error);
  answer = { status: 503, body: {} };
  await t.rejects(requestToken(o), { kind: 'transient', code: 'HTTP_503' } as object as Error);
  answer = { status: 400, body: { error: 'invalid_client_id' } };
  await t.rejects(requestToken(o), { kind: 'auth', code: 'invalid_client_id' } as object as Error);
});
