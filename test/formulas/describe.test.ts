import t from 'tap';
import { sql } from 'kysely';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { waitFor } from '../support/wait.ts';
import { startFormulas } from './harness.ts';

// Tables from describe (issue 15): a new field in the org gets its column without a restart, when a
// payload names it (describe asked again at once) and on the scheduled describe refresh.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const types: Record<string, Record<string, string>> = { Contact: { LastName: 'string', Email: 'email' } };
const org = await startSalesforceOrg(t, { connectTimeout: 1, types });
let now = Date.now();
const f = await startFormulas(tdb, org, { describeNow: () => now, tuning: { columnsEveryMs: 0 } });
t.teardown(() => f.stop());
await waitFor('live', () => f.service!.status()?.state === 'live');

const columns = async () =>
  new Map(
    (
      await sql<{ c: string; t: string }>`select column_name as c, data_type as t from information_schema.columns
        where table_schema = 'salesforce' and table_name = 'contact'`.execute(db)
    ).rows.map((r) => [r.c, r.t]),
  );

t.test('a field a change names that describe did not list: describe is asked again and types the column', async (t) => {
  const c = org.insert('Contact', { LastName: 'Doe' });
  await waitFor('table', async () => (await columns()).has('email'));
  t.notOk((await columns()).has('level__c'));
  types.Contact!.Level__c = 'double'; // added in Setup; the cached describe does not know it
  org.update('Contact', c, { Level__c: 2.5 });
  await waitFor('column', async () => (await columns()).has('level__c'));
  t.equal((await columns()).get('level__c'), 'numeric', 'typed from the fresh describe, not text');
});

t.test('a new field nobody has set yet appears on the scheduled describe refresh', async (t) => {
  types.Contact!.Department = 'string';
  await f.rereader.tick();
  t.notOk((await columns()).has('department'), 'the cached describe is still fresh');
  now += 61_000;
  await f.rereader.tick();
  t.equal((await columns()).get('department'), 'text', 'after the refresh interval, the column is there');
});
