import t from 'tap';
import { sql } from 'kysely';
import { readStatus } from '../../src/api/status.ts';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { converged, metricValue, mirrorRows, startStream } from './harness.ts';
import { waitFor } from '../support/wait.ts';

// The faults that make other tools' CDC subscriptions die silently: each one
// is noticed, handled, and the mirror converges to the org's records.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const org = await startSalesforceOrg(t, { connectTimeout: 1 });
const FIELDS = ['Name', 'Phone'];
const ok = () => converged(db, org, 'Account', FIELDS);

t.test('expired replayId: subscribe from -1, a resync request, REST re-read converges', async (t) => {
  let { service } = await startStream(tdb, org);
  await waitFor('live', () => service.status()?.state === 'live');
  const ids = Array.from({ length: 20 }, (_, i) => org.insert('Account', { Name: `a${i}` }));
  await waitFor('first events', ok);
  await service.stop();
  // Down for longer than the retention window: these changes' events are gone for good.
  for (const id of ids.slice(0, 10)) org.update('Account', id, { Phone: 'changed while down' });
  org.remove('Account', ids[10]!);
  org.insert('Account', { Name: 'created while down' });
  org.expireReplay();
  let metrics;
  ({ service, metrics } = await startStream(tdb, org));
  t.teardown(() => service.stop());
  await waitFor('resync converged', ok);
  await waitFor(
    'resync request done',
    async () =>
      (await sql<{ n: number }>`select count(*)::int as n from sfmirror.resync_requests where status = 'done'`.execute(db)).rows[0]!.n ===
      1,
  );
  const rejected = org.stats.subscribes.find((s) => s.error);
  t.match(rejected?.error, /^400::The replayId \{\d+\} you provided was invalid/, 'the stored replayId was refused');
  // The next subscribe is from -1 (a reconnect after it, e.g. a slow machine's watchdog, asks for -2).
  const after = org.stats.subscribes.slice(org.stats.subscribes.indexOf(rejected!) + 1);
  t.equal(after[0]?.replay, -1, 'then subscribed from -1');
  const req = await sql<{
    object: string;
    status: string;
    since: Date | null;
  }>`select object, status, since from sfmirror.resync_requests`.execute(db);
  t.same(
    req.rows.map((r) => [r.object, r.status]),
    [['Account', 'done']],
    'a resync request was recorded and worked',
  );
  t.ok(req.rows[0]!.since, 'from the last applied commit time, not from the beginning');
  t.equal(await metricValue(metrics, 'sfmirror_stream_resyncs_total', { reason: 'replay_invalid' }), 1);
  const status = (await readStatus(db)).orgs.find((o) => o.alias === 'salesforce')!.stream;
  t.match(status.resyncs, [{ object: 'Account', status: 'done', reason: /replayId refused/ }], '/admin/status shows the resync');
  t.match(status.channels, [{ channel: '/data/ChangeEvents', holder: /:\d+$/ }], 'and the channel');
  // New events flow again on the live subscription.
  org.update('Account', ids[0]!, { Name: 'live again' });
  await waitFor('live events after the resync', ok);
  await waitFor('state back to live', () => service.status()?.state === 'live');
});

t.test('403::Unknown client: re-handshake and re-subscribe from the last replayId', async (t) => {
  const { service, metrics } = await startStream(tdb, org);
  t.teardown(() => service.stop());
  await waitFor('live', () => service.status()?.state === 'live');
  const handshakes = org.stats.handshakes;
  org.forgetClients();
  const id = org.insert('Account', { Name: 'during the forget' });
  await waitFor('re-handshaked', () => org.stats.handshakes > handshakes);
  org.update('Account', id, { Phone: 'after' });
  await waitFor('converged', ok);
  t.equal(
    (await mirrorRows(db, 'Account', ['Name', 'Phone'])).get(id)?.Phone,
    'after',
    'events before and after the re-handshake are mirrored',
  );
  t.ok((await metricValue(metrics, 'sfmirror_stream_rebuilds_total', { reason: 'unknown_client' })) >= 1, 'noticed and counted');
  const resub = org.stats.subscribes.at(-1)!;
  t.type(resub.replay, 'number');
  t.not(resub.replay, -1, 're-subscribed from the last replayId, not from -1');
});

