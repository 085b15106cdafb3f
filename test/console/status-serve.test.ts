import t from 'tap';
import { startBigQuery } from '../support/bigquery.ts';
import { startTestDatabase } from '../support/pg.ts';
import { freePort, runCli, startServe, type ServeProcess } from '../support/serve.ts';
import { sleep } from '../../src/lib/backoff.ts';
import { setWarehouseEnabled } from '../../src/warehouse/warehouse.repository.ts';
import type { Status } from '../../src/api/status.ts';

// Status tells the truth through `sfmirror serve` and the CLI: a stream that cannot start is
// 'backing off' with the error (not a quiet 'stopped'); a warehouse on in the database with no
// BigQuery here is warned about at start-up and in status; `sfmirror warehouse disable|enable`.
const ADMIN = 'status-admin-token-0123456789';
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const procs: ServeProcess[] = [];
t.teardown(async () => {
  for (const p of procs)
    if (p.proc.exitCode === null) {
      p.proc.kill('SIGTERM');
      await p.exited;
    }
});
const status = async (url: string) =>
  (await (await fetch(`${url}/admin/status`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as Status;

t.test('a stream that cannot start; a warehouse nobody drains', { timeout: 140_000 }, async (t) => {
  await setWarehouseEnabled(db, true, 'operator');
  const closed = await freePort();
  const srv = await startServe({
    DATABASE_URL: tdb.url,
    SF_INSTANCE_URL: `http://127.0.0.1:${closed}`,
    SF_ACCESS_TOKEN: 'token-of-nowhere',
    SFMIRROR_ADMIN_TOKEN: ADMIN,
    SFMIRROR_CDC_LEADER_POLL_MS: '200',
  });
  procs.push(srv);
  t.match(srv.output(), /the warehouse is on in the database but BIGQUERY_PROJECT is not set here/, 'warned at start-up');
  let channel: Status['orgs'][number]['stream']['channels'][number] | undefined;
  for (const until = Date.now() + 60_000; Date.now() < until; await sleep(200)) {
    channel = (await status(srv.url)).orgs[0]?.stream.channels[0];
    if (channel?.state === 'backing off') break;
  }
  t.match(channel, { state: 'backing off', error: /ECONNREFUSED|fetch failed|connect/i }, 'backing off, with the last error');
  const w = (await status(srv.url)).warehouse;
  t.match(w, { enabled: true, configuredHere: false, warning: /nobody here sends them/ });
  const cli = await runCli(['status'], { DATABASE_URL: tdb.url, SF_INSTANCE_URL: `http://127.0.0.1:${closed}`, SF_ACCESS_TOKEN: 'x' });
  t.match(
    cli.stdout,
    /stream \/data\/ChangeEvents: backing off.*ECONNREFUSED|stream \/data\/ChangeEvents: backing off/,
    'sfmirror status too',
  );
  t.match(cli.stdout, /WARNING: the warehouse is on/);
  srv.proc.kill('SIGTERM');
  await srv.exited;
});

t.test('sfmirror warehouse disable|enable; serve with BigQuery leaves a disable in place', { timeout: 140_000 }, async (t) => {
  const env = { DATABASE_URL: tdb.url };
  const off = await runCli(['warehouse', 'disable'], env);
  t.equal(off.code, 0, off.stderr);
  t.match(off.stdout, /warehouse off/);
  t.equal((await runCli(['warehouse', 'disable', '--org', 'x'], env)).code, 2, 'no options');
  const bq = await startBigQuery(t);
  const srv = await startServe({
    DATABASE_URL: tdb.url,
    SFMIRROR_ADMIN_TOKEN: ADMIN,
    BIGQUERY_PROJECT: 'p',
    BIGQUERY_API_ENDPOINT: bq.url,
  });
  procs.push(srv);
  t.match((await status(srv.url)).warehouse, { enabled: false, configuredHere: true, warning: null }, "the operator's disable stands");
  t.match(srv.output(), /switched off by the operator/);
  const on = await runCli(['warehouse', 'enable'], env);
  t.equal(on.code, 0);
  t.match(on.stdout, /warehouse on/);
  t.match(
    on.stderr,
    /warning: the warehouse is on in the database but BIGQUERY_PROJECT is not set/,
    'the CLI without BigQuery says who drains',
  );
  t.match((await status(srv.url)).warehouse, { enabled: true, configuredHere: true, warning: null });
  srv.proc.kill('SIGTERM');
  await srv.exited;
});
