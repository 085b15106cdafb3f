import { isValidSobjectName } from '../changes/names.ts';
import { parseSalesforceDateTime } from '../changes/version.ts';
import type { Db } from '../db/database.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import type { Mirror } from '../mirror/apply.ts';
import { readCheckpoint } from '../mirror/mirror.repository.ts';
import * as jobs from './jobs.repository.ts';
import type { SalesforceClient, SfRecord } from '../salesforce/client.ts';
import { createApiBudget, API_LIMIT, type BudgetSource } from './budget.ts';
import { isSalesforceError } from '../salesforce/errors.ts';
import {
  applyBulkCsv,
  applyRestPage,
  decodeAll,
  hasBulk,
  nextBulkPage,
  type BulkPage,
  type BulkSource,
  type BulkTuning,
} from './bulk-window.ts';
import { reconcileDeletes, type DeletesSource } from './deletes.ts';
import { addDays, dayOf, daysBetween, type Cursor } from './windows.ts';

/**
 * Works one claimed backfill job: day by day from its last_date up to yesterday (UTC). A day with
 * many records (a REST `SELECT COUNT()` at or above the Bulk threshold) is read by a Bulk API 2.0
 * job (bulk-window.ts); others page by page with REST keyset paging. Every page goes through
 * mirror.apply with the job's cursor as the checkpoint, in the same transaction, so a killed run
 * resumes exactly after the last committed page, and newer-wins keeps a backfilled value from
 * overwriting a newer pushed change. After the last day, hard deletes (deletes.ts). Before every
 * page, the API budget (budget.ts).
 *
 *   pending/done-for-today --claim--> running --all days done, deletes--> done-for-today
 *                                        | --error--> failed (reason)
 *                                        | --operator pause--> paused
 *                                        | --API budget spent--> paused (reason "API limit: ..."; claimed again later)
 */
/**
 * What a backfill reads from Salesforce: the part of SalesforceClient it needs. Pages are read with
 * no upper time bound: the records past the day being imported are not applied (the day's cursor
 * must stay exact), but the first of them says which day comes next, so empty days cost no query.
 * Bulk reads, getDeleted and limits are optional: a reader without them reads by REST only.
 */
export type BackfillSource = Pick<SalesforceClient, 'describeFields' | 'readModifiedSince'> &
  Partial<BulkSource & DeletesSource & BudgetSource>;

/** The reader of an org sfmirror has no API access to: the job fails saying so. */
export const NO_ACCESS: BackfillSource = {
  describeFields: async () => {
    throw new Error(
      'no Salesforce API access for this org: configure it by environment (SF_INSTANCE_URL and credentials) or connect it by OAuth (/oauth/authorize); a revoked connection shows in sfmirror status',
    );
  },
  readModifiedSince: async () => {
    throw new Error('no Salesforce API access for this org');
  },
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
  /** Bulk API 2.0 for big days; undefined = REST only. */
  bulk?: BulkTuning | undefined;
  /** Share of the daily API allowance backfills may use (0..1]; undefined = not watched. */
  apiBudgetShare?: number | undefined;
  onProgress?: ((p: Progress) => void) | undefined;
}

export type RunOutcome = { state: 'done-for-today' | 'failed' | 'paused' | 'lost-lease'; rows: number; reason?: string };

const maxDay = (a: string, b: string) => (a > b ? a : b);
const minDay = (a: string, b: string) => (a < b ? a : b);
const startOf = (day: string) => `${day}T00:00:00.000Z`;

