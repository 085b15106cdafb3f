import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

type Trx = Parameters<Parameters<ReturnType<Db['transaction']>['execute']>[0]>[0];
import type { BqField } from './bq-schema.ts';
import { readMirrorTable } from '../mirror/schema.repository.ts';

/**
 * SQL of the warehouse: the outbox read as a log per (org, object) partition, the partitions'
 * leases, cursors, streams and batches in flight, dead letters, the registry of BigQuery tables,
 * seeding, and the figures for status.
 *
 * Outbox rows are never updated: the write path inserts them, the drain reads the rows after its
 * partition's cursor in (txid, id) order and deletes them in a range when it advances the cursor
 * (migrations/20261203_0018_warehouse_log.sql says why (txid, id) and not the id alone). No
 * transaction stays open while BigQuery is called; every write of a drainer is fenced by its
 * lease (`owner`), so a drainer that lost its partition changes nothing.
 */
export interface OutboxRow {
  id: string;
  txid: string;
  org: string;
  object: string;
  sfid: string;
  op: string;
  version: string;
  seq: string;
  record: Record<string, unknown>;
  committedAt: Date;
  /** Size of the record's JSON, for batch limits by bytes. */
  bytes: number;
}

type RawRow = {
  id: string;
  txid: string;
  org_alias: string;
  object: string;
  sfid: string;
  op: string;
  version: string;
  seq: string;
  record: Record<string, unknown>;
  committed_at: Date;
  bytes: number;
};
const toRow = (r: RawRow): OutboxRow => ({
  id: String(r.id),
  txid: String(r.txid),
  org: r.org_alias,
  object: r.object,
  sfid: r.sfid,
  op: r.op,
  version: r.version,
  seq: String(r.seq),
  record: r.record,
  committedAt: new Date(r.committed_at),
  bytes: Number(r.bytes),
});

/** A partition of the outbox as its owner sees it. `pending`: the batch in flight (rows after the cursor up to it). */
export interface Partition {
  org: string;
  object: string;
  owner: string;
  cursor: { txid: string; id: string };
  stream: string | null;
  offset: number;
  pending: { txid: string; id: string; rows: number } | null;
  failures: number;
}
type RawPartition = {
  org_alias: string;
  object: string;
  owner: string;
  cursor_txid: string;
  cursor_id: string;
  stream_name: string | null;
  stream_offset: string;
  pending_txid: string | null;
  pending_id: string | null;
  pending_rows: number | null;
  failures: number;
};
const toPartition = (p: RawPartition): Partition => ({
  org: p.org_alias,
  object: p.object,
  owner: p.owner,
  cursor: { txid: String(p.cursor_txid), id: String(p.cursor_id) },
  stream: p.stream_name,
  offset: Number(p.stream_offset),
  pending: p.pending_txid === null ? null : { txid: String(p.pending_txid), id: String(p.pending_id), rows: Number(p.pending_rows) },
  failures: p.failures,
});
const PARTITION_COLUMNS = sql`p.org_alias, p.object, p.owner, p.cursor_txid, p.cursor_id, p.stream_name, p.stream_offset, p.pending_txid, p.pending_id, p.pending_rows, p.failures`;

/** Lost the lease of a partition (another drainer has it now): nothing this drainer does counts. */
export class LeaseLost extends Error {}

/** Makes a partition for every (org, object) with queued changes (cheap when the outbox is drained). */
export async function ensurePartitions(db: Db): Promise<number> {
  const r = await sql`insert into sfmirror.warehouse_partitions (org_alias, object)
    select distinct org_alias, object from sfmirror.outbox o
    where not exists (select 1 from sfmirror.warehouse_partitions p where p.org_alias = o.org_alias and p.object = o.object)
    on conflict do nothing`.execute(db);
  return Number(r.numAffectedRows ?? 0);
}

/**
 * Takes the lease of one partition that has work (a batch in flight, or committed rows after its
 * cursor) and whose lease ran out: the one waiting longest. `FOR UPDATE SKIP LOCKED` lets drainers
 * pass each other; a dead drainer's partitions come free when its lease ends.
 */
