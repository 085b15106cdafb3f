import type { Change, FieldTypes } from '../changes/change.ts';
import { isValidFieldName } from '../changes/names.ts';
import { copyTransaction, type Db } from '../db/database.ts';
import { isTransientConflict } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import { fitValue } from './field-types.ts';
import { decodeState, emptyState, encodeVersions, mergeChange, recordOf, type RecordState } from './merge.ts';
import * as csvRepo from './csv-page.repository.ts';
import * as repo from './mirror.repository.ts';
import { columnNameFor, type ColumnInfo, type SchemaManager, type TableInfo, type TypeProblem } from './schema.ts';

/**
 * The one write path (README, "The PostgreSQL mirror"): every change, whatever its source, is
 * applied here in ONE transaction per batch: the mirror rows (newer wins, per field), the change
 * cursor, an outbox row per applied change when the warehouse is on, type problems, and the
 * caller's checkpoint. Round trips per batch are constant (two per object, plus a few), never one
 * per record. Tables and columns are made beforehand, outside the transaction (schema.ts).
 */
export interface Checkpoint {
  /** e.g. `cdc:/data/ChangeEvents`, `backfill:12` */
  readonly source: string;
  readonly value: unknown;
}

export interface ApplyOptions {
  readonly checkpoint?: Checkpoint | undefined;
  /** Salesforce field types the source knows (a push's `types` map). */
  readonly types?: FieldTypes | undefined;
  /** Label for metrics and logs: apex, cdc, backfill. */
  readonly source?: string;
}

export interface ApplyResult {
  readonly applied: number;
  readonly ignored: number;
  readonly typeProblems: number;
  /** The change cursor after this batch (unchanged when nothing was applied). */
  readonly lastSeq: bigint | null;
  /** Per change, in input order: 1 applied, 0 ignored (lets a caller that merged batches split the counts). */
  readonly outcomes: Uint8Array;
}

type Group = { object: string; table: TableInfo; changes: Change[]; indexes: number[] };

/** A row this batch took for new was inserted by a concurrent batch meanwhile: run the batch again. */
class ConcurrentInsert extends Error {}

/** A CSV page the set-based path does not take (applyCsvPage): the caller decodes it and calls apply. */
class NotForCsvPath extends Error {}

export interface CsvPageOptions {
  /** The object's Salesforce field types by describe (the page's values are typed by them). */
  readonly types: Readonly<Record<string, string>>;
  readonly checkpoint?: Checkpoint | undefined;
  readonly source?: string;
  /** A whole-object resync's run: the page's ids are noted as seen (sfmirror.resync_seen) in the same transaction. */
  readonly seenRun?: string | undefined;
}

export type CsvPageResult =
  | {
      /** Rows in the page (header excluded). */
      readonly rows: number;
      readonly applied: number;
      readonly ignored: number;
      /** Rows without a valid Id or SystemModstamp: not applied (as decodeRestRecord refuses them). */
      readonly skipped: number;
      readonly typeProblems: number;
      readonly lastSeq: bigint | null;
    }
  | { readonly fallback: string };

const MAX_ATTEMPTS = 4;

