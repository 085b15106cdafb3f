import type { Change, FieldValue } from '../changes/change.ts';
import { makeVersion, parseSalesforceDateTime } from '../changes/version.ts';
import type { Db } from '../db/database.ts';
import { createApiBudget, type ApiBudget } from '../backfill/budget.ts';
import { SalesforceError } from '../salesforce/errors.ts';
import { sleep } from '../lib/backoff.ts';
import type { Logger } from '../lib/logger.ts';
import type { Mirror } from '../mirror/apply.ts';
import type { SalesforceClient, SfRecord } from '../salesforce/client.ts';
import type { FormulaMetrics } from './metrics.ts';
import * as repo from './formulas.repository.ts';
import type { FormulaTracker } from './tracker.ts';

/**
 * Works the formula queue and the periodic refresh, for every org with API access.
 *
 *   queued ---(oldest window closed)---> claimed ---(budget ok: read 200 ids a query)---> applied, released
 *                                          |  \---(budget spent / Salesforce refused)---> back in the queue, retried later
 *   periodic refresh due (time, unfollowable, roll-up): small object -> every live id queued;
 *                                                       large object -> one Bulk API 2.0 job, applied page by page
 *
 * A re-read goes through `mirror.apply` like any change, with only the formula fields whose value
 * differs from the mirror's (an unchanged value bumps no `_sfm_seq` and sends nothing to BigQuery).
 * Its version is the time of the read (at least the record's SystemModstamp): newer than the
 * formula values already held, and, the merge being per field, unable to touch any other field.
 */
export type FormulaSource = Pick<
  SalesforceClient,
  'readRecords' | 'readLimits' | 'apiUsage' | 'startBulkRead' | 'awaitBulkRead' | 'readBulkPage'
>;

export interface RereaderTuning {
  /** How often the queue is looked at. */
  pollMs: number;
  /** Records claimed at once (read 200 per query). */
  claimLimit: number;
  leaseMs: number;
  /** SFMIRROR_FORMULA_REFRESH_INTERVAL_MS. */
  refreshIntervalMs: number;
  /** Objects with at least this many live rows are refreshed with one Bulk API 2.0 job. */
  bulkThreshold: number;
  bulk: { pollMs: number; timeoutMs: number; pageSize: number };
  /** SFMIRROR_API_BUDGET_SHARE, shared with backfills. */
  budgetShare: number;
  /** When the budget is spent (or Salesforce failed), claimed records wait this long. */
  retryMs: number;
  /** How often describe-driven columns are refreshed (new fields in the org). */
  columnsEveryMs?: number | undefined;
}

export interface RereaderDeps {
  db: Db;
  /** The inner mirror: re-reads queue nothing themselves. */
  mirror: Mirror;
  tracker: FormulaTracker;
  sourceFor(org: string): FormulaSource | undefined;
  orgs(): string[];
  /** Makes the object's describe-driven columns (schema.ensure with no fields). */
  syncColumns?: ((org: string, object: string) => Promise<void>) | undefined;
  tuning: RereaderTuning;
  log?: Logger | undefined;
  metrics?: FormulaMetrics | undefined;
}

const IDS_PER_QUERY = 200;
const same = (a: FieldValue | undefined, b: FieldValue | undefined) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