export async function claimPartition(db: Db, owner: string, leaseMs: number): Promise<Partition | undefined> {
  const r = await sql<RawPartition>`with c as (
      select p.org_alias, p.object from sfmirror.warehouse_partitions p
      where p.lease_until < now() and (p.pending_txid is not null or exists (
        select 1 from sfmirror.outbox o
        where o.org_alias = p.org_alias and o.object = p.object and (o.txid, o.id) > (p.cursor_txid, p.cursor_id)
          and o.txid < pg_snapshot_xmin(pg_current_snapshot())) or exists (
        select 1 from sfmirror.warehouse_dead_letters d where d.retry and d.org_alias = p.org_alias and d.object = p.object))
      order by p.lease_until limit 1 for update of p skip locked)
    update sfmirror.warehouse_partitions p set owner = ${owner}, lease_until = now() + make_interval(secs => ${leaseMs / 1000}), updated_at = now()
    from c where p.org_alias = c.org_alias and p.object = c.object
    returning ${PARTITION_COLUMNS}`.execute(db);
  return r.rows[0] && toPartition(r.rows[0]);
}

/**
 * The next rows of a partition: the batch in flight again (exactly its rows), or up to `limit`
 * committed rows after the cursor, in (txid, id) order. Only rows of transactions older than every
 * running one are read: nothing can commit behind them later.
 */
export async function readBatch(db: Db, p: Partition, limit: number): Promise<OutboxRow[]> {
  const upTo = p.pending
    ? sql`and (o.txid, o.id) <= (${p.pending.txid}::xid8, ${p.pending.id}::bigint)`
    : sql`and o.txid < pg_snapshot_xmin(pg_current_snapshot())`;
  const r = await sql<RawRow>`select o.id, o.txid, o.org_alias, o.object, o.sfid, o.op, o.version, o.seq, o.record, o.committed_at,
      octet_length(o.record::text) as bytes
    from sfmirror.outbox o
    where o.org_alias = ${p.org} and o.object = ${p.object} and (o.txid, o.id) > (${p.cursor.txid}::xid8, ${p.cursor.id}::bigint) ${upTo}
    order by o.txid, o.id limit ${p.pending ? p.pending.rows + 1 : limit}`.execute(db);
  return r.rows.map(toRow);
}

const fence = (p: Partition) => sql`org_alias = ${p.org} and object = ${p.object} and owner = ${p.owner} and lease_until > now()`;

async function fenced(db: Db | Trx, p: Partition, set: ReturnType<typeof sql>): Promise<void> {
  const r = await sql`update sfmirror.warehouse_partitions set ${set}, updated_at = now() where ${fence(p)}`.execute(db);
  if (Number(r.numAffectedRows ?? 0) !== 1) throw new LeaseLost(`lost the lease of ${p.org}.${p.object}`);
}

/** Records the batch about to be appended (its last row and size), before anything is sent. */
export async function setPending(db: Db, p: Partition, last: OutboxRow, rows: number, leaseMs: number): Promise<void> {
  await fenced(
    db,
    p,
    sql`pending_txid = ${last.txid}::xid8, pending_id = ${last.id}::bigint, pending_rows = ${rows}, lease_until = now() + make_interval(secs => ${leaseMs / 1000})`,
  );
  p.pending = { txid: last.txid, id: last.id, rows };
}

/** A new write stream for the partition (none yet, or BigQuery lost the old one): appends start at offset 0. */
export async function setStream(db: Db, p: Partition, stream: string | null): Promise<void> {
  await fenced(db, p, sql`stream_name = ${stream}, stream_offset = 0`);
  p.stream = stream;
  p.offset = 0;
}

/** Extends the lease (a long batch); throws LeaseLost when another drainer has the partition. */
export async function renewLease(db: Db, p: Partition, leaseMs: number): Promise<void> {
  await fenced(db, p, sql`lease_until = now() + make_interval(secs => ${leaseMs / 1000})`);
}

/**
 * The batch in flight arrived: in one transaction the cursor moves to its last row, the stream's
 * offset past it, and its rows leave the outbox (a range delete). Returns the rows deleted.
 */
export async function commitBatch(db: Db, p: Partition, leaseMs: number): Promise<number> {
  const pending = p.pending;
  if (!pending) return 0;
  const n = await db.transaction().execute(async (trx) => {
    await fenced(
      trx,
      p,
      sql`cursor_txid = pending_txid, cursor_id = pending_id, stream_offset = stream_offset + pending_rows, drained_rows = drained_rows + pending_rows,
        pending_txid = null, pending_id = null, pending_rows = null, failures = 0, lease_until = now() + make_interval(secs => ${leaseMs / 1000})`,
    );
    const d = await sql`delete from sfmirror.outbox where org_alias = ${p.org} and object = ${p.object}
      and (txid, id) > (${p.cursor.txid}::xid8, ${p.cursor.id}::bigint) and (txid, id) <= (${pending.txid}::xid8, ${pending.id}::bigint)`.execute(
      trx,
    );
    return Number(d.numAffectedRows ?? 0);
  });
  p.cursor = { txid: pending.txid, id: pending.id };
  p.offset += pending.rows;
  p.pending = null;
  p.failures = 0;
  return n;
}

