import { sql } from 'kysely';
import type { Change } from '../../src/changes/change.ts';
import type { Db } from '../../src/db/database.ts';
import type { Mirror } from '../../src/mirror/apply.ts';
import { shuffle } from './changes.ts';

/**
 * What two ways of applying the same pages must leave alike (the CSV path against the row path:
 * test/mirror/csv-page.test.ts, rest-page.test.ts): an org's Account rows, outbox rows and type
 * problems. Rows are compared as PostgreSQL's text of the jsonb (keys in a fixed order, numbers as
 * stored: 2.50 is not 2.5), without `id` and `_sfm_seq`, which depend on the order of commits.
 */
export function mirrorState(db: Db) {
  const rowsOf = async (org: string) =>
    (
      await sql<{ j: string }>`select (to_jsonb(x) - 'id' - '_sfm_seq')::text as j from ${sql.id(org, 'account')} x order by sfid`.execute(
        db,
      )
    ).rows.map((r) => r.j);
  const outboxOf = async (org: string) =>
    (
      await sql<{
        j: string;
      }>`select jsonb_build_array(sfid, op, version, record)::text as j from sfmirror.outbox where org_alias = ${org}`.execute(db)
    ).rows
      .map((r) => r.j)
      .sort();
  const problemsOf = async (org: string) =>
    (
      await sql<{
        field: string;
        occurrences: string;
      }>`select field, occurrences from sfmirror.type_problems where org_alias = ${org} order by field`.execute(db)
    ).rows.map((r) => `${r.field}:${r.occurrences}`);
  return {
    rowsOf,
    outboxOf,
    problemsOf,
    /** How org `a` differs from org `z` (rows, then outbox rows, then type problems), or undefined. */
    async difference(a: string, z: string): Promise<string | undefined> {
      const [ra, rz] = [await rowsOf(a), await rowsOf(z)];
      if (JSON.stringify(ra) !== JSON.stringify(rz)) return `rows differ:\n${ra.join('\n')}\n--- ${z}:\n${rz.join('\n')}`;
      const [oa, oz] = [await outboxOf(a), await outboxOf(z)];
      if (JSON.stringify(oa) !== JSON.stringify(oz)) return `outbox differs:\n${oa.join('\n')}\n--- ${z}:\n${oz.join('\n')}`;
      const [pa, pz] = [await problemsOf(a), await problemsOf(z)];
      if (JSON.stringify(pa) !== JSON.stringify(pz)) return `type problems differ: ${pa} vs ${pz}`;
      return undefined;
    },
  };
}

/**
 * A delivery of `items` as a source pages it: shuffled, about 40% sent twice (seeded), then cut into
 * pages of the given sizes in turn, each holding a record (`rec`) at most once, as a Bulk results
 * page or a keyset page does.
 */
export function pagesOf<T>(items: readonly T[], sizes: readonly number[], seed: number, rec: (item: T) => number): T[][] {
  let r = seed;
  const random = () => (r = (r * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const delivered = shuffle([...items, ...items.filter(() => random() < 0.4)], random);
  const pages: T[][] = [];
  for (let i = 0, b = 0; i < delivered.length; b++) {
    const page: T[] = [];
    const size = sizes[b % sizes.length]!;
    while (i < delivered.length && page.length < size && !page.some((p) => rec(p) === rec(delivered[i]!))) page.push(delivered[i++]!);
    pages.push(page);
  }
  return pages;
}

/**
 * Applies each page both ways, the CSV through mirror.applyCsvPage into org `csv` and its decoded
 * changes through mirror.apply into org `rows`, then compares: the first difference (a page's
 * counts, a fallback, then the orgs' state), or undefined.
 */
export async function applyBothWays(
  db: Db,
  mirrors: { csv: Mirror; rows: Mirror },
  orgs: { csv: string; rows: string },
  types: Record<string, string>,
  pages: readonly { csv: string; changes: Change[]; size: number }[],
): Promise<string | undefined> {
  for (const [b, page] of pages.entries()) {
    const byCsv = await mirrors.csv.applyCsvPage(orgs.csv, 'Account', page.csv, { types, source: 'backfill' });
    if ('fallback' in byCsv) return `page ${b} fell back: ${byCsv.fallback}`;
    const byRows = await mirrors.rows.apply(orgs.rows, page.changes, { types: { Account: types }, source: 'backfill' });
    if (byCsv.applied !== byRows.applied || byCsv.rows !== page.size || byCsv.skipped !== 0)
      return `page ${b}: CSV applied ${byCsv.applied} of ${byCsv.rows}, rows applied ${byRows.applied} of ${page.size}`;
  }
  return mirrorState(db).difference(orgs.csv, orgs.rows);
}
