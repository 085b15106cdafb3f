import t from 'tap';
import { sql } from 'kysely';
import { makeVersion } from '../../src/changes/version.ts';
import { sleep } from '../../src/lib/backoff.ts';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { metricValue } from '../stream/harness.ts';
import { startFormulas } from './harness.ts';

// The periodic refresh of a large object reads it with one Bulk API 2.0 job (issue 15), and only
// values that changed are applied: an unchanged formula bumps no _sfm_seq.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const DAY = 86_400_000;
const org = await startSalesforceOrg(t, {
  types: { Opportunity: { CloseDate: 'date', Amount: 'currency' } },
  formulas: {
    Opportunity: {
      Days_Open__c: {
        formula: 'TODAY() - CloseDate',
        type: 'double',
        compute: (r, ctx) => Math.floor((ctx.now.getTime() - Date.parse(String(r.CloseDate))) / DAY),
      },
      Stale__c: { formula: 'IF(Amount > 0, $User.Id, null)', type: 'string', compute: () => 'same' },
    },
  },
});
const f = await startFormulas(tdb, org, { stream: false, tuning: { bulkThreshold: 100, refreshIntervalMs: 1000 } });
t.teardown(() => f.stop());

t.test('a large object is refreshed with one Bulk job; unchanged values bump nothing', async (t) => {
  for (let i = 0; i < 300; i++)
    org.insert('Opportunity', { Name: `D${i}`, CloseDate: i % 2 ? '2026-01-01' : '2026-02-01', Amount: i }, { silent: true });
  const records = [...org.live('Opportunity').values()];
  const version = makeVersion(Date.now() - 1000);
  const changes = records.map((r) => {
    const { Id, IsDeleted: _d, ...fields } = r;
    return { object: 'Opportunity', operation: 'insert' as const, id: String(Id), fields, version };
  });
  await f.inner.apply('salesforce', changes);
  await f.rereader.tick(); // the first look starts the clock of the periodic refresh
  t.equal(org.bulk.stats.jobs.length, 0);
  const seqBefore = await sql<{ m: string }>`select max(_sfm_seq)::text as m from salesforce.opportunity`.execute(db);
  org.advanceClock(DAY);
  await sleep(1100);
  await f.rereader.tick();
  t.equal(org.bulk.stats.jobs.length, 1, 'one Bulk API 2.0 job');
  t.match(org.bulk.stats.jobs[0]!.query, /FROM Opportunity/);
  const rows = await sql<{
    id: string;
    d: number;
  }>`select sfid as id, (_sfm_fields->>'Days_Open__c')::int as d from salesforce.opportunity`.execute(db);
  const truth = org.live('Opportunity');
  t.ok(
    rows.rows.every((r) => r.d === truth.get(r.id)!.Days_Open__c),
    'every value a day older',
  );
  const changedSeqs = await sql<{
    n: string;
  }>`select count(*) as n from salesforce.opportunity where _sfm_seq > ${seqBefore.rows[0]!.m}::bigint`.execute(db);
  t.equal(changedSeqs.rows[0]!.n, '300', 'each changed record got a new _sfm_seq, once');
  t.equal(await metricValue(f.metrics, 'sfmirror_formula_rereads_total', { object: 'Opportunity', result: 'changed' }), 300);
  t.ok((await metricValue(f.metrics, 'sfmirror_formula_api_calls_total', { api: 'bulk' })) >= 3, 'job, poll, results counted');
  // The same again without the clock moving: nothing changes, nothing is applied.
  await sleep(1100);
  await f.rereader.tick();
  t.equal(org.bulk.stats.jobs.length, 2);
  const after = await sql<{ m: string }>`select max(_sfm_seq)::text as m from salesforce.opportunity`.execute(db);
  t.equal(await metricValue(f.metrics, 'sfmirror_formula_rereads_total', { object: 'Opportunity', result: 'unchanged' }), 300);
  t.ok(BigInt(after.rows[0]!.m) === BigInt(seqBefore.rows[0]!.m) + 300n, 'no new _sfm_seq for unchanged values');
});
