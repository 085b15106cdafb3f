import type { Db } from '../db/database.ts';
import { listJobs } from '../backfill/jobs.repository.ts';
import { readStreamStatus } from '../stream/stream.repository.ts';
import { formulaStatus } from '../formulas/status.ts';
import { lastOutboxError, listDeadLetters, outboxStats, readWarehouseSetting } from '../warehouse/warehouse.repository.ts';
import { countRows, readCheckpoints, readMirrorObjects, readOrgRows, readOutboxTotals, readTypeProblems } from './status.repository.ts';
import type { OrgStatus, Status } from './status-schema.ts';

export type { Status } from './status-schema.ts';

/** What the answering process knows about itself that the database cannot tell. */
export interface StatusContext {
  /** BIGQUERY_PROJECT is set here, so this process drains the outbox. */
  bigqueryConfigured: boolean;
  /** The alias of the org configured by environment when SF_* give API access, else undefined. */
  envApiAlias: string | undefined;
}

/** A caller that does not say: no BigQuery, no SF_* access (a test reading the database alone). */
const UNKNOWN_CONTEXT: StatusContext = { bigqueryConfigured: false, envApiAlias: undefined };

const iso = (d: Date | string | null | undefined) => (d ? new Date(d).toISOString() : null);

/**
 * How an org is connected, in the operator's words. An org whose changes only come as signed
 * pushes (no SF_* credentials here, never reached by API) is 'push only', not 'environment'.
 */
export function connectionState(
  o: { alias: string; source: string; authState: string | null; instanceUrl: string | null },
  ctx: StatusContext,
): string {
  if (o.authState) return o.authState;
  if (o.source === 'oauth') return 'connected';
  if (o.alias === ctx.envApiAlias || o.instanceUrl) return 'environment';
  return 'push only';
}

/** The warning of a warehouse that is on in the database while nobody here drains it. */
export function warehouseWarning(enabled: boolean, ctx: StatusContext): string | null {
  if (!enabled || ctx.bigqueryConfigured) return null;
  return "the warehouse is on in the database but BIGQUERY_PROJECT is not set in this process: changes queue in the outbox and nobody here sends them (configure BigQuery, or 'sfmirror warehouse disable')";
}

/** Every org, or only `only` (GET /admin/status?org=, sfmirror status --org). */
export async function readStatus(db: Db, only?: string, ctx: StatusContext = UNKNOWN_CONTEXT): Promise<Status> {
  const orgs = await readOrgRows(db, only);
  const objects = await readMirrorObjects(db);
  const checkpoints = await readCheckpoints(db);
  const problems = await readTypeProblems(db);
  const setting = await readWarehouseSetting(db);
  const outbox = await readOutboxTotals(db);
  const perOrg = await outboxStats(db);
  const recentDeadLetters = await listDeadLetters(db, 20);
  const lastError = await lastOutboxError(db);
  const jobs = await listJobs(db);
  const stream = await readStreamStatus(db);
  const now = Date.now();
  const counted = await Promise.all(objects.map(async (o) => ({ o, ...(await countRows(db, o.org, o.table)) })));
  const enabled = setting?.enabled === true;
  const formulas = new Map(await Promise.all(orgs.map(async (o) => [o.alias, await formulaStatus(db, o.alias)] as const)));
  return {
    generatedAt: new Date(now).toISOString(),
    warehouse: {
      enabled,
      configuredHere: ctx.bigqueryConfigured,
      warning: warehouseWarning(enabled, ctx),
      outboxDepth: outbox.depth,
      outboxOldestAgeSeconds: outbox.oldest ? Math.round((now - new Date(outbox.oldest).getTime()) / 1000) : null,
      lastError,
      deadLetters: perOrg.reduce((n, o) => n + o.deadLetters, 0),
      perOrg,
      recentDeadLetters,
    },
    orgs: orgs.map(
      (org): OrgStatus => ({
        alias: org.alias,
        orgId: org.orgId,
        source: org.source,
        connection: {
          state: connectionState(org, ctx),
          error: org.authError,
          connectedAt: iso(org.connectedAt),
          userId: org.userId,
          loginUrl: org.loginUrl,
          instanceUrl: org.instanceUrl,
          signingKeys: org.signingKeys,
        },
        lastSeq: org.lastSeq,
        lastAppliedAt: iso(org.lastAppliedAt),
        objects: counted
          .filter((c) => c.o.org === org.alias)
          .map(({ o, rows, deleted, estimated }) => ({
            object: o.object,
            table: `${o.org}.${o.table}`,
            rows,
            deleted,
            estimated,
            lastAppliedAt: iso(o.lastAppliedAt),
            lastSource: o.lastSource,
            lastSeq: o.lastSeq,
          })),
        checkpoints: checkpoints
          .filter((c) => c.org === org.alias)
          .map((c) => ({ source: c.source, value: c.value, updatedAt: iso(c.updatedAt)! })),
        typeProblems: problems
          .filter((p) => p.org === org.alias)
          .map((p) => ({
            object: p.object,
            field: p.field,
            problem: p.problem,
            occurrences: p.occurrences,
            sampleSfid: p.sampleSfid,
            lastSeen: iso(p.lastSeen)!,
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
      }),
    ),
  };
}
