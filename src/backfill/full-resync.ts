import { randomUUID } from 'node:crypto';
import { isValidSobjectName } from '../changes/names.ts';
import { makeVersion, parseSalesforceDateTime } from '../changes/version.ts';
import type { Change } from '../changes/change.ts';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { Mirror } from '../mirror/apply.ts';
import type { SfRecord } from '../salesforce/client.ts';
import { createApiBudget, type BudgetSource } from './budget.ts';
import { applyBulkCsv, applyRestPage, decodeAll, hasBulk, readBulkPage, type BulkTuning } from './bulk-window.ts';
import { forgetRun, mirrorTableOf, rememberSeen, unseenLiveIds } from './resync.repository.ts';
import type { BackfillSource } from './runner.ts';

/**
 * A whole-object resync (`sfmirror resync --object X`, and the resync requests that need one): reads
 * every record Salesforce has, deleted ones still in the Recycle Bin included (queryAll; Bulk API
 * 2.0 when the object has at least the Bulk threshold of records, else REST keyset pages), applies
 * them through mirror.apply, remembers each id read, then turns into tombstones the mirror's live
 * rows whose ids Salesforce no longer has: hard deletes older than getDeleted's 15-day reach are
 * found only this way. A row whose SystemModstamp is after the read began (less a margin for clock
 * skew) is left alone: the stream may have brought a record created since. The tombstone's version is
 * the time the read began, so a later change or undelete of that id still wins.
 */
export interface FullResyncDeps {
  db: Db;
  mirror: Mirror;
  source: BackfillSource;
  pageSize: number;
  bulk?: BulkTuning | undefined;
  apiBudgetShare?: number | undefined;
  /** Rows changed this long before the read began are not tombstoned (clock skew with Salesforce). */
  skewMs?: number;
  log?: Logger | undefined;
  /** Called after each page; a rejection stops the resync (its caller lost the lease). */
  onProgress?:
    | ((p: { phase: 'reading' | 'comparing'; records: number; tombstoned: number; bulkJob?: string }) => void | Promise<void>)
    | undefined;
}

/** How a whole-object resync ended: done, or paused by the API budget (a result, not an error). */
export type FullResyncResult =
  | { state: 'done'; records: number; tombstoned: number; bulkJob?: string }
  | { state: 'paused'; reason: string; records: number; tombstoned: number; bulkJob?: string };

export async function resyncObject(deps: FullResyncDeps, org: string, object: string): Promise<FullResyncResult> {
  if (!isValidSobjectName(object)) throw new Error(`${object} is not a Salesforce object name`);
  const { db, source } = deps;
  const budget =
    deps.apiBudgetShare !== undefined && source.readLimits && source.apiUsage
      ? createApiBudget(source as BudgetSource, deps.apiBudgetShare)
      : undefined;
  let records = 0;
  let tombstoned = 0;
  let bulkJob: string | undefined;
  const paused = (reason: string): FullResyncResult => ({ state: 'paused', reason, records, tombstoned, ...(bulkJob ? { bulkJob } : {}) });
  const first = await budget?.check();
  if (first) return paused(first);
  const run = randomUUID();
  const began = Date.now();
  const types = { [object]: await source.describeFields(object) };
  const take = async (page: readonly SfRecord[]) => {
    await deps.mirror.apply(org, decodeAll(object, page, deps.log, `resync ${object}`), { types, source: 'resync' });
    await rememberSeen(
      db,
      run,
      page.map((r) => r.Id),
    );
    records += page.length;
    await deps.onProgress?.({ phase: 'reading', records, tombstoned, ...(bulkJob ? { bulkJob } : {}) });
  };
  try {
    const bulk = deps.bulk && deps.bulk.threshold > 0 && hasBulk(source) ? source : undefined;
    if (bulk && (await bulk.countRecords(object, {})) >= deps.bulk!.threshold) {
      const over = await budget?.checkBulkJob();
      if (over) return paused(over);
      bulkJob = await bulk.startBulkRead(object, {});
      await bulk.awaitBulkRead(bulkJob, { pollMs: deps.bulk!.pollMs, timeoutMs: deps.bulk!.timeoutMs });
      let locator: string | undefined;
      do {
        const page = await readBulkPage(bulk, object, bulkJob, locator, deps.bulk!.pageSize);
        // As the backfill does (runner.ts), with the page's ids noted as seen in its transaction.
        const r = 'csv' in page ? await applyBulkCsv(deps.mirror, org, object, page, { source: 'resync', seenRun: run }, deps.log) : page;
        if ('records' in r) await take(r.records);
        else {
          records += r.rows;
          await deps.onProgress?.({ phase: 'reading', records, tombstoned, bulkJob });
        }
        locator = page.next ?? undefined;
        const spent = locator ? await budget?.check() : undefined;
        if (spent) return paused(spent);
      } while (locator);
    } else {
      let after: { stamp: string; id?: string } = { stamp: new Date(0).toISOString() };
      for (;;) {
        const page = await source.readModifiedSince(object, after, deps.pageSize);
        // Written as the Bulk CSV of its records, a REST page takes the CSV path too.
        const r = await applyRestPage(deps.mirror, org, object, page, types[object]!, { source: 'resync', seenRun: run }, deps.log);
        if ('records' in r) await take(r.records);
        else {
          records += r.rows;
          await deps.onProgress?.({ phase: 'reading', records, tombstoned });
        }
        if (page.length < deps.pageSize) break;
        const last = page[page.length - 1]!;
        after = { stamp: new Date(parseSalesforceDateTime(last.SystemModstamp) ?? 0).toISOString(), id: last.Id };
        const spent = await budget?.check();
        if (spent) return paused(spent);
      }
    }
    const table = await mirrorTableOf(db, org, object);
    const cutoff = new Date(began - (deps.skewMs ?? 300_000));
    const stamp = new Date(Math.floor(began / 1000) * 1000);
    for (let after = ''; table; ) {
      const gone = await unseenLiveIds(db, org, table, run, cutoff, after, 2000);
      if (!gone.length) break;
      const changes: Change[] = gone.map((id) => ({
        object,
        operation: 'delete',
        id,
        fields: { SystemModstamp: stamp.toISOString() },
        version: makeVersion(stamp.getTime()),
      }));
      await deps.mirror.apply(org, changes, { source: 'resync' });
      tombstoned += gone.length;
      after = gone[gone.length - 1]!;
      await deps.onProgress?.({ phase: 'comparing', records, tombstoned, ...(bulkJob ? { bulkJob } : {}) });
    }
    return { state: 'done', records, tombstoned, ...(bulkJob ? { bulkJob } : {}) };
  } finally {
    // The run's seen ids are only a scratch list keyed by a fresh uuid: a left-over is harmless.
    await forgetRun(db, run).catch(() => {});
  }
}
