import type { Db } from '../db/database.ts';
import { backoffDelay, sleep } from '../lib/backoff.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import { WarehouseError, type InsertRow, type WarehouseTable } from './bigquery.ts';
import { rowOf } from './bq-schema.ts';
import type { TableManager, Target } from './tables.ts';
import * as repo from './warehouse.repository.ts';

/**
 * The outbox drain: `concurrency` loops, each claiming a batch of one (org, object) with a lease,
 * sending it with insertAll (insertId = change id), and settling every row:
 *
 *   claim --> ensure table --> send chunk (<= maxBytes) --+--> accepted ------------> delete
 *                                                        +--> row invalid ---------> dead letter
 *                                                        +--> row stopped ---------> send again
 *                                                        +--> row failed, retryable -> put back (backoff)
 *                                                        +--> request invalid (400) -> split in two, send each
 *                                                        +--> outage/timeout/quota --> put back (backoff)
 *
 * A row leaves the outbox only after BigQuery accepted it (or it was dead-lettered), so a crash
 * anywhere re-sends at most the batch in flight, and BigQuery's insertId and the view drop the copy.
 * Sends happen only while the lease is held (renewed before a request that could outlast it; a
 * request times out well before the lease ends), so two drainers never send the same row at the
 * same time.
 */
export interface DrainTuning {
  readonly maxRows: number;
  readonly maxBytes: number;
  readonly flushMs: number;
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  /** Deadline of one BigQuery request (the client enforces it); at most half the lease. */
  readonly requestTimeoutMs: number;
  /** How often depth/age gauges are refreshed and unmirrored objects get their tables. */
  readonly statsEveryMs?: number;
}

export interface DrainDeps {
  db: Db;
  bq: WarehouseTable;
  tables: TableManager;
  owner: string;
  tuning: DrainTuning;
  log?: Logger | undefined;
  metrics?: Metrics | undefined;
}

type Item = { row: repo.OutboxRow; insert: InsertRow; bytes: number };

/** Reasons of single rows that another attempt can fix. `stopped`: not inserted because another row was invalid. */
const ROW_RETRYABLE = new Set(['backendError', 'internalError', 'timeout', 'quotaExceeded', 'rateLimitExceeded']);