/** Gives the partition up: free at once (`delayMs` 0), or after a backoff with the error kept for status. */
export async function releasePartition(db: Db, p: Partition, delayMs = 0, error?: string): Promise<void> {
  const failed = error === undefined ? sql`` : sql`, failures = failures + 1, last_error = ${error.slice(0, 1000)}, last_error_at = now()`;
  await sql`update sfmirror.warehouse_partitions set owner = null, lease_until = now() + make_interval(secs => ${delayMs / 1000}), updated_at = now() ${failed}
    where ${fence(p)}`.execute(db);
}

/**
 * Moves rows of the batch in flight that BigQuery will never accept to the dead-letter table, each
 * with its reason; the batch in flight shrinks by as many (nothing of it was appended: an append
 * with invalid rows appends none). Returns how many moved.
 */
export async function deadLetter(db: Db, p: Partition, rows: ReadonlyArray<{ id: string; reason: string }>): Promise<number> {
  if (!rows.length) return 0;
  return db.transaction().execute(async (trx) => {
    const r = await sql`with x as (select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(id bigint, reason text)),
        d as (delete from sfmirror.outbox o using x where o.id = x.id and o.org_alias = ${p.org} and o.object = ${p.object}
          returning o.id, o.org_alias, o.object, o.sfid, o.op, o.version, o.seq, o.record, o.committed_at, x.reason)
      insert into sfmirror.warehouse_dead_letters (change_id, org_alias, object, sfid, op, version, seq, record, committed_at, reason)
      select id, org_alias, object, sfid, op, version, seq, record, committed_at, reason from d
      on conflict (change_id) do update set reason = excluded.reason, dead_at = now()`.execute(trx);
    const n = Number(r.numAffectedRows ?? 0);
    if (p.pending) {
      await fenced(trx, p, sql`pending_rows = pending_rows - ${n}, last_error = ${rows[0]!.reason.slice(0, 1000)}, last_error_at = now()`);
      p.pending = { ...p.pending, rows: p.pending.rows - n };
    }
    return n;
  });
}

/** Forgets the write stream of an object's partition (its change table was dropped and made again). */
export async function resetStream(db: Db | Trx, org: string, object: string): Promise<void> {
  await sql`update sfmirror.warehouse_partitions set stream_name = null, stream_offset = 0, updated_at = now()
    where org_alias = ${org} and lower(object) = lower(${object})`.execute(db);
}

/**
 * Puts dead letters back: those the change table refused into the outbox under their own change
 * ids, those only the latest-state table refused marked for the drain to send there again.
 * Returns how many.
 */
export async function retryDeadLetters(db: Db, filter: { org?: string | undefined; object?: string | undefined } = {}): Promise<number> {
  const matches = sql`(${filter.org ?? null}::text is null or org_alias = ${filter.org ?? null})
    and (${filter.object ?? null}::text is null or lower(object) = lower(${filter.object ?? null}))`;
  return db.transaction().execute(async (trx) => {
    const r = await sql`with d as (delete from sfmirror.warehouse_dead_letters where target = 'history' and ${matches} returning *)
      insert into sfmirror.outbox (id, org_alias, object, sfid, op, version, seq, record, committed_at)
      select change_id, org_alias, object, sfid, op, version, seq, record, committed_at from d`.execute(trx);
    const l = await sql`update sfmirror.warehouse_dead_letters set retry = true where target = 'latest' and ${matches}`.execute(trx);
    return Number(r.numAffectedRows ?? 0) + Number(l.numAffectedRows ?? 0);
  });
}

