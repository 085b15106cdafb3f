import { sql, type RawBuilder } from 'kysely';
import type { CopyIn, Trx } from '../db/database.ts';
import type { PgType } from './field-types.ts';
import { mergeSteps } from './mirror.repository.ts';
import type { TableInfo } from './schema.ts';

/**
 * SQL of the backfill's CSV pages (apply.ts, applyCsvPage): a Bulk API 2.0 results page goes to
 * PostgreSQL as it came, `COPY ... FROM STDIN (FORMAT csv)` into a temporary table of text columns,
 * then ONE statement decodes, types and merges it into the mirror with the same rules as the row
 * path: the Bulk decoding of src/salesforce/bulk-values.ts and src/changes/rest-record.ts (''
 * is null, booleans and numbers by describe type, the version from SystemModstamp), the column
 * fitting of field-types.ts (a value that does not fit leaves its column NULL and is reported), and
 * the merge of mirror.repository.ts mergeRows (sfmirror.merge_record, the org's change cursor, the
 * outbox). No record becomes a JavaScript object on the way.
 *
 * Values are recognised by their shape (the same patterns as field-types.ts) and then cast; a value
 * of the right shape that PostgreSQL still refuses (a 30 February, an integer out of range) fails
 * the statement with a data exception, and the caller decodes the page in JavaScript instead
 * (apply.ts), where it becomes a reported type problem: such values are rare enough that checking
 * every cell beforehand would cost more than the odd page read twice.
 */

/** One column of the page's CSV, in header order. */
export interface CsvField {
  /** The field's name as the mirror spells it (its column's), or the header's. */
  readonly name: string;
  /** Salesforce type by describe, lower case (decides the JSON value: boolean, number, string). */
  readonly sfType: string | undefined;
  /** The typed mirror column it fills, if any. */
  readonly column?: { readonly name: string; readonly pgType: PgType } | undefined;
}

export interface CsvPageOutcome {
  /** Rows in the page. */
  readonly rows: number;
  /** Rows without a valid Id or SystemModstamp (not applied), and the first of them. */
  readonly skipped: number;
  readonly skippedSample: { id: string | null; stamp: string | null } | null;
  /** Rows whose merge changed the mirror. */
  readonly applied: number;
  /** Valid ids that occur more than once in the page (the caller takes the row path then). */
  readonly duplicates: number;
  /** Rows another transaction inserted meanwhile (the caller runs the page again). */
  readonly lost: number;
  readonly lastSeq: string | null;
  readonly typeProblems: number;
}

const NUMERIC_SF = new Set(['int', 'double', 'currency', 'percent', 'long']);
const NUMBER = String.raw`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$`;
const INTEGER = String.raw`^[+-]?\d+$`;
const DATE = String.raw`^\d{4}-\d{2}-\d{2}$`;
const ISO_DATETIME = String.raw`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$`;

/** The reason of a value that does not fit its column, as field-types.ts words it. */
const MISFIT: Record<PgType, string> = {
  text: '',
  boolean: 'not a boolean',
  integer: 'not an integer',
  bigint: 'not an integer (long)',
  numeric: 'not a number',
  date: 'not a date (YYYY-MM-DD)',
  timestamptz: 'not an ISO 8601 datetime',
};

/**
 * The 3-character checksum of a Salesforce id (src/changes/names.ts, toId18): one character of
 * ABCDEFGHIJKLMNOPQRSTUVWXYZ012345 per block of 5, whose bit i says whether character i of its block
 * is an upper-case letter. Written out (bytes, not characters: `c` is ASCII letters and digits by then)
 * because PostgreSQL calls a function per row, about ten times slower than this expression.
 */
