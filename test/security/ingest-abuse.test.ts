import net from 'node:net';
import t from 'tap';
import { sql } from 'kysely';
import { startTestDatabase } from '../support/pg.ts';
import { buildTestApp, hmacHeaders, now, pushBody, rec, SECRET } from '../support/app.ts';
import { signHmac } from '../../src/ingest/signature.ts';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../src/lib/logger.ts';

// Abuse of POST /ingest/apex by senders without a valid signature, on a real socket (loopback):
// what they can make sfmirror read, hold and answer. Bounded in time and bytes.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const MiB = 1024 * 1024;
const app = await buildTestApp(tdb, {
  maxUnverifiedBytes: 16 * MiB,
  bodyTimeoutMs: 3000,
  http: { maxConnections: 40, headersTimeoutMs: 2000, requestTimeoutMs: 20_000 },
});
t.teardown(() => app.close());
const address = await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = new URL(address);

type Answer = { status: number | undefined; head: string; error: string | undefined; closedMs: number };

/**
 * A raw HTTP/1.1 request: headers, then `bodyBytes` of body written in chunks (`pauseMs` between
 * them, or stopping after `stopAfter` bytes). Resolves with what the client read before the socket closed.
 */
function rawPost(o: {
  headers: Record<string, string>;
  bodyBytes: number;
  chunk?: number;
  pauseMs?: number;
  stopAfter?: number;
  declare?: boolean;
  timeoutMs?: number;
  /** Whether to send the whole body even after an answer arrived (default: yes, like HTTP clients). */
  keepSending?: boolean;
}): Promise<Answer> {
  return new Promise((resolve) => {
    const started = Date.now();
    const sock = net.connect(Number(port), '127.0.0.1');
    let head = '';
    let error: string | undefined;
    const chunk = Buffer.alloc(o.chunk ?? 256 * 1024, 0x20);
    const lines = [
      'POST /ingest/apex HTTP/1.1',
      'host: 127.0.0.1',
      ...(o.declare === false ? ['transfer-encoding: chunked'] : [`content-length: ${o.bodyBytes}`]),
      ...Object.entries(o.headers).map(([k, v]) => `${k}: ${v}`),
      '',
      '',
    ];
    const kill = setTimeout(() => sock.destroy(), o.timeoutMs ?? 15_000);
    let written = false;
    sock.on('data', (d) => {
      head += d.toString('latin1');
      // Close once the answer's head is in and the whole body was written (a sender that keeps
      // sending after the answer, as HTTP clients do, must still be able to read it).
      if (/\r\n\r\n/.test(head) && (written || o.keepSending === false)) sock.end();
    });
    sock.on('error', (e) => {
      error = (e as NodeJS.ErrnoException).code ?? e.message;
    });
    sock.on('close', () => {
      clearTimeout(kill);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      resolve({ status: m ? Number(m[1]) : undefined, head, error, closedMs: Date.now() - started });
    });
    sock.write(lines.join('\r\n'));
    let sent = 0;
    const limit = o.stopAfter ?? o.bodyBytes;
    const pump = () => {
      while (sent < limit && !sock.destroyed && (o.keepSending !== false || !head)) {
        const n = Math.min(chunk.length, limit - sent);
        const piece = chunk.subarray(0, n);
        const framed = o.declare === false ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), piece, Buffer.from('\r\n')]) : piece;
        sent += n;
        const more = sock.write(framed);
        if (o.pauseMs) return void setTimeout(pump, o.pauseMs);
        if (!more) return void sock.once('drain', pump);
      }
      if (sent >= o.bodyBytes && o.declare === false && !sock.destroyed) sock.write('0\r\n\r\n');
      if (sent >= limit) {
        written = true;
        if (/\r\n\r\n/.test(head)) sock.end();
      }
    };
    pump();
  });
}

