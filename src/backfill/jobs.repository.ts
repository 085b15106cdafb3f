import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import type { Day } from './windows.ts';

/** SQL of backfill jobs. Rows are mapped to `Job` before they leave this file. */
export type JobState = 'pending' | 'running' | 'paused' | 'done-for-today' | 'failed';

export interface Job {
  id: number;
  org: string;
  object: string;
  startDate: Day;
  lastDate: Day;
  active: boolean;
  state: JobState;
  reason: string | null;
  rowsImported: number;
  leaseOwner: string | null;
  leaseUntil: Date | null;
  lastRunAt: Date | null;
  /** getDeleted was asked up to here (its delete log reaches 15 days back). */
  deletesCheckedUntil: Date | null;
}

type Row = {
  id: string;
  org_alias: string;
  object: string;
  start_date: string;
  last_date: string;
  active: boolean;
  state: JobState;
  reason: string | null;
  rows_imported: string;
  lease_owner: string | null;
  lease_until: Date | null;
  last_run_at: Date | null;
  deletes_checked_until: Date | null;
};

const COLUMNS = sql`id, org_alias, object, start_date::text as start_date, last_date::text as last_date, active, state, reason, rows_imported, lease_owner, lease_until, last_run_at, deletes_checked_until`;

const toJob = (r: Row): Job => ({
  id: Number(r.id),
  org: r.org_alias,
  object: r.object,
  startDate: r.start_date,
  lastDate: r.last_date,
  active: r.active,
  state: r.state,
  reason: r.reason,
  rowsImported: Number(r.rows_imported),
  leaseOwner: r.lease_owner,
  leaseUntil: r.lease_until,
  lastRunAt: r.last_run_at,
  deletesCheckedUntil: r.deletes_checked_until,
});

/** Creates a job, or returns the existing one for the same org and object (`created: false`). */
export async function createJob(db: Db, org: string, object: string, startDate: Day): Promise<{ job: Job; created: boolean }> {
  const r = await sql<Row>`insert into sfmirror.backfill_jobs (org_alias, object, start_date, last_date)
    values (${org}, ${object}, ${startDate}::date, ${startDate}::date)
    on conflict (org_alias, lower(object)) do nothing returning ${COLUMNS}`.execute(db);
  if (r.rows[0]) return { job: toJob(r.rows[0]), created: true };
  const existing =
    await sql<Row>`select ${COLUMNS} from sfmirror.backfill_jobs where org_alias = ${org} and lower(object) = lower(${object})`.execute(db);
  return { job: toJob(existing.rows[0]!), created: false };
}

export async function getJob(db: Db, id: number): Promise<Job | undefined> {
  const r = await sql<Row>`select ${COLUMNS} from sfmirror.backfill_jobs where id = ${id}`.execute(db);
  return r.rows[0] && toJob(r.rows[0]);
}

export async function listJobs(db: Db): Promise<Job[]> {
  const r = await sql<Row>`select ${COLUMNS} from sfmirror.backfill_jobs order by id`.execute(db);
  return r.rows.map(toJob);
}

/** Pause or resume. A paused job keeps its place (last_date) and is skipped by every run. */
export async function setActive(db: Db, id: number, active: boolean): Promise<Job | undefined> {
  const r = await sql<Row>`update sfmirror.backfill_jobs
    set active = ${active}, state = case when ${active} then (case when state = 'paused' then 'pending' else state end) else 'paused' end, updated_at = now()
    where id = ${id} returning ${COLUMNS}`.execute(db);
  return r.rows[0] && toJob(r.rows[0]);
}

/**
 * "Run now" (operator): an active job that waits (failed, or paused at the API limit) becomes due at
 * the worker's next poll instead of after its pause. A paused-by-operator job is resumed first.
 * Undefined when no such job; the job as it is when it is done for today (nothing to run).
 */
export async function runJobNow(db: Db, id: number): Promise<Job | undefined> {
  const r = await sql<Row>`update sfmirror.backfill_jobs
    set active = true, state = case when state in ('failed', 'paused') then 'pending' else state end, reason = null,
        updated_at = now() - interval '1 day'
    where id = ${id} and state <> 'running' returning ${COLUMNS}`.execute(db);
  return r.rows[0] ? toJob(r.rows[0]) : getJob(db, id);
}

