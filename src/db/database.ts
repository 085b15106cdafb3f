import { Kysely, PostgresDialect, sql, type ColumnType, type Generated } from 'kysely';
import pg from 'pg';
import type { Logger } from '../lib/logger.ts';

/** Table types of the internal schema `sfmirror` (see migrations/). Mirror tables are dynamic. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Int8 = ColumnType<string, string | number | bigint, string | number | bigint>;
type Json = ColumnType<unknown, string, string>;

export interface OrgsTable {
  alias: string;
  org_id: string | null;
  source: string;
  instance_url: string | null;
  last_seq: ColumnType<string, string | number | bigint | undefined, string | number | bigint>;
  last_applied_at: Timestamp | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  // Orgs connected by OAuth (migration 0008).
  login_url: string | null;
  user_id: string | null;
  identity_url: string | null;
  refresh_token_enc: string | null;
  auth_state: string | null;
  auth_error: string | null;
  connected_at: Timestamp | null;
}
export interface SettingsTable {
  key: string;
  value: Json;
  updated_at: Timestamp;
}
export interface MirrorObjectsTable {
  org_alias: string;
  object: string;
  table_name: string;
  last_applied_at: Timestamp | null;
  last_seq: Int8 | null;
  created_at: Timestamp;
}
export interface MirrorColumnsTable {
  org_alias: string;
  table_name: string;
  field: string;
  column_name: string;
  sf_type: string | null;
  pg_type: string;
  created_at: Timestamp;
}
export interface CheckpointsTable {
  org_alias: string;
  source: string;
  value: Json;
  updated_at: Timestamp;
}
export interface OutboxTable {
  id: ColumnType<string, string | number | bigint | undefined, string | number | bigint>;
  org_alias: string;
  object: string;
  sfid: string;
  op: string;
  version: string;
  seq: Int8;
  record: Json;
  committed_at: Timestamp;
}
export interface TypeProblemsTable {
  org_alias: string;
  object: string;
  field: string;
  problem: string;
  sample_sfid: string | null;
  sample_value: string | null;
  occurrences: ColumnType<string, string | number | bigint | undefined, string | number | bigint>;
  first_seen: Timestamp;
  last_seen: Timestamp;
}
export interface MigrationsTable {
  name: string;
  applied_at: Timestamp;
}

export interface Database {
  'sfmirror.orgs': OrgsTable;
  'sfmirror.settings': SettingsTable;
  'sfmirror.mirror_objects': MirrorObjectsTable;
  'sfmirror.mirror_columns': MirrorColumnsTable;
  'sfmirror.checkpoints': CheckpointsTable;
  'sfmirror.outbox': OutboxTable;
  'sfmirror.type_problems': TypeProblemsTable;
  'sfmirror.schema_migrations': MigrationsTable;
}

export type Db = Kysely<Database>;

/** One round trip to the server: throws when the database is unreachable (readiness checks). */
export async function pingDatabase(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}

export interface DatabaseHandle {
  db: Db;
  pool: pg.Pool;
  close(): Promise<void>;
}

export function createDatabase(
  url: string,
  opts: { poolSize?: number; connectTimeoutMs?: number; log?: Logger; applicationName?: string } = {},
): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'sfmirror',
  });
  // An idle client that loses its server emits 'error' on the pool; without a listener the process dies.
  pool.on('error', (err) => opts.log?.warn({ err: err.message }, 'database connection lost'));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closing: Promise<void> | undefined;
  return { db, pool, close: () => (closing ??= db.destroy()) };
}