/** Rows of a batch the latest-state table refused (the history took them): kept as `latest` dead letters. */
export async function deadLetterLatest(db: Db, rows: ReadonlyArray<{ row: OutboxRow; reason: string }>): Promise<void> {
  if (!rows.length) return;
  const x = rows.map(({ row, reason }) => ({
    change_id: row.id,
    org_alias: row.org,
    object: row.object,
    sfid: row.sfid,
    op: row.op,
    version: row.version,
    seq: row.seq,
    record: row.record,
    committed_at: row.committedAt.toISOString(),
    reason,
  }));
  await sql`insert into sfmirror.warehouse_dead_letters (change_id, org_alias, object, sfid, op, version, seq, record, committed_at, reason, target)
    select change_id, org_alias, object, sfid, op, version, seq, record, committed_at, reason, 'latest'
    from jsonb_to_recordset(${JSON.stringify(x)}::jsonb) as x(change_id bigint, org_alias text, object text, sfid text, op text,
      version text, seq bigint, record jsonb, committed_at timestamptz, reason text)
    on conflict (change_id) do update set reason = excluded.reason, dead_at = now(), retry = false`.execute(db);
}

/** The `latest` dead letters of a partition the operator asked to send again (at most `limit`), as outbox rows. */
export async function latestRetries(db: Db, p: Pick<Partition, 'org' | 'object'>, limit: number): Promise<OutboxRow[]> {
  const r = await sql<RawRow>`select change_id as id, '0' as txid, org_alias, object, sfid, op, version, seq, record, committed_at,
      octet_length(record::text) as bytes
    from sfmirror.warehouse_dead_letters where org_alias = ${p.org} and object = ${p.object} and target = 'latest' and retry
    order by seq, change_id limit ${limit}`.execute(db);
  return r.rows.map(toRow);
}

/** `latest` dead letters the latest-state table took on a retry: gone. */
export async function forgetDeadLetters(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length) await sql`delete from sfmirror.warehouse_dead_letters where change_id = any(${ids}::bigint[])`.execute(db);
}

export type DeadLetter = { changeId: string; org: string; object: string; sfid: string; reason: string; deadAt: string };

export async function listDeadLetters(db: Db, limit = 50): Promise<DeadLetter[]> {
  const r = await sql<{
    change_id: string;
    org_alias: string;
    object: string;
    sfid: string;
    reason: string;
    dead_at: Date;
  }>`select change_id, org_alias, object, sfid, reason, dead_at
    from sfmirror.warehouse_dead_letters order by dead_at desc, change_id desc limit ${limit}`.execute(db);
  return r.rows.map((x) => ({
    changeId: String(x.change_id),
    org: x.org_alias,
    object: x.object,
    sfid: x.sfid,
    reason: x.reason,
    deadAt: new Date(x.dead_at).toISOString(),
  }));
}

export type OutboxStats = {
  org: string;
  depth: number;
  oldestAgeSeconds: number | null;
  deadLetters: number;
  /** The drain's last failure for this org (an object's partition), while it has not recovered. */
  lastError: { object: string; message: string; at: string } | null;
};

/** Outbox depth, age of the oldest change, dead letters and the drain's last unrecovered error, per org. */
export async function outboxStats(db: Db): Promise<OutboxStats[]> {
  const r = await sql<{
    org: string;
    depth: string;
    age: number | null;
    dead: string;
    err_object: string | null;
    err: string | null;
    err_at: Date | null;
  }>`
    with o as (select org_alias, count(*) as depth, extract(epoch from now() - min(committed_at))::float8 as age from sfmirror.outbox group by org_alias),
      d as (select org_alias, count(*) as dead from sfmirror.warehouse_dead_letters group by org_alias),
      e as (select distinct on (org_alias) org_alias, object, last_error, last_error_at from sfmirror.warehouse_partitions
        where failures > 0 and last_error is not null order by org_alias, last_error_at desc),
      orgs as (select org_alias from o union select org_alias from d union select org_alias from e)
    select orgs.org_alias as org, coalesce(o.depth, 0) as depth, o.age, coalesce(d.dead, 0) as dead,
      e.object as err_object, e.last_error as err, e.last_error_at as err_at
    from orgs left join o using (org_alias) left join d using (org_alias) left join e using (org_alias) order by 1`.execute(db);
  return r.rows.map((x) => ({
    org: x.org,
    depth: Number(x.depth),
    oldestAgeSeconds: x.age === null ? null : Math.max(0, Math.round(x.age)),
    deadLetters: Number(x.dead),
    lastError: x.err === null ? null : { object: x.err_object!, message: x.err, at: new Date(x.err_at!).toISOString() },
  }));
}

export type WarehouseSetting = { enabled: boolean; project?: string; dataset?: string; changedBy?: string };

