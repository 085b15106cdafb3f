import t from 'tap';
import { sql } from 'kysely';
import { startTestDatabase } from '../support/pg.ts';
import { BASE_MS, change, createTestMirror } from '../support/changes.ts';

// The change cursor under concurrency: writers commit in any interleaving while a reader polls by
// _sfm_seq; the reader's copy must end equal to the mirror. A plain sequence would let a reader see
// seq N+1 committed before N and skip N forever.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const mirror = await createTestMirror(db);

t.test('a reader polling by _sfm_seq never misses a committed change', async (t) => {
  const WRITERS = 4;
  const BATCHES = 40;
  await mirror.apply('salesforce', [change('insert', 0, BASE_MS, { Name: 'seed' })]);
  let done = false;
  const copy = new Map<string, string>();
  let cursor = 0n;
  let polls = 0;
  const poll = async () => {
    const r = await sql<{
      sfid: string;
      seq: string;
      name: string | null;
    }>`select sfid, _sfm_seq::text as seq, name from salesforce.account where _sfm_seq > ${String(cursor)}::bigint order by _sfm_seq limit 500`.execute(
      db,
    );
    for (const row of r.rows) {
      copy.set(row.sfid, row.name ?? '');
      cursor = BigInt(row.seq);
    }
    polls++;
    return r.rows.length;
  };
  const reader = (async () => {
    while (!done) await poll();
    while ((await poll()) > 0);
  })();
  let stamp = 0;
  const writers = Array.from({ length: WRITERS }, (_, w) =>
    (async () => {
      for (let b = 0; b < BATCHES; b++) {
        const batch = Array.from({ length: 20 }, (_, i) => {
          // Mostly distinct records, so a skipped change is not hidden by a later one to the same record.
          const rec = 1 + ((w * BATCHES * 20 + b * 20 + i) % 2500);
          const at = BASE_MS + ++stamp;
          return change('update', rec, at, { Name: `w${w}b${b}i${i}@${at}` });
        });
        await mirror.apply('salesforce', batch);
      }
    })(),
  );
  await Promise.all(writers);
  done = true;
  await reader;
  const truth = await sql<{ sfid: string; name: string }>`select sfid, name from salesforce.account`.execute(db);
  t.equal(copy.size, truth.rows.length, 'every record seen');
  const mismatched = truth.rows.filter((r) => copy.get(r.sfid) !== r.name);
  t.same(mismatched, [], `the reader's copy equals the mirror after ${polls} polls`);
  const seqs = await sql<{ n: string; d: string }>`select count(*) as n, count(distinct _sfm_seq) as d from salesforce.account`.execute(db);
  t.equal(seqs.rows[0]!.n, seqs.rows[0]!.d, 'no two rows share a seq');
});