const signedHeaders = (ts = now()) => ({
  'content-type': 'application/json',
  'x-sfmirror-timestamp': String(ts),
  // A well-formed signature that matches nothing.
  'x-sfmirror-signature': `sha256=${'ab'.repeat(32)}`,
});

t.test('a stale timestamp is refused before the body is read', async (t) => {
  // 8 MiB announced, none sent: the answer must come without waiting for the body.
  const a = await rawPost({ headers: signedHeaders(now() - 3600), bodyBytes: 8 * MiB, stopAfter: 0, timeoutMs: 5000 });
  t.equal(a.status, 401, a.head.split('\r\n')[0] ?? '');
  t.ok(a.closedMs < 3000, `answered in ${String(a.closedMs)} ms`);
});

t.test('a declared body above the limit gets a readable 413, even while the sender keeps sending', async (t) => {
  const a = await rawPost({ headers: signedHeaders(), bodyBytes: 20 * MiB });
  t.equal(a.status, 413, `status ${a.status}, error ${a.error}`);
  t.equal(a.error, undefined, 'no reset or EPIPE');
});

t.test('a chunked body that grows past the limit gets a readable 413', async (t) => {
  const a = await rawPost({ headers: signedHeaders(), bodyBytes: 18 * MiB, declare: false });
  t.equal(a.status, 413, `status ${a.status}, error ${a.error}`);
  t.equal(a.error, undefined, 'no reset or EPIPE');
});

t.test('a forged signature is refused at the last byte; a valid push still gets through after', async (t) => {
  const a = await rawPost({ headers: signedHeaders(), bodyBytes: 2 * MiB });
  t.equal(a.status, 401);
  const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(1, Date.now() - 1000, { Name: 'ok' }) }]);
  const res = await fetch(`${address}/ingest/apex`, { method: 'POST', body, headers: hmacHeaders(body) });
  t.equal(res.status, 200);
});

t.test('unverified bytes are bounded over all senders: the excess gets 503, and the budget comes back', async (t) => {
  // Three senders of 10 MiB, slowly enough to overlap: with a 16 MiB budget one cannot fit.
  const answers = await Promise.all(
    [0, 1, 2].map(() => rawPost({ headers: signedHeaders(), bodyBytes: 10 * MiB, chunk: 512 * 1024, pauseMs: 20 })),
  );
  const statuses = answers.map((a) => a.status).sort();
  t.ok(statuses.includes(503), `statuses ${statuses.join(',')}`);
  t.ok(
    answers.every((a) => a.status === 401 || a.status === 503),
    'every forged sender is refused',
  );
  const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(2, Date.now() - 1000, { Name: 'after' }) }]);
  const res = await fetch(`${address}/ingest/apex`, { method: 'POST', body, headers: hmacHeaders(body) });
  t.equal(res.status, 200, 'the budget was released');
});

t.test('a body that trickles in is cut off after the body timeout', async (t) => {
  const a = await rawPost({ headers: signedHeaders(), bodyBytes: 1 * MiB, chunk: 10, pauseMs: 200, timeoutMs: 10_000 });
  t.ok(a.closedMs < 6000, `socket closed after ${a.closedMs} ms`);
});

t.test('connections beyond the cap are closed on accept', async (t) => {
  const socks: net.Socket[] = [];
  let closedEarly = 0;
  await Promise.all(
    Array.from(
      { length: 60 },
      () =>
        new Promise<void>((resolve) => {
          const s = net.connect(Number(port), '127.0.0.1', () => resolve());
          s.on('error', () => resolve());
          s.on('close', () => {
            closedEarly++;
            resolve();
          });
          socks.push(s);
        }),
    ),
  );
  await new Promise((r) => setTimeout(r, 300));
  t.ok(closedEarly >= 15, `${closedEarly} of 60 connections closed by a server capped at 40`);
  for (const s of socks) s.destroy();
  await new Promise((r) => setTimeout(r, 100));
});

