import t from 'tap';
import { sql } from 'kysely';
import type { Change, FieldValue } from '../../src/changes/change.ts';
import { createTombstonePurger } from '../../src/api/read/purge.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { accountId, change } from '../support/changes.ts';
import { startTestDatabase } from '../support/pg.ts';
import { ENV_TOKEN, OWNER_A, OWNER_B, T0, account, apply, device, get, newClient, readApp } from './support.ts';

const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const app = await readApp(tdb);
t.teardown(() => app.close());

/** A small deterministic PRNG, so a failure can be replayed (the seed is in the test name). */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = Math.imul(s ^ (s >>> 15), 1 | s);
    x ^= x + Math.imul(x ^ (x >>> 7), 61 | x);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The mirror's live rows as a device should hold them: `Object/Id` -> record. */
async function mirrorState(filter?: (r: Record<string, unknown>) => boolean): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const [object, table] of [
    ['Account', 'account'],
    ['Contact', 'contact'],
  ] as const) {
    const exists = await sql<{ t: string | null }>`select to_regclass(${`salesforce.${table}`})::text as t`.execute(db);
    if (!exists.rows[0]?.t) continue;
    const r = await sql<{
      sfid: string;
      fields: Record<string, unknown>;
    }>`select sfid, _sfm_fields as fields from ${sql.id('salesforce', table)} where not isdeleted`.execute(db);
    for (const row of r.rows) if (!filter || filter(row.fields)) out.set(`${object}/${row.sfid}`, row.fields);
  }
  return out;
}

t.test('list pages neither skip nor repeat a record while writes happen between and during pages', async (t) => {
  const random = prng(7);
  await apply(
    app,
    Array.from({ length: 60 }, (_, i) => account(i + 1, T0, { Name: `Acme ${i + 1}`, OwnerId: OWNER_A })),
  );
  let clock = T0;
  let nextNew = 500;
  const volatile = new Set<number>();
  let walking = true;
  const write = async () => {
    clock += 1000;
    const n = 1 + Math.floor(random() * 60);
    const batch: Change[] = [change('update', n, clock, { Name: `Renamed ${clock}` })];
    if (random() < 0.3) batch.push(account(nextNew++, clock, { Name: 'New', OwnerId: OWNER_A }));
    if (random() < 0.2) {
      const d = 41 + Math.floor(random() * 20);
      volatile.add(d);
      batch.push(change('delete', d, clock));
    }
    await apply(app, batch);
  };
  const writer = (async () => {
    while (walking) await write();
  })();
  const seen: string[] = [];
  let next: string | null = null;
  do {
    const res = await get(app, `/api/v1/objects/Account?limit=7&fields=Id${next ? `&cursor=${next}` : ''}`, ENV_TOKEN);
    t.equal(res.statusCode, 200);
    seen.push(...res.json().records.map((r: { Id: string }) => r.Id));
    next = res.json().next;
    await write();
  } while (next);
  walking = false;
  await writer;
  t.equal(seen.length, new Set(seen).size, 'no record twice');
  for (let n = 1; n <= 60; n++) if (!volatile.has(n)) t.ok(seen.includes(accountId(n)), `account ${n} seen`);
});