/**
 * Claims a job that is due (active, not leased, last_date before `today`) for `owner` until the lease
 * expires. SKIP LOCKED and the lease make `backfill run` and the serve worker never work one job at
 * the same time; an expired lease (a killed worker) lets another claim it.
 */
export async function claimJob(
  db: Db,
  owner: string,
  today: Day,
  leaseMs: number,
  opts: { onlyId?: number; neverRunOnly?: boolean; pausedRecheckMs?: number } = {},
): Promise<Job | undefined> {
  const { onlyId, neverRunOnly } = opts;
  const recheck = (opts.pausedRecheckMs ?? 300_000) / 1000;
  const r = await sql<Row>`update sfmirror.backfill_jobs j
    set lease_owner = ${owner}, lease_until = now() + make_interval(secs => ${leaseMs / 1000}), state = 'running', reason = null,
        rows_imported = case when j.state = 'running' then j.rows_imported else 0 end, updated_at = now()
    where j.id = (select id from sfmirror.backfill_jobs
                  where active and last_date < ${today}::date and (lease_until is null or lease_until < now())
                    ${onlyId === undefined ? sql`` : sql`and id = ${onlyId}`}
                    ${neverRunOnly ? sql`and last_run_at is null` : sql``}
                    -- a failed job is tried again after a pause, not in a tight loop
                    and (state <> 'failed' or updated_at < now() - interval '15 minutes' or ${onlyId !== undefined})
                    -- an active job paused at the API limit is looked at again after a while
                    and (state <> 'paused' or updated_at < now() - make_interval(secs => ${recheck}) or ${onlyId !== undefined})
                  order by id for update skip locked limit 1)
    returning ${COLUMNS}`.execute(db);
  return r.rows[0] && toJob(r.rows[0]);
}

/**
 * Ends the lease `owner` holds on job `id` at once: its holder is known to be gone (a worker on this
 * host whose process no longer exists). False when the lease moved on meanwhile.
 */
export async function releaseLease(db: Db, id: number, owner: string): Promise<boolean> {
  const r = await sql`update sfmirror.backfill_jobs set lease_until = now() - interval '1 millisecond', updated_at = now()
    where id = ${id} and lease_owner = ${owner} and lease_until > now()`.execute(db);
  return Number(r.numAffectedRows ?? 0) > 0;
}

/** Extends the lease. `held: false` when another worker took the job over; `active: false` once paused. */
export async function renewLease(db: Db, id: number, owner: string, leaseMs: number): Promise<{ held: boolean; active: boolean }> {
  const r = await sql<{
    active: boolean;
  }>`update sfmirror.backfill_jobs set lease_until = now() + make_interval(secs => ${leaseMs / 1000}), updated_at = now()
    where id = ${id} and lease_owner = ${owner} returning active`.execute(db);
  return { held: r.rows.length === 1, active: r.rows[0]?.active ?? false };
}

/** A whole day was imported: the job's place moves to the next day. */
export async function finishDay(db: Db, id: number, owner: string, nextDay: Day, rows: number): Promise<void> {
  await sql`update sfmirror.backfill_jobs set last_date = ${nextDay}::date, rows_imported = ${rows}, updated_at = now()
    where id = ${id} and lease_owner = ${owner}`.execute(db);
}

export async function addRows(db: Db, id: number, owner: string, rows: number): Promise<void> {
  await sql`update sfmirror.backfill_jobs set rows_imported = ${rows}, updated_at = now() where id = ${id} and lease_owner = ${owner}`.execute(
    db,
  );
}

/** Ends a run: releases the lease, records the state (and the reason of a failure). */
export async function releaseJob(db: Db, id: number, owner: string, state: JobState, reason: string | null): Promise<void> {
  await sql`update sfmirror.backfill_jobs
    set lease_owner = null, lease_until = null, reason = ${reason}, last_run_at = now(), updated_at = now(),
        state = case when not active then 'paused' else ${state} end
    where id = ${id} and lease_owner = ${owner}`.execute(db);
}

/** getDeleted has been asked up to `until`. */
export async function setDeletesCheckedUntil(db: Db, id: number, owner: string, until: Date): Promise<void> {
  await sql`update sfmirror.backfill_jobs set deletes_checked_until = ${until}, updated_at = now() where id = ${id} and lease_owner = ${owner}`.execute(
    db,
  );
}
