import { sql } from 'kysely';
import type { Trx } from '../db/database.ts';
import type { StoredVersion } from './merge.ts';
import type { ColumnInfo, TableInfo, TypeProblem } from './schema.ts';

/** SQL of the write path. Every function is one round trip, whatever the number of records. */

export type LockedRow = { sfid: string; isdeleted: boolean; fields: Record<string, unknown>; version: StoredVersion };

/**
 * Locks the existing rows of `ids` (sorted: concurrent batches lock in the same order). Ids not
 * returned are new to the mirror; `insertRows` writes them.
 */
export async function lockRows(trx: Trx, t: TableInfo, ids: readonly string[]): Promise<LockedRow[]> {
  const r = await sql<LockedRow>`select sfid, isdeleted, _sfm_fields as fields, _sfm_version as version
    from ${sql.id(t.org, t.table)} where sfid = any(${ids}::text[]) order by sfid for update`.execute(trx);
  return r.rows;
}

export async function warehouseEnabled(trx: Trx): Promise<boolean> {
  const r = await trx.selectFrom('sfmirror.settings').select('value').where('key', '=', 'warehouse').executeTakeFirst();
  return (r?.value as { enabled?: boolean } | undefined)?.enabled === true;
}

/**
 * Reserves `n` change-cursor values for the org. The org row stays locked until commit, so batches
 * of one org commit in the order of their seqs: a reader that has seen seq N never later finds a
 * newly committed row below N. Keep it late in the transaction: it serialises the org's commits.
 */
export async function reserveSeqs(trx: Trx, org: string, n: number, tables: readonly string[]): Promise<bigint> {
  const r = await sql<{ last_seq: string }>`with o as (
      update sfmirror.orgs set last_seq = last_seq + ${n}, last_applied_at = now() where alias = ${org} returning last_seq)
    , m as (update sfmirror.mirror_objects set last_applied_at = now(), last_seq = (select last_seq from o)
      where org_alias = ${org} and table_name = any(${tables}::text[]))
    select last_seq from o`.execute(trx);
  if (!r.rows[0]) throw new Error(`org ${org} is not registered`);
  return BigInt(r.rows[0].last_seq);
}

export type RowWrite = Record<string, unknown> & { sfid: string; _sfm_seq: string };

// Column types come from field-types.ts's fixed list; names are quoted identifiers.
function recordsetColumns(columns: readonly ColumnInfo[]) {
  const cols = columns.filter((c) => c.column !== 'systemmodstamp');
  const defs = sql.join([
    sql`sfid text, isdeleted boolean, systemmodstamp timestamptz`,
    ...cols.map((c) => sql`${sql.id(c.column)} ${sql.raw(c.pgType)}`),
    sql`_sfm_fields jsonb, _sfm_version jsonb, _sfm_seq bigint`,
  ]);
  const names = ['sfid', 'isdeleted', 'systemmodstamp', ...cols.map((c) => c.column), '_sfm_fields', '_sfm_version', '_sfm_seq'];
  return { cols, defs, names };
}

/** Writes the merged state of locked rows: typed columns, `_sfm_*`. `columns` = the typed columns set. */
export async function updateRows(trx: Trx, t: TableInfo, columns: readonly ColumnInfo[], rows: readonly RowWrite[]): Promise<void> {
  const { cols, defs } = recordsetColumns(columns);
  const sets = sql.join([
    sql`isdeleted = x.isdeleted, systemmodstamp = x.systemmodstamp`,
    ...cols.map((c) => sql`${sql.id(c.column)} = x.${sql.id(c.column)}`),
    sql`_sfm_fields = x._sfm_fields, _sfm_version = x._sfm_version, _sfm_seq = x._sfm_seq`,
  ]);
  await sql`update ${sql.id(t.org, t.table)} as t set ${sets}
    from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(${defs}) where t.sfid = x.sfid`.execute(trx);
}

/**
 * Inserts rows new to the mirror. Returns the ids actually inserted: an id missing from the answer
 * was committed by a concurrent batch after this one looked (the caller retries the batch).
 */
export async function insertRows(trx: Trx, t: TableInfo, columns: readonly ColumnInfo[], rows: readonly RowWrite[]): Promise<Set<string>> {
  const { defs, names } = recordsetColumns(columns);
  const list = sql.join(names.map((n) => sql.id(n)));
  const r = await sql<{ sfid: string }>`insert into ${sql.id(t.org, t.table)} (${list})
    select ${list} from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(${defs})
    on conflict (sfid) do nothing returning sfid`.execute(trx);
  return new Set(r.rows.map((x) => x.sfid));
}

export type OutboxWrite = { org_alias: string; object: string; sfid: string; op: string; version: string; seq: string; record: unknown };

export async function insertOutbox(trx: Trx, rows: readonly OutboxWrite[]): Promise<void> {
  await sql`insert into sfmirror.outbox (org_alias, object, sfid, op, version, seq, record)
    select org_alias, object, sfid, op, version, seq, record
    from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
      as x(org_alias text, object text, sfid text, op text, version text, seq bigint, record jsonb)`.execute(trx);
}

export async function recordTypeProblems(trx: Trx, org: string, problems: readonly TypeProblem[]): Promise<void> {
  // One row per (object, field), the latest sample kept: the table stays small whatever the volume.
  const latest = new Map<string, TypeProblem & { n: number }>();
  for (const p of problems) {
    const k = `${p.object}\u0000${p.field}`;
    latest.set(k, { ...p, n: (latest.get(k)?.n ?? 0) + 1 });
  }
  const rows = [...latest.values()]
    .sort((a, b) => (a.object + a.field < b.object + b.field ? -1 : 1))
    .map((p) => ({
      object: p.object,
      field: p.field,
      problem: p.problem,
      sfid: p.sfid ?? null,
      value: p.value ?? null,
      n: p.n,
    }));
  await sql`insert into sfmirror.type_problems as tp (org_alias, object, field, problem, sample_sfid, sample_value, occurrences)
    select ${org}, object, field, problem, sfid, value, n
    from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(object text, field text, problem text, sfid text, value text, n bigint)
    on conflict (org_alias, object, field) do update set problem = excluded.problem, sample_sfid = excluded.sample_sfid,
      sample_value = excluded.sample_value, occurrences = tp.occurrences + excluded.occurrences, last_seen = now()`.execute(trx);
}

export async function saveCheckpoint(trx: Trx, org: string, source: string, value: unknown): Promise<void> {
  await trx
    .insertInto('sfmirror.checkpoints')
    .values({ org_alias: org, source, value: JSON.stringify(value) })
    .onConflict((oc) => oc.columns(['org_alias', 'source']).doUpdateSet({ value: JSON.stringify(value), updated_at: sql`now()` }))
    .execute();
}

export async function readCheckpoint(trx: Trx | import('../db/database.ts').Db, org: string, source: string): Promise<unknown> {
  const r = await trx
    .selectFrom('sfmirror.checkpoints')
    .select('value')
    .where('org_alias', '=', org)
    .where('source', '=', source)
    .executeTakeFirst();
  return r?.value;
}
