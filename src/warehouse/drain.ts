import type { Db } from '../db/database.ts';
import { backoffDelay, sleep } from '../lib/backoff.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import { WarehouseError, type AppendOutcome, type WarehouseTable } from './bigquery.ts';
import { cdcRowOf, rowOf } from './bq-schema.ts';
import type { TableManager, Target } from './tables.ts';
import * as repo from './warehouse.repository.ts';

/**
 * The outbox drain: `concurrency` loops, each owning one (org, object) partition of the outbox at a
 * time (a lease row, warehouse.repository.ts) and reading it as a log after its cursor:
 *
 *   claim partition --> read next rows --> record them as the batch in flight (PostgreSQL)
 *     --> append to the change table's committed stream at the partition's offset
 *           ok / ALREADY_EXISTS (appended before a crash) --> upsert to the latest-state table
 *                 (default stream, CDC) --> commit: cursor and offset move, rows deleted (one transaction)
 *           row_errors ---------------------> those rows dead-lettered, the rest appended again
 *           stream finalized/gone, OUT_OF_RANGE --> a new stream, the batch appended there
 *           outage, timeout, quota ----------> partition released with a backoff; rows stay
 *
 * Exactly once: a batch's rows and its offset are written to PostgreSQL before the append, so
 * whatever happens after (crash, timeout, lost answer, another drainer taking over), the same rows
 * go to the same offset, and BigQuery appends them once (ALREADY_EXISTS for the copy). The only
 * outcome that can duplicate is a stream lost while a batch's answer was unknown: that batch goes
 * to the new stream (README, "Exactly once, and its limits").
 */