t.test('change feed: devices syncing in a loop while random writes and deletes happen end equal to the mirror', async (t) => {
  const random = prng(42);
  const scoped = await newClient(db, 'owner-a', { objects: 'Account,Contact', where: [`OwnerId=${OWNER_A}`] });
  const full = device();
  const mine = device();
  let writes = 0;
  let rounds = 0;
  // Every 10 batches the writer lets the devices finish a round of syncing (writes must happen
  // between and during syncs whatever the speed of either side).
  const afterRound = async (n: number) => {
    for (let i = 0; rounds < n && i < 2000; i++) await new Promise((r) => setTimeout(r, 1));
  };
  const writer = (async () => {
    for (let batch = 0; batch < 120; batch++) {
      const changes: Change[] = [];
      for (let k = 0; k < 1 + Math.floor(random() * 4); k++) {
        const n = 1 + Math.floor(random() * 30);
        const object = random() < 0.3 ? 'Contact' : 'Account';
        // Versions jump around a window: out-of-order and stale changes are part of the game.
        const at = T0 + 10_000_000 + batch * 1000 + Math.floor(random() * 5000);
        const roll = random();
        const fields: Record<string, FieldValue> = object === 'Account' ? { Name: `N${batch}.${k}` } : { LastName: `L${batch}.${k}` };
        if (random() < 0.5) fields.OwnerId = random() < 0.5 ? OWNER_A : OWNER_B;
        changes.push(change(roll < 0.15 ? 'delete' : roll < 0.25 ? 'undelete' : 'update', n, at, fields, object));
      }
      await apply(app, changes);
      writes++;
      if (batch % 10 === 0) await afterRound(batch / 10);
    }
  })();
  while (writes < 120) {
    t.notOk(await full.sync(app, ENV_TOKEN, { limit: 5 }));
    t.notOk(await mine.sync(app, scoped, { limit: 3 }));
    rounds++;
  }
  await writer;
  await full.sync(app, ENV_TOKEN, { limit: 5 });
  await mine.sync(app, scoped, { limit: 3 });
  t.ok(rounds > 1, `synced ${rounds} times while writing`);
  t.same(Object.fromEntries(full.store), Object.fromEntries(await mirrorState()), 'the full device equals the mirror');
  t.same(
    Object.fromEntries(mine.store),
    Object.fromEntries(await mirrorState((r) => r.OwnerId === OWNER_A)),
    "the scoped device equals the owner's part of the mirror",
  );
  t.ok(mine.store.size > 0 && mine.store.size < full.store.size);
  const caughtUp = await get(app, `/api/v1/changes?since=${full.cursor}`, ENV_TOKEN);
  t.same(caughtUp.json(), { changes: [], next: full.cursor }, 'caught up: an empty page and the same cursor');
});

t.test('tombstones are purged after the retention; older cursors answer 410, since=0 resyncs', async (t) => {
  const clock = fixedClock('2026-01-01T00:00:00Z');
  const purger = createTombstonePurger({ db, clock, retentionDays: 30 });
  const stale = device();
  const current = device();
  await stale.sync(app, ENV_TOKEN, { limit: 500 });
  await apply(app, [account(900, T0 + 20_000_000, { Name: 'Doomed', OwnerId: OWNER_A })]);
  await apply(app, [change('delete', 900, T0 + 20_000_001)]);
  await current.sync(app, ENV_TOKEN, { limit: 500 });
  t.same(await purger.runOnce(), [{ org: 'salesforce', purged: 0 }], 'nothing is old enough at the first run');
  clock.advance(31 * 86_400_000);
  await apply(app, [account(901, T0 + 20_000_002, { Name: 'Young', OwnerId: OWNER_A }), change('delete', 901, T0 + 20_000_003)]);
  const report = await purger.runOnce();
  t.ok(report[0]!.purged >= 1, `purged ${report[0]!.purged}`);
  const left = await sql<{
    sfid: string;
  }>`select sfid from salesforce.account where sfid = any(${[accountId(900), accountId(901)]}::text[])`.execute(db);
  t.same(
    left.rows.map((r) => r.sfid),
    [accountId(901)],
    'the old tombstone is gone; a delete applied since the mark stays',
  );
  const gone = await stale.sync(app, ENV_TOKEN, { limit: 500 });
  t.equal(gone?.statusCode, 410, 'a cursor from before the purged delete');
  t.match(gone?.json(), { statusCode: 410, code: 'CURSOR_EXPIRED', message: /since=0/ });
  t.notOk(await current.sync(app, ENV_TOKEN, { limit: 500 }), 'a cursor past the purged delete still works');
  stale.reset();
  t.notOk(await stale.sync(app, ENV_TOKEN, { limit: 500 }), 'since=0 always works');
  t.same(Object.fromEntries(stale.store), Object.fromEntries(await mirrorState()), 'and a resync converges');
  t.same(Object.fromEntries(current.store), Object.fromEntries(await mirrorState()));
  const wm = await sql<{ watermark: string }>`select watermark from sfmirror.purge_watermarks where org_alias = 'salesforce'`.execute(db);
  t.ok(BigInt(wm.rows[0]!.watermark) > 0n, 'the watermark is stored in the database');
  purger.start();
  purger.start();
  await purger.stop();
  await purger.stop();
});