const idSuffix = (c: RawBuilder<unknown>) =>
  sql`substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ012345', 1 + (get_byte(convert_to(${c}, 'UTF8'), 0) between 65 and 90)::int * 1 + (get_byte(convert_to(${c}, 'UTF8'), 1) between 65 and 90)::int * 2 + (get_byte(convert_to(${c}, 'UTF8'), 2) between 65 and 90)::int * 4 + (get_byte(convert_to(${c}, 'UTF8'), 3) between 65 and 90)::int * 8 + (get_byte(convert_to(${c}, 'UTF8'), 4) between 65 and 90)::int * 16, 1)
    || substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ012345', 1 + (get_byte(convert_to(${c}, 'UTF8'), 5) between 65 and 90)::int * 1 + (get_byte(convert_to(${c}, 'UTF8'), 6) between 65 and 90)::int * 2 + (get_byte(convert_to(${c}, 'UTF8'), 7) between 65 and 90)::int * 4 + (get_byte(convert_to(${c}, 'UTF8'), 8) between 65 and 90)::int * 8 + (get_byte(convert_to(${c}, 'UTF8'), 9) between 65 and 90)::int * 16, 1)
    || substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ012345', 1 + (get_byte(convert_to(${c}, 'UTF8'), 10) between 65 and 90)::int * 1 + (get_byte(convert_to(${c}, 'UTF8'), 11) between 65 and 90)::int * 2 + (get_byte(convert_to(${c}, 'UTF8'), 12) between 65 and 90)::int * 4 + (get_byte(convert_to(${c}, 'UTF8'), 13) between 65 and 90)::int * 8 + (get_byte(convert_to(${c}, 'UTF8'), 14) between 65 and 90)::int * 16, 1)`;
const ID_SHAPE = String.raw`^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$`;

/** Staging columns are c0, c1, ... in header order: no outside name reaches the DDL. */
const cell = (i: number) => sql.raw(`p.c${i}`);

/** The JSON value of a cell, as bulk-values.ts types it. */
function jsonValue(f: CsvField, c: RawBuilder<unknown>): RawBuilder<unknown> {
  if (f.sfType === 'boolean') return sql`(${c} = 'true')`;
  if (f.sfType && NUMERIC_SF.has(f.sfType))
    return sql`case when ${c} ~ ${NUMBER} then to_jsonb(trim_scale(${c}::numeric)) else to_jsonb(${c}) end`;
  return c;
}

/** The value of a cell for its typed column (NULL when it does not fit), as field-types.ts fits it. */
function typedValue(f: CsvField, pgType: PgType, c: RawBuilder<unknown>): RawBuilder<unknown> {
  const numericSf = !!f.sfType && NUMERIC_SF.has(f.sfType);
  switch (pgType) {
    case 'text':
      return c;
    case 'boolean':
      return f.sfType === 'boolean' ? sql`(${c} = 'true')` : sql`case when ${c} in ('true', 'false') then ${c} = 'true' end`;
    case 'integer':
    case 'bigint': {
      const t = sql.raw(pgType);
      return numericSf
        ? sql`case when ${c} ~ ${NUMBER} and ${c}::numeric % 1 = 0 then ${c}::numeric::${t} end`
        : sql`case when btrim(${c}) ~ ${INTEGER} then btrim(${c})::${t} end`;
    }
    case 'numeric':
      return numericSf
        ? sql`case when ${c} ~ ${NUMBER} then trim_scale(${c}::numeric) end`
        : sql`case when btrim(${c}) ~ ${NUMBER} then btrim(${c})::numeric end`;
    case 'date':
      return sql`case when ${c} ~ ${DATE} and ${c} >= '0001' then ${c}::date end`;
    case 'timestamptz':
      return sql`case when ${c} ~ ${ISO_DATETIME} and ${c}::timestamptz >= 'epoch' then date_trunc('milliseconds', ${c}::timestamptz) end`;
  }
}

/**
 * Copies the page into a temporary table (dropped at commit) and merges it into `t`, in the caller's
 * transaction. `fields` are the CSV's columns in header order (null: not a field, e.g. `Owner.Name`); `id`, `stamp` and `deleted` are the
 * positions of Id, SystemModstamp and IsDeleted (-1: absent).
 */