export async function runJob(deps: RunnerDeps, job: jobs.Job): Promise<RunOutcome> {
  const { db, owner, source } = deps;
  const today = dayOf(deps.clock.now());
  let rows = 0;
  const pause = async (reason: string): Promise<RunOutcome> => {
    deps.log?.warn({ job: job.id, org: job.org, object: job.object, reason }, 'backfill paused');
    await jobs.releaseJob(db, job.id, owner, 'paused', reason);
    return { state: 'paused', rows, reason };
  };
  try {
    if (!isValidSobjectName(job.object)) throw new Error(`${job.object} is not a Salesforce object name`);
    const budget =
      deps.apiBudgetShare !== undefined && source.readLimits && source.apiUsage
        ? createApiBudget(source as BudgetSource, deps.apiBudgetShare)
        : undefined;
    const over = await budget?.check();
    if (over) return await pause(over);
    const types = { [job.object]: await source.describeFields(job.object) };
    const bulk = deps.bulk && deps.bulk.threshold > 0 && hasBulk(source) ? { source, tuning: deps.bulk } : undefined;
    const checkpoint = `backfill:${job.id}`;
    const saved = (await readCheckpoint(db, job.org, checkpoint)) as Cursor | undefined;
    let cursor: Cursor = saved?.day === job.lastDate ? saved : { day: job.lastDate };
    const firstDay = cursor.day;
    const startedAt = Date.now();
    const ready = new Set<string>();
    const created = new Set<string>();
    let prefetched: { job: string; locator: string | undefined; page: ReturnType<typeof nextBulkPage> } | undefined;
    const apply = async (page: BulkPage | { rest: SfRecord[] }, next: Cursor) => {
      // A page is COPYed and merged in the database (a REST page written as the Bulk CSV of its
      // records); records that path does not take go the row path.
      const opts = { checkpoint: { source: checkpoint, value: next }, source: 'backfill' };
      const r =
        'csv' in page
          ? await applyBulkCsv(deps.mirror, job.org, job.object, page, opts, deps.log)
          : 'rest' in page
            ? await applyRestPage(deps.mirror, job.org, job.object, page.rest, types[job.object]!, opts, deps.log)
            : page;
      if ('records' in r) {
        await deps.mirror.apply(job.org, decodeAll(job.object, r.records, deps.log, job.id), { ...opts, types });
        rows += r.records.length;
      } else rows += r.rows;
      cursor = next;
      await jobs.addRows(db, job.id, owner, rows);
    };
    const finishDay = async (nextDay: string) => {
      await jobs.finishDay(db, job.id, owner, nextDay, rows);
      cursor = { day: nextDay };
    };
    while (cursor.day < today) {
      if (bulk && !cursor.stamp && !cursor.bulk) {
        // The start of a day: big days go to Bulk API 2.0 (one COUNT() call decides).
        const count = await bulk.source.countRecords(job.object, { from: startOf(cursor.day), to: startOf(addDays(cursor.day, 1)) });
        if (count >= bulk.tuning.threshold) {
          const stop = await budget?.checkBulkJob();
          if (stop) return await pause(stop);
          const id = await bulk.source.startBulkRead(job.object, { from: startOf(cursor.day), to: startOf(addDays(cursor.day, 1)) });
          created.add(id);
          deps.log?.info({ job: job.id, day: cursor.day, records: count, bulkJob: id }, 'backfill day read by Bulk API 2.0');
          cursor = { day: cursor.day, bulk: { job: id } };
        }
      }
      if (bulk && cursor.bulk) {
        if (cursor.bulk.done) await finishDay(addDays(cursor.day, 1));
        else {
          const at = cursor as Cursor & { bulk: NonNullable<Cursor['bulk']> };
          const page = await (prefetched?.job === at.bulk.job && prefetched.locator === at.bulk.locator
            ? prefetched.page
            : nextBulkPage(bulk.source, job.object, at, bulk.tuning, ready, created));
          prefetched = undefined;
          // Read the next page while this one is applied (Salesforce answers a page in seconds);
          // the cursor still moves only with what is committed.
          if (!('restart' in page) && page.next.bulk && !page.next.bulk.done) {
            const next = page.next as Cursor & { bulk: NonNullable<Cursor['bulk']> };
            prefetched = {
              job: next.bulk.job,
              locator: next.bulk.locator,
              page: nextBulkPage(bulk.source, job.object, next, bulk.tuning, ready, created),
            };
            prefetched.page.catch(() => {}); // awaited (and its error met) at the next turn, or dropped when the run stops
          }
          if ('restart' in page) {
            deps.log?.warn(
              { job: job.id, day: cursor.day, reason: page.restart },
              'Bulk job of an earlier run is gone: reading the day again',
            );
            cursor = { day: cursor.day };
            continue;
          }
          await apply(page.page, page.next);
        }
      } else {
        const after = cursor.stamp && cursor.id ? { stamp: cursor.stamp, id: cursor.id } : { stamp: startOf(cursor.day) };
        const before = Date.parse(startOf(addDays(cursor.day, 1)));
        const read = await source.readModifiedSince(job.object, after, deps.pageSize);
        const inDay = read.filter((r) => (parseSalesforceDateTime(r.SystemModstamp) ?? 0) < before);
        if (inDay.length) {
          const last = inDay[inDay.length - 1]!;
          await apply(
            { rest: inDay },
            {
              day: cursor.day,
              stamp: new Date(parseSalesforceDateTime(last.SystemModstamp)!).toISOString(),
              id: String(last.Id),
            },
          );
        }
        if (inDay.length < read.length || read.length < deps.pageSize) {
          // Empty days cost nothing: the first record past this day says where the next one is, and
          // no record at all past it means nothing more changed up to now.
          const beyond = read[inDay.length];
          await finishDay(
            beyond
              ? maxDay(addDays(cursor.day, 1), minDay(dayOf(new Date(parseSalesforceDateTime(beyond.SystemModstamp)!)), today))
              : today,
          );
        }
      }
      deps.onProgress?.({
        job,
        day: cursor.day,
        daysDone: daysBetween(firstDay, cursor.day),
        daysTotal: daysBetween(firstDay, today),
        rows,
        startedAt,
      });
      const lease = await jobs.renewLease(db, job.id, owner, deps.leaseMs);
      if (!lease.held) return { state: 'lost-lease', rows };
      if (!lease.active) {
        await jobs.releaseJob(db, job.id, owner, 'paused', null);
        return { state: 'paused', rows };
      }
      const stop = await budget?.check();
      if (stop) return await pause(stop);
    }
    if (source.getDeleted) {
      const deleted = await reconcileDeletes(
        { db, mirror: deps.mirror, source: source as DeletesSource, owner, now: deps.clock.now().getTime(), log: deps.log },
        job,
      );
      if (deleted) deps.log?.info({ job: job.id, object: job.object, deleted }, 'hard deletes applied (getDeleted)');
    }
    await jobs.releaseJob(db, job.id, owner, 'done-for-today', null);
    deps.log?.info({ job: job.id, org: job.org, object: job.object, rows }, 'backfill done for today');
    return { state: 'done-for-today', rows };
  } catch (e) {
    const reason = (e as Error).message?.slice(0, 1000) || String(e);
    if (isSalesforceError(e) && e.kind === 'limit')
      return pause(`${API_LIMIT}: Salesforce refused a call (${reason.includes(e.code) ? reason : `${e.code}: ${reason}`})`).catch(() => ({
        state: 'paused' as const,
        rows,
        reason,
      }));
    deps.log?.error({ job: job.id, org: job.org, object: job.object, err: reason }, 'backfill failed');
    // A lost release leaves the lease to expire: the job is claimed again then, and fails again with its reason.
    await jobs.releaseJob(db, job.id, owner, 'failed', reason).catch(() => {});
    return { state: 'failed', rows, reason };
  }
}
