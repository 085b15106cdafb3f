import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import type { BqField } from './bq-schema.ts';

/**
 * SQL of the warehouse: claiming outbox rows with a lease, settling them (delete, dead-letter,
 * put back with a backoff), the registry of change tables, seeding, and the figures for status.
 *
 * A claim is one statement: `FOR UPDATE SKIP LOCKED` lets concurrent drainers pass each other, and
 * the lease (`lease_owner`, `lease_until`) keeps a claimed row away from every other drainer until
 * it is settled or the lease runs out; no transaction stays open while BigQuery is called.
 */
export interface OutboxRow {
  id: string;
  org: string;
  object: string;
  sfid: string;
  op: string;
  version: string;
  seq: string;
  record: Record<string, unknown>;
  committedAt: Date;
  attempts: number;
  /** Size of the record's JSON, for batch limits by bytes. */
  bytes: number;
}

type RawRow = {
  id: string;
  org_alias: string;
  object: string;
  sfid: string;
  op: string;
  version: string;
  seq: string;
  record: Record<string, unknown>;
  committed_at: Date;
  attempts: number;
  bytes: number;
};
const toRow = (r: RawRow): OutboxRow => ({
  id: String(r.id),
  org: r.org_alias,
  object: r.object,
  sfid: r.sfid,
  op: r.op,
  version: r.version,
  seq: String(r.seq),
  record: r.record,
  committedAt: new Date(r.committed_at),
  attempts: r.attempts,
  bytes: Number(r.bytes),
});

/**
 * Claims up to `limit` rows of one (org, object): the group of the oldest claimable row, so no
 * object starves. Rows come back in change-id order.
 */
export async function claimBatch(db: Db, owner: string, limit: number, leaseMs: number): Promise<OutboxRow[]> {
  const r = await sql<RawRow>`with g as (
      select org_alias, object from sfmirror.outbox
      where lease_until is null or lease_until < now()
      order by id limit 1 for update skip locked),
    c as (
      -- Row comparison with a sub-select (not a join): the plan walks the (org_alias, object, id)
      -- index in order and stops at the limit, instead of sorting the whole group.
      select o.id from sfmirror.outbox o
      where (o.org_alias, o.object) = (select org_alias, object from g) and (o.lease_until is null or o.lease_until < now())
      order by o.id limit ${limit} for update of o skip locked)
    update sfmirror.outbox o set lease_owner = ${owner}, lease_until = now() + make_interval(secs => ${leaseMs / 1000}), attempts = o.attempts + 1
    from c where o.id = c.id
    returning o.id, o.org_alias, o.object, o.sfid, o.op, o.version, o.seq, o.record, o.committed_at, o.attempts, octet_length(o.record::text) as bytes`.execute(
    db,
  );
  return r.rows.map(toRow).sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
}

/** Extends the lease of rows this owner holds; returns how many it still holds (fewer: a lease ran out). */
export async function renewLease(db: Db, owner: string, ids: readonly string[], leaseMs: number): Promise<number> {
  const r = await sql`update sfmirror.outbox set lease_until = now() + make_interval(secs => ${leaseMs / 1000})
    where id = any(${ids}::bigint[]) and lease_owner = ${owner} and lease_until > now()`.execute(db);
  return Number(r.numAffectedRows ?? 0);
}

/** Rows BigQuery accepted leave the outbox. */
export async function deleteSent(db: Db, owner: string, ids: readonly string[]): Promise<number> {
  if (!ids.length) return 0;
  const r = await sql`delete from sfmirror.outbox where id = any(${ids}::bigint[]) and lease_owner = ${owner}`.execute(db);
  return Number(r.numAffectedRows ?? 0);
}

/** Rows to try again later: the lease becomes the backoff (nobody claims them before `delayMs`). */
export async function putBack(db: Db, owner: string, ids: readonly string[], delayMs: number, error: string): Promise<void> {
  if (!ids.length) return;
  await sql`update sfmirror.outbox set lease_owner = null, lease_until = now() + make_interval(secs => ${delayMs / 1000}), last_error = ${error.slice(0, 1000)}
    where id = any(${ids}::bigint[]) and lease_owner = ${owner}`.execute(db);
}

/** Moves rows BigQuery will never accept to the dead-letter table, each with its reason. */
export async function deadLetter(db: Db, owner: string, rows: ReadonlyArray<{ id: string; reason: string }>): Promise<number> {
  if (!rows.length) return 0;
  const r = await sql`with x as (select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(id bigint, reason text)),
      d as (delete from sfmirror.outbox o using x where o.id = x.id and o.lease_owner = ${owner}
        returning o.id, o.org_alias, o.object, o.sfid, o.op, o.version, o.seq, o.record, o.committed_at, x.reason)
    insert into sfmirror.warehouse_dead_letters (change_id, org_alias, object, sfid, op, version, seq, record, committed_at, reason)
    select id, org_alias, object, sfid, op, version, seq, record, committed_at, reason from d
    on conflict (change_id) do update set reason = excluded.reason, dead_at = now()`.execute(db);
  return Number(r.numAffectedRows ?? 0);
}

