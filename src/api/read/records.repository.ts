import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../../db/database.ts';
import type { Condition, ObjectView } from './access.ts';

/**
 * SQL of the read API. Identifiers come from the catalog (quoted with `sql.id`), column types from
 * field-types.ts's fixed list, values are parameters. Rows are mapped to plain shapes here.
 */
export type Fields = Record<string, unknown>;

/** `a = x and b = y`; an unevaluable policy (null) is `false`: fail closed. */
function conditions(conds: readonly Condition[] | null): RawBuilder<unknown> {
  if (conds === null) return sql`false`;
  if (!conds.length) return sql`true`;
  // pgType is one of field-types.ts's names, never input: safe as raw SQL.
  return sql.join(
    conds.map((c) => sql`${sql.id(c.column)} = cast(${c.value} as ${sql.raw(c.pgType)})`),
    sql` and `,
  );
}

export interface ListQuery {
  readonly view: ObjectView;
  readonly filters: readonly Condition[];
  /** Keyset position: rows with a larger `id` (the table's immutable primary key). */
  readonly after: bigint;
  readonly modifiedSince?: string | undefined;
  readonly limit: number;
}

/** One page of live rows in primary-key order; `more` says whether another page follows. */
export async function listRecords(db: Db, q: ListQuery): Promise<{ rows: Array<{ key: string; fields: Fields }>; more: boolean }> {
  const o = q.view.object;
  const r = await sql<{ id: string; fields: Fields }>`select id, _sfm_fields as fields from ${sql.id(o.org, o.table)}
    where not isdeleted and id > ${String(q.after)}::bigint
      and ${conditions(q.filters)} and ${conditions(q.view.policy)}
      ${q.modifiedSince ? sql`and systemmodstamp >= ${q.modifiedSince}::timestamptz` : sql``}
    order by id limit ${q.limit + 1}`.execute(db);
  const more = r.rows.length > q.limit;
  return { rows: r.rows.slice(0, q.limit).map((x) => ({ key: String(x.id), fields: x.fields })), more };
}

/** A live record visible to the view, with its change cursor (the ETag's basis). */
export async function getRecord(db: Db, view: ObjectView, sfid: string): Promise<{ seq: string; fields: Fields } | undefined> {
  const o = view.object;
  const r = await sql<{ seq: string; fields: Fields }>`select _sfm_seq as seq, _sfm_fields as fields from ${sql.id(o.org, o.table)}
    where sfid = ${sfid} and not isdeleted and ${conditions(view.policy)}`.execute(db);
  return r.rows[0];
}

export interface FeedRow {
  readonly object: string;
  readonly sfid: string;
  readonly seq: string;
  /** Deleted, or outside the caller's row policy: the app removes it. */
  readonly removed: boolean;
  /** Null when removed. */
  readonly fields: Fields | null;
}

/**
 * The next `limit` changes after `since`, merged across `views` by `_sfm_seq` (one statement: one
 * snapshot, and the cursor is commit-ordered across the org's tables, so nothing is skipped).
 * `fresh` (since = 0: the app holds nothing yet) leaves out rows it would only remove.
 */
export async function readChanges(db: Db, views: readonly ObjectView[], since: bigint, limit: number, fresh: boolean): Promise<FeedRow[]> {
  if (!views.length) return [];
  const branches = views.map((v) => {
    const o = v.object;
    const visible = sql`(not isdeleted and ${conditions(v.policy)})`;
    return sql`(select ${o.object}::text as object, sfid::text as sfid, _sfm_seq as seq, not ${visible} as removed,
        case when ${visible} then _sfm_fields end as fields
      from ${sql.id(o.org, o.table)} where _sfm_seq > ${String(since)}::bigint ${fresh ? sql`and ${visible}` : sql``}
      order by _sfm_seq limit ${limit})`;
  });
  const r = await sql<{
    object: string;
    sfid: string;
    seq: string;
    removed: boolean;
    fields: Fields | null;
  }>`select * from (${sql.join(branches, sql` union all `)}) x
    order by seq limit ${limit}`.execute(db);
  return r.rows.map((x) => ({ ...x, seq: String(x.seq) }));
}

/** The org's purge watermark: change cursors below it may have missed a purged delete. */
export async function purgeWatermark(db: Db, org: string): Promise<bigint> {
  const r = await sql<{ watermark: string }>`select watermark from sfmirror.purge_watermarks where org_alias = ${org}`.execute(db);
  return BigInt(r.rows[0]?.watermark ?? 0);
}