/** The recorded warehouse switch (undefined: never switched on). */
export async function readWarehouseSetting(db: Db): Promise<WarehouseSetting | undefined> {
  const r = await db.selectFrom('sfmirror.settings').select('value').where('key', '=', 'warehouse').executeTakeFirst();
  return r ? { ...(r.value as WarehouseSetting), enabled: (r.value as WarehouseSetting).enabled === true } : undefined;
}

/**
 * The operator's switch (`sfmirror warehouse enable|disable`, the console): off stops queueing changes
 * for BigQuery (what is queued stays and is still sent); on queues them again. Keeps the target.
 */
export async function setWarehouseEnabled(db: Db, enabled: boolean, changedBy: string): Promise<WarehouseSetting> {
  const r = await sql<{ value: WarehouseSetting }>`insert into sfmirror.settings (key, value)
    values ('warehouse', ${JSON.stringify({ enabled, changedBy })}::jsonb)
    on conflict (key) do update set value = sfmirror.settings.value || excluded.value, updated_at = now()
    returning value`.execute(db);
  return r.rows[0]!.value;
}

/** The drain's last error that is not yet recovered from (a partition still failing), or null. */
export async function lastOutboxError(db: Db): Promise<string | null> {
  const r = await sql<{ last_error: string }>`select last_error from sfmirror.warehouse_partitions
    where failures > 0 and last_error is not null order by last_error_at desc limit 1`.execute(db);
  return r.rows[0]?.last_error ?? null;
}

/** Records that the warehouse is on: from now on every writer (serve, a CLI backfill) queues changes. */
export async function enableWarehouse(db: Db, target: { project: string; dataset: string }): Promise<void> {
  const value = JSON.stringify({ enabled: true, ...target });
  await db
    .insertInto('sfmirror.settings')
    .values({ key: 'warehouse', value })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value, updated_at: sql`now()` }))
    .execute();
}

export type TableRegistration = {
  org: string;
  table: string;
  object: string;
  dataset: string;
  columns: BqField[];
  seededAt: Date | null;
  /** When the latest-state table was filled from the mirror (it replaced a view over existing history). */
  latestFilledAt: Date | null;
};

type RegistrationRow = {
  org_alias: string;
  table_name: string;
  object: string;
  dataset: string;
  columns: BqField[];
  seeded_at: Date | null;
  latest_filled_at: Date | null;
};
const REGISTRATION_COLUMNS = sql`org_alias, table_name, object, dataset, columns, seeded_at, latest_filled_at`;
const registrationOf = (x: RegistrationRow): TableRegistration => ({
  org: x.org_alias,
  table: x.table_name,
  object: x.object,
  dataset: x.dataset,
  columns: x.columns,
  seededAt: x.seeded_at,
  latestFilledAt: x.latest_filled_at,
});

export async function getRegistration(db: Db, org: string, table: string): Promise<TableRegistration | undefined> {
  const r = await sql<RegistrationRow>`select ${REGISTRATION_COLUMNS}
    from sfmirror.warehouse_tables where org_alias = ${org} and table_name = ${table}`.execute(db);
  return r.rows[0] && registrationOf(r.rows[0]);
}

export async function markLatestFilled(db: Db, org: string, table: string, filled: boolean): Promise<void> {
  await sql`update sfmirror.warehouse_tables set latest_filled_at = ${filled ? sql`now()` : sql`null`}, updated_at = now()
    where org_alias = ${org} and table_name = ${table}`.execute(db);
}

/** A page of the mirror's records (by sfid) as the warehouse writes them: for filling a latest-state table. */
export async function mirrorPage(
  db: Db,
  org: string,
  table: string,
  after: string,
  limit: number,
): Promise<Array<{ sfid: string; seq: string; version: string; record: Record<string, unknown> }>> {
  const r = await sql<{ sfid: string; seq: string; version: string; record: Record<string, unknown> }>`select m.sfid, m._sfm_seq as seq,
      coalesce(greatest(m._sfm_version->>'d', m._sfm_version->>'v', (select max(k) from jsonb_object_keys(coalesce(m._sfm_version->'f', '{}'::jsonb)) k)), '') as version,
      m._sfm_fields as record
    from ${sql.id(org, table)} m where m.sfid > ${after} order by m.sfid limit ${limit}`.execute(db);
  return r.rows.map((x) => ({ sfid: x.sfid, seq: String(x.seq), version: x.version, record: x.record }));
}

