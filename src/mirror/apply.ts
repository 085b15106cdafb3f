import type { Change, FieldTypes } from '../changes/change.ts';
import type { Db } from '../db/database.ts';
import { isTransientConflict } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import { fitValue } from './field-types.ts';
import { decodeState, emptyState, encodeVersions, mergeChange, recordOf, type RecordState } from './merge.ts';
import * as repo from './mirror.repository.ts';
import { columnNameFor, type ColumnInfo, type SchemaManager, type TableInfo, type TypeProblem } from './schema.ts';

/**
 * The one write path (STYLE.md, "How a change travels"): every change, whatever its source, is
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
      const merged = await repo.mergeRows(trx, g.table, columns, rows, { returnRecords: warehouse, source: opts.source });
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

  return { apply };
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
 * change). A record with one change in the batch needs nothing more than "it changed"; with several,
 * its stored state before the batch (returned by the merge) is replayed through merge.ts.
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
    emit?.(row(d.changes[0]!, m.record));
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
