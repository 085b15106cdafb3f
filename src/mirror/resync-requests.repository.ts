import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

/**
 * `sfmirror.resync_requests`: where the stream asks for an object to be re-read (a refused replayId,
 * GAP_OVERFLOW, wildcard ids) and the backfill worker picks the request up. The table belongs to
 * this lower layer so the two sources meet here without importing each other (README, "Development").
 */
export interface ResyncRequest {
  id: string;
  org: string;
  object: string;
  reason: string;
  since: Date | null;
}

/**
 * Claims the oldest open request (pending, or running with an expired lease: its worker died) for
 * `owner`; `org` limits it to one org. SKIP LOCKED and the lease keep two workers off one request.
 */
export async function claimResync(db: Db, owner: string, leaseMs: number, org?: string): Promise<ResyncRequest | undefined> {
  const r = await sql<{ id: string; org_alias: string; object: string; reason: string; since: Date | null }>`
    update sfmirror.resync_requests set status = 'running', lease_owner = ${owner}, lease_until = now() + make_interval(secs => ${leaseMs / 1000})
    where id = (select id from sfmirror.resync_requests
                where (status = 'pending' or (status = 'running' and (lease_until is null or lease_until < now())))
                  ${org === undefined ? sql`` : sql`and org_alias = ${org}`}
                order by id for update skip locked limit 1)
    returning id::text as id, org_alias, object, reason, since`.execute(db);
  const row = r.rows[0];
  return row && { id: row.id, org: row.org_alias, object: row.object, reason: row.reason, since: row.since };
}

/** Progress of a claimed request; extends its lease. False when the lease was lost. */
export async function renewResync(db: Db, id: string, owner: string, leaseMs: number, records: number): Promise<boolean> {
  const r =
    await sql`update sfmirror.resync_requests set records = ${records}, lease_until = now() + make_interval(secs => ${leaseMs / 1000})
    where id = ${id}::bigint and lease_owner = ${owner}`.execute(db);
  return Number(r.numAffectedRows ?? 0) === 1;
}

export async function finishResync(
  db: Db,
  id: string,
  owner: string,
  status: 'done' | 'failed' | 'pending',
  records: number,
  error?: string,
): Promise<void> {
  await sql`update sfmirror.resync_requests set status = ${status}, records = ${records}, error = ${error ?? null}, lease_owner = null, lease_until = null,
    done_at = case when ${status} in ('done', 'failed') then now() end where id = ${id}::bigint and lease_owner = ${owner}`.execute(db);
}

/**
 * Asks for an object to be re-read since `since` (null: a whole-object resync that also compares
 * ids), unless an open request (pending or running) already covers it: one for the whole object, or
 * one since the same time or earlier. Returns whether a request was added. The one way anyone (the
 * stream's refused replayId, GAP_OVERFLOW, wildcard ids; the backfill when getDeleted cannot reach
 * far enough back) asks for a resync.
 */
export async function requestResync(
  db: Db,
  org: string,
  r: { object: string; reason: string; source: string; since: Date | null },
): Promise<boolean> {
  const res = await sql`insert into sfmirror.resync_requests (org_alias, object, reason, source, since)
    select ${org}, ${r.object}, ${r.reason}, ${r.source}, ${r.since}::timestamptz
    where not exists (select 1 from sfmirror.resync_requests o where o.org_alias = ${org} and lower(o.object) = lower(${r.object})
      and o.status in ('pending', 'running') and (o.since is null or (${r.since}::timestamptz is not null and o.since <= ${r.since}::timestamptz)))`.execute(
    db,
  );
  return Number(res.numAffectedRows ?? 0) === 1;
}
