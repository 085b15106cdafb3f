import { sql } from 'kysely';
import type { Db } from '../../db/database.ts';

/**
 * SQL of the tombstone purge. A tombstone leaves only together with the watermark that covers it
 * (same transaction), so a change-feed reader that finds a delete gone also finds the watermark
 * that sends it to resync (410).
 */
export async function orgAliases(db: Db): Promise<string[]> {
  return (await db.selectFrom('sfmirror.orgs').select('alias').orderBy('alias').execute()).map((r) => r.alias);
}

/**
 * Records the org's change cursor at `now`, and returns the cursor as it was at the latest mark
 * at or before `cutoffTime` (0 when no mark is that old): tombstones at or below it are old enough.
 * Older marks are dropped; the one returned stays for the next run.
 */
export async function markAndCutoff(db: Db, org: string, now: Date, cutoffTime: Date): Promise<bigint> {
  return db.transaction().execute(async (trx) => {
    await sql`insert into sfmirror.seq_marks (org_alias, marked_at, seq)
      select alias, ${now.toISOString()}::timestamptz, last_seq from sfmirror.orgs where alias = ${org}
      on conflict do nothing`.execute(trx);
    const r = await sql<{ marked_at: Date; seq: string }>`select marked_at, seq from sfmirror.seq_marks
      where org_alias = ${org} and marked_at <= ${cutoffTime.toISOString()}::timestamptz order by marked_at desc limit 1`.execute(trx);
    const mark = r.rows[0];
    if (!mark) return 0n;
    await sql`delete from sfmirror.seq_marks where org_alias = ${org} and marked_at < ${mark.marked_at}`.execute(trx);
    return BigInt(mark.seq);
  });
}

export async function orgTables(db: Db, org: string): Promise<string[]> {
  return (
    await db.selectFrom('sfmirror.mirror_objects').select('table_name').where('org_alias', '=', org).orderBy('table_name').execute()
  ).map((r) => r.table_name);
}

/** Deletes the table's tombstones at or below `cutoff` and raises the org's watermark; returns the count. */
export async function purgeTable(db: Db, org: string, table: string, cutoff: bigint, now: Date): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const r = await sql<{ n: string; max: string | null }>`with d as (
        delete from ${sql.id(org, table)} where isdeleted and _sfm_seq <= ${String(cutoff)}::bigint returning _sfm_seq)
      select count(*) as n, max(_sfm_seq) as max from d`.execute(trx);
    const n = Number(r.rows[0]?.n ?? 0);
    const max = r.rows[0]?.max ?? '0';
    await sql`insert into sfmirror.purge_watermarks as w (org_alias, watermark, purged_rows, last_run_at)
      values (${org}, ${max}::bigint, ${n}, ${now.toISOString()}::timestamptz)
      on conflict (org_alias) do update set watermark = greatest(w.watermark, excluded.watermark),
        purged_rows = w.purged_rows + excluded.purged_rows, last_run_at = excluded.last_run_at`.execute(trx);
    return n;
  });
}