export function createFormulaRereader(d: RereaderDeps) {
  const { db, log, tuning } = d;
  const budgets = new Map<string, { source: FormulaSource; budget: ApiBudget }>();
  const paused = new Map<string, string>();
  let stopped = true;
  let loop: Promise<void> | undefined;
  let abort = new AbortController();
  let lastColumns = 0;

  /** Why re-reads of `org` wait (or undefined: they run), kept in the database for status. */
  async function setPaused(org: string, reason: string | undefined) {
    if (paused.get(org) === reason) return;
    if (reason) paused.set(org, reason);
    else paused.delete(org);
    await repo.setSetting(db, `paused:${org}`, reason ?? null);
  }

  function budgetOf(org: string, source: FormulaSource) {
    // While paused, each try reads /limits again (no other call of ours refreshes the usage header).
    if (paused.has(org)) budgets.delete(org);
    let b = budgets.get(org);
    if (!b || b.source !== source) budgets.set(org, (b = { source, budget: createApiBudget(source, tuning.budgetShare) }));
    return b.budget;
  }

  /** The formula fields' changes of `records` that differ from the mirror (rows the mirror does not hold are skipped). */
  async function changesOf(org: string, object: string, fields: readonly string[], records: SfRecord[], readAt: number) {
    const current = await repo.currentFields(
      db,
      org,
      object,
      records.map((r) => r.Id),
    );
    const out: Change[] = [];
    let unchanged = 0;
    for (const r of records) {
      const cur = current.get(r.Id);
      if (!cur || r.IsDeleted === true) continue;
      const diff: Record<string, FieldValue> = {};
      for (const f of fields) if (f in r && !same(r[f], cur[f])) diff[f] = r[f] ?? null;
      if (!Object.keys(diff).length) {
        unchanged++;
        continue;
      }
      const stamp = parseSalesforceDateTime(r.SystemModstamp) ?? 0;
      out.push({ object, operation: 'update', id: r.Id, fields: diff, version: makeVersion(Math.max(readAt, stamp)) });
    }
    return { changes: out, unchanged };
  }

  async function apply(org: string, object: string, fields: readonly string[], records: SfRecord[], readAt: number) {
    const { changes, unchanged } = await changesOf(org, object, fields, records, readAt);
    if (changes.length) await d.mirror.apply(org, changes, { source: 'formula' });
    d.metrics?.rereads.inc({ org, object, result: 'changed' }, changes.length);
    d.metrics?.rereads.inc({ org, object, result: 'unchanged' }, unchanged);
  }

  /** One claimed batch; false when there was nothing to do or the org must wait. */
  async function workQueue(org: string, source: FormulaSource): Promise<boolean> {
    const claimed = await repo.claim(db, org, tuning.claimLimit, tuning.leaseMs);
    if (!claimed) return false;
    const { object, ids, claimedAt } = claimed;
    const own = (await d.tracker.catalog(org)).objects.get(object.toLowerCase());
    if (!own) {
      await repo.release(db, org, object, ids, claimedAt);
      return true;
    }
    const fields = own.fields.map((f) => f.field);
    try {
      const over = await budgetOf(org, source).check();
      if (over) {
        await setPaused(org, over);
        await repo.unclaim(db, org, object, ids, tuning.retryMs);
        log?.warn({ org, reason: over }, 'formula re-reads wait for the API budget');
        return false;
      }
      await setPaused(org, undefined);
      const readAt = Date.now();
      const records = await source.readRecords(object, ids, fields);
      d.metrics?.apiCalls.inc({ org, object, api: 'rest' }, Math.ceil(ids.length / IDS_PER_QUERY));
      await apply(org, object, fields, records, readAt);
      await repo.release(db, org, object, ids, claimedAt);
      return true;
    } catch (e) {
      if (e instanceof SalesforceError && e.kind === 'limit') await setPaused(org, `API limit: ${(e as Error).message}`);
      log?.warn({ org, object, records: ids.length, err: (e as Error).message }, 'formula re-read failed; retrying later');
      await repo.unclaim(db, org, object, ids, tuning.retryMs);
      return false;
    }
  }

  /** The periodic refresh of objects whose formulas depend on time or on what sfmirror cannot follow. */
  async function refresh(org: string, source: FormulaSource) {
    const cat = await d.tracker.catalog(org);
    for (const own of cat.objects.values()) {
      if (!own.periodic || stopped) continue;
      const prev = await repo.claimRefresh(db, org, own.object, tuning.refreshIntervalMs);
      if (!prev) continue;
      const n = await repo.liveCount(db, org, own.object);
      if (n < tuning.bulkThreshold) {
        // The queue's re-reads check the budget batch by batch.
        await repo.enqueue(db, org, own.object, await repo.liveIds(db, org, own.object), 'periodic', 0);
      } else {
        const over = await budgetOf(org, source).checkBulkJob();
        if (over) {
          await setPaused(org, over);
          await repo.unclaimRefresh(db, org, own.object, prev);
          continue;
        }
        await bulkRefresh(
          org,
          source,
          own.object,
          own.fields.map((f) => f.field),
        ).catch(async (e: Error) => {
          await repo.unclaimRefresh(db, org, own.object, prev);
          throw e;
        });
      }
      log?.info({ org, object: own.object, records: n, bulk: n >= tuning.bulkThreshold }, 'periodic formula refresh');
    }
  }

  /** One Bulk API 2.0 query job over the whole object; its formula fields are applied page by page. */
  async function bulkRefresh(org: string, source: FormulaSource, object: string, fields: readonly string[]) {
    const readAt = Date.now();
    const job = await source.startBulkRead(object, {});
    await source.awaitBulkRead(job, { pollMs: tuning.bulk.pollMs, timeoutMs: tuning.bulk.timeoutMs });
    let calls = 2;
    for (let locator: string | undefined; ; ) {
      const page = await source.readBulkPage(object, job, locator, tuning.bulk.pageSize);
      calls++;
      await apply(org, object, fields, page.records, readAt);
      if (!page.next) break;
      locator = page.next;
    }
    d.metrics?.apiCalls.inc({ org, object, api: 'bulk' }, calls);
  }

  async function tick() {
    for (const org of d.orgs()) {
      const source = d.sourceFor(org);
      if (!source || stopped) continue;
      try {
        if (d.syncColumns && Date.now() - lastColumns >= (tuning.columnsEveryMs ?? 3_600_000)) {
          lastColumns = Date.now();
          for (const o of (await d.tracker.catalog(org)).names) await d.syncColumns(org, o);
        }
        while (!stopped && (await workQueue(org, source)));
        await refresh(org, source);
      } catch (e) {
        log?.warn({ org, err: (e as Error).message }, 'formula freshness step failed');
      }
    }
  }

  return {
    /** One pass over every org (tests drive it directly). */
    tick: async () => {
      const was = stopped;
      stopped = false;
      try {
        await tick();
      } finally {
        stopped = was;
      }
    },
    start() {
      if (!stopped) return;
      stopped = false;
      abort = new AbortController();
      const signal = abort.signal;
      loop = (async () => {
        while (!stopped) {
          await tick();
          // stop() aborts the sleep: the loop then sees `stopped` and ends.
          await sleep(tuning.pollMs, signal).catch(() => {});
        }
      })();
    },
    async stop() {
      stopped = true;
      abort.abort();
      await loop;
      loop = undefined;
    },
    /** Why re-reads of `org` wait, if they do (the API budget is spent). */
    pausedReason: (org: string) => paused.get(org),
  };
}

export type FormulaRereader = ReturnType<typeof createFormulaRereader>;
