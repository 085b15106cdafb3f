import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import type { FieldValue } from '../changes/change.ts';

/**
 * SQL of formula freshness: the queue of records to re-read (sfmirror.formula_queue, owned here),
 * the periodic refresh marks, and the reads of mirror tables that find the records pointing to a
 * changed parent (the lookup columns) and the values the mirror holds now.
 */
export type Reason = 'same-record' | 'cross-object' | 'periodic';

const tableOf = (org: string, object: string) => sql.id(org, object.toLowerCase());
/** A mirror table or column that does not exist yet holds no record to find. */
const missingRelation = (e: unknown) => ['42P01', '42703', '3F000'].includes((e as { code?: string }).code ?? '');

/**
 * Queues records for a re-read after `delayMs` (the collection window). A record already queued keeps
 * its window; one a re-reader is working on is queued again (its read may predate the change).
 */
export async function enqueue(db: Db, org: string, object: string, ids: readonly string[], reason: Reason, delayMs: number) {
  if (!ids.length) return;
  await sql`insert into sfmirror.formula_queue (org_alias, object, sfid, reason, due_at)
    select ${org}, ${object}, id, ${reason}, now() + make_interval(secs => ${delayMs / 1000}) from unnest(${[...new Set(ids)]}::text[]) as id
    on conflict (org_alias, object, sfid) do update
      set queued_at = now(), claimed_until = null, due_at = least(sfmirror.formula_queue.due_at, excluded.due_at)
      where sfmirror.formula_queue.claimed_until is not null`.execute(db);
}

/** Ids of live rows of `object` whose `lookup` column holds one of `parents`. */
export async function childrenOf(db: Db, org: string, object: string, lookup: string, parents: readonly string[]): Promise<string[]> {
  if (!parents.length) return [];
  try {
    const r = await sql<{ sfid: string }>`select sfid from ${tableOf(org, object)}
      where ${sql.id(lookup.toLowerCase())} = any(${[...parents]}::text[]) and not isdeleted`.execute(db);
    return r.rows.map((x) => x.sfid);
  } catch (e) {
    if (missingRelation(e)) return [];
    throw e;
  }
}

/** Every live id of an object's mirror table (the periodic refresh of a small object). */
/** The objects mirrored for an org. */
export async function mirroredObjects(db: Db, org: string): Promise<string[]> {
  const r = await sql<{ object: string }>`select object from sfmirror.mirror_objects where org_alias = ${org}`.execute(db);
  return r.rows.map((x) => x.object);
}

export async function liveIds(db: Db, org: string, object: string): Promise<string[]> {
  try {
    return (await sql<{ sfid: string }>`select sfid from ${tableOf(org, object)} where not isdeleted`.execute(db)).rows.map((x) => x.sfid);
  } catch (e) {
    if (missingRelation(e)) return [];
    throw e;
  }
}

export async function liveCount(db: Db, org: string, object: string): Promise<number> {
  try {
    return Number((await sql<{ n: string }>`select count(*) as n from ${tableOf(org, object)} where not isdeleted`.execute(db)).rows[0]!.n);
  } catch (e) {
    if (missingRelation(e)) return 0;
    throw e;
  }
}

/** The mirror's current field values of `ids` (only rows that exist). */
export async function currentFields(db: Db, org: string, object: string, ids: readonly string[]) {
  const out = new Map<string, Record<string, FieldValue>>();
  if (!ids.length) return out;
  try {
    const r = await sql<{ sfid: string; f: Record<string, FieldValue> }>`select sfid, _sfm_fields as f from ${tableOf(org, object)}
      where sfid = any(${[...ids]}::text[])`.execute(db);
    for (const row of r.rows) out.set(row.sfid, row.f);
  } catch (e) {
    if (!missingRelation(e)) throw e;
  }
  return out;
}

/**
 * Claims up to `limit` queued records of the object whose collection window closed first: once the
 * oldest record of an object is due, everything queued for that object goes along (one read per
 * 200 ids, not one per record). The claim lasts `leaseMs`; `release` removes what was read.
 */
export async function claim(db: Db, org: string, limit: number, leaseMs: number) {
  return db.transaction().execute(async (trx) => {
    const next = await sql<{ object: string }>`select object from sfmirror.formula_queue
      where org_alias = ${org} and due_at <= now() and (claimed_until is null or claimed_until < now())
      order by due_at limit 1`.execute(trx);
    const object = next.rows[0]?.object;
    if (!object) return undefined;
    const rows = await sql<{ sfid: string; claimed_at: Date }>`update sfmirror.formula_queue q
      set claimed_until = now() + make_interval(secs => ${leaseMs / 1000})
      from (select sfid from sfmirror.formula_queue
            where org_alias = ${org} and object = ${object} and (claimed_until is null or claimed_until < now())
            order by due_at limit ${limit} for update skip locked) c
      where q.org_alias = ${org} and q.object = ${object} and q.sfid = c.sfid
      returning q.sfid, now() as claimed_at`.execute(trx);
    if (!rows.rows.length) return undefined;
    return { object, ids: rows.rows.map((r) => r.sfid), claimedAt: rows.rows[0]!.claimed_at };
  });
}

