import { sql, type RawBuilder } from 'kysely';
import type { Trx } from '../db/database.ts';
import type { StoredVersion } from './merge.ts';
import type { ColumnInfo, TableInfo, TypeProblem } from './schema.ts';

/** SQL of the write path. Every function is one round trip, whatever the number of records. */

/**
 * Locks the existing rows of `ids` (sorted: concurrent batches lock in the same order). Only batches
 * that touch several tables call it, before any `mergeRows`: every row lock of a batch is then taken
 * before the org's cursor lock, so two batches never wait on each other in a cycle.
 */
export async function lockRows(trx: Trx, t: TableInfo, ids: readonly string[]): Promise<void> {
  await sql`select 1 from ${sql.id(t.org, t.table)} where sfid = any(${ids}::text[]) order by sfid for update`.execute(trx);
}

export async function warehouseEnabled(trx: Trx): Promise<boolean> {
  const r = await trx.selectFrom('sfmirror.settings').select('value').where('key', '=', 'warehouse').executeTakeFirst();
  return (r?.value as { enabled?: boolean } | undefined)?.enabled === true;
}

/**
 * One record's changes of a batch, merged with each other (merge.ts): typed column values (already
 * fitted to their columns), the fields and their versions, and how many changes it came from.
 */
export type DeltaRow = Record<string, unknown> & {
  sfid: string;
  isdeleted: boolean;
  _sfm_f: Record<string, unknown>;
  _sfm_v: StoredVersion;
  _sfm_n: number;
  /** The delta's field names, and its oldest version (sfmirror.merge_record's fast paths). */
  _sfm_k: string[];
  _sfm_min: string;
  /** The operation of a record's one change (its outbox row's `op`); absent with several. */
  _sfm_op?: string;
};

/** A row the merge changed. `old*` only for records with several changes in the batch. */
export type MergedRow = {
  sfid: string;
  seq: string;
  written: boolean;
  old_fields: Record<string, unknown> | null;
  old_version: StoredVersion | null;
  old_deleted: boolean | null;
};

/**
 * Merges `rows` into the table in one statement: locks the existing rows (sorted), merges each with
 * `sfmirror.merge_record` (migrations/20261203_0019_sql_merge.sql), and for the rows that changed
 * takes change-cursor values from the org's counter, updates or inserts them. The org row stays
 * locked until commit, so batches of one org commit in the order of their seqs: a reader that has
 * seen seq N never later finds a newly committed row below N. Nothing after this statement in the
 * transaction may take a mirror row lock (lockRows comes first).
 *
 * With `outbox` (the warehouse is on), the statement also writes the outbox row of every record
 * with one change in the batch: the record after it, as merged, never sent to Node and back. The
 * caller writes those of records with several changes (their states in between are replayed in
 * merge.ts). A returned row with `written` false was inserted by a concurrent batch meanwhile (run
 * the batch again).
 */