t.test('401: refresh the token and rebuild the client', async (t) => {
  const { service, metrics } = await startStream(tdb, org);
  t.teardown(() => service.stop());
  await waitFor('live', () => service.status()?.state === 'live');
  const grants = org.stats.tokenGrants;
  org.revokeTokens();
  const id = org.insert('Account', { Name: 'while the session expired' });
  await waitFor('token refreshed', () => org.stats.tokenGrants > grants);
  t.ok(org.stats.tokenGrants > grants, 'a new token was granted');
  org.update('Account', id, { Phone: 'after refresh' });
  await waitFor('converged', ok);
  t.equal((await mirrorRows(db, 'Account', ['Phone'])).get(id)?.Phone, 'after refresh', 'events flow with the new token');
  t.ok((await metricValue(metrics, 'sfmirror_stream_rebuilds_total', { reason: 'auth' })) >= 1);
});

t.test('a plain access token that is refused: backing off, said loudly, never silent', async (t) => {
  const { service } = await startStream(tdb, org, { auth: 'access' });
  t.teardown(() => service.stop());
  await waitFor('live', () => service.status()?.state === 'live');
  org.revokeTokens();
  await waitFor('backing off', () => service.status()?.state === 'backing off');
  const row = await sql<{ state: string; error: string | null }>`select state, error from sfmirror.stream_state`.execute(db);
  t.equal(row.rows[0]?.state, 'backing off', 'visible in the stored stream state');
});

t.test('a server that goes silent: the watchdog rebuilds the client', async (t) => {
  const { service, metrics } = await startStream(tdb, org);
  t.teardown(() => service.stop());
  await waitFor('live', () => service.status()?.state === 'live');
  const handshakes = org.stats.handshakes;
  org.silence(true);
  await waitFor('watchdog fired', async () => (await metricValue(metrics, 'sfmirror_stream_rebuilds_total', { reason: 'watchdog' })) >= 1);
  t.ok((await metricValue(metrics, 'sfmirror_stream_rebuilds_total', { reason: 'watchdog' })) >= 1, 'the watchdog rebuilt the client');
  org.silence(false);
  const id = org.insert('Account', { Name: 'after the silence' });
  await waitFor('converged', ok);
  t.ok((await mirrorRows(db, 'Account', ['Name'])).has(id), 'an event after the silence is mirrored');
  t.ok(org.stats.handshakes > handshakes, 'through a new client (a new handshake)');
  await waitFor('live again', () => service.status()?.state === 'live');
  t.equal(service.status()?.state, 'live', 'and the stream is live again');
});

t.test('GAP_OVERFLOW: the object is resynchronised, deletes included', async (t) => {
  const { service, metrics } = await startStream(tdb, org);
  t.teardown(() => service.stop());
  await waitFor('live', () => service.status()?.state === 'live');
  await waitFor('converged before', ok);
  const live = [...org.live('Account').keys()];
  org.transaction(() => {
    for (const id of live.slice(0, 5)) org.update('Account', id, { Phone: 'bulk' }, { silent: true });
    org.remove('Account', live[5]!, { silent: true });
  });
  org.publishRaw('Account', {
    ChangeEventHeader: {
      entityName: 'Account',
      recordIds: ['000000000000000AAA'],
      changeType: 'GAP_OVERFLOW',
      transactionKey: 'big',
      sequenceNumber: 1,
      commitTimestamp: Date.now(),
      commitNumber: 5,
    },
  });
  await waitFor('converged after overflow', ok);
  t.equal(await metricValue(metrics, 'sfmirror_stream_resyncs_total', { reason: 'gap_overflow' }), 1);
  const rows = await mirrorRows(db, 'Account', ['Phone']);
  t.notOk(rows.has(live[5]!), 'the record deleted without an event is gone from the mirror');
  t.same(
    live.slice(0, 5).map((id) => rows.get(id)?.Phone),
    ['bulk', 'bulk', 'bulk', 'bulk', 'bulk'],
    'the updates without events are mirrored',
  );
});

