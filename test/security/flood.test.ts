import fs from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { startTestDatabase } from '../support/pg.ts';
import { startServe } from '../support/serve.ts';
import { SECRET } from '../support/app.ts';

// A forged-signature flood against a spawned `sfmirror serve`, its memory measured from outside the
// process (/proc/<pid>/status). Before the fix, 64 senders of 15 MiB took RSS from 143 MB to 1.1 GB.
// Here: 32 senders of 15 MiB at once (480 MiB sent), loopback only, bounded in time.
const tdb = await startTestDatabase(t);
const srv = await startServe({ DATABASE_URL: tdb.url, SFMIRROR_INGEST_SECRETS: SECRET, LOG_LEVEL: 'error' });
t.teardown(async () => {
  srv.proc.kill('SIGTERM');
  await srv.exited;
});
const pid = srv.proc.pid!;
const port = Number(new URL(srv.url).port);
const MiB = 1024 * 1024;

const rssMiB = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
};

function forgedSender(bytes: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let head = '';
    const chunk = Buffer.alloc(256 * 1024, 0x20);
    const kill = setTimeout(() => sock.destroy(), 60_000);
    sock.on('data', (d) => {
      head += d.toString('latin1');
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(kill);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      resolve(m ? Number(m[1]) : undefined);
    });
    const ts = Math.floor(Date.now() / 1000);
    sock.write(
      `POST /ingest/apex HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ${bytes}\r\n` +
        `x-sfmirror-timestamp: ${ts}\r\nx-sfmirror-signature: sha256=${'cd'.repeat(32)}\r\n\r\n`,
    );
    let sent = 0;
    const pump = () => {
      while (sent < bytes && !sock.destroyed) {
        const n = Math.min(chunk.length, bytes - sent);
        sent += n;
        if (!sock.write(chunk.subarray(0, n))) return void sock.once('drain', pump);
      }
    };
    pump();
  });
}

t.test('a forged-signature flood keeps RSS bounded, also when repeated', { timeout: 120_000 }, async (t) => {
  // Warm up: a few refused requests so lazy allocations are counted in the baseline.
  await Promise.all([0, 1].map(() => forgedSender(1 * MiB)));
  await new Promise((r) => setTimeout(r, 500));
  const baseline = rssMiB();
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMiB());
  }, 50);
  const started = Date.now();
  const statuses = await Promise.all(Array.from({ length: 32 }, () => forgedSender(15 * MiB)));
  clearInterval(sampler);
  const seconds = (Date.now() - started) / 1000;
  // RSS as the process goes idle (sampled for up to 10 s): freed buffers stay with the allocator
  // (glibc keeps them for reuse), so "after" is bounded like the peak rather than back at baseline.
  let after = rssMiB();
  for (let i = 0; i < 20 && after - baseline >= 64; i++) {
    await new Promise((r) => setTimeout(r, 500));
    after = rssMiB();
  }
  t.comment(
    `RSS baseline ${baseline.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB, after ${after.toFixed(0)} MiB; 480 MiB sent in ${seconds.toFixed(1)} s`,
  );
  t.ok(
    statuses.every((s) => s === 401 || s === 503),
    `every forged sender refused (${[...new Set(statuses)].join(',')})`,
  );
  // The bound: 32 MiB of unverified bodies (SFMIRROR_INGEST_UNVERIFIED_BYTES) plus socket and
  // parser buffers; 200 MiB leaves room for the allocator, far below the 480 MiB an unbounded server holds.
  t.ok(peak - baseline < 200, `peak growth ${(peak - baseline).toFixed(0)} MiB < 200 MiB`);
  t.ok(after - baseline < 200, `after the flood ${(after - baseline).toFixed(0)} MiB above baseline`);
  // A second flood reuses that memory instead of adding to it: the bound holds over time.
  const statuses2 = await Promise.all(Array.from({ length: 32 }, () => forgedSender(15 * MiB)));
  const second = rssMiB();
  t.comment(`after a second flood ${second.toFixed(0)} MiB`);
  t.ok(
    statuses2.every((s) => s === 401 || s === 503),
    'the second flood is refused too',
  );
  t.ok(second - baseline < 200, `after two floods ${(second - baseline).toFixed(0)} MiB above baseline`);
  const health = await fetch(`${srv.url}/healthz`);
  t.equal(health.status, 200, 'still serving');
});
