import { Kysely, PostgresDialect, sql, type ColumnType, type Generated, type Transaction } from 'kysely';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from '../lib/logger.ts';

/**
 * Table types of the internal schema `sfmirror`, every table of migrations/ (mirror tables are
 * dynamic: their columns follow Salesforce describe). Kept by hand next to the frozen SQL: a new
 * migration that adds a table or a column adds it here too. pg returns bigint as string.
 */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Int8 = ColumnType<string, string | number | bigint, string | number | bigint>;
/** A bigint column with a default (or a bigserial): optional on insert. */
type Int8Default = ColumnType<string, string | number | bigint | undefined, string | number | bigint>;
type Json = ColumnType<unknown, string, string>;
type JsonDefault = ColumnType<unknown, string | undefined, string>;
type TextDefault = ColumnType<string, string | undefined, string>;
type BoolDefault = ColumnType<boolean, boolean | undefined, boolean>;
type IntDefault = ColumnType<number, number | undefined, number>;
/** A `date` column: pg returns it as a Date at local midnight unless a type parser says otherwise. */
type DateColumn = ColumnType<Date | string, Date | string, Date | string>;

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
  /** The source of the last change applied ('cdc', 'apex', 'backfill', ...); null before migration 0016's first write. */
  last_source: string | null;
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
  /** The writing transaction's id: the drain reads the outbox in (txid, id) order (migration 0018). */
  txid: ColumnType<string, string | undefined, string>;
}
/** A partition of the outbox (org, object) and its drainer's lease, cursor and write stream (migration 0018). */
export interface WarehousePartitionsTable {
  org_alias: string;
  object: string;
  owner: string | null;
  lease_until: Timestamp;
  cursor_txid: TextDefault;
  cursor_id: Int8Default;
  stream_name: string | null;
  stream_offset: Int8Default;
  pending_txid: string | null;
  pending_id: Int8 | null;
  pending_rows: number | null;
  failures: IntDefault;
  last_error: string | null;
  last_error_at: Timestamp | null;
  drained_rows: Int8Default;
  updated_at: Timestamp;
}
/** Records waiting for a formula re-read (migration 0015). */
export interface FormulaQueueTable {
  org_alias: string;
  object: string;
  sfid: string;
  reason: string;
  queued_at: Timestamp;
  due_at: Timestamp;
  claimed_until: Timestamp | null;
}
export interface FormulaRefreshTable {
  org_alias: string;
  object: string;
  last_run_at: Timestamp;
}
export interface FormulaObjectsTable {
  org_alias: string;
  object: string;
  fields: Json;
  updated_at: Timestamp;
}
export interface FormulaSettingsTable {
  key: string;
  value: Json;
  updated_at: Timestamp;
}
/** Console sign-ins: only the hash of the session id is kept (migration 0016). */
export interface ConsoleSessionsTable {
  id_hash: string;
  token_print: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  revoked_at: Timestamp | null;
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

export interface ApiClientsTable {
  name: string;
  token_hash: string;
  spec: Json;
  created_at: Timestamp;
  revoked_at: Timestamp | null;
}
export interface PurgeWatermarksTable {
  org_alias: string;
  watermark: Int8Default;
  purged_rows: Int8Default;
  last_run_at: Timestamp | null;
}
export interface SeqMarksTable {
  org_alias: string;
  marked_at: Timestamp;
  seq: Int8;
}
export interface StreamStateTable {
  org_alias: string;
  channel: string;
  state: string;
  holder: string | null;
  replay_id: string | null;
  last_event_at: Timestamp | null;
  last_commit_at: Timestamp | null;
  lag_ms: Int8 | null;
  events_per_second: number | null;
  error: string | null;
  updated_at: Timestamp;
}
export interface ResyncRequestsTable {
  id: Int8Default;
  org_alias: string;
  object: string;
  reason: string;
  source: string;
  since: Timestamp | null;
  status: TextDefault;
  records: Int8Default;
  error: string | null;
  created_at: Timestamp;
  done_at: Timestamp | null;
  lease_owner: string | null;
  lease_until: Timestamp | null;
}
export interface ResyncSeenTable {
  run: string;
  sfid: string;
}
export interface BackfillJobsTable {
  id: Int8Default;
  org_alias: string;
  object: string;
  start_date: DateColumn;
  last_date: DateColumn;
  active: BoolDefault;
  state: TextDefault;
  reason: string | null;
  rows_imported: Int8Default;
  lease_owner: string | null;
  lease_until: Timestamp | null;
  last_run_at: Timestamp | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  deletes_checked_until: Timestamp | null;
}
export interface WarehouseTablesTable {
  org_alias: string;
  table_name: string;
  object: string;
  dataset: string;
  columns: JsonDefault;
  seeded_at: Timestamp | null;
  seeded_rows: Int8Default;
  latest_filled_at: Timestamp | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}
export interface WarehouseDeadLettersTable {
  change_id: Int8;
  org_alias: string;
  object: string;
  sfid: string;
  op: string;
  version: string;
  seq: Int8;
  record: Json;
  committed_at: Timestamp;
  reason: string;
  dead_at: Timestamp;
  /** `history`: the change table refused it (retry: back to the outbox); `latest`: only the latest-state table did. */
  target: ColumnType<'history' | 'latest', 'history' | 'latest' | undefined, 'history' | 'latest'>;
  /** A `latest` row the operator asked to send again (the drain does, then forgets it). */
  retry: ColumnType<boolean, boolean | undefined, boolean>;
}
export interface OAuthStatesTable {
  state_hash: string;
  alias: string;
  login_url: string;
  redirect_uri: string;
  verifier_enc: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: Timestamp | null;
}
export interface OrgIngestKeysTable {
  id: Int8Default;
  org_alias: string;
  kind: 'hmac' | 'rsa';
  secret_enc: string | null;
  public_key: string | null;
  label: string | null;
  created_at: Timestamp;
  revoked_at: Timestamp | null;
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
  'sfmirror.api_clients': ApiClientsTable;
  'sfmirror.purge_watermarks': PurgeWatermarksTable;
  'sfmirror.seq_marks': SeqMarksTable;
  'sfmirror.stream_state': StreamStateTable;
  'sfmirror.resync_requests': ResyncRequestsTable;
  'sfmirror.resync_seen': ResyncSeenTable;
  'sfmirror.backfill_jobs': BackfillJobsTable;
  'sfmirror.warehouse_tables': WarehouseTablesTable;
  'sfmirror.warehouse_dead_letters': WarehouseDeadLettersTable;
  'sfmirror.oauth_states': OAuthStatesTable;
  'sfmirror.org_ingest_keys': OrgIngestKeysTable;
  'sfmirror.warehouse_partitions': WarehousePartitionsTable;
  'sfmirror.formula_queue': FormulaQueueTable;
  'sfmirror.formula_refresh': FormulaRefreshTable;
  'sfmirror.formula_objects': FormulaObjectsTable;
  'sfmirror.formula_settings': FormulaSettingsTable;
  'sfmirror.console_sessions': ConsoleSessionsTable;
}

export type Db = Kysely<Database>;
/** A transaction over the same tables: repositories take `Db | Trx` (the caller owns the transaction). */
export type Trx = Transaction<Database>;

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
  pools.set(db, pool);
  let closing: Promise<void> | undefined;
  return { db, pool, close: () => (closing ??= db.destroy()) };
}