t.test('the server restarts (sessions lost): re-handshake, resume from the last replayId', async (t) => {
  const { service } = await startStream(tdb, org);
  t.teardown(() => service.stop());
  await waitFor('live', () => service.status()?.state === 'live');
  const id = org.insert('Account', { Name: 'before the restart' });
  await waitFor('converged before', ok);
  await org.restart();
  org.update('Account', id, { Phone: 'during the restart' });
  const after = org.insert('Account', { Name: 'after the restart' });
  await waitFor('converged after the restart', ok);
  const rows = await mirrorRows(db, 'Account', ['Phone']);
  t.equal(rows.get(id)?.Phone, 'during the restart', 'the change made during the restart is mirrored');
  t.ok(rows.has(after), 'and the record created after it');
  t.not(org.stats.subscribes.at(-1)!.replay, -1, 'resumed, not from -1');
});

t.test('a rejected automatic re-subscribe (after a re-handshake) is noticed, never dropped', async (t) => {
  const { service, metrics } = await startStream(tdb, org);
  t.teardown(() => service.stop());
  await waitFor('live', () => service.status()?.state === 'live');
  const before = await metricValue(metrics, 'sfmirror_stream_resyncs_total', { reason: 'replay_invalid' });
  const id = [...org.live('Account').keys()][0]!;
  org.update('Account', id, { Phone: 'x1' });
  await waitFor('converged', ok);
  // The session is forgotten AND the replay window is gone: faye's own re-subscribe is refused.
  org.expireReplay();
  org.update('Account', id, { Phone: 'lost event' }, { silent: true });
  org.forgetClients();
  await waitFor(
    'resync after the refused re-subscribe',
    async () => (await metricValue(metrics, 'sfmirror_stream_resyncs_total', { reason: 'replay_invalid' })) > before,
  );
  await waitFor('converged', ok);
  t.equal(
    (await mirrorRows(db, 'Account', ['Phone'])).get(id)?.Phone,
    'lost event',
    'the change whose event was lost is mirrored (resync)',
  );
  await waitFor('live again', () => service.status()?.state === 'live');
  const refused = org.stats.subscribes.findLastIndex((x) => x.error);
  t.equal(org.stats.subscribes[refused + 1]?.replay, -1, 'the channel was subscribed again from -1');
});

t.test('CometD answering 503: the watchdog rebuilds the client, then back to live', async (t) => {
  const { service, metrics } = await startStream(tdb, org);
  t.teardown(() => service.stop());
  await waitFor('live', () => service.status()?.state === 'live');
  org.unavailable(true);
  await waitFor(
    'rebuilt after the 503s',
    async () => (await metricValue(metrics, 'sfmirror_stream_rebuilds_total', { reason: 'watchdog' })) >= 1,
  );
  t.ok((await metricValue(metrics, 'sfmirror_stream_rebuilds_total', { reason: 'watchdog' })) >= 1, 'the dead client was rebuilt');
  const id = org.insert('Account', { Name: 'during the outage' });
  org.unavailable(false);
  await waitFor('converged', ok);
  t.ok((await mirrorRows(db, 'Account', ['Name'])).has(id), 'the event of the outage is mirrored');
  await waitFor('live again', () => service.status()?.state === 'live');
  t.equal(service.status()?.state, 'live', 'live again');
});

t.test('an alias that belongs to another org is never written to', async (t) => {
  await sql`update sfmirror.orgs set org_id = '00D000000000099AAA' where alias = 'salesforce'`.execute(db);
  t.teardown(() => sql`update sfmirror.orgs set org_id = ${org.orgId} where alias = 'salesforce'`.execute(db));
  const { service } = await startStream(tdb, org);
  t.teardown(() => service.stop());
  const subscribes = org.stats.subscribes.length;
  await waitFor('leader tried', () => service.isLeader());
  await new Promise((r) => setTimeout(r, 500));
  t.equal(service.status(), undefined, 'no subscriber runs');
  t.equal(org.stats.subscribes.length, subscribes, 'nothing subscribed');
});
