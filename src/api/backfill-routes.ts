import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@fastify/type-provider-typebox';
import { createJob, getJob, listJobs, runJobNow, setActive, type Job } from '../backfill/jobs.repository.ts';
import { requestResync } from '../mirror/resync-requests.repository.ts';
import { isDay } from '../backfill/windows.ts';
import { isValidSobjectName } from '../changes/names.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../lib/errors.ts';
import { orgExists } from '../mirror/orgs.repository.ts';
import { requireAdmin } from './auth.ts';

/** Operator API of backfill jobs (README.md, "Backfill and daily reconciliation"): `/admin/backfills...`, admin token. */
const JobSchema = Type.Object({
  id: Type.Integer(),
  org: Type.String(),
  object: Type.String(),
  startDate: Type.String(),
  lastDate: Type.String(),
  active: Type.Boolean(),
  state: Type.String(),
  reason: Type.Union([Type.String(), Type.Null()]),
  rowsImported: Type.Integer(),
  leaseOwner: Type.Union([Type.String(), Type.Null()]),
  lastRunAt: Type.Union([Type.String(), Type.Null()]),
});
const CreateBody = Type.Object(
  { object: Type.String({ maxLength: 80 }), startDate: Type.String({ maxLength: 10 }), org: Type.Optional(Type.String({ maxLength: 40 })) },
  { additionalProperties: false },
);
const ResyncBody = Type.Object(
  { object: Type.String({ maxLength: 80 }), org: Type.Optional(Type.String({ maxLength: 40 })) },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ pattern: '^[0-9]{1,15}$' }) });

const view = (j: Job) => ({ ...j, lastRunAt: j.lastRunAt?.toISOString() ?? null, leaseUntil: undefined });

export async function backfillRoutes(app: FastifyInstance, deps: { db: Db; adminToken: string | undefined; defaultAlias: string }) {
  const preHandler = requireAdmin(deps.adminToken);
  const tags = ['operator'];
  const security = [{ bearer: [] }];
  app.post<{ Body: Static<typeof CreateBody> }>(
    '/admin/backfills',
    {
      preHandler,
      schema: {
        summary: 'Start a backfill job for an object from a start date',
        tags,
        security,
        body: CreateBody,
        response: { 201: JobSchema },
      },
    },
    async (req, reply) => {
      const { object, startDate } = req.body;
      const org = req.body.org ?? deps.defaultAlias;
      if (!isValidSobjectName(object)) throw new AppError('BAD_REQUEST', `object: "${object}" is not a Salesforce object API name`);
      if (!isDay(startDate)) throw new AppError('BAD_REQUEST', `startDate: "${startDate}" is not a date YYYY-MM-DD`);
      if (!(await orgExists(deps.db, org))) throw new AppError('NOT_FOUND', `org: no org named ${org}`);
      const { job, created } = await createJob(deps.db, org, object, startDate);
      if (!created)
        throw new AppError('EXISTS', `a backfill job for ${org}.${job.object} already exists: job ${job.id} (${job.state})`, {
          extra: { job: view(job) },
        });
      return reply.status(201).send(view(job));
    },
  );
  app.get(
    '/admin/backfills',
    { preHandler, schema: { summary: 'Backfill jobs', tags, security, response: { 200: Type.Array(JobSchema) } } },
    async () => (await listJobs(deps.db)).map(view),
  );
  app.get<{ Params: Static<typeof IdParams> }>(
    '/admin/backfills/:id',
    { preHandler, schema: { summary: 'One backfill job', tags, security, params: IdParams, response: { 200: JobSchema } } },
    async (req) => {
      const job = await getJob(deps.db, Number(req.params.id));
      if (!job) throw new AppError('NOT_FOUND', `no backfill job ${req.params.id}`);
      return view(job);
    },
  );
  for (const action of ['pause', 'resume'] as const) {
    app.post<{ Params: Static<typeof IdParams> }>(
      `/admin/backfills/:id/${action}`,
      {
        preHandler,
        schema: {
          summary: `${action === 'pause' ? 'Pause' : 'Resume'} a backfill job`,
          tags,
          security,
          params: IdParams,
          response: { 200: JobSchema },
        },
      },
      async (req) => {
        const job = await setActive(deps.db, Number(req.params.id), action === 'resume');
        if (!job) throw new AppError('NOT_FOUND', `no backfill job ${req.params.id}`);
        return view(job);
      },
    );
  }
  app.post<{ Params: Static<typeof IdParams> }>(
    '/admin/backfills/:id/run',
    {
      preHandler,
      schema: {
        summary: 'Run a job now: a failed job or one paused (by the operator or at the API limit) is worked at the next poll',
        tags,
        security,
        params: IdParams,
        response: { 200: JobSchema },
      },
    },
    async (req) => {
      const job = await runJobNow(deps.db, Number(req.params.id));
      if (!job) throw new AppError('NOT_FOUND', `no backfill job ${req.params.id}`);
      return view(job);
    },
  );
  app.post<{ Body: Static<typeof ResyncBody> }>(
    '/admin/resyncs',
    {
      preHandler,
      schema: {
        summary: 'Resync a whole object (deletes included): queued for the backfill worker of the org',
        tags,
        security,
        body: ResyncBody,
        response: { 202: Type.Object({ queued: Type.Boolean({ description: 'false: a resync of this object is already open' }) }) },
      },
    },
    async (req, reply) => {
      const { object } = req.body;
      const org = req.body.org ?? deps.defaultAlias;
      if (!isValidSobjectName(object)) throw new AppError('BAD_REQUEST', `object: "${object}" is not a Salesforce object API name`);
      if (!(await orgExists(deps.db, org))) throw new AppError('NOT_FOUND', `org: no org named ${org}`);
      const queued = await requestResync(deps.db, org, { object, reason: 'asked by the operator', source: 'operator', since: null });
      return reply.status(202).send({ queued });
    },
  );
}
