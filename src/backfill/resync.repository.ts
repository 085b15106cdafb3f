import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

/**
 * SQL of whole-object resyncs (full-resync.ts): the ids read from Salesforce in one run, and the
 * mirror's live rows that are not among them. The mirror table is found through
 * sfmirror.mirror_objects (never spliced from input) and quoted with sql.id.
 */
export async function rememberSeen(db: Db, run: string, ids: readonly string[]): Promise<void> {
  if (!ids.length) return;
  await sql`insert into sfmirror.resync_seen (run, sfid) select ${run}, unnest(${ids}::text[]) on conflict do nothing`.execute(db);
}

export async function forgetRun(db: Db, run: string): Promise<void> {
  await sql`delete from sfmirror.resync_seen where run = ${run}`.execute(db);
}

export async function mirrorTableOf(db: Db, org: string, object: string): Promise<string | undefined> {
  const r = await db
    .selectFrom('sfmirror.mirror_objects')
    .select('table_name')
    .where('org_alias', '=', org)
    .where(sql`lower(object)`, '=', object.toLowerCase())
    .executeTakeFirst();
  return r?.table_name;
}

/**
 * Live mirror rows, after `after` in sfid order, that this run did not see in Salesforce and whose
 * last SystemModstamp is before `before` (a row changed since the read began may be newer than it).
 */
export async function unseenLiveIds(
  db: Db,
  org: string,
  table: string,
  run: string,
  before: Date,
  after: string,
  limit: number,
): Promise<string[]> {
  const r = await sql<{ sfid: string }>`select t.sfid from ${sql.id(org, table)} t
    where not t.isdeleted and t.sfid > ${after} and (t.systemmodstamp is null or t.systemmodstamp < ${before})
      and not exists (select 1 from sfmirror.resync_seen s where s.run = ${run} and s.sfid = t.sfid)
    order by t.sfid limit ${limit}`.execute(db);
  return r.rows.map((x) => x.sfid);
}
