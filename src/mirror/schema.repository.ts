import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import { pgTypeFor, type PgType } from './field-types.ts';

/**
 * SQL of the mirror's tables (schema.ts decides what they need): the table of an object with the
 * columns `sfmirror.mirror_columns` records, and the DDL that creates or extends it. DDL runs in its
 * own short transaction (never inside a data batch) under an advisory lock per table.
 */

export type MirrorColumn = { field: string; column: string; pgType: PgType; sfType: string | null };
export type NewColumn = { field: string; column: string; sfType: string | null };

/** The object a mirror table holds and its recorded columns (oldest first), or undefined when there is no such table. */
export async function readMirrorTable(
  db: Db,
  org: string,
  table: string,
): Promise<{ object: string; columns: MirrorColumn[] } | undefined> {
  const obj = await db
    .selectFrom('sfmirror.mirror_objects')
    .select('object')
    .where('org_alias', '=', org)
    .where('table_name', '=', table)
    .executeTakeFirst();
  if (!obj) return undefined;
  const rows = await db
    .selectFrom('sfmirror.mirror_columns')
    .selectAll()
    .where('org_alias', '=', org)
    .where('table_name', '=', table)
    // In the order they were made: the warehouse gives BigQuery its columns in this order.
    .orderBy('created_at')
    .orderBy('column_name')
    .execute();
  return {
    object: obj.object,
    columns: rows.map((r) => ({ field: r.field, column: r.column_name, pgType: r.pg_type as PgType, sfType: r.sf_type })),
  };
}

/** Creates the org's schema and the object's table when missing, and adds the columns it lacks. */
export async function createMirrorTable(db: Db, org: string, object: string, table: string, fields: readonly NewColumn[]): Promise<void> {
  await db.transaction().execute(async (trx) => {
    // Schema creation is per org; CREATE SCHEMA IF NOT EXISTS still races with itself, hence the lock.
    await sql`select pg_advisory_xact_lock(hashtextextended(${`sfmirror.schema:${org}`}, 0))`.execute(trx);
    await sql`create schema if not exists ${sql.id(org)}`.execute(trx);
  });
  await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`sfmirror.table:${org}.${table}`}, 0))`.execute(trx);
    const t = sql.id(org, table);
    await sql`create table if not exists ${t} (
      id bigserial primary key,
      sfid varchar(18) not null unique,
      isdeleted boolean not null default false,
      systemmodstamp timestamptz,
      _sfm_fields jsonb not null default '{}',
      _sfm_version jsonb not null default '{}',
      _sfm_seq bigint not null default 0)`.execute(trx);
    await sql`create index if not exists ${sql.id(`${table}_sfm_seq_idx`)} on ${t} (_sfm_seq)`.execute(trx);
    await sql`create index if not exists ${sql.id(`${table}_systemmodstamp_idx`)} on ${t} (systemmodstamp)`.execute(trx);
    await trx
      .insertInto('sfmirror.mirror_objects')
      .values({ org_alias: org, table_name: table, object })
      .onConflict((oc) => oc.doNothing())
      .execute();
    const have = new Set(
      (
        await trx
          .selectFrom('sfmirror.mirror_columns')
          .select('column_name')
          .where('org_alias', '=', org)
          .where('table_name', '=', table)
          .execute()
      ).map((r) => r.column_name),
    );
    for (const f of fields) {
      if (have.has(f.column)) continue;
      const pgType = pgTypeFor(f.sfType);
      // pgType comes from a fixed list (field-types.ts), never from input: safe to write as SQL.
      await sql`alter table ${t} add column if not exists ${sql.id(f.column)} ${sql.raw(pgType)}`.execute(trx);
      await trx
        .insertInto('sfmirror.mirror_columns')
        .values({ org_alias: org, table_name: table, column_name: f.column, field: f.field, sf_type: f.sfType, pg_type: pgType })
        .execute();
      have.add(f.column);
    }
  });
}