export async function saveRegistration(db: Db, reg: Omit<TableRegistration, 'seededAt' | 'latestFilledAt'>): Promise<void> {
  await sql`insert into sfmirror.warehouse_tables (org_alias, table_name, object, dataset, columns)
    values (${reg.org}, ${reg.table}, ${reg.object}, ${reg.dataset}, ${JSON.stringify(reg.columns)}::jsonb)
    on conflict (org_alias, table_name) do update set object = excluded.object, dataset = excluded.dataset, columns = excluded.columns, updated_at = now()`.execute(
    db,
  );
}

/** Every registered table (the warehouse made it), by org and table name: for dbt's sources.yml. */
export async function listRegistrations(db: Db, org?: string): Promise<TableRegistration[]> {
  const r = await sql<RegistrationRow>`select ${REGISTRATION_COLUMNS} from sfmirror.warehouse_tables
    where ${org ?? null}::text is null or org_alias = ${org ?? null} order by 1, 2`.execute(db);
  return r.rows.map(registrationOf);
}

/** Mirror objects that have no change table yet (the warehouse was turned on after they were mirrored). */
export async function unregisteredObjects(db: Db): Promise<Array<{ org: string; object: string }>> {
  const r = await sql<{ org_alias: string; object: string }>`select m.org_alias, m.object from sfmirror.mirror_objects m
    where not exists (select 1 from sfmirror.warehouse_tables w where w.org_alias = m.org_alias and w.table_name = m.table_name)
    order by 1, 2`.execute(db);
  return r.rows.map((x) => ({ org: x.org_alias, object: x.object }));
}

/** The mirror's typed columns of an object (field name as Salesforce spells it, Postgres type). */
export async function mirrorColumns(
  db: Db,
  org: string,
  table: string,
): Promise<{ object: string; columns: Array<{ field: string; pgType: string }> } | undefined> {
  const t = await readMirrorTable(db, org, table);
  return t && { object: t.object, columns: t.columns.map((c) => ({ field: c.field, pgType: c.pgType })) };
}

/**
 * Queues the mirror's current state of an object as outbox rows (a seed), in one statement, for
 * the records that have no change queued: a record with queued changes reaches the tables through
 * them (each carries the whole record), so it never arrives both as a seed and as its changes. The
 * mirror rows are read `FOR SHARE`: a batch that holds one of them commits first and the seed then
 * sees its result, so a seed row never carries a state older than a change queued after it. Each
 * seed row keeps the record's change cursor (`_sfm_seq`), which orders it against real changes.
 * `org` and `table` name a registered mirror table (sfmirror.mirror_objects), quoted as identifiers.
 */
export async function seedFromMirror(db: Db, org: string, table: string, object: string): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const r = await sql`insert into sfmirror.outbox (org_alias, object, sfid, op, version, seq, record)
      select ${org}, ${object}, m.sfid, 'seed',
        coalesce(greatest(m._sfm_version->>'d', m._sfm_version->>'v', (select max(k) from jsonb_object_keys(coalesce(m._sfm_version->'f', '{}'::jsonb)) k)), ''),
        m._sfm_seq, m._sfm_fields
      from (select sfid, isdeleted, _sfm_version, _sfm_seq, _sfm_fields from ${sql.id(org, table)} order by sfid for share) m
      where not exists (select 1 from sfmirror.outbox o where o.org_alias = ${org} and o.object = ${object} and o.sfid = m.sfid)`.execute(
      trx,
    );
    const n = Number(r.numAffectedRows ?? 0);
    await sql`update sfmirror.warehouse_tables set seeded_at = now(), seeded_rows = ${n}, updated_at = now() where org_alias = ${org} and table_name = ${table}`.execute(
      trx,
    );
    return n;
  });
}

/** Runs `fn` while holding the warehouse's lock on one change table (create, patch, rebuild take turns). */
export async function withTableLock<T>(db: Db, org: string, table: string, fn: () => Promise<T>): Promise<T> {
  return db.connection().execute(async (conn) => {
    const key = `sfmirror.warehouse:${org}.${table}`;
    await sql`select pg_advisory_lock(hashtextextended(${key}, 0))`.execute(conn);
    try {
      return await fn();
    } finally {
      await sql`select pg_advisory_unlock(hashtextextended(${key}, 0))`.execute(conn);
    }
  });
}