/** Removes claimed records that were not queued again meanwhile. */
export async function release(db: Db, org: string, object: string, ids: readonly string[], claimedAt: Date) {
  await sql`delete from sfmirror.formula_queue where org_alias = ${org} and object = ${object}
    and sfid = any(${[...ids]}::text[]) and queued_at <= ${claimedAt} and claimed_until is not null`.execute(db);
}

/** Gives claimed records back (the API budget is spent, Salesforce failed): they wait for the next try. */
export async function unclaim(db: Db, org: string, object: string, ids: readonly string[], retryInMs: number) {
  await sql`update sfmirror.formula_queue set claimed_until = null, due_at = now() + make_interval(secs => ${retryInMs / 1000})
    where org_alias = ${org} and object = ${object} and sfid = any(${[...ids]}::text[])`.execute(db);
}

/** Per object: records waiting and the age of the oldest, in seconds. */
export async function queueStats(db: Db, org: string) {
  const r = await sql<{ object: string; waiting: string; oldest_s: number | null }>`select object, count(*) as waiting,
      extract(epoch from now() - min(queued_at))::float8 as oldest_s
    from sfmirror.formula_queue where org_alias = ${org} group by object order by object`.execute(db);
  return r.rows.map((x) => ({
    object: x.object,
    waiting: Number(x.waiting),
    oldestSeconds: x.oldest_s === null ? null : Math.round(x.oldest_s),
  }));
}

/**
 * Claims the periodic refresh of `object` when it is due: the mark moves to now in the same
 * statement, so of several instances only one refreshes. The first look only starts the clock (the
 * backfill has just read the object). Returns the previous mark (for `unclaimRefresh`), or undefined.
 */
export async function claimRefresh(db: Db, org: string, object: string, intervalMs: number): Promise<Date | undefined> {
  await sql`insert into sfmirror.formula_refresh (org_alias, object, last_run_at) values (${org}, ${object}, now())
    on conflict (org_alias, object) do nothing`.execute(db);
  const r = await sql<{ prev: Date }>`update sfmirror.formula_refresh f set last_run_at = now()
    from (select last_run_at as prev from sfmirror.formula_refresh where org_alias = ${org} and object = ${object} for update) p
    where f.org_alias = ${org} and f.object = ${object} and f.last_run_at <= now() - make_interval(secs => ${intervalMs / 1000})
    returning p.prev`.execute(db);
  return r.rows[0]?.prev;
}

/** Gives a claimed refresh back (the API budget is spent): it is due again at once. */
export async function unclaimRefresh(db: Db, org: string, object: string, prev: Date) {
  await sql`update sfmirror.formula_refresh set last_run_at = ${prev} where org_alias = ${org} and object = ${object}`.execute(db);
}

export async function lastRefresh(db: Db, org: string) {
  const r = await sql<{
    object: string;
    last_run_at: Date;
  }>`select object, last_run_at from sfmirror.formula_refresh where org_alias = ${org}`.execute(db);
  return new Map(r.rows.map((x) => [x.object.toLowerCase(), x.last_run_at]));
}

/** Records the org's formula fields and kinds (replacing what describe no longer lists). */
export async function saveCatalog(db: Db, org: string, objects: ReadonlyArray<{ object: string; fields: unknown[] }>) {
  await db.transaction().execute(async (trx) => {
    await sql`delete from sfmirror.formula_objects where org_alias = ${org}`.execute(trx);
    for (const o of objects)
      await sql`insert into sfmirror.formula_objects (org_alias, object, fields) values (${org}, ${o.object}, ${JSON.stringify(o.fields)}::jsonb)`.execute(
        trx,
      );
  });
}

export async function readCatalog(db: Db, org: string) {
  const r = await sql<{ object: string; fields: Array<{ field: string; kind: string; note?: string }> }>`select object, fields
    from sfmirror.formula_objects where org_alias = ${org} order by object`.execute(db);
  return r.rows;
}

export async function setSetting(db: Db, key: string, value: unknown) {
  if (value === null) {
    await sql`delete from sfmirror.formula_settings where key = ${key}`.execute(db);
    return;
  }
  await sql`insert into sfmirror.formula_settings (key, value) values (${key}, ${JSON.stringify(value)}::jsonb)
    on conflict (key) do update set value = excluded.value, updated_at = now()`.execute(db);
}

export async function getSetting<T>(db: Db, key: string): Promise<T | undefined> {
  const r = await sql<{ value: T }>`select value from sfmirror.formula_settings where key = ${key}`.execute(db);
  return r.rows[0]?.value;
}
