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
type Row = { id: string; state: RecordState; isNew: boolean; dirty: boolean; batchFields: Set<string> };

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
    let applied = 0;
    let ignored = 0;
    const outcomes = new Uint8Array(total);
    const outbox: Array<{ table: string; row: Row; op: string; version: string; record: unknown }> = [];
    const rowsByGroup: Row[][] = [];
    for (const g of groups) {
      const ids = [...new Set(g.changes.map((c) => c.id))].sort();
      const locked = await repo.lockRows(trx, g.table, ids);
      const rows = new Map<string, Row>();
      for (const l of locked)
        rows.set(l.sfid, {
          id: l.sfid,
          state: decodeState(l.fields, l.version, l.isdeleted),
          isNew: false,
          dirty: false,
          batchFields: new Set(),
        });
      for (const id of ids) if (!rows.has(id)) rows.set(id, { id, state: emptyState(), isNew: true, dirty: false, batchFields: new Set() });
      for (const [k, c] of g.changes.entries()) {
        const row = rows.get(c.id)!;
        for (const f of Object.keys(c.fields)) row.batchFields.add(f);
        if (mergeChange(row.state, c)) {
          applied++;
          outcomes[g.indexes[k]!] = 1;
          row.dirty = true;
          if (warehouse) outbox.push({ table: g.object, row, op: c.operation, version: c.version, record: recordOf(c.id, row.state) });
        } else {
          ignored++;
        }
      }
      rowsByGroup.push([...rows.values()]);
    }

    const dirtyCount = rowsByGroup.reduce((n, rows) => n + rows.filter((r) => r.dirty).length, 0);
    const problems = [...schemaProblems];
    let lastSeq: bigint | null = null;
    if (dirtyCount > 0) {
      lastSeq = await repo.reserveSeqs(
        trx,
        org,
        dirtyCount,
        groups.map((g) => g.table.table),
        opts.source,
      );
      let seq = lastSeq - BigInt(dirtyCount);
      const seqOf = new Map<Row, string>();
      for (const [i, g] of groups.entries()) {
        const dirty = rowsByGroup[i]!.filter((r) => r.dirty);
        if (dirty.length === 0) continue;
        for (const r of dirty) seqOf.set(r, String(++seq));
        const { columns, writes } = rowWrites(g, dirty, seqOf, problems);
        const fresh = writes.filter((_, k) => dirty[k]!.isNew);
        const existing = writes.filter((_, k) => !dirty[k]!.isNew);
        if (fresh.length) {
          const inserted = await repo.insertRows(trx, g.table, columns, fresh);
          if (inserted.size !== fresh.length)
            throw new ConcurrentInsert(`${fresh.length - inserted.size} row(s) of ${g.table.table} appeared meanwhile`);
        }
        if (existing.length) await repo.updateRows(trx, g.table, columns, existing);
      }
      if (outbox.length) {
        await repo.insertOutbox(
          trx,
          outbox.map((o) => ({
            org_alias: org,
            object: o.table,
            sfid: o.row.id,
            op: o.op,
            version: o.version,
            seq: seqOf.get(o.row)!,
            record: o.record,
          })),
        );
      }
    }
    if (problems.length) {
      await repo.recordTypeProblems(trx, org, problems);
      for (const p of problems) metrics?.typeProblems.inc({ org, object: p.object });
      log?.warn(
        { org, count: problems.length, first: { object: problems[0]!.object, field: problems[0]!.field, problem: problems[0]!.problem } },
        'values kept in _sfm_fields only',
      );
    }
    if (opts.checkpoint) await repo.saveCheckpoint(trx, org, opts.checkpoint.source, opts.checkpoint.value);
    return { applied, ignored, typeProblems: problems.length, lastSeq, outcomes };
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

/** The typed columns and the JSON of each dirty row; values that do not fit their column become problems. */
function rowWrites(g: Group, dirty: Row[], seqOf: Map<Row, string>, problems: TypeProblem[]) {
  const columns = new Map<string, ColumnInfo>();
  const writes = dirty.map((r) => {
    const w: repo.RowWrite = {
      sfid: r.id,
      isdeleted: r.state.deleted,
      _sfm_fields: recordOf(r.id, r.state),
      _sfm_version: encodeVersions(r.state),
      _sfm_seq: seqOf.get(r)!,
    };
    for (const [field, value] of Object.entries(r.state.fields)) {
      const col = g.table.columns.get(columnNameFor(field) ?? '');
      if (!col) continue;
      columns.set(col.column, col);
      const fit = fitValue(col.pgType, value);
      if (fit.ok) {
        w[col.column] = fit.value;
      } else {
        w[col.column] = null;
        if (r.batchFields.has(field)) {
          problems.push({
            object: g.object,
            field,
            sfid: r.id,
            value: String(value).slice(0, 200),
            problem: `value does not fit column ${col.column} (${col.pgType}): ${fit.reason}`,
          });
        }
      }
    }
    return w;
  });
  return { columns: [...columns.values()], writes };
}
