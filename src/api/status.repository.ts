import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

/** SQL of `/admin/status` (src/api/status.ts): orgs, objects and their row counts, checkpoints, type problems. */

export type OrgStatusRow = {
  alias: string;
  orgId: string | null;
  source: string;
  instanceUrl: string | null;
  lastSeq: string;
  lastAppliedAt: Date | null;
  authState: string | null;
  authError: string | null;
  connectedAt: Date | null;
  userId: string | null;
  loginUrl: string | null;
  signingKeys: number;
};

/** Every org, or only `only`, with the number of its own signing keys in use. */
export async function readOrgRows(db: Db, only?: string): Promise<OrgStatusRow[]> {
  const r = await sql<{
    alias: string;
    org_id: string | null;
    source: string;
    instance_url: string | null;
    last_seq: string;
    last_applied_at: Date | null;
    auth_state: string | null;
    auth_error: string | null;
    connected_at: Date | null;
    user_id: string | null;
    login_url: string | null;
    signing_keys: number;
  }>`select o.*, (select count(*) from sfmirror.org_ingest_keys k where k.org_alias = o.alias and k.revoked_at is null)::int as signing_keys
    from sfmirror.orgs o where ${only ?? null}::text is null or o.alias = ${only ?? null} order by alias`.execute(db);
  return r.rows.map((o) => ({
    alias: o.alias,
    orgId: o.org_id?.trim() ?? null,
    source: o.source,
    instanceUrl: o.instance_url,
    lastSeq: String(o.last_seq),
    lastAppliedAt: o.last_applied_at,
    authState: o.auth_state,
    authError: o.auth_error,
    connectedAt: o.connected_at,
    userId: o.user_id?.trim() ?? null,
    loginUrl: o.login_url,
    signingKeys: o.signing_keys,
  }));
}

export type ObjectRow = {
  org: string;
  object: string;
  table: string;
  lastAppliedAt: Date | null;
  lastSource: string | null;
  lastSeq: string | null;
};

export async function readMirrorObjects(db: Db): Promise<ObjectRow[]> {
  const r = await db.selectFrom('sfmirror.mirror_objects').selectAll().orderBy('table_name').execute();
  return r.map((o) => ({
    org: o.org_alias,
    object: o.object,
    table: o.table_name,
    lastAppliedAt: o.last_applied_at,
    lastSource: o.last_source,
    lastSeq: o.last_seq === null ? null : String(o.last_seq),
  }));
}

export async function readCheckpoints(db: Db) {
  const r = await db.selectFrom('sfmirror.checkpoints').selectAll().orderBy('source').execute();
  return r.map((c) => ({ org: c.org_alias, source: c.source, value: c.value as unknown, updatedAt: c.updated_at }));
}

export async function readTypeProblems(db: Db, limit = 200) {
  const r = await db.selectFrom('sfmirror.type_problems').selectAll().orderBy('last_seen', 'desc').limit(limit).execute();
  return r.map((p) => ({
    org: p.org_alias,
    object: p.object,
    field: p.field,
    problem: p.problem,
    occurrences: Number(p.occurrences),
    sampleSfid: p.sample_sfid,
    lastSeen: p.last_seen,
  }));
}

/** How many changes wait for BigQuery, and the commit time of the oldest. */
export async function readOutboxTotals(db: Db): Promise<{ depth: number; oldest: Date | null }> {
  const r = await sql<{
    depth: string;
    oldest: Date | null;
  }>`select count(*) as depth, min(committed_at) as oldest from sfmirror.outbox`.execute(db);
  return { depth: Number(r.rows[0]?.depth ?? 0), oldest: r.rows[0]?.oldest ?? null };
}

/** Exact counts up to this many rows (planner estimate beyond), so status stays fast on big tables. */
const EXACT_COUNT_LIMIT = 1_000_000;

export async function countRows(db: Db, org: string, table: string): Promise<{ rows: number; deleted: number; estimated: boolean }> {
  const est = await sql<{
    n: number;
  }>`select greatest(reltuples, 0)::float8 as n from pg_class where oid = to_regclass(${`${quoteIdent(org)}.${quoteIdent(table)}`})`.execute(
    db,
  );
  const estimate = Number(est.rows[0]?.n ?? 0);
  if (estimate > EXACT_COUNT_LIMIT) return { rows: Math.round(estimate), deleted: 0, estimated: true };
  const r = await sql<{
    rows: string;
    deleted: string;
  }>`select count(*) filter (where not isdeleted) as rows, count(*) filter (where isdeleted) as deleted from ${sql.id(org, table)}`.execute(
    db,
  );
  return { rows: Number(r.rows[0]?.rows ?? 0), deleted: Number(r.rows[0]?.deleted ?? 0), estimated: false };
}

const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** One sample of the console's charts: the sum of the change cursors, the largest live lag, the outbox depth. */
export async function readHistorySample(db: Db): Promise<{ changes: bigint; lagMs: number | null; outboxDepth: number }> {
  const r = await sql<{ changes: string; lag: string | null; depth: string }>`select
      (select coalesce(sum(last_seq), 0) from sfmirror.orgs)::text as changes,
      (select max(lag_ms) from sfmirror.stream_state where state in ('live', 'resyncing'))::text as lag,
      (select count(*) from sfmirror.outbox) as depth`.execute(db);
  const row = r.rows[0]!;
  return { changes: BigInt(row.changes), lagMs: row.lag === null ? null : Number(row.lag), outboxDepth: Number(row.depth) };
}