export interface DrainTuning {
  readonly maxRows: number;
  readonly maxBytes: number;
  readonly flushMs: number;
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  /** Deadline of one BigQuery request (enforced here); at most half the lease. */
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

/** Batches one partition may drain in a row before giving others a turn. */
const BATCHES_PER_TURN = 8;

export function createDrain(deps: DrainDeps) {
  const { db, bq, tables, tuning, log, metrics } = deps;
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

  function prepare(target: Target, rows: readonly repo.OutboxRow[]) {
    const unknown = new Set<string>();
    const history: Array<Record<string, unknown>> = [];
    for (const row of rows) {
      const { json, unknown: u } = rowOf(
        { id: row.id, op: row.op, version: row.version, seq: row.seq, committedAt: row.committedAt, record: row.record },
        target.fields,
      );
      for (const k of u) unknown.add(k);
      history.push(json);
    }
    return { history, unknown };
  }

  /** The target with every column the rows need (a field the mirror learned becomes a column first). */
  async function targetFor(p: repo.Partition, rows: readonly repo.OutboxRow[]) {
    let target = await tables.ensure(p.org, p.object);
    let prepared = prepare(target, rows);
    const missing = [...prepared.unknown].filter((k) => !columnless.has(`${p.org}.${p.object}.${k}`));
    if (missing.length) {
      const fresh = await tables.refresh(p.org, p.object);
      if (fresh.fields.length > target.fields.length) {
        target = fresh;
        prepared = prepare(target, rows);
      }
      for (const k of prepared.unknown) columnless.add(`${p.org}.${p.object}.${k}`);
    }
    return { target, history: prepared.history };
  }

  /** Rows of the batch that fit `maxBytes` (at least one): the JSON size plus room for the envelope. */
  function fitBytes(rows: repo.OutboxRow[]): repo.OutboxRow[] {
    let bytes = 0;
    for (let i = 0; i < rows.length; i++) {
      bytes += rows[i]!.bytes + 256;
      if (i > 0 && bytes > tuning.maxBytes) return rows.slice(0, i);
    }
    return rows;
  }

  /**
   * Sends one batch of a partition and commits it. Returns the rows read (0: nothing to do),
   * or throws (WarehouseError, LeaseLost) with the batch left in flight for the next attempt.
   */
  async function drainBatch(p: repo.Partition, claimedAt: { t: number }): Promise<number> {
    const read = await repo.readBatch(db, p, tuning.maxRows);
    if (!read.length) {
      if (p.pending) {
        // Every row of the batch in flight was dead-lettered: nothing left to append.
        p.pending = { ...p.pending, rows: 0 };
        await repo.commitBatch(db, p, tuning.leaseMs);
      }
      return 0;
    }
    if (p.pending && read.length !== p.pending.rows) {
      // Rows of the batch in flight vanished (an org removed meanwhile): the same offset would no
      // longer hold the same rows, so what is left goes to a new stream (README: stream loss).
      log?.warn({ org: p.org, object: p.object, found: read.length, recorded: p.pending.rows }, 'warehouse: batch in flight changed');
      await repo.setPending(db, p, read[read.length - 1]!, read.length, tuning.leaseMs);
      await repo.setStream(db, p, null);
    }
    const rows = p.pending ? read : fitBytes(read);
    const { target, history } = await targetFor(p, rows);
    if (performance.now() - claimedAt.t > tuning.leaseMs / 2 - tuning.requestTimeoutMs) {
      await repo.renewLease(db, p, tuning.leaseMs);
      claimedAt.t = performance.now();
    }
    if (!p.pending) await repo.setPending(db, p, rows[rows.length - 1]!, rows.length, tuning.leaseMs);
    if (!p.stream) await repo.setStream(db, p, await bq.createStream(target.dataset, target.changeTable));
    const outcome = await bq.append(p.stream!, target.fields, history, p.offset);
    metrics?.warehouseRequests.inc({ result: outcome.kind });
    switch (outcome.kind) {
      case 'ok':
      case 'exists': {
        if (outcome.kind === 'exists')
          log?.info(
            { org: p.org, object: p.object, offset: p.offset, rows: rows.length },
            'warehouse: batch was appended before (ALREADY_EXISTS); committing it',
          );
        await upsertLatest(target, rows);
        count('sent', await repo.commitBatch(db, p, tuning.leaseMs));
        return rows.length;
      }
      case 'row_errors': {
        const dead = outcome.rows
          .filter((r) => r.index >= 0 && r.index < rows.length)
          .map((r) => ({ id: rows[r.index]!.id, reason: `invalid: ${r.message}` }));
        if (!dead.length) throw new WarehouseError('invalid', 'BigQuery refused rows without naming them');
        const n = await repo.deadLetter(db, p, dead);
        count('dead_letter', n);
        log?.error(
          { org: p.org, object: p.object, rows: n, first: dead[0] },
          'warehouse: rows BigQuery will not accept were dead-lettered; the rest of the batch is sent again',
        );
        return rows.length;
      }
      case 'stream_gone':
      case 'out_of_range':
        log?.warn(
          { org: p.org, object: p.object, stream: p.stream, offset: p.offset, outcome: outcome.kind, err: outcome.message },
          'warehouse: the write stream is gone or out of step; the batch goes to a new stream',
        );
        await repo.setStream(db, p, null);
        return rows.length;
    }
  }

  /**
   * The batch's changes into the latest-state table (CDC; replays are harmless: sequence numbers
   * order them). Rows it refuses, which the history took, become `latest` dead letters: the
   * operator's retry sends them here again (retryLatest). Returns the rows the table took.
   */
  async function upsertLatest(target: Target, rows: readonly repo.OutboxRow[]): Promise<repo.OutboxRow[]> {
    if (!rows.length) return [];
    const changes = rows.map((r) =>
      cdcRowOf({ id: r.id, op: r.op, version: r.version, seq: r.seq, committedAt: r.committedAt, record: r.record }, target.fields),
    );
    const out: AppendOutcome = await bq.upsert(target.dataset, target.latestTable, target.fields, changes);
    metrics?.warehouseRequests.inc({ result: `cdc_${out.kind}` });
    if (out.kind === 'ok') return [...rows];
    if (out.kind !== 'row_errors') throw new WarehouseError('retryable', `latest-state upsert: ${out.kind} (${out.message})`);
    // The default stream takes all of a request or none of it: the refused rows are kept, the rest sent again.
    const refused = new Map(out.rows.filter((r) => r.index >= 0 && r.index < rows.length).map((r) => [r.index, r.message]));
    if (!refused.size) throw new WarehouseError('invalid', 'BigQuery refused latest-state rows without naming them');
    await repo.deadLetterLatest(
      db,
      [...refused].map(([i, message]) => ({ row: rows[i]!, reason: `invalid (latest-state table): ${message}` })),
    );
    count('latest_refused', refused.size);
    log?.error(
      { org: target.org, object: target.object, rows: refused.size, first: [...refused.values()][0] },
      'warehouse: the latest-state table refused rows the history took; they are kept as dead letters (retry-dead-letters sends them again)',
    );
    const rest = rows.filter((_, i) => !refused.has(i));
    return rest.length ? upsertLatest(target, rest) : [];
  }

  /** `latest` dead letters the operator asked to send again: into the latest-state table, then forgotten. */
  async function retryLatest(p: repo.Partition) {
    for (;;) {
      const rows = await repo.latestRetries(db, p, tuning.maxRows);
      if (!rows.length) return;
      const { target } = await targetFor(p, rows);
      const took = await upsertLatest(target, rows);
      await repo.forgetDeadLetters(
        db,
        took.map((r) => r.id),
      );
      count('latest_resent', took.length);
      if (rows.length < tuning.maxRows) return;
    }
  }

  /** Drains a claimed partition for a turn; on failure the partition is released with a backoff. */
  async function drainPartition(p: repo.Partition): Promise<boolean> {
    const claimedAt = { t: performance.now() };
    try {
      for (let i = 0; i < BATCHES_PER_TURN && !stopper.signal.aborted; i++) {
        const n = await drainBatch(p, claimedAt);
        if (n === 0 || (n < tuning.maxRows && !p.pending)) break;
      }
      if (!p.pending) await retryLatest(p);
      await repo.releasePartition(db, p);
      return true;
    } catch (e) {
      if (e instanceof repo.LeaseLost) {
        log?.warn({ org: p.org, object: p.object }, 'warehouse: lost the partition to another drainer; its batch stays in flight');
        return true;
      }
      const err = e instanceof WarehouseError ? e : new WarehouseError('retryable', (e as Error).message);
      // A table gone (history: no stream could be opened; latest state: its upsert failed) is made
      // again on the next turn. The history stream is not reset here: a stream that is gone answers
      // its appends as such (stream_gone), and the batch in flight keeps its offset meanwhile.
      if (err.kind === 'not_found') tables.forget(p.org, p.object);
      let delay = backoff(p.failures);
      // An append given up at its deadline may still land: its answer is unknown, and the batch
      // stays in flight at its offset, so whoever sends it next gets ALREADY_EXISTS if it did.
      if (err.reason === 'timeout') delay = Math.max(delay, tuning.requestTimeoutMs);
      metrics?.warehouseRequests.inc({ result: err.kind });
      count('retry', p.pending?.rows ?? 0);
      log?.warn(
        { org: p.org, object: p.object, kind: err.kind, status: err.status, reason: err.reason, retryInMs: delay, err: err.message },
        'warehouse: drain failed; the rows stay in the outbox',
      );
      // When even this fails the partition's lease expires and another drainer takes it: nothing is lost.
      await repo.releasePartition(db, p, delay, `${err.kind}: ${err.message}`).catch(() => {});
      return false;
    }
  }

  async function loop(slot: number) {
    const owner = `${deps.owner}#${slot}`;
    let failures = 0;
    let idle = 0;
    while (!stopper.signal.aborted) {
      try {
        const t0 = performance.now();
        const p = await repo.claimPartition(db, owner, tuning.leaseMs);
        metrics?.warehouseClaimDuration.observe((performance.now() - t0) / 1000);
        if (!p) {
          if (idle++ % 10 === 0) await repo.ensurePartitions(db);
          await sleep(tuning.flushMs, stopper.signal);
          continue;
        }
        idle = 0;
        if (await drainPartition(p)) failures = 0;
        else if (++failures > 1) await sleep(backoff(failures - 2), stopper.signal);
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
        await repo.ensurePartitions(db);
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
    /** One claim-and-drain turn (tests, the CLI): returns whether a partition was drained. */
    async step(): Promise<boolean> {
      await repo.ensurePartitions(db);
      const p = await repo.claimPartition(db, `${deps.owner}#step`, tuning.leaseMs);
      if (!p) return false;
      await drainPartition(p);
      return true;
    },
  };
}

export type Drain = ReturnType<typeof createDrain>;