const pools = new WeakMap<Db, pg.Pool>();

/** Streams `data` into a `COPY ... FROM STDIN` statement; resolves to the number of rows copied. */
export type CopyIn = (statement: string, data: string) => Promise<number>;

/**
 * One transaction on one connection that can also run `COPY ... FROM STDIN` (the backfill's CSV
 * pages, src/mirror/csv-page.repository.ts): `fn` gets the transaction and a `copy` that runs on the
 * same connection, inside it. Commits when `fn` resolves, rolls back when it throws. Only for a Db
 * made by createDatabase (undefined otherwise: the caller takes its row path).
 */
export async function copyTransaction<T>(db: Db, fn: (trx: Trx, copy: CopyIn) => Promise<T>): Promise<{ value: T } | undefined> {
  const pool = pools.get(db);
  if (!pool) return undefined;
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    // Kysely runs BEGIN, fn's statements and COMMIT on this one client; its release is ours (below).
    const one = new Kysely<Database>({
      dialect: new PostgresDialect({
        pool: { connect: async () => ({ query: client.query.bind(client), release: () => {} }), end: async () => {} } as never,
      }),
    });
    const copy: CopyIn = async (statement, data) => {
      const stream = client.query(copyFrom(statement));
      await pipeline(Readable.from([data]), stream);
      return stream.rowCount;
    };
    return { value: await one.transaction().execute((trx) => fn(trx, copy)) };
  } catch (e) {
    // A connection that failed mid-COPY may be in any state: the pool must not hand it out again.
    if (!(e instanceof pg.DatabaseError)) broken = e as Error;
    throw e;
  } finally {
    client.release(broken);
  }
}
