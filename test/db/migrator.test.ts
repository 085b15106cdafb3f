import t from 'tap';
import { createDatabase } from '../../src/db/database.ts';
import { listMigrations, migrate, pendingMigrations } from '../../src/db/migrator.ts';
import { startTestDatabase } from '../support/pg.ts';

const tdb = await startTestDatabase(t, { migrate: false });

t.test('two processes migrating at once both succeed, and each migration runs once', async (t) => {
  const a = createDatabase(tdb.url);
  const b = createDatabase(tdb.url);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  t.same(await pendingMigrations(a.db), listMigrations(), 'all pending on an empty database');
  const [ra, rb] = await Promise.all([migrate(a.db), migrate(b.db)]);
  t.equal(ra.error, undefined);
  t.equal(rb.error, undefined);
  t.equal(ra.results.length + rb.results.length, listMigrations().length, 'each applied by exactly one of them');
  t.same(await pendingMigrations(a.db), []);
  const again = await migrate(a.db);
  t.same(again.results, [], 'running again applies nothing');
});