export function createDrain(deps: DrainDeps) {
  const { db, bq, tables, owner, tuning, log, metrics } = deps;
  const stopper = new AbortController();
  let loops: Promise<void>[] = [];
  let started = false;
  const backoff = (attempt: number) => backoffDelay(attempt, tuning.backoffBaseMs, tuning.backoffCapMs);
  const count = (result: string, n: number) => {
    if (n) metrics?.warehouseRows.inc({ result }, n);
  };
  // Record keys that stayed without a column after a refresh (names BigQuery cannot take): not
  // worth another refresh on every batch.
  const columnless = new Set<string>();

  /** Sends one chunk; returns false when BigQuery could not be reached (the caller backs off). */
  async function sendChunk(target: Target, items: Item[], claimedAt: number): Promise<boolean> {
    const ids = items.map((i) => i.row.id);
    // A request ends within the timeout (at most half the lease): a lease younger than half its
    // length is safe without a round trip; an older one is renewed, or the rows left alone.
    if (performance.now() - claimedAt > tuning.leaseMs / 2 - tuning.requestTimeoutMs) {
      if ((await repo.renewLease(db, owner, ids, tuning.leaseMs)) < ids.length) {
        log?.warn({ object: target.object, rows: ids.length }, 'warehouse: lease lost before sending; another drainer has these rows');
        return true;
      }
      claimedAt = performance.now();
    }
    let failures;
    try {
      failures = await bq.insertAll(
        target.dataset,
        target.changeTable,
        items.map((i) => i.insert),
      );
      metrics?.warehouseRequests.inc({ result: failures.length ? 'partial' : 'ok' });
    } catch (e) {
      const err = e instanceof WarehouseError ? e : new WarehouseError('retryable', String(e));
      metrics?.warehouseRequests.inc({ result: err.kind });
      if (err.kind === 'invalid' && items.length > 1) {
        // The request as a whole was refused: halve it until the bad rows stand alone.
        const half = Math.ceil(items.length / 2);
        const a = await sendChunk(target, items.slice(0, half), claimedAt);
        return (await sendChunk(target, items.slice(half), claimedAt)) && a;
      }
      if (err.kind === 'invalid') {
        count('dead_letter', await repo.deadLetter(db, owner, [{ id: ids[0]!, reason: `${err.reason ?? 'invalid'}: ${err.message}` }]));
        return true;
      }
      if (err.kind === 'not_found') tables.forget(target.org, target.object);
      let delay = backoff(Math.max(...items.map((i) => i.row.attempts)) - 1);
      // A request given up at its deadline is not aborted (the client cannot): give it as long
      // again to finish before anyone re-sends these rows, so sends of a row rarely overlap; one
      // that still does is harmless (same insertId, and the view counts a change id once).
      if (err.reason === 'timeout') delay = Math.max(delay, tuning.requestTimeoutMs);
      await repo.putBack(db, owner, ids, delay, err.message);
      count('retry', ids.length);
      log?.warn(
        {
          org: target.org,
          object: target.object,
          rows: ids.length,
          kind: err.kind,
          status: err.status,
          reason: err.reason,
          retryInMs: delay,
          err: err.message,
        },
        'warehouse: insertAll failed; rows stay in the outbox',
      );
      return false;
    }
    if (!failures.length) {
      count('sent', await repo.deleteSent(db, owner, ids));
      return true;
    }
    if (failures.some((f) => f.index < 0 || f.index >= items.length)) {
      await repo.putBack(db, owner, ids, backoff(0), 'insertAll answered with errors that name no row');
      return false;
    }
    const failed = new Map(failures.map((f) => [f.index, f]));
    const accepted = items.filter((_, i) => !failed.has(i)).map((i) => i.row.id);
    const dead: Array<{ id: string; reason: string }> = [];
    const stopped: Item[] = [];
    const again: Item[] = [];
    for (const [i, f] of failed) {
      if (f.reason === 'stopped') stopped.push(items[i]!);
      else if (ROW_RETRYABLE.has(f.reason)) again.push(items[i]!);
      else dead.push({ id: items[i]!.row.id, reason: `${f.reason}: ${f.message}` });
    }
    count('sent', await repo.deleteSent(db, owner, accepted));
    count('dead_letter', await repo.deadLetter(db, owner, dead));
    if (dead.length)
      log?.error(
        { org: target.org, object: target.object, rows: dead.length, first: dead[0] },
        'warehouse: rows BigQuery will not accept were dead-lettered',
      );
    if (again.length) {
      await repo.putBack(
        db,
        owner,
        again.map((i) => i.row.id),
        backoff(Math.max(...again.map((i) => i.row.attempts)) - 1),
        failures[0]!.message,
      );
      count('retry', again.length);
    }
    // Rows held back only because another row was invalid: send them again now, without it.
    if (stopped.length && (dead.length || again.length)) return sendChunk(target, stopped, claimedAt);
    if (stopped.length)
      await repo.putBack(
        db,
        owner,
        stopped.map((i) => i.row.id),
        backoff(0),
        'stopped without an invalid row',
      );
    return again.length === 0;
  }

  function prepare(target: Target, rows: readonly repo.OutboxRow[]) {
    const unknown = new Set<string>();
    const items = rows.map((row) => {
      const { json, unknown: u } = rowOf(
        { id: row.id, op: row.op, version: row.version, seq: row.seq, committedAt: row.committedAt, record: row.record },
        target.fields,
      );
      for (const k of u) unknown.add(k);
      // The record's JSON size (from the claim) plus room for the metadata columns and the envelope.
      return { row, insert: { insertId: row.id, json }, bytes: row.bytes + 256 };
    });
    return { items, unknown };
  }

  /** Sends one claimed batch; returns false when the warehouse could not be reached. */
  async function sendBatch(rows: repo.OutboxRow[], claimedAt: number): Promise<boolean> {
    const { org, object } = rows[0]!;
    let target: Target;
    let prepared;
    try {
      target = await tables.ensure(org, object);
      prepared = prepare(target, rows);
      const missing = [...prepared.unknown].filter((k) => !columnless.has(`${org}.${object}.${k}`));
      if (missing.length) {
        // A field the table lacks: the mirror has a column for it by now (made before the change committed).
        const fresh = await tables.refresh(org, object);
        if (fresh.fields.length > target.fields.length) {
          target = fresh;
          prepared = prepare(target, rows);
        }
        for (const k of prepared.unknown) columnless.add(`${org}.${object}.${k}`);
      }
    } catch (e) {
      const delay = backoff(Math.max(...rows.map((r) => r.attempts)) - 1);
      await repo.putBack(
        db,
        owner,
        rows.map((r) => r.id),
        delay,
        (e as Error).message,
      );
      count('retry', rows.length);
      log?.warn({ org, object, err: (e as Error).message, retryInMs: delay }, 'warehouse: could not prepare the change table');
      return false;
    }
    let ok = true;
    let chunk: Item[] = [];
    let bytes = 0;
    for (const item of prepared.items) {
      if (chunk.length && bytes + item.bytes > tuning.maxBytes) {
        ok = (await sendChunk(target, chunk, claimedAt)) && ok;
        chunk = [];
        bytes = 0;
      }
      chunk.push(item);
      bytes += item.bytes;
    }
    if (chunk.length) ok = (await sendChunk(target, chunk, claimedAt)) && ok;
    return ok;
  }

  async function loop(slot: number) {
    let failures = 0;
    while (!stopper.signal.aborted) {
      try {
        const claimedAt = performance.now();
        const rows = await repo.claimBatch(db, owner, tuning.maxRows, tuning.leaseMs);
        metrics?.warehouseClaimDuration.observe((performance.now() - claimedAt) / 1000);
        if (!rows.length) {
          await sleep(tuning.flushMs, stopper.signal);
          continue;
        }
        if (await sendBatch(rows, claimedAt)) failures = 0;
        else await sleep(backoff(failures++), stopper.signal);
      } catch (e) {
        log?.error({ slot, err: (e as Error).message }, 'warehouse drain step failed');
        await sleep(backoff(failures++), stopper.signal);
      }
    }
  }

  async function statsLoop() {
    while (!stopper.signal.aborted) {
      try {
        await tables.syncUnregistered();
        await refreshGauges();
      } catch (e) {
        log?.warn({ err: (e as Error).message }, 'warehouse: status refresh failed');
      }
      await sleep(tuning.statsEveryMs ?? 5000, stopper.signal);
    }
  }

  async function refreshGauges() {
    if (!metrics) return;
    metrics.warehouseOutboxDepth.reset();
    metrics.warehouseOutboxAge.reset();
    metrics.warehouseDeadLetters.reset();
    for (const s of await repo.outboxStats(db)) {
      metrics.warehouseOutboxDepth.set({ org: s.org }, s.depth);
      metrics.warehouseOutboxAge.set({ org: s.org }, s.oldestAgeSeconds ?? 0);
      metrics.warehouseDeadLetters.set({ org: s.org }, s.deadLetters);
    }
  }

  return {
    /** Starts the loops; idempotent. */
    start() {
      if (started) return;
      started = true;
      loops = [statsLoop(), ...Array.from({ length: tuning.concurrency }, (_, i) => loop(i))];
    },
    /** Stops claiming and waits for the batches in flight; idempotent. */
    async stop() {
      stopper.abort();
      await Promise.all(loops);
    },
    /** One claim-and-send step (tests, the CLI): returns the rows claimed. */
    async step(): Promise<number> {
      const claimedAt = performance.now();
      const rows = await repo.claimBatch(db, owner, tuning.maxRows, tuning.leaseMs);
      if (rows.length) await sendBatch(rows, claimedAt);
      return rows.length;
    },
  };
}

export type Drain = ReturnType<typeof createDrain>;