/** Puts dead letters back into the outbox under their own change ids; returns how many. */
export async function retryDeadLetters(db: Db, filter: { org?: string | undefined; object?: string | undefined } = {}): Promise<number> {
  const r = await sql`with d as (delete from sfmirror.warehouse_dead_letters
      where (${filter.org ?? null}::text is null or org_alias = ${filter.org ?? null})
        and (${filter.object ?? null}::text is null or lower(object) = lower(${filter.object ?? null}))
      returning *)
    insert into sfmirror.outbox (id, org_alias, object, sfid, op, version, seq, record, committed_at)
    select change_id, org_alias, object, sfid, op, version, seq, record, committed_at from d`.execute(db);
  return Number(r.numAffectedRows ?? 0);
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

export type OutboxStats = { org: string; depth: number; oldestAgeSeconds: number | null; deadLetters: number };

/** Outbox depth, age of the oldest change and dead letters, per org. */
export async function outboxStats(db: Db): Promise<OutboxStats[]> {
  const r = await sql<{ org: string; depth: string; age: number | null; dead: string }>`
    with o as (select org_alias, count(*) as depth, extract(epoch from now() - min(committed_at))::float8 as age from sfmirror.outbox group by org_alias),
      d as (select org_alias, count(*) as dead from sfmirror.warehouse_dead_letters group by org_alias)
    select coalesce(o.org_alias, d.org_alias) as org, coalesce(o.depth, 0) as depth, o.age, coalesce(d.dead, 0) as dead
    from o full join d on o.org_alias = d.org_alias order by 1`.execute(db);
  return r.rows.map((x) => ({
    org: x.org,
    depth: Number(x.depth),
    oldestAgeSeconds: x.age === null ? null : Math.max(0, Math.round(x.age)),
    deadLetters: Number(x.dead),
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

/** The last error BigQuery answered for a change that is still queued (retried later), or null. */
export async function lastOutboxError(db: Db): Promise<string | null> {
  const r = await sql<{ last_error: string }>`select last_error from sfmirror.outbox where last_error is not null
    order by lease_until desc nulls last limit 1`.execute(db);
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

export type TableRegistration = { org: string; table: string; object: string; dataset: string; columns: BqField[]; seededAt: Date | null };

export async function getRegistration(db: Db, org: string, table: string): Promise<TableRegistration | undefined> {
  const r = await sql<{
    org_alias: string;
    table_name: string;
    object: string;
    dataset: string;
    columns: BqField[];
    seeded_at: Date | null;
  }>`select org_alias, table_name, object, dataset, columns, seeded_at
    from sfmirror.warehouse_tables where org_alias = ${org} and table_name = ${table}`.execute(db);
  const x = r.rows[0];
  return x && { org: x.org_alias, table: x.table_name, object: x.object, dataset: x.dataset, columns: x.columns, seededAt: x.seeded_at };
}

export async function saveRegistration(db: Db, reg: Omit<TableRegistration, 'seededAt'>): Promise<void> {
  await sql`insert into sfmirror.warehouse_tables (org_alias, table_name, object, dataset, columns)
    values (${reg.org}, ${reg.table}, ${reg.object}, ${reg.dataset}, ${JSON.stringify(reg.columns)}::jsonb)
    on conflict (org_alias, table_name) do update set object = excluded.object, dataset = excluded.dataset, columns = excluded.columns, updated_at = now()`.execute(
    db,
  );
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
  const obj = await db
    .selectFrom('sfmirror.mirror_objects')
    .select('object')
    .where('org_alias', '=', org)
    .where('table_name', '=', table)
    .executeTakeFirst();
  if (!obj) return undefined;
  const cols = await db
    .selectFrom('sfmirror.mirror_columns')
    .select(['field', 'pg_type'])
    .where('org_alias', '=', org)
    .where('table_name', '=', table)
    .orderBy('created_at')
    .orderBy('column_name')
    .execute();
  return { object: obj.object, columns: cols.map((c) => ({ field: c.field, pgType: c.pg_type })) };
}

/**
 * Queues the mirror's current state of an object as outbox rows (a seed), in one statement. The
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
      from (select sfid, isdeleted, _sfm_version, _sfm_seq, _sfm_fields from ${sql.id(org, table)} order by sfid for share) m`.execute(trx);
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
