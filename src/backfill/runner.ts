import type { Change } from '../changes/change.ts';
import { isValidSobjectName } from '../changes/names.ts';
import { decodeRestRecord } from '../changes/rest-record.ts';
import { parseSalesforceDateTime } from '../changes/version.ts';
import type { Db } from '../db/database.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import type { Mirror } from '../mirror/apply.ts';
import { readCheckpoint } from '../mirror/mirror.repository.ts';
import * as jobs from './jobs.repository.ts';
import type { SalesforceClient } from '../salesforce/client.ts';
import { addDays, dayOf, daysBetween, type Cursor } from './windows.ts';

/**
 * Works one claimed backfill job: day by day from its last_date up to yesterday (UTC), page by page
 * with keyset paging. Every page goes through mirror.apply with the job's cursor as the checkpoint,
 * in the same transaction, so a killed run resumes exactly after the last committed page, and
 * newer-wins keeps a backfilled value from overwriting a newer pushed change.
 *
 *   pending/done-for-today --claim--> running --all days done--> done-for-today
 *                                        | --error--> failed (reason)      | --paused--> paused
 */
/**
 * What a backfill reads from Salesforce: the part of SalesforceClient it needs. Pages are read with
 * no upper time bound: the records past the day being imported are not applied (the day's cursor
 * must stay exact), but the first of them says which day comes next, so empty days cost no query.
 */
export type BackfillSource = Pick<SalesforceClient, 'describeFields' | 'readModifiedSince'>;

/** The reader of an org sfmirror has no API access to: the job fails saying so. */
export const NO_ACCESS: BackfillSource = {
  describeFields: async () => { throw new Error('no Salesforce API access for this org: configure it by environment (SF_INSTANCE_URL and credentials) or connect it by OAuth (/oauth/authorize); a revoked connection shows in sfmirror status'); },
  readModifiedSince: async () => { throw new Error('no Salesforce API access for this org'); },
};

export interface Progress {
  job: jobs.Job;
  day: string;
  daysDone: number;
  daysTotal: number;
  rows: number;
  startedAt: number;
}

export interface RunnerDeps {
  db: Db;
  mirror: Mirror;
  source: BackfillSource;
  clock: Clock;
  owner: string;
  log?: Logger | undefined;
  leaseMs: number;
  pageSize: number;
  onProgress?: ((p: Progress) => void) | undefined;
}

export type RunOutcome = { state: 'done-for-today' | 'failed' | 'paused' | 'lost-lease'; rows: number; reason?: string };

const maxDay = (a: string, b: string) => (a > b ? a : b);
const minDay = (a: string, b: string) => (a < b ? a : b);

export async function runJob(deps: RunnerDeps, job: jobs.Job): Promise<RunOutcome> {
  const { db, owner } = deps;
  const today = dayOf(deps.clock.now());
  let rows = 0;
  try {
    if (!isValidSobjectName(job.object)) throw new Error(`${job.object} is not a Salesforce object name`);
    const types = { [job.object]: await deps.source.describeFields(job.object) };
    const checkpoint = `backfill:${job.id}`;
    const saved = (await readCheckpoint(db, job.org, checkpoint)) as Cursor | undefined;
    let cursor: Cursor = saved?.day === job.lastDate ? saved : { day: job.lastDate };
    const firstDay = cursor.day;
    const startedAt = Date.now();
    while (cursor.day < today) {
      const after = cursor.stamp && cursor.id ? { stamp: cursor.stamp, id: cursor.id } : { stamp: `${cursor.day}T00:00:00.000Z` };
      const before = `${addDays(cursor.day, 1)}T00:00:00.000Z`;
      const read = await deps.source.readModifiedSince(job.object, after, deps.pageSize);
      const inDay = read.filter((r) => (parseSalesforceDateTime(r.SystemModstamp) ?? 0) < Date.parse(before));
      const page = { records: inDay, dayEnded: inDay.length < read.length || read.length < deps.pageSize };
      if (page.records.length) {
        const changes: Change[] = [];
        for (const r of page.records) {
          const c = decodeRestRecord(job.object, r);
          if ('error' in c) deps.log?.warn({ job: job.id, problem: c.error }, 'record skipped');
          else changes.push(c);
        }
        const last = page.records[page.records.length - 1]!;
        const next: Cursor = { day: cursor.day, stamp: new Date(parseSalesforceDateTime(last.SystemModstamp)!).toISOString(), id: String(last.Id) };
        await deps.mirror.apply(job.org, changes, { checkpoint: { source: checkpoint, value: next }, types, source: 'backfill' });
        rows += page.records.length;
        cursor = next;
        await jobs.addRows(db, job.id, owner, rows);
      }
      if (page.dayEnded) {
        // Empty days cost nothing: the first record past this day says where the next one is, and
        // no record at all past it means nothing more changed up to now.
        const beyond = read[inDay.length];
        const nextDay = beyond ? maxDay(addDays(cursor.day, 1), minDay(dayOf(new Date(parseSalesforceDateTime(beyond.SystemModstamp)!)), today)) : today;
        await jobs.finishDay(db, job.id, owner, nextDay, rows);
        cursor = { day: nextDay };
      }
      deps.onProgress?.({ job, day: cursor.day, daysDone: daysBetween(firstDay, cursor.day), daysTotal: daysBetween(firstDay, today), rows, startedAt });
      const lease = await jobs.renewLease(db, job.id, owner, deps.leaseMs);
      if (!lease.held) return { state: 'lost-lease', rows };
      if (!lease.active) {
        await jobs.releaseJob(db, job.id, owner, 'paused', null);
        return { state: 'paused', rows };
      }
    }
    await jobs.releaseJob(db, job.id, owner, 'done-for-today', null);
    deps.log?.info({ job: job.id, org: job.org, object: job.object, rows }, 'backfill done for today');
    return { state: 'done-for-today', rows };
  } catch (e) {
    const reason = (e as Error).message?.slice(0, 1000) || String(e);
    deps.log?.error({ job: job.id, org: job.org, object: job.object, err: reason }, 'backfill failed');
    await jobs.releaseJob(db, job.id, owner, 'failed', reason).catch(() => {});
    return { state: 'failed', rows, reason };
  }
}
