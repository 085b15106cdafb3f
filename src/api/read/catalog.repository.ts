import type { Db } from '../../db/database.ts';

/**
 * The read path's view of `sfmirror.mirror_objects` and `mirror_columns` (written by mirror/schema.ts,
 * their owner): the tables and columns of one org.
 */
export async function readMirrorCatalog(db: Db, org: string) {
  const objects = await db.selectFrom('sfmirror.mirror_objects').select(['table_name', 'object']).where('org_alias', '=', org).execute();
  const columns = await db
    .selectFrom('sfmirror.mirror_columns')
    .select(['table_name', 'column_name', 'field', 'pg_type'])
    .where('org_alias', '=', org)
    .execute();
  return { objects, columns };
}
