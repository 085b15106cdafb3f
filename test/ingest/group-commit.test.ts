import t from 'tap';
import { sql } from 'kysely';
import type { Change } from '../../src/changes/change.ts';
import { createGroupCommitter } from '../../src/ingest/group-commit.ts';
import type { Mirror } from '../../src/mirror/apply.ts';
import { startTestDatabase } from '../support/pg.ts';
import { change, createTestMirror, shuffle } from '../support/changes.ts';

// Group commit: at most `inflight` transactions of one org at once, the rest grouped; each push is
// answered with its own counts; overlapping pushes in flight together converge to newest-wins.

t.test('at most two transactions of one org in flight; the others wait and are grouped', async (t) => {
  let running = 0;
  let most = 0;
  const batches: number[] = [];
  const mirror = {
    async apply(_org: string, changes: readonly Change[]) {
      running++;
      most = Math.max(most, running);
      batches.push(changes.length);
      await new Promise((r) => setTimeout(r, 30));
      running--;
      return { applied: changes.length, ignored: 0, typeProblems: 0, lastSeq: null, outcomes: changes.map(() => 1) };
    },
  } as unknown as Mirror;
  const committer = createGroupCommitter(mirror, { maxChanges: 1000 });
  const pushes = Array.from({ length: 10 }, (_, i) => [change('insert', i, 1000), change('insert', 100 + i, 1000)]);
  const answers = await Promise.all(pushes.map((p) => committer.submit('salesforce', p)));
  t.equal(most, 2, 'two transactions at once, never more');
  t.same(answers, Array(10).fill({ applied: 2, ignored: 0 }), 'each push answered with its own counts');
  t.same(batches, [2, 2, 16], 'two lone pushes went straight through; the eight that waited went as one group');
  // Another org is not held up by this one's transactions.
  const other = createGroupCommitter(mirror, { maxChanges: 1000, inflight: 1 });
  most = 0;
  await Promise.all([other.submit('a', pushes[0]!), other.submit('b', pushes[1]!)]);
  t.equal(most, 2, 'one transaction per org, two orgs at once');
});

t.test('overlapping pushes in flight together end with the newest value of every field', async (t) => {
  const tdb = await startTestDatabase(t);
  const { db } = tdb.handle;
  const mirror = await createTestMirror(db);
  const committer = createGroupCommitter(mirror, { maxChanges: 40 });
  // 10 records, 12 versions each of Name and of Phone, in 60 pushes of 4 changes, sent at once in a shuffled order.
  const all: Change[] = [];
  for (let n = 1; n <= 10; n++)
    for (let v = 1; v <= 12; v++) {
      all.push(change(v === 1 ? 'insert' : 'update', n, 1000 + v * 1000, { Name: `n${n}v${v}` }));
      all.push(change('update', n, 1000 + v * 1000 + 500, { Phone: `p${n}v${v}` }));
    }
  const shuffled = shuffle(all);
  const pushes = Array.from({ length: shuffled.length / 4 }, (_, i) => shuffled.slice(i * 4, i * 4 + 4));
  const answers = await Promise.all(pushes.map((p) => committer.submit('salesforce', p)));
  t.equal(
    answers.reduce((n, a) => n + a.applied + a.ignored, 0),
    all.length,
    'every change answered',
  );
  const rows = await sql<{ name: string; phone: string }>`select name, phone from salesforce.account order by sfid`.execute(db);
  t.same(
    rows.rows,
    Array.from({ length: 10 }, (_, i) => ({ name: `n${i + 1}v12`, phone: `p${i + 1}v12` })),
    'newest Name and Phone of every record',
  );
});