export function createMirror(deps: { db: Db; schema: SchemaManager; log?: Logger | undefined; metrics?: Metrics | undefined }) {
  const { db, schema, log, metrics } = deps;

  async function prepare(org: string, changes: readonly Change[], types: FieldTypes | undefined) {
    const byTable = new Map<string, { object: string; changes: Change[]; indexes: number[] }>();
    changes.forEach((c, i) => {
      const k = c.object.toLowerCase();
      const g = byTable.get(k) ?? byTable.set(k, { object: c.object, changes: [], indexes: [] }).get(k)!;
      g.changes.push(c);
      g.indexes.push(i);
    });
    const groups: Group[] = [];
    const problems: TypeProblem[] = [];
    for (const [k, g] of [...byTable].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const fields = new Set<string>();
      for (const c of g.changes) for (const f of Object.keys(c.fields)) fields.add(f);
      const objTypes = types && (types[g.object] ?? Object.entries(types).find(([o]) => o.toLowerCase() === k)?.[1]);
      const { table, problems: p } = await schema.ensure(org, g.object, fields, objTypes);
      problems.push(...p);
      groups.push({ object: table.object, table, changes: g.changes.map((c) => canonical(c, table)), indexes: g.indexes });
    }
    return { groups, problems };
  }

  async function apply(org: string, changes: readonly Change[], opts: ApplyOptions = {}): Promise<ApplyResult> {
    const source = opts.source ?? 'unknown';
    const started = performance.now();
    if (changes.length === 0) return { applied: 0, ignored: 0, typeProblems: 0, lastSeq: null, outcomes: new Uint8Array(0) };
    const { groups, problems: schemaProblems } = await prepare(org, changes, opts.types);
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await db.transaction().execute((trx) => applyInTransaction(trx, org, groups, changes.length, schemaProblems, opts));
        const seconds = (performance.now() - started) / 1000;
        metrics?.changes.inc({ source, result: 'applied' }, result.applied);
        metrics?.changes.inc({ source, result: 'ignored' }, result.ignored);
        metrics?.applyDuration.observe({ source }, seconds);
        metrics?.batchSize.observe(changes.length);
        log?.debug({ org, source, applied: result.applied, ignored: result.ignored, ms: Math.round(seconds * 1000) }, 'batch applied');
        return result;
      } catch (e) {
        if ((isTransientConflict(e) || e instanceof ConcurrentInsert) && attempt < MAX_ATTEMPTS) {
          log?.warn(
            { org, attempt, code: (e as { code?: string }).code, reason: (e as Error).message },
            'batch conflicted with another; retrying',
          );
          continue;
        }
        metrics?.applyErrors.inc({ source, retryable: String(isTransientConflict(e)) });
        throw e;
      }
    }
  }

  async function applyInTransaction(
    trx: Parameters<Parameters<ReturnType<Db['transaction']>['execute']>[0]>[0],
    org: string,
    groups: Group[],
    total: number,
    schemaProblems: TypeProblem[],
    opts: ApplyOptions,
  ): Promise<ApplyResult> {
    const warehouse = await repo.warehouseEnabled(trx);
    const outcomes = new Uint8Array(total);
    const outbox: repo.OutboxWrite[] = [];
    const problems = [...schemaProblems];
    let lastSeq: bigint | null = null;
    const deltas = groups.map(deltasOf);
    // Every row lock before the first cursor lock (mirror.repository.ts, lockRows).
    if (groups.length > 1) for (const [i, g] of groups.entries()) await repo.lockRows(trx, g.table, [...deltas[i]!.keys()].sort());
    for (const [i, g] of groups.entries()) {
      const { columns, rows, misfits } = deltaWrites(g, deltas[i]!);
      const merged = await repo.mergeRows(trx, g.table, columns, rows, { outbox: warehouse, source: opts.source });
      const lost = merged.filter((m) => !m.written).length;
      if (lost) throw new ConcurrentInsert(`${lost} row(s) of ${g.table.table} appeared meanwhile`);
      for (const m of merged) {
        const seq = BigInt(m.seq);
        if (lastSeq === null || seq > lastSeq) lastSeq = seq;
        const d = deltas[i]!.get(m.sfid)!;
        problems.push(...(misfits.get(m.sfid) ?? []));
        settleOutcomes(g, d, m, outcomes, warehouse ? (row) => outbox.push({ org_alias: org, ...row }) : undefined);
      }
    }
    if (outbox.length) await writeOutbox(trx, outbox);
    if (problems.length) {
      await repo.recordTypeProblems(trx, org, problems);
      for (const p of problems) metrics?.typeProblems.inc({ org, object: p.object });
      log?.warn(
        { org, count: problems.length, first: { object: problems[0]!.object, field: problems[0]!.field, problem: problems[0]!.problem } },
        'values kept in _sfm_fields only',
      );
    }
    if (opts.checkpoint) await repo.saveCheckpoint(trx, org, opts.checkpoint.source, opts.checkpoint.value);
    let applied = 0;
    for (const o of outcomes) applied += o;
    return { applied, ignored: total - applied, typeProblems: problems.length, lastSeq, outcomes };
  }

  /**
   * A Bulk API 2.0 CSV results page (header line first, '' for null), applied as it came: COPYed
   * into the database and merged there by one statement (csv-page.repository.ts), in one
   * transaction with the checkpoint, with the same rules and outcome as decoding it into Changes
   * and calling `apply`, several times faster. Returns `{ fallback }`, having written nothing, for a
   * page this path does not take (no Id or SystemModstamp column, an id twice, a value PostgreSQL's
   * CSV reader refuses): the caller then decodes it and calls `apply`.
   */
  async function applyCsvPage(org: string, object: string, csv: string, opts: CsvPageOptions): Promise<CsvPageResult> {
    const source = opts.source ?? 'unknown';
    const started = performance.now();
    const end = csv.indexOf('\n');
    const header = (end < 0 ? csv : csv.slice(0, end)).replace(/\r$/, '');
    const names = header.split(',').map((h) => (/^".*"$/.test(h) ? h.slice(1, -1) : h));
    const pos = { id: names.indexOf('Id'), stamp: names.indexOf('SystemModstamp'), deleted: names.indexOf('IsDeleted') };
    if (pos.id < 0 || pos.stamp < 0) return { fallback: 'the page has no Id or SystemModstamp column' };
    if (new Set(names.map((n) => n.toLowerCase())).size !== names.length) return { fallback: 'a column name occurs twice in the header' };
    const isField = (n: string, i: number) => i !== pos.id && i !== pos.deleted && isValidFieldName(n);
    const typeOf = (n: string) => opts.types[n] ?? Object.entries(opts.types).find(([f]) => f.toLowerCase() === n.toLowerCase())?.[1];
    const { table, problems } = await schema.ensure(org, object, new Set(names.filter(isField)), opts.types);
    const fields = names.map((n, i): csvRepo.CsvField | null => {
      if (!isField(n, i) && i !== pos.stamp) return null;
      const col = table.columns.get(columnNameFor(n) ?? '');
      return {
        name: col?.field ?? n,
        sfType: typeOf(n)?.toLowerCase(),
        // systemmodstamp is a built-in column (schema.ts), whatever type mirror_columns noted for the field.
        column: col && { name: col.column, pgType: col.column === 'systemmodstamp' ? 'timestamptz' : col.pgType },
      };
    });
    for (let attempt = 1; ; attempt++) {
      try {
        const done = await copyTransaction(db, async (trx, copy) => {
          const warehouse = await repo.warehouseEnabled(trx);
          const r = await csvRepo.applyCsvPage(trx, copy, table, csv, fields, pos, { outbox: warehouse, source, seenRun: opts.seenRun });
          if (r.duplicates) throw new NotForCsvPath(`${r.duplicates} id(s) occur more than once in the page`);
          if (r.lost) throw new ConcurrentInsert(`${r.lost} row(s) of ${table.table} appeared meanwhile`);
          if (problems.length) await repo.recordTypeProblems(trx, org, problems);
          if (opts.checkpoint) await repo.saveCheckpoint(trx, org, opts.checkpoint.source, opts.checkpoint.value);
          return r;
        });
        if (!done) return { fallback: 'this database handle cannot COPY' };
        const r = done.value;
        const seconds = (performance.now() - started) / 1000;
        metrics?.changes.inc({ source, result: 'applied' }, r.applied);
        metrics?.changes.inc({ source, result: 'ignored' }, r.rows - r.skipped - r.applied);
        metrics?.applyDuration.observe({ source }, seconds);
        metrics?.batchSize.observe(r.rows);
        if (r.typeProblems) metrics?.typeProblems.inc({ org, object: table.object }, r.typeProblems);
        if (r.skipped)
          log?.warn({ org, object, skipped: r.skipped, first: r.skippedSample }, 'records skipped: no valid Id or SystemModstamp');
        log?.debug({ org, source, rows: r.rows, applied: r.applied, ms: Math.round(seconds * 1000) }, 'CSV page applied');
        return {
          rows: r.rows,
          applied: r.applied,
          ignored: r.rows - r.skipped - r.applied,
          skipped: r.skipped,
          typeProblems: r.typeProblems + problems.length,
          lastSeq: r.lastSeq === null ? null : BigInt(r.lastSeq),
        };
      } catch (e) {
        if (e instanceof NotForCsvPath) return { fallback: e.message };
        // A data exception (SQLSTATE class 22: a malformed line, a byte PostgreSQL refuses) is the
        // page's, not the database's: the row path decodes it in JavaScript, record by record.
        const code = (e as { code?: unknown }).code;
        if (typeof code === 'string' && code.startsWith('22')) return { fallback: `PostgreSQL refused the page: ${(e as Error).message}` };
        if ((isTransientConflict(e) || e instanceof ConcurrentInsert) && attempt < MAX_ATTEMPTS) {
          log?.warn({ org, attempt, reason: (e as Error).message }, 'CSV page conflicted with another batch; retrying');
          continue;
        }
        metrics?.applyErrors.inc({ source, retryable: String(isTransientConflict(e)) });
        throw e;
      }
    }
  }

  return { apply, applyCsvPage };
}

