import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * Forward-only SQL migrations from migrations/ (ordered by their date prefix). Safe when several
 * processes start at once: a session-level advisory lock makes them take turns, and each migration
 * runs in its own transaction, so a failure leaves the previous ones applied.
 */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));
const LOCK_KEY = 0x5f6d6972; // 'sfmir'

export type MigrationResult = { name: string; status: 'applied' | 'failed' };

export function listMigrations(dir = MIGRATIONS_DIR): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{8}.*\.sql$/.test(f))
    .sort();
}

export async function migrate(db: Db, dir = MIGRATIONS_DIR): Promise<{ results: MigrationResult[]; error?: unknown }> {
  const results: MigrationResult[] = [];
  return db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(${LOCK_KEY})`.execute(conn);
    try {
      await sql`create schema if not exists sfmirror`.execute(conn);
      await sql`create table if not exists sfmirror.schema_migrations (name text primary key, applied_at timestamptz not null default now())`.execute(
        conn,
      );
      const done = new Set((await conn.selectFrom('sfmirror.schema_migrations').select('name').execute()).map((r) => r.name));
      for (const name of listMigrations(dir)) {
        if (done.has(name)) continue;
        const text = fs.readFileSync(path.join(dir, name), 'utf8');
        try {
          await conn.transaction().execute(async (trx) => {
            await sql.raw(text).execute(trx);
            await trx.insertInto('sfmirror.schema_migrations').values({ name }).execute();
          });
          results.push({ name, status: 'applied' });
        } catch (error) {
          results.push({ name, status: 'failed' });
          return { results, error };
        }
      }
      return { results };
    } finally {
      await sql`select pg_advisory_unlock(${LOCK_KEY})`.execute(conn);
    }
  });
}

/** Names of migrations in migrations/ that the database has not applied yet. */
export async function pendingMigrations(db: Db, dir = MIGRATIONS_DIR): Promise<string[]> {
  const exists = await sql<{ t: string | null }>`select to_regclass('sfmirror.schema_migrations')::text as t`.execute(db);
  const all = listMigrations(dir);
  if (!exists.rows[0]?.t) return all;
  const done = new Set((await db.selectFrom('sfmirror.schema_migrations').select('name').execute()).map((r) => r.name));
  return all.filter((n) => !done.has(n));
}
