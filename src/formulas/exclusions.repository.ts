import { sql } from 'kysely';
import type { FieldFilter } from '../changes/field-filter.ts';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';

/**
 * On start, fields the operator now excludes are emptied where the mirror already holds them: the
 * column is set to null and the key removed from `_sfm_fields` (and the column's row from
 * `sfmirror.mirror_columns` stays, so a later include makes no second column). This is the
 * operator's choice applied to data already copied; it is not a change of the record, so it bumps
 * no `_sfm_seq` and queues nothing for BigQuery (rebuild a table with `sfmirror warehouse rebuild`).
 */
export async function emptyExcludedFields(
  db: Db,
  filter: FieldFilter,
  log?: Logger,
): Promise<Array<{ org: string; object: string; field: string; rows: number }>> {
  if (!filter.active) return [];
  const cols = await sql<{ org_alias: string; object: string; table_name: string; column_name: string; field: string }>`
    select o.org_alias, o.object, o.table_name, c.column_name, c.field
    from sfmirror.mirror_columns c join sfmirror.mirror_objects o using (org_alias, table_name)`.execute(db);
  const out: Array<{ org: string; object: string; field: string; rows: number }> = [];
  for (const c of cols.rows) {
    if (filter.allows(c.object, c.field)) continue;
    const t = sql.id(c.org_alias, c.table_name);
    const r = await sql`update ${t} set ${sql.id(c.column_name)} = null, _sfm_fields = _sfm_fields - ${c.field}
      where ${sql.id(c.column_name)} is not null or _sfm_fields ? ${c.field}`.execute(db);
    const rows = Number(r.numAffectedRows ?? 0);
    out.push({ org: c.org_alias, object: c.object, field: c.field, rows });
    if (rows) log?.info({ org: c.org_alias, object: c.object, field: c.field, rows }, 'excluded field emptied in the mirror');
  }
  return out;
}
