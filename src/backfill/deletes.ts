import type { Change } from '../changes/change.ts';
import { toId18 } from '../changes/names.ts';
import { makeVersion, parseSalesforceDateTime } from '../changes/version.ts';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { Mirror } from '../mirror/apply.ts';
import { requestResync } from '../mirror/resync-requests.repository.ts';
import { isSalesforceError } from '../salesforce/errors.ts';
import type { SalesforceClient } from '../salesforce/client.ts';
import { setDeletesCheckedUntil, type Job } from './jobs.repository.ts';

/**
 * Hard deletes. A record emptied from the Recycle Bin is gone from queryAll too, so a backfill's
 * windows never see it; Salesforce's delete log, read by getDeleted, still names it for 15 days
 * ("Results are returned for no more than 15 days previous to the day the call is executed", REST
 * API guide, sObject Get Deleted). Each run asks from where the last one got to
 * (`deletes_checked_until`, advanced to `latestDateCovered`, which the SOAP guide says to use as the
 * next start) up to now, and applies tombstones through mirror.apply (version = deletedDate, so a
 * later undelete still wins). A range holding more than 600,000 ids (EXCEEDED_ID_LIMIT) is split.
 * When the last check is out of reach (a job paused for weeks), deletes in between can only be
 * found by comparing ids: a whole-object resync request is recorded for the worker.
 */
export type DeletesSource = Pick<SalesforceClient, 'getDeleted'>;

/** getDeleted's reach, less an hour so a call made now is never refused at the edge. */
export const DELETE_LOG_REACH_MS = 15 * 86_400_000 - 3_600_000;

export interface DeletesDeps {
  db: Db;
  mirror: Mirror;
  source: DeletesSource;
  owner: string;
  now: number;
  log?: Logger | undefined;
}

export async function reconcileDeletes(deps: DeletesDeps, job: Job): Promise<number> {
  const { now } = deps;
  const reach = now - DELETE_LOG_REACH_MS;
  const checked = job.deletesCheckedUntil?.getTime();
  let from = checked ?? Date.parse(`${job.startDate}T00:00:00Z`);
  if (from < reach) {
    if (checked !== undefined) {
      // Deletes between the last check and the reach cannot be listed any more: compare ids instead.
      await requestResync(deps.db, job.org, {
        object: job.object,
        reason: `hard deletes since ${new Date(checked).toISOString()} are past getDeleted's 15-day reach`,
        source: 'backfill:getDeleted',
        since: null,
      });
      deps.log?.warn(
        { job: job.id, object: job.object, since: new Date(checked).toISOString() },
        'deletes past getDeleted reach: resync requested',
      );
    }
    from = reach;
  }
  if (from >= now) return 0;
  try {
    const { count, covered } = await tombstones(deps, job, new Date(from), new Date(now));
    await setDeletesCheckedUntil(deps.db, job.id, deps.owner, covered);
    return count;
  } catch (e) {
    if (!isSalesforceError(e) || e.kind !== 'out-of-reach') throw e;
    // Salesforce's delete log does not reach as far as our clock says (purged early, or clocks
    // apart). The first run has just read the object's current state, so only a later gap needs ids compared.
    if (checked !== undefined)
      await requestResync(deps.db, job.org, {
        object: job.object,
        reason: `getDeleted refused the range: ${(e as Error).message}`,
        source: 'backfill:getDeleted',
        since: null,
      });
    deps.log?.warn(
      { job: job.id, object: job.object, err: (e as Error).message, resyncRequested: checked !== undefined },
      'getDeleted refused the range',
    );
    await setDeletesCheckedUntil(deps.db, job.id, deps.owner, new Date(now));
    return 0;
  }
}

async function tombstones(deps: DeletesDeps, job: Job, start: Date, end: Date): Promise<{ count: number; covered: Date }> {
  let res;
  try {
    res = await deps.source.getDeleted(job.object, start, end);
  } catch (e) {
    const half = Math.floor((start.getTime() + end.getTime()) / 2);
    if (!isSalesforceError(e) || e.kind !== 'too-large' || end.getTime() - start.getTime() < 60_000) throw e;
    const a = await tombstones(deps, job, start, new Date(half));
    const b = await tombstones(deps, job, new Date(half), end);
    return { count: a.count + b.count, covered: b.covered };
  }
  const changes: Change[] = [];
  for (const d of res.deleted) {
    const id = toId18(d.id);
    const ms = parseSalesforceDateTime(d.deletedDate);
    if (!id || ms === undefined) {
      deps.log?.warn({ job: job.id, record: d }, 'getDeleted: unreadable entry skipped');
      continue;
    }
    changes.push({
      object: job.object,
      operation: 'delete',
      id,
      fields: { SystemModstamp: new Date(ms).toISOString() },
      version: makeVersion(ms),
    });
  }
  for (let i = 0; i < changes.length; i += 2000) await deps.mirror.apply(job.org, changes.slice(i, i + 2000), { source: 'backfill' });
  const covered = parseSalesforceDateTime(res.latestDateCovered);
  return { count: changes.length, covered: covered !== undefined && covered <= end.getTime() ? new Date(covered) : end };
}