export type Mirror = ReturnType<typeof createMirror>;

/** Maps field names onto the spelling the mirror first saw (`name` -> `Name`), so JSON keys stay unique. */
function canonical(c: Change, t: TableInfo): Change {
  let fields: Record<string, Change['fields'][string]> | undefined;
  for (const [f, v] of Object.entries(c.fields)) {
    const col = t.columns.get(columnNameFor(f) ?? '');
    if (col && col.field !== f) {
      fields ??= { ...c.fields };
      delete fields[f];
      fields[col.field] = v;
    }
  }
  return fields ? { ...c, object: t.object, fields } : c.object === t.object ? c : { ...c, object: t.object };
}

/** One record's changes in a batch, in batch order, and their merge (merge.ts) with each other. */
type Delta = { id: string; changes: Change[]; indexes: number[]; state: RecordState };

function deltasOf(g: Group): Map<string, Delta> {
  const byId = new Map<string, Delta>();
  for (const [k, c] of g.changes.entries()) {
    let d = byId.get(c.id);
    if (!d) byId.set(c.id, (d = { id: c.id, changes: [], indexes: [], state: emptyState() }));
    d.changes.push(c);
    d.indexes.push(g.indexes[k]!);
    mergeChange(d.state, c);
  }
  return byId;
}

