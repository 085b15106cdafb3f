import t from 'tap';
import { sql } from 'kysely';
import { change, BASE_MS, accountId } from '../support/changes.ts';
import { tableFields } from '../../src/warehouse/bq-schema.ts';
import { enableWarehouse, saveRegistration } from '../../src/warehouse/warehouse.repository.ts';
import { copiesPerChange, outboxDepth, until, warehouseFixture } from './support.ts';

// Seeding only where it is needed, and the upgrade of a latest-state view to a CDC table.
const { db, mirror, bq, drainer, client } = await warehouseFixture(t, { enable: false });
const contactId = (n: number) => accountId(n, '003');

t.test('the warehouse turned on after data existed: seeds only records with no change queued', async (t) => {
  await mirror.apply(
    'salesforce',
    [1, 2, 3, 4, 5].map((n) => change('insert', n, BASE_MS, { Name: `old${n}` })),
  );
  t.equal(await outboxDepth(db), 0, 'warehouse off: nothing queued');
  await enableWarehouse(db, { project: 'p', dataset: 'salesforce' });
  await mirror.apply('salesforce', [
    change('update', 2, BASE_MS + 1000, { Name: 'new2' }),
    change('insert', 6, BASE_MS + 1000, { Name: 'new6' }),
  ]);
  const { drain } = drainer({ owner: 'seed' });
  drain.start();
  await until(async () => (await outboxDepth(db)) === 0 && bq.rows('salesforce', 'account').length === 6, 20_000, 'drained');
  await drain.stop();
  const history = bq.rows('salesforce', 'account_changes');
  const seeds = history.filter((r) => r._sfm_op === 'seed').map((r) => r.Id);
  t.same(seeds.sort(), [1, 3, 4, 5].map((n) => accountId(n)).sort(), 'seed rows for the records without queued changes');
  t.same(
    history
      .filter((r) => r._sfm_op !== 'seed')
      .map((r) => [r.Id, r.Name])
      .sort(),
    [
      [accountId(2), 'new2'],
      [accountId(6), 'new6'],
    ].sort(),
    'the queued changes',
  );
  const perRecord = new Map<string, number>();
  for (const r of history) perRecord.set(String(r.Id), (perRecord.get(String(r.Id)) ?? 0) + 1);
  t.same([...perRecord.values()], [1, 1, 1, 1, 1, 1], 'never a seed row and a change of the same record');
  t.same(
    bq
      .rows('salesforce', 'account')
      .map((r) => [r.Id, r.Name])
      .sort(),
    [1, 2, 3, 4, 5, 6].map((n) => [accountId(n), n === 2 ? 'new2' : n === 6 ? 'new6' : `old${n}`]).sort(),
    'the latest-state table has every record, newest state',
  );
});

t.test('upgrade: a latest-state view is replaced by a CDC table filled from the mirror; history stays', async (t) => {
  await mirror.apply(
    'salesforce',
    [1, 2, 3].map((n) => change('insert', n, BASE_MS, { Name: `c${n}` }, 'Contact')),
  );
  await mirror.apply('salesforce', [change('delete', 3, BASE_MS + 1000, {}, 'Contact')]);
  // What an earlier version left: history with the changes (drained), a view, a registration.
  await sql`delete from sfmirror.outbox where object = 'Contact'`.execute(db);
  const c = client();
  const fields = tableFields([{ field: 'Name', pgType: 'text' }]);
  await c.createTable('salesforce', 'contact_changes', { fields, partitionField: '_sfm_committed_at', clusterFields: ['Id'] });
  await c.createTable('salesforce', 'contact', { view: 'SELECT * FROM `p.salesforce.contact_changes`' });
  const old = bq.datasets.get('salesforce')!.get('contact_changes')!;
  old.rows.push(...[1, 2, 3].map((n, i) => ({ Id: contactId(n), Name: `c${n}`, _sfm_op: 'insert', _sfm_change_id: String(100 + i) })));
  await saveRegistration(db, { org: 'salesforce', table: 'contact', object: 'Contact', dataset: 'salesforce', columns: fields });
  await sql`update sfmirror.warehouse_tables set seeded_at = now() where table_name = 'contact'`.execute(db);

  const { tables } = drainer({ owner: 'upgrade' });
  const target = await tables.ensure('salesforce', 'Contact');
  t.equal(target.latestTable, 'contact');
  const latest = bq.datasets.get('salesforce')!.get('contact')!;
  t.notOk(latest.view, 'the view is gone: a table took its name');
  t.same(latest.primaryKey, ['Id'], 'primary key Id');
  t.same(
    latest.rows.map((r) => [r.Id, r.Name]).sort(),
    [
      [contactId(1), 'c1'],
      [contactId(2), 'c2'],
    ],
    "filled with the mirror's live records (the deleted one is not there)",
  );
  t.equal(bq.datasets.get('salesforce')!.get('contact_changes')!.rows.length, 3, 'history untouched: no seed rows');
  t.equal(await outboxDepth(db), 0, 'nothing queued for it');

  // Changes after the upgrade reach both tables; a second ensure does not fill again.
  await mirror.apply('salesforce', [change('update', 1, BASE_MS + 2000, { Name: 'c1 again' }, 'Contact')]);
  const { drain } = drainer({ owner: 'after' });
  drain.start();
  await until(() => latest.rows.some((r) => r.Name === 'c1 again'), 20_000, 'the change in the latest state');
  await drain.stop();
  t.same([...copiesPerChange(bq.rows('salesforce', 'contact_changes')).values()], [1, 1, 1, 1], 'history: one row per change');
  t.equal(latest.rows.length, 2);
});
