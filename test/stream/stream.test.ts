import t from 'tap';
import { sql } from 'kysely';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { converged, metricValue, startStream } from './harness.ts';
import { waitFor } from '../support/wait.ts';

// The CDC stream end to end: the stand-in org's DML -> faye/CometD -> decoder -> mirror.apply,
// compared with the org's true records.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const org = await startSalesforceOrg(t, { connectTimeout: 1, types: { Account: { AnnualRevenue: 'currency', NumberOfEmployees: 'int' } } });
const FIELDS = ['Name', 'Phone', 'AnnualRevenue', 'BillingStreet', 'BillingCity', 'Description'];

t.test('every shape converges: create, update, null, compound, delete, undelete, diff, gap', async (t) => {
  const { service, metrics } = await startStream(tdb, org);
  t.teardown(() => service.stop());
  await waitFor('live', () => service.status()?.state === 'live');
  const orgRow = await db
    .selectFrom('sfmirror.orgs')
    .select(['org_id', 'instance_url'])
    .where('alias', '=', 'salesforce')
    .executeTakeFirstOrThrow();
  t.equal(orgRow.org_id?.trim(), org.orgId, 'the org id from the identity registers the org');

  const a = org.insert('Account', { Name: 'Acme', Phone: '555', AnnualRevenue: 10, BillingStreet: '1 Main', BillingCity: 'Paris' });
  const b = org.insert('Account', { Name: 'Beta', Phone: '1' });
  org.update('Account', a, { Phone: null, BillingCity: 'Lyon' });
  org.transaction(() => {
    org.update('Account', b, { Name: 'Beta 2' });
    org.remove('Account', a);
  });
  org.undelete('Account', a);
  // A long text that CDC sends as a diff: the mirror re-reads it through REST.
  org.update('Account', b, { Description: 'x'.repeat(2000) }, { silent: true });
  org.publishRaw('Account', {
    ChangeEventHeader: {
      entityName: 'Account',
      recordIds: [b],
      changeType: 'UPDATE',
      transactionKey: 'tk-diff',
      sequenceNumber: 1,
      commitTimestamp: Date.now(),
      commitNumber: 1,
      changedFields: ['Description'],
    },
    Description: { diff: '@@ -0,0 +1 @@\n+xxxx' },
  });
  // Changes Salesforce lost track of: GAP events, re-read through REST (gone = deleted).
  const c = org.insert('Account', { Name: 'Gamma' }, { silent: true });
  const d = org.insert('Account', { Name: 'Delta' });
  org.remove('Account', d, { silent: true, hard: true });
  org.gap('Account', 'GAP_UPDATE', [c, d]);
  await waitFor('mirror equals org', () => converged(db, org, 'Account', FIELDS));
  const dead = await sql<{ isdeleted: boolean }>`select isdeleted from salesforce.account where sfid = ${d}`.execute(db);
  t.equal(dead.rows[0]?.isdeleted, true, 'a GAP record that is gone becomes a tombstone');
  const cp = await db
    .selectFrom('sfmirror.checkpoints')
    .select('value')
    .where('source', '=', 'cdc:/data/ChangeEvents')
    .executeTakeFirstOrThrow();
  t.equal((cp.value as { replayId: number }).replayId, org.lastReplayId, 'the checkpoint is the last replayId');
  t.ok((await metricValue(metrics, 'sfmirror_stream_events_total', { result: 'committed' })) >= 8);
});

t.test(
  'a burst of 5,000 events converges; replay after restart loses nothing and applies nothing twice',
  { timeout: 180_000 },
  async (t) => {
    let { service, metrics } = await startStream(tdb, org);
    await waitFor('live', () => service.status()?.state === 'live');
    const ids: string[] = [];
    for (let i = 0; i < 2500; i++) ids.push(org.insert('Account', { Name: `n${i}`, AnnualRevenue: i }));
    for (let i = 0; i < 2500; i++) org.update('Account', ids[i]!, { Name: `m${i}` });
    await waitFor('burst converged', () => converged(db, org, 'Account', FIELDS), { timeoutMs: 45_000 });
    t.equal(
      await metricValue(metrics, 'sfmirror_changes_total', { source: 'cdc', result: 'applied' }),
      5000,
      'each of the 5,000 changes applied once',
    );
    await service.stop();

    // While sfmirror is down, the org changes on; on start it resumes from the stored replayId.
    for (let i = 0; i < 300; i++) org.update('Account', ids[i]!, { Phone: `p${i}` });
    ({ service, metrics } = await startStream(tdb, org));
    t.teardown(() => service.stop());
    await waitFor('caught up after restart', () => converged(db, org, 'Account', FIELDS.concat('Phone')), { timeoutMs: 30_000 });
    await waitFor(
      'all committed',
      async () => (await metricValue(metrics, 'sfmirror_stream_events_total', { result: 'committed' })) >= 300,
    );
    t.equal(
      await metricValue(metrics, 'sfmirror_stream_events_total', { result: 'committed' }),
      300,
      'only the events after the checkpoint are replayed',
    );
    t.equal(await metricValue(metrics, 'sfmirror_changes_total', { source: 'cdc', result: 'ignored' }), 0, 'nothing applied twice');
    const resumed = org.stats.subscribes.at(-1)!;
    t.type(resumed.replay, 'number');
    t.not(resumed.replay, -1, 'resumed from the stored replayId');
  },
);

t.test('per-object channels on one client: one replay extension knows every channel', async (t) => {
  const channels = ['/data/AccountChangeEvent', '/data/ContactChangeEvent'];
  let { service } = await startStream(tdb, org, { channels });
  await waitFor('live', () => service.status()?.state === 'live');
  org.insert('Account', { Name: 'per-object' });
  const c = org.insert('Contact', { FirstName: 'Ada', LastName: 'Lovelace', MailingCity: 'London' });
  await waitFor(
    'both objects converge',
    async () => (await converged(db, org, 'Account', FIELDS)) && converged(db, org, 'Contact', ['FirstName', 'LastName', 'MailingCity']),
  );
  await service.stop();
  org.update('Contact', c, { LastName: 'King' });
  org.insert('Account', { Name: 'while down' });
  const before = org.stats.subscribes.length;
  ({ service } = await startStream(tdb, org, { channels }));
  t.teardown(() => service.stop());
  await waitFor(
    'caught up',
    async () => (await converged(db, org, 'Account', FIELDS)) && converged(db, org, 'Contact', ['FirstName', 'LastName', 'MailingCity']),
  );
  const resumed = org.stats.subscribes.slice(before);
  const cps = await db
    .selectFrom('sfmirror.checkpoints')
    .select(['source', 'value'])
    .where('source', 'like', 'cdc:/data/%ChangeEvent')
    .execute();
  t.equal(cps.length, 2, 'one checkpoint per channel');
  for (const ch of channels) {
    const sub = resumed.find((s) => s.channel === ch);
    t.type(sub?.replay, 'number', `${ch} resumed from its own replayId`);
    t.not(sub?.replay, -1);
  }
  t.not(resumed[0]!.replay, resumed[1]!.replay, 'each channel carries its own replayId');
});