export async function mergeRows(
  trx: Trx,
  t: TableInfo,
  columns: readonly ColumnInfo[],
  rows: readonly DeltaRow[],
  opts: { outbox: boolean; source?: string | undefined },
): Promise<MergedRow[]> {
  const table = sql.id(t.org, t.table);
  // One array per column (unnest): PostgreSQL parses each value on its own, where one JSON document
  // of the whole batch cost a jsonb tree of it and its taking apart again. Column types come from
  // field-types.ts's fixed list; names are quoted identifiers; field names (API names) hold no comma.
  const arrays = [
    sql`${rows.map((r) => r.sfid)}::text[]`,
    sql`${rows.map((r) => r.isdeleted)}::boolean[]`,
    sql`${rows.map((r) => JSON.stringify(r._sfm_f))}::jsonb[]`,
    sql`${rows.map((r) => JSON.stringify(r._sfm_v))}::jsonb[]`,
    sql`${rows.map((r) => r._sfm_n)}::int[]`,
    sql`${rows.map((r) => r._sfm_k.join(','))}::text[]`,
    sql`${rows.map((r) => r._sfm_min)}::text[]`,
    sql`${rows.map((r) => r._sfm_op ?? null)}::text[]`,
    // systemmodstamp is a built-in column (schema.ts), whatever type mirror_columns noted for the field.
    ...columns.map(
      (c) => sql`${rows.map((r) => r[c.column] ?? null)}::${sql.raw(c.column === 'systemmodstamp' ? 'timestamptz' : c.pgType)}[]`,
    ),
  ];
  const names = sql.join([
    sql`sfid, isdeleted, _sfm_f, _sfm_v, _sfm_n, _sfm_k, _sfm_min, _sfm_op`,
    ...columns.map((c) => sql.id(c.column)),
  ]);
  const picked = sql.join([
    sql`sfid, isdeleted, _sfm_f, _sfm_v, _sfm_n, string_to_array(_sfm_k, ',') as _sfm_k, _sfm_min, _sfm_op, _sfm_ord`,
    ...columns.map((c) => sql.id(c.column)),
  ]);
  const typed = sql.join([sql`isdeleted`, ...columns.map((c) => sql.id(c.column)), sql`_sfm_fields, _sfm_version, _sfm_seq`]);
  const inserted = sql.join([
    sql`_sfm_m_deleted`,
    ...columns.map((c) => sql.id(c.column)),
    sql`_sfm_m_fields, _sfm_m_version, _sfm_seq_new`,
  ]);
  // A typed column takes the incoming value only where the incoming field won the merge.
  const sets = sql.join([
    sql`isdeleted = s._sfm_m_deleted`,
    ...columns.map(
      (c) =>
        sql`${sql.id(c.column)} = case when s._sfm_f ? ${c.field} and (s._sfm_m_won is null or ${c.field} = any(s._sfm_m_won)) then s.${sql.id(c.column)} else t.${sql.id(c.column)} end`,
    ),
    sql`_sfm_fields = s._sfm_m_fields, _sfm_version = s._sfm_m_version, _sfm_seq = s._sfm_seq_new`,
  ]);
  const ids = rows.map((r) => r.sfid).sort();
  const r = await sql<MergedRow>`with x as (select ${picked} from unnest(${sql.join(arrays)}) with ordinality as x(${names}, _sfm_ord)),
    cur as (select sfid, _sfm_fields, _sfm_version, isdeleted from ${table} where sfid = any(${ids}::text[]) order by sfid for update),
    ${mergeSteps(t, sql`x._sfm_k`, opts.source ?? null)},
    u as (update ${table} as t set ${sets} from s where s._sfm_m_existed and t.sfid = s.sfid),
    -- New rows take their ids (bigserial), and outbox rows theirs, in the batch's order.
    i as (insert into ${table} (sfid, ${typed}) select sfid, ${inserted} from s where not s._sfm_m_existed order by s._sfm_ord
      on conflict (sfid) do nothing returning sfid)
    ${
      opts.outbox
        ? sql`, ob as (insert into sfmirror.outbox (org_alias, object, sfid, op, version, seq, record)
          select ${t.org}, ${t.object}, s.sfid, s._sfm_op, s._sfm_min, s._sfm_seq_new, s._sfm_m_fields from s
          where s._sfm_n = 1 and (s._sfm_m_existed or s.sfid in (select sfid from i)) order by s._sfm_ord)`
        : sql``
    }
    select s.sfid, s._sfm_seq_new::text as seq, s._sfm_m_existed or s.sfid in (select sfid from i) as written,
      case when s._sfm_n > 1 then s._sfm_m_old_fields end as old_fields,
      case when s._sfm_n > 1 then s._sfm_m_old_version end as old_version,
      case when s._sfm_n > 1 then s._sfm_m_old_deleted end as old_deleted
    from s order by s.sfid`.execute(trx);
  return r.rows;
}

/**
 * The middle of a merge statement, shared by mergeRows and the CSV path (csv-page.repository.ts).
 * Given `x`, the incoming rows (sfid, isdeleted, _sfm_f, _sfm_v, _sfm_min; `keys` their field
 * names), and `cur`, their stored rows locked in sfid order: `m`, the rows the merge changes, with
 * the stored state before it (`_sfm_m_old_*`) and after it (`_sfm_m_*`); `o` and `mo`, the org's
 * change cursor moved past them (the org row stays locked until commit: batches of one org commit
 * in the order of their seqs); `s`, each with its new `_sfm_seq_new` (in no particular order within
 * the statement: sorting wide rows for it cost a fifth of a Bulk page's time).
 */
export function mergeSteps(t: TableInfo, keys: RawBuilder<unknown>, source: string | null): RawBuilder<unknown> {
  return sql`m as (select x.*, cur.sfid is not null as _sfm_m_existed, cur._sfm_fields as _sfm_m_old_fields, cur._sfm_version as _sfm_m_old_version,
        cur.isdeleted as _sfm_m_old_deleted, r.fields as _sfm_m_fields, r.version as _sfm_m_version, r.deleted as _sfm_m_deleted, r.won as _sfm_m_won
      from x left join cur on cur.sfid = x.sfid
      -- A record new to the mirror is the delta as it is (merge_record's first case, without a call per row).
      cross join lateral (select * from sfmirror.merge_record(cur._sfm_fields, cur._sfm_version, cur.isdeleted, x.sfid, x._sfm_f, x._sfm_v, x.isdeleted, ${keys}, x._sfm_min)
          where cur.sfid is not null
        union all select x._sfm_f || jsonb_build_object('Id', x.sfid, 'IsDeleted', x.isdeleted), x._sfm_v, x.isdeleted, null::text[], true
          where cur.sfid is null) r
      where r.changed),
    o as (update sfmirror.orgs set last_seq = last_seq + (select count(*) from m), last_applied_at = now()
      where alias = ${t.org} and exists (select from m) returning last_seq),
    mo as (update sfmirror.mirror_objects set last_applied_at = now(), last_seq = (select last_seq from o), last_source = ${source}
      where org_alias = ${t.org} and table_name = ${t.table} and exists (select from o)),
    s as (select m.*, (select last_seq from o) - (select count(*) from m) + row_number() over () as _sfm_seq_new from m)`;
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
