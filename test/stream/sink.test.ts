import t from 'tap';
import { sql } from 'kysely';
import { decodeCdcEvent } from '../../src/changes/cdc-event.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { requestResync } from '../../src/mirror/resync-requests.repository.ts';
import type { Pending } from '../../src/stream/batcher.ts';
import { createSink } from '../../src/stream/sink.ts';
import { createStatusReporter } from '../../src/stream/status.ts';
import { readStreamCheckpoint } from '../../src/stream/stream.repository.ts';
import { createTestMirror } from '../support/changes.ts';
import { startTestDatabase } from '../support/pg.ts';

// The stream's sink (apply + checkpoint) and status reporting, against PostgreSQL, without faye.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const mirror = await createTestMirror(db);
const log = createLogger('silent');
const CH = '/data/ChangeEvents';
const T = Date.UTC(2024, 2, 10, 12);

function pending(replayId: number, header: Record<string, unknown>, fields: Record<string, unknown> = {}): Pending {
  const r = decodeCdcEvent({
    schema: 's',
    event: { replayId },
    payload: {
      ChangeEventHeader: {
        entityName: 'Account',
        recordIds: ['001000000000001AAA'],
        changeType: 'UPDATE',
        transactionKey: `tk${replayId}`,
        sequenceNumber: 1,
        commitTimestamp: T + replayId,
        commitNumber: replayId,
        changedFields: Object.keys(fields),
        ...header,
      },
      ...fields,
    },
  });
  if (!r.ok) throw new Error(r.error);
  return { channel: CH, replayId, commitTimestamp: r.event.header.commitTimestamp, key: `tk${replayId}`, event: r.event };
}

const sinkWith = (objects?: string[]) =>
  createSink({
    db,
    mirror,
    // No event below needs a REST re-read: a call would fail the test.
    sf: {
      readRecords: async () => {
        throw new Error('no REST read expected');
      },
    },
    org: 'salesforce',
    isAllowed: (o) => !objects || objects.includes(o),
    requestResync: async (r) => {
      await requestResync(db, 'salesforce', r);
    },
    resyncMarginMs: 60_000,
    log,
  });

t.test('a batch is applied with its checkpoint in one transaction', async (t) => {
  const value = await sinkWith().apply(CH, [pending(1, { changeType: 'CREATE' }, { Name: 'Acme' }), pending(2, {}, { Phone: '555' })]);
  t.same(value, { replayId: 2, commitTimestamp: T + 2 });
  const row = await sql<{ f: Record<string, unknown> }>`select _sfm_fields as f from salesforce.account`.execute(db);
  t.match(row.rows[0]?.f, { Name: 'Acme', Phone: '555' });
  t.match(await readStreamCheckpoint(db, 'salesforce', CH), { replayId: 2, commitTimestamp: T + 2 });
});

t.test('a batch whose events are all filtered out moves the checkpoint alone', async (t) => {
  await sinkWith(['Contact']).apply(CH, [pending(3, {}, { Phone: 'not mirrored' })]);
  t.match(await readStreamCheckpoint(db, 'salesforce', CH), { replayId: 3 });
  const row = await sql<{ f: Record<string, unknown> }>`select _sfm_fields as f from salesforce.account`.execute(db);
  t.equal(row.rows[0]?.f.Phone, '555', 'the filtered change was not applied');
});

t.test('GAP_OVERFLOW becomes one resync request, from before the event', async (t) => {
  const sink = sinkWith();
  await sink.apply(CH, [pending(4, { changeType: 'GAP_OVERFLOW', recordIds: ['000000000000000AAA'] })]);
  await sink.apply(CH, [pending(5, { changeType: 'GAP_OVERFLOW', recordIds: ['000000000000000AAA'] })]);
  const r = await sql<{ object: string; since: Date; status: string }>`select object, since, status from sfmirror.resync_requests`.execute(
    db,
  );
  t.equal(r.rows.length, 1, 'the open request already covers the second overflow');
  t.match(r.rows[0], { object: 'Account', status: 'pending' });
  t.equal(r.rows[0]!.since.getTime(), T + 4 - 60_000, 'since the event less the margin');
  t.match(await readStreamCheckpoint(db, 'salesforce', CH), { replayId: 5 });
});

t.test('status: a state change is written at once; committed batches show in the snapshot', async (t) => {
  let now = T;
  const status = createStatusReporter({ db, org: 'salesforce', channels: [CH], log, now: () => now, replayFrom: () => -2 });
  await status.changed('connecting', null);
  let row = await sql<{ state: string; replay_id: string | null }>`select state, replay_id from sfmirror.stream_state`.execute(db);
  t.same(row.rows, [{ state: 'connecting', replay_id: '-2' }], 'the replayId to come before any batch');
  await status.changed('live', null);
  status.committed(CH, { replayId: 9, commitTimestamp: T - 500 }, [T - 700, T - 500]);
  now += 10;
  t.match(status.snapshot(), { state: 'live', error: null, eventsPerSecond: 0.2, channels: [{ channel: CH, replayId: 9, lagMs: 500 }] });
  await status.persist(true);
  row = await sql<{ state: string; replay_id: string | null }>`select state, replay_id from sfmirror.stream_state`.execute(db);
  t.same(row.rows, [{ state: 'live', replay_id: '9' }]);
  t.equal(status.changed('live', null), undefined, 'no write when nothing changed');
});
