import { Type, type Static } from '@fastify/type-provider-typebox';

/**
 * The answer of `GET /admin/status` (and `sfmirror status --json`): what an operator looks at every
 * morning. One schema, the TypeScript type derived from it.
 */
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);
const NStr = Nullable(Type.String());
const NNum = Type.Union([Type.Number(), Type.Null()]);

export const OutboxStatsSchema = Type.Object({
  org: Type.String(),
  depth: Type.Integer(),
  oldestAgeSeconds: NNum,
  deadLetters: Type.Integer(),
  lastError: Type.Union([
    Type.Object(
      { object: Type.String(), message: Type.String(), at: Type.String() },
      { description: "the drain's last unrecovered failure" },
    ),
    Type.Null(),
  ]),
});

export const DeadLetterSchema = Type.Object({
  changeId: Type.String(),
  org: Type.String(),
  object: Type.String(),
  sfid: Type.String(),
  reason: Type.String(),
  deadAt: Type.String(),
});

export const WarehouseStatusSchema = Type.Object({
  enabled: Type.Boolean({ description: 'changes are queued for BigQuery (sfmirror warehouse enable|disable)' }),
  /** BIGQUERY_PROJECT is set in the process that answers: it drains the outbox. */
  configuredHere: Type.Boolean({ description: 'this process has BigQuery configured and drains the outbox' }),
  /** Set when something needs the operator: e.g. on in the database, but nobody drains here. */
  warning: NStr,
  outboxDepth: Type.Integer(),
  outboxOldestAgeSeconds: NNum,
  /** The last error BigQuery answered for a change still queued (it is retried). */
  lastError: NStr,
  deadLetters: Type.Integer({ description: "changes BigQuery refused for good; 'retry' puts them back" }),
  perOrg: Type.Array(OutboxStatsSchema),
  recentDeadLetters: Type.Array(DeadLetterSchema, { description: 'the newest dead letters (at most 20), with the reason' }),
});

export const ChannelStatusSchema = Type.Object({
  channel: Type.String(),
  state: Type.String({ description: "'live', 'connecting', 'backing off' (see error), 'resyncing', 'stopped'" }),
  holder: NStr,
  replayId: NStr,
  lastEventAt: NStr,
  lastCommitAt: NStr,
  lagMs: NNum,
  eventsPerSecond: NNum,
  error: NStr,
  updatedAt: Type.String(),
});

export const ResyncStatusSchema = Type.Object({
  id: Type.String(),
  object: Type.String(),
  reason: Type.String(),
  status: Type.String(),
  since: NStr,
  records: Type.Integer(),
  error: NStr,
  createdAt: Type.String(),
});

export /** Formula fields and their freshness, fields excluded by the operator (src/formulas/status.ts). */
const FormulaStatusSchema = Type.Object({
  objects: Type.Array(
    Type.Object({
      object: Type.String(),
      fields: Type.Array(
        Type.Object({
          field: Type.String(),
          kind: Type.Union([
            Type.Literal('same-record'),
            Type.Literal('cross-object'),
            Type.Literal('time'),
            Type.Literal('unfollowable'),
            Type.Literal('roll-up'),
          ]),
          note: Type.Optional(Type.String()),
        }),
      ),
      waiting: Type.Integer({ description: 'records waiting for a re-read' }),
      oldestWaitingSeconds: Type.Union([Type.Number(), Type.Null()]),
      lastPeriodicRefresh: NStr,
    }),
  ),
  paused: Type.Union([Type.String({ description: 'why re-reads wait, e.g. the API budget is spent' }), Type.Null()]),
  fields: Type.Object({ include: Type.Array(Type.String()), exclude: Type.Array(Type.String()) }),
});

const OrgStatusSchema = Type.Object({
  alias: Type.String(),
  orgId: NStr,
  source: Type.String({ description: "how the org was registered: 'env', 'oauth', 'push'" }),
  connection: Type.Object({
    state: Type.String({
      description:
        "'environment' (SF_* variables), 'connected' (OAuth), 'push only' (no API access), 'revoked' (connect again, see error), 'locked' (token does not decrypt)",
    }),
    error: NStr,
    connectedAt: NStr,
    userId: NStr,
    loginUrl: NStr,
    instanceUrl: NStr,
    signingKeys: Type.Integer(),
  }),
  lastSeq: Type.String({ description: 'the change cursor' }),
  lastAppliedAt: NStr,
  objects: Type.Array(
    Type.Object({
      object: Type.String(),
      table: Type.String(),
      rows: Type.Integer(),
      deleted: Type.Integer(),
      lastAppliedAt: NStr,
      lastSource: Type.Union([Type.String({ description: "'cdc', 'apex', 'backfill', 'resync', ..." }), Type.Null()]),
      lastSeq: NStr,
      estimated: Type.Boolean({ description: 'rows is the planner estimate (a big table)' }),
    }),
  ),
  checkpoints: Type.Array(Type.Object({ source: Type.String(), value: Type.Unknown(), updatedAt: Type.String() })),
  typeProblems: Type.Array(
    Type.Object({
      object: Type.String(),
      field: Type.String(),
      problem: Type.String(),
      occurrences: Type.Integer(),
      sampleSfid: NStr,
      lastSeen: Type.String(),
    }),
  ),
  backfills: Type.Array(
    Type.Object({
      id: Type.Integer(),
      object: Type.String(),
      state: Type.String({ description: "'pending', 'running', 'paused', 'done-for-today', 'failed'" }),
      active: Type.Boolean(),
      startDate: Type.String(),
      lastDate: Type.String({ description: 'the job is done up to this day' }),
      rowsImported: Type.Integer({ description: 'records read in the current or last run' }),
      reason: NStr,
      workedBy: NStr,
      lastRunAt: NStr,
    }),
  ),
  stream: Type.Object({ channels: Type.Array(ChannelStatusSchema), resyncs: Type.Array(ResyncStatusSchema) }),
  formulas: FormulaStatusSchema,
});

export const StatusSchema = Type.Object({
  generatedAt: Type.String(),
  warehouse: WarehouseStatusSchema,
  orgs: Type.Array(OrgStatusSchema),
});

export type Status = Static<typeof StatusSchema>;
export type OrgStatus = Static<typeof OrgStatusSchema>;

/** `GET /admin/status/history`: samples of the last hour, for the console's charts. */
export const StatusHistorySchema = Type.Object({
  intervalSeconds: Type.Number(),
  points: Type.Array(
    Type.Object({
      at: Type.String(),
      changesPerSecond: NNum,
      lagMs: NNum,
      outboxDepth: Type.Integer(),
    }),
  ),
});
export type StatusHistory = Static<typeof StatusHistorySchema>;