/**
 * Which changes of a record the merge applied, and the outbox row of each (the record after that
 * change). A record with one change in the batch needs nothing more than "it changed" (the merge
 * statement wrote its outbox row); with several, its stored state before the batch (returned by the
 * merge) is replayed through merge.ts.
 */
function settleOutcomes(
  g: Group,
  d: Delta,
  m: repo.MergedRow,
  outcomes: Uint8Array,
  emit: ((row: Omit<repo.OutboxWrite, 'org_alias'>) => void) | undefined,
) {
  const row = (c: Change, record: unknown) => ({ object: g.object, sfid: d.id, op: c.operation, version: c.version, seq: m.seq, record });
  if (d.changes.length === 1) {
    outcomes[d.indexes[0]!] = 1;
    return;
  }
  const state = m.old_version ? decodeState(m.old_fields, m.old_version, m.old_deleted ?? false) : emptyState();
  for (const [k, c] of d.changes.entries()) {
    if (!mergeChange(state, c)) continue;
    outcomes[d.indexes[k]!] = 1;
    emit?.(row(c, recordOf(d.id, state)));
  }
}

/**
 * The outbox rows of a batch (one per applied change, the record after it), written in the batch's
 * transaction. Kept apart from the merge so the warehouse's use of the outbox can change alone.
 */
async function writeOutbox(trx: Parameters<typeof repo.insertOutbox>[0], rows: readonly repo.OutboxWrite[]) {
  await repo.insertOutbox(trx, rows);
}

/** The typed columns and the delta row of each record; values that do not fit their column become problems. */
const minVersion = (s: RecordState) => {
  let min = s.deletedVersion!;
  for (const v of Object.values(s.versions)) if (v < min) min = v;
  return min;
};

function deltaWrites(g: Group, deltas: Map<string, Delta>) {
  const columns = new Map<string, ColumnInfo>();
  const misfits = new Map<string, TypeProblem[]>();
  const rows = [...deltas.values()].map((d) => {
    const w: repo.DeltaRow = {
      sfid: d.id,
      isdeleted: d.state.deleted,
      _sfm_f: d.state.fields,
      _sfm_v: encodeVersions(d.state),
      _sfm_n: d.changes.length,
      _sfm_k: Object.keys(d.state.fields),
      _sfm_min: minVersion(d.state),
      ...(d.changes.length === 1 ? { _sfm_op: d.changes[0]!.operation } : {}),
    };
    for (const [field, value] of Object.entries(d.state.fields)) {
      const col = g.table.columns.get(columnNameFor(field) ?? '');
      if (!col) continue;
      columns.set(col.column, col);
      const fit = fitValue(col.pgType, value);
      if (fit.ok) {
        w[col.column] = fit.value;
      } else {
        w[col.column] = null;
        const p = misfits.get(d.id) ?? misfits.set(d.id, []).get(d.id)!;
        p.push({
          object: g.object,
          field,
          sfid: d.id,
          value: String(value).slice(0, 200),
          problem: `value does not fit column ${col.column} (${col.pgType}): ${fit.reason}`,
        });
      }
    }
    return w;
  });
  return { columns: [...columns.values()], rows, misfits };
}