t.test('a poison string is refused with a 400 naming the field, and leaves no column behind', async (t) => {
  for (const [field, value] of [
    ['Nul__c', 'a\u0000b'],
    ['Lone__c', 'x\ud800y'],
  ] as const) {
    const body = pushBody([{ object: 'Account', operation: 'insert', record: rec(3, Date.now() - 1000, { [field]: value }) }]);
    const res = await fetch(`${address}/ingest/apex`, { method: 'POST', body, headers: hmacHeaders(body) });
    t.equal(res.status, 400, field);
    t.match(((await res.json()) as { message: string }).message, new RegExp(`record\\.${field}`), 'names the field');
  }
  const cols = await sql<{ c: string }>`select column_name as c from information_schema.columns
    where table_schema = 'salesforce' and table_name = 'account' and column_name in ('nul__c', 'lone__c')`.execute(db);
  t.same(cols.rows, [], 'no column was created for the refused pushes');
});

t.test('a push that fails in the database fails alone, not the pushes group-committed with it', async (t) => {
  // A real database failure for one record: a trigger refusing Name = 'boom'.
  await sql`create or replace function salesforce.refuse_boom() returns trigger language plpgsql as $$
    begin if new._sfm_fields->>'Name' = 'boom' then raise exception 'boom refused'; end if; return new; end $$`.execute(db);
  await sql`create trigger refuse_boom before insert or update on salesforce.account for each row execute function salesforce.refuse_boom()`.execute(
    db,
  );
  t.teardown(async () => {
    await sql`drop trigger if exists refuse_boom on salesforce.account`.execute(db);
  });
  let neighboursFailed = 0;
  let badFailed = 0;
  for (let round = 0; round < 5; round++) {
    const pushes = Array.from({ length: 12 }, (_, i) => {
      const name = i === 6 ? 'boom' : `fine-${round}-${i}`;
      return pushBody([{ object: 'Account', operation: 'insert', record: rec(100 + round * 20 + i, Date.now() - 1000, { Name: name }) }]);
    });
    const statuses = await Promise.all(
      pushes.map(async (body) => (await fetch(`${address}/ingest/apex`, { method: 'POST', body, headers: hmacHeaders(body) })).status),
    );
    statuses.forEach((s, i) => {
      if (i === 6) badFailed += s >= 500 ? 1 : 0;
      else neighboursFailed += s === 200 ? 0 : 1;
    });
  }
  t.equal(badFailed, 5, 'the bad push fails every time');
  t.equal(neighboursFailed, 0, 'its neighbours never do');
});

t.test('memory is not kept by refused senders: the server still answers a valid push quickly', async (t) => {
  const body = pushBody([{ object: 'Account', operation: 'update', record: rec(1, Date.now() - 500, { Name: 'still' }) }]);
  const ts = now();
  const res = await fetch(`${address}/ingest/apex`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', 'x-sfmirror-timestamp': String(ts), 'x-sfmirror-signature': signHmac(SECRET, ts, body) },
  });
  t.equal(res.status, 200);
});

t.test('an upload the sender aborts is logged as such, not as "database unavailable"', async (t) => {
  const lines: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  const logged = await buildTestApp(tdb, { log: createLogger('info', sink) });
  t.teardown(() => logged.close());
  const at = new URL(await logged.listen({ port: 0, host: '127.0.0.1' }));
  await new Promise<void>((resolve) => {
    const sock = net.connect(Number(at.port), '127.0.0.1', () => {
      sock.write(
        `POST /ingest/apex HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n` +
          `x-sfmirror-timestamp: ${now()}\r\nx-sfmirror-signature: sha256=${'ab'.repeat(32)}\r\n\r\n{"orgId":`,
      );
      setTimeout(() => {
        sock.destroy();
        resolve();
      }, 200);
    });
  });
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(
    lines.some((l) => /database unavailable/.test(l)),
    'no "database unavailable"',
  );
  t.notOk(
    lines.some((l) => /"level":50/.test(l)),
    "no error-level line for the sender's abort",
  );
});