export async function applyCsvPage(
  trx: Trx,
  copy: CopyIn,
  t: TableInfo,
  csv: string,
  fields: readonly (CsvField | null)[],
  pos: { id: number; stamp: number; deleted: number },
  opts: { outbox: boolean; source: string; seenRun?: string | undefined },
): Promise<CsvPageOutcome> {
  const staged = fields.map((_, i) => `c${i}`);
  // Sorts and hashes of a 10,000-row page stay in memory rather than in temporary files.
  await sql`set local work_mem = '64MB'`.execute(trx);
  await sql.raw(`create temp table sfm_page (${staged.map((c) => `${c} text`).join(', ')}) on commit drop`).execute(trx);
  // FORCE_NULL: Salesforce writes a null as an empty string, quoted or not (bulk-values.ts).
  const rows = await copy(`copy sfm_page from stdin with (format csv, header true, force_null (${staged.join(', ')}))`, csv);

  const table = sql.id(t.org, t.table);
  const data = fields.flatMap((f, i) => (f && i !== pos.id && i !== pos.deleted ? [{ f, i }] : []));
  const typed = data.filter(({ f }) => f.column).map(({ f, i }) => ({ f, i, col: f.column!, k: sql.raw(`t${i}`) }));
  // jsonb_build_object takes at most 100 arguments: 50 fields a call.
  const chunks: RawBuilder<unknown>[] = [];
  for (let k = 0; k < data.length; k += 50)
    chunks.push(
      sql`jsonb_build_object(${sql.join(data.slice(k, k + 50).map(({ f, i }) => sql`${f.name}::text, ${jsonValue(f, cell(i))}`))})`,
    );
  const fieldsJson = chunks.length ? sql.join(chunks, sql` || `) : sql`'{}'::jsonb`;
  const keys = data.map(({ f }) => f.name);
  const stamp = cell(pos.stamp);
  const id = cell(pos.id);
  const deleted = pos.deleted >= 0 ? sql`coalesce(${cell(pos.deleted)} = 'true', false)` : sql`false`;
  const typedCols = typed.map(({ f, col, k, i }) => sql`${typedValue(f, col.pgType, cell(i))} as ${k}`);

  const sets = sql.join([
    sql`isdeleted = s._sfm_m_deleted`,
    ...typed.map(
      ({ f, col, k }) =>
        sql`${sql.id(col.name)} = case when s._sfm_m_won is null or ${f.name}::text = any(s._sfm_m_won) then s.${k} else t.${sql.id(col.name)} end`,
    ),
    sql`_sfm_fields = s._sfm_m_fields, _sfm_version = s._sfm_m_version, _sfm_seq = s._sfm_seq_new`,
  ]);
  const insertCols = sql.join([
    sql`sfid, isdeleted`,
    ...typed.map(({ col }) => sql.id(col.name)),
    sql`_sfm_fields, _sfm_version, _sfm_seq`,
  ]);
  const insertVals = sql.join([sql`sfid, _sfm_m_deleted`, ...typed.map(({ k }) => k), sql`_sfm_m_fields, _sfm_m_version, _sfm_seq_new`]);
  // A value that does not fit its column: one row per (field, column, reason), counted, with a sample.
  const misfits = typed.filter(({ col }) => col.pgType !== 'text');
  const problems = misfits.length
    ? sql`, pr as (select f.field, count(*) as n, max(f.sfid) as sfid, max(left(f.raw, 200)) as raw, max(f.problem) as problem
          from s cross join lateral (values ${sql.join(
            misfits.map(
              ({ f, i, col, k }) =>
                sql`(${f.name}::text, s.sfid, s.${sql.raw(`c${i}`)}, s.${k} is null, ${`value does not fit column ${col.name} (${col.pgType}): ${MISFIT[col.pgType]}`}::text)`,
            ),
          )}) as f(field, sfid, raw, bad, problem)
          where s._sfm_bad and f.raw is not null and f.bad group by f.field),
        tp as (insert into sfmirror.type_problems as tp (org_alias, object, field, problem, sample_sfid, sample_value, occurrences)
          select ${t.org}, ${t.object}, field, problem, sfid, raw, n from pr
          on conflict (org_alias, object, field) do update set problem = excluded.problem, sample_sfid = excluded.sample_sfid,
            sample_value = excluded.sample_value, occurrences = tp.occurrences + excluded.occurrences, last_seen = now()
          returning 1)`
    : sql``;
  const outbox = opts.outbox
    ? sql`, ob as (insert into sfmirror.outbox (org_alias, object, sfid, op, version, seq, record)
          select ${t.org}, ${t.object}, s.sfid, case when s.isdeleted then 'delete' else 'update' end, s._sfm_min, s._sfm_seq_new, s._sfm_m_fields
          from s where s._sfm_m_existed or s.sfid in (select sfid from i)
          returning 1)`
    : sql``;

  const r = await sql<{
    skipped: string;
    duplicates: string;
    applied: string;
    lost: string;
    last_seq: string | null;
    problems: string;
  }>`with x as materialized (select k.sfid, ${deleted} as isdeleted, ver._sfm_min,
        ${fieldsJson} as _sfm_f, jsonb_build_object('d', ver._sfm_min, 'v', ver._sfm_min) as _sfm_v
        ${typed.length ? sql`, ${sql.join(typed.map(({ k }) => sql`tv.${k}`))}` : sql``}
        ${misfits.length ? sql`, ${sql.join(misfits.map(({ i }) => sql.raw(`p.c${i}`)))}` : sql``}
        ${
          misfits.length
            ? sql`, ${sql.join(
                misfits.map(({ i, k }) => sql`(${cell(i)} is not null and tv.${k} is null)`),
                sql` or `,
              )} as _sfm_bad`
            : sql``
        }
      from sfm_page p
      -- Each lateral subquery (offset 0: kept apart, evaluated once per row) computes what several
      -- expressions use: the id's checksum, the id, the version, the typed values.
      cross join lateral (select case when ${id} ~ ${ID_SHAPE} then ${idSuffix(id)} end as sfx offset 0) sx
      cross join lateral (select case when length(${id}) = 15 or upper(substr(${id}, 16)) = sx.sfx then left(${id}, 15) || sx.sfx end as sfid offset 0) k
      cross join lateral (select case when ${stamp} ~ ${ISO_DATETIME} and ${stamp}::timestamptz >= 'epoch'
          then lpad(floor(extract(epoch from ${stamp}::timestamptz) * 1000)::bigint::text, 15, '0') || '.000000000000' end as _sfm_min offset 0) ver
      ${typed.length ? sql`cross join lateral (select ${sql.join(typedCols)} offset 0) tv` : sql``}
      where k.sfid is not null and ver._sfm_min is not null),
    cur as (select sfid, _sfm_fields, _sfm_version, isdeleted from ${table} where sfid in (select sfid from x) order by sfid for update),
    ${mergeSteps(t, sql`${keys}::text[]`, opts.source)},
    u as (update ${table} as t set ${sets} from s where s._sfm_m_existed and t.sfid = s.sfid),
    i as (insert into ${table} (${insertCols}) select ${insertVals} from s where not s._sfm_m_existed
      on conflict (sfid) do nothing returning sfid)
    ${outbox}
    ${problems}
    ${
      // A whole-object resync notes every id it read (src/backfill/resync.repository.ts).
      opts.seenRun
        ? sql`, seen as (insert into sfmirror.resync_seen (run, sfid) select ${opts.seenRun}, sfid from x on conflict do nothing)`
        : sql``
    }
    select ${rows}::int - (select count(*) from x) as skipped,
      (select count(*) - count(distinct sfid) from x) as duplicates,
      (select count(*) from s) as applied,
      (select count(*) from s where not s._sfm_m_existed and s.sfid not in (select sfid from i)) as lost,
      (select max(_sfm_seq_new)::text from s) as last_seq,
      ${misfits.length ? sql`(select coalesce(sum(n), 0) from pr)` : sql`0`} as problems`.execute(trx);
  const o = r.rows[0]!;
  // A row skipped, for the log (rare: Salesforce sends both): one with a malformed Id or SystemModstamp.
  const sample = Number(o.skipped)
    ? (
        await sql<{ id: string | null; stamp: string | null }>`select ${id} as id, ${stamp} as stamp from sfm_page p
          where ${id} is null or ${stamp} is null or ${id} !~ ${ID_SHAPE} or ${stamp} !~ ${ISO_DATETIME} limit 1`.execute(trx)
      ).rows[0]
    : undefined;
  return {
    rows,
    skipped: Number(o.skipped),
    skippedSample: sample ?? null,
    applied: Number(o.applied),
    duplicates: Number(o.duplicates),
    lost: Number(o.lost),
    lastSeq: o.last_seq,
    typeProblems: Number(o.problems),
  };
}
