import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import { listJobs } from '../backfill/jobs.repository.ts';
import { readStreamStatus, type StreamStatusDoc } from '../stream/stream.repository.ts';
import { formulaStatus, type FormulaStatus } from '../formulas/status.ts';
import { listDeadLetters, outboxStats, type DeadLetter, type OutboxStats } from '../warehouse/warehouse.repository.ts';

/**
 * What `/admin/status` and `sfmirror status` show: per org and object, rows and the last change
 * applied; checkpoints (stream replayIds, job cursors); outbox depth and age; type problems.
 */
export interface Status {
  generatedAt: string;
  warehouse: {
    enabled: boolean;
    outboxDepth: number;
    outboxOldestAgeSeconds: number | null;
    /** Changes BigQuery refused for good; `sfmirror warehouse retry-dead-letters` puts them back. */
    deadLetters: number;
    perOrg: OutboxStats[];
    /** The newest dead letters (at most 20), with BigQuery's reason. */
    recentDeadLetters: DeadLetter[];
  };
  orgs: Array<{
    alias: string;
    orgId: string | null;
    source: string;
    /** Salesforce API access: 'environment' (SF_* variables), 'connected', 'revoked' (connect again), 'locked' (token does not decrypt). */
    connection: {
      state: string;
      error: string | null;
      connectedAt: string | null;
      userId: string | null;
      loginUrl: string | null;
      instanceUrl: string | null;
      signingKeys: number;
    };
    lastSeq: string;
    lastAppliedAt: string | null;
    objects: Array<{
      object: string;
      table: string;
      rows: number;
      deleted: number;
      lastAppliedAt: string | null;
      lastSeq: string | null;
      estimated: boolean;
    }>;
    checkpoints: Array<{ source: string; value: unknown; updatedAt: string }>;
    typeProblems: Array<{
      object: string;
      field: string;
      problem: string;
      occurrences: number;
      sampleSfid: string | null;
      lastSeen: string;
    }>;
    backfills: Array<{
      id: number;
      object: string;
      state: string;
      active: boolean;
      startDate: string;
      lastDate: string;
      rowsImported: number;
      reason: string | null;
      workedBy: string | null;
      lastRunAt: string | null;
    }>;
    /** Change Data Capture: per channel state, replayId, last event, lag; resync requests. */
    stream: StreamStatusDoc;
    /** Formula fields and their freshness, fields excluded by the operator (src/formulas/status.ts). */
    formulas: FormulaStatus;
  }>;
}

type OrgRow = {
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
};

const iso = (d: Date | string | null | undefined) => (d ? new Date(d).toISOString() : null);

/** Exact counts up to this many rows (planner estimate beyond), so status stays fast on big tables. */
const EXACT_COUNT_LIMIT = 1_000_000;

/** Every org, or only `only` (GET /admin/status?org=, sfmirror status --org). */
export async function readStatus(db: Db, only?: string): Promise<Status> {
  const orgs = (
    await sql<OrgRow>`select o.*, (select count(*) from sfmirror.org_ingest_keys k where k.org_alias = o.alias and k.revoked_at is null)::int as signing_keys
    from sfmirror.orgs o where ${only ?? null}::text is null or o.alias = ${only ?? null} order by alias`.execute(db)
  ).rows;
  const objects = await db.selectFrom('sfmirror.mirror_objects').selectAll().orderBy('table_name').execute();
  const checkpoints = await db.selectFrom('sfmirror.checkpoints').selectAll().orderBy('source').execute();
  const problems = await db.selectFrom('sfmirror.type_problems').selectAll().orderBy('last_seen', 'desc').limit(200).execute();
  const setting = await db.selectFrom('sfmirror.settings').select('value').where('key', '=', 'warehouse').executeTakeFirst();
  const outbox = await sql<{
    depth: string;
    oldest: Date | null;
  }>`select count(*) as depth, min(committed_at) as oldest from sfmirror.outbox`.execute(db);
  const perOrg = await outboxStats(db);
  const recentDeadLetters = await listDeadLetters(db, 20);
  const jobs = await listJobs(db);
  const stream = await readStreamStatus(db);
  const now = Date.now();
  const counted = await Promise.all(objects.map(async (o) => ({ o, ...(await countRows(db, o.org_alias, o.table_name)) })));
  const formulas = new Map(await Promise.all(orgs.map(async (o) => [o.alias, await formulaStatus(db, o.alias)] as const)));
  return {
    generatedAt: new Date(now).toISOString(),
    warehouse: {
      enabled: (setting?.value as { enabled?: boolean } | undefined)?.enabled === true,
      outboxDepth: Number(outbox.rows[0]?.depth ?? 0),
      outboxOldestAgeSeconds: outbox.rows[0]?.oldest ? Math.round((now - new Date(outbox.rows[0].oldest).getTime()) / 1000) : null,
      deadLetters: perOrg.reduce((n, o) => n + o.deadLetters, 0),
      perOrg,
      recentDeadLetters,
    },
    orgs: orgs.map((org) => ({
      alias: org.alias,
      orgId: org.org_id,
      source: org.source,
      connection: {
        state: org.auth_state ?? (org.source === 'oauth' ? 'connected' : 'environment'),
        error: org.auth_error,
        connectedAt: iso(org.connected_at),
        userId: org.user_id?.trim() ?? null,
        loginUrl: org.login_url,
        instanceUrl: org.instance_url,
        signingKeys: org.signing_keys,
      },
      lastSeq: String(org.last_seq),
      lastAppliedAt: iso(org.last_applied_at),
      objects: counted
        .filter((c) => c.o.org_alias === org.alias)
        .map(({ o, rows, deleted, estimated }) => ({
          object: o.object,
          table: `${o.org_alias}.${o.table_name}`,
          rows,
          deleted,
          estimated,
          lastAppliedAt: iso(o.last_applied_at),
          lastSeq: o.last_seq === null ? null : String(o.last_seq),
        })),
      checkpoints: checkpoints
        .filter((c) => c.org_alias === org.alias)
        .map((c) => ({ source: c.source, value: c.value, updatedAt: iso(c.updated_at)! })),
      typeProblems: problems
        .filter((p) => p.org_alias === org.alias)
        .map((p) => ({
          object: p.object,
          field: p.field,
          problem: p.problem,
          occurrences: Number(p.occurrences),
          sampleSfid: p.sample_sfid,
          lastSeen: iso(p.last_seen)!,
        })),
      stream: stream.get(org.alias) ?? { channels: [], resyncs: [] },
      formulas: formulas.get(org.alias)!,
      backfills: jobs
        .filter((j) => j.org === org.alias)
        .map((j) => ({
          id: j.id,
          object: j.object,
          state: j.state,
          active: j.active,
          startDate: j.startDate,
          lastDate: j.lastDate,
          rowsImported: j.rowsImported,
          reason: j.reason,
          workedBy: j.leaseOwner,
          lastRunAt: iso(j.lastRunAt),
        })),
    })),
  };
}

async function countRows(db: Db, org: string, table: string): Promise<{ rows: number; deleted: number; estimated: boolean }> {
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
