import os from 'node:os';
import type { Config } from '../config/config.ts';
import type { Db } from '../db/database.ts';
import { claimJob, createJob, getJob, listJobs, releaseLease, setActive, type Job } from '../backfill/jobs.repository.ts';
import { createProgressPrinter } from '../backfill/progress.ts';
import { NO_ACCESS, runJob, type BackfillSource } from '../backfill/runner.ts';
import { dayOf, isDay } from '../backfill/windows.ts';
import { API_LIMIT } from '../backfill/budget.ts';
import { isValidSobjectName } from '../changes/names.ts';
import { systemClock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { createMirror, type Mirror } from '../mirror/apply.ts';
import { createSchemaManager } from '../mirror/schema.ts';
import { createSecretBox } from '../lib/secret-box.ts';
import { createOrgSessions } from './org-sessions.ts';
import { bulkTuningOf, salesforceSessionOf } from './salesforce.ts';
import { findOrg, hasOAuthOrgs, registerOrg } from '../mirror/orgs.repository.ts';

/** `sfmirror backfill start|pause|resume|status|run`: operator controls of backfill jobs. */
export const BACKFILL_OPTIONS = {
  object: { type: 'string' },
  'start-date': { type: 'string' },
} as const;

export const BACKFILL_HELP = `Usage: sfmirror backfill start --object Account --start-date 2024-03-10 [--org ALIAS]
       sfmirror backfill pause ID | resume ID
       sfmirror backfill status [ID] [--json]
       sfmirror backfill run [ID]

A backfill job seeds an object's mirror from Salesforce (records modified since --start-date, by
UTC day: REST queries paged on SystemModstamp and Id, or a Bulk API 2.0 job for a day of at least
SFMIRROR_BULK_THRESHOLD records; hard deletes from getDeleted), then reconciles it daily from where it got to
(its last_date), so a change that push missed does not stay missed. 'serve' runs active jobs: at once
the first time, then daily after SFMIRROR_RECONCILE_AT (UTC). 'run' works a job (or every due job)
in the foreground with a progress bar; a job 'serve' is working is not worked twice.
A job stops in the state 'paused: API limit' once SFMIRROR_API_BUDGET_SHARE of the org's daily API
allowance is used; 'serve' continues it when allowance returns (run exits 1 then).
Needs Salesforce API access (SF_INSTANCE_URL and a way to authenticate).`;

export type BackfillCommand =
  | { action: 'start'; object: string; startDate: string; org: string | undefined }
  | { action: 'pause' | 'resume'; id: number }
  | { action: 'status'; id: number | undefined; json: boolean }
  | { action: 'run'; id: number | undefined };

type Values = Record<string, unknown>;

export function backfillCommandOf(
  command: string,
  args: string[],
  values: Values,
  usageError: (m: string) => never,
): BackfillCommand | undefined {
  const given = Object.keys(BACKFILL_OPTIONS).filter((k) => values[k] !== undefined && !(k === 'object' && command === 'warehouse'));
  if (command === 'resync') return undefined; // --object is also resync's (cli-resync.ts)
  if (command !== 'backfill') {
    if (given.length) usageError(`--${given[0]} is an option of 'backfill start'`);
    return undefined;
  }
  const [action, idArg, ...rest] = args;
  if (rest.length) usageError(`unexpected arguments: ${rest.join(' ')}`);
  const id =
    idArg === undefined
      ? undefined
      : /^\d+$/.test(idArg)
        ? Number(idArg)
        : usageError(`backfill ${action}: job ID must be a number (got ${idArg})`);
  if (action === 'start') {
    if (idArg !== undefined) usageError(`'backfill start' takes --object and --start-date, not an ID`);
    const object = values.object as string | undefined;
    const startDate = values['start-date'] as string | undefined;
    if (!object || !isValidSobjectName(object))
      usageError(`backfill start: --object must be a Salesforce object API name (got ${object ?? 'nothing'})`);
    if (!startDate || !isDay(startDate))
      usageError(`backfill start: --start-date must be a date YYYY-MM-DD (got ${startDate ?? 'nothing'})`);
    return { action, object, startDate, org: values.org as string | undefined };
  }
  if (given.length || values.org !== undefined) usageError(`--${given[0] ?? 'org'} is an option of 'backfill start'`);
  if (action === 'pause' || action === 'resume') {
    if (id === undefined) usageError(`backfill ${action}: give the job ID`);
    return { action, id };
  }
  if (action === 'status') return { action, id, json: values.json === true };
  if (action === 'run') return { action, id };
  return usageError(`backfill: give start, pause, resume, status or run (got ${action ?? 'nothing'})`);
}

export interface BackfillRunDeps {
  db: Db;
  config: Config;
  log: Logger;
  mirror: () => Mirror;
  /** The reader of an org's Salesforce data, or undefined when sfmirror has no API access to it. */
  source: (org: string) => BackfillSource | undefined;
  out: NodeJS.WriteStream;
  err: NodeJS.WritableStream;
}

/** `paused: API limit` when the API budget paused it (the reason says so), else the state. */
export const stateOf = (j: Pick<Job, 'state' | 'reason'>) =>
  j.state === 'paused' && j.reason?.startsWith(API_LIMIT) ? `paused: ${API_LIMIT}` : j.state;

export const formatJob = (j: Job) =>
  `job ${j.id}  ${j.org}.${j.object}  ${stateOf(j)}${j.active ? '' : ' (inactive)'}  start ${j.startDate}  last_date ${j.lastDate}  rows ${j.rowsImported}` +
  `${j.lastRunAt ? `  last run ${j.lastRunAt.toISOString()}` : ''}${j.leaseOwner ? `  worked by ${j.leaseOwner}` : ''}${j.reason ? `\n  reason: ${j.reason}` : ''}`;

export async function runBackfill(cmd: BackfillCommand, deps: BackfillRunDeps): Promise<number> {
  const { db, out, err } = deps;
  switch (cmd.action) {
    case 'start': {
      const org = cmd.org ?? deps.config.SF_ORG_ALIAS;
      const ready = await orgWithAccess(org, 'backfill start', deps);
      if (ready !== 0) return ready;
      const { job, created } = await createJob(db, org, cmd.object, cmd.startDate);
      if (!created) {
        err.write(
          `sfmirror: a backfill job for ${org}.${job.object} already exists: job ${job.id} (${job.state}, last_date ${job.lastDate})\n`,
        );
        return 1;
      }
      out.write(`${job.id}\n`);
      return 0;
    }
    case 'pause':
    case 'resume': {
      const job = await setActive(db, cmd.id, cmd.action === 'resume');
      if (!job) {
        err.write(`sfmirror: no backfill job ${cmd.id}\n`);
        return 1;
      }
      out.write(`${formatJob(job)}\n`);
      return 0;
    }
    case 'status': {
      const jobs = cmd.id === undefined ? await listJobs(db) : [await getJob(db, cmd.id)].filter((j): j is Job => !!j);
      if (cmd.id !== undefined && !jobs.length) {
        err.write(`sfmirror: no backfill job ${cmd.id}\n`);
        return 1;
      }
      out.write(
        cmd.json ? `${JSON.stringify(jobs, null, 2)}\n` : jobs.length ? `${jobs.map(formatJob).join('\n')}\n` : 'no backfill jobs\n',
      );
      return 0;
    }
    case 'run':
      return runInForeground(cmd.id, deps);
  }
}

async function runInForeground(id: number | undefined, deps: BackfillRunDeps): Promise<number> {
  const { db, out, err, config } = deps;
  // Orgs connected by OAuth count as access too (their jobs fail with the reason when they have none).
  if (!config.salesforceConfigured && !(await hasOAuthOrgs(db))) {
    err.write(`sfmirror: backfill run needs Salesforce API access: ${HOW_TO_CONFIGURE}\n`);
    return 2;
  }
  const owner = `${os.hostname()}:${process.pid}:cli`;
  const today = dayOf(systemClock.now());
  await takeOverDeadLeases(db, id, err);
  let worked = 0;
  let failed = 0;
  for (;;) {
    const job = await claimJob(db, owner, today, config.SFMIRROR_BACKFILL_LEASE_MS, id === undefined ? {} : { onlyId: id });
    if (!job) break;
    const source = deps.source(job.org) ?? NO_ACCESS;
    const outcome = await runJob(
      {
        db,
        mirror: deps.mirror(),
        source,
        clock: systemClock,
        owner,
        log: deps.log,
        leaseMs: config.SFMIRROR_BACKFILL_LEASE_MS,
        pageSize: config.SFMIRROR_BACKFILL_PAGE_SIZE,
        bulk: bulkTuningOf(config),
        apiBudgetShare: config.SFMIRROR_API_BUDGET_SHARE,
        onProgress: createProgressPrinter(out),
      },
      job,
    );
    if (out.isTTY) out.write('\n');
    out.write(
      `job ${job.id} ${job.org}.${job.object}: ${outcome.state}, ${outcome.rows} rows${outcome.reason ? `: ${outcome.reason}` : ''}\n`,
    );
    worked++;
    // Paused at the API limit is not done: say so in the exit code ('serve' continues it later).
    if (outcome.state === 'failed' || (outcome.state === 'paused' && outcome.reason)) failed++;
    if (id !== undefined) break;
  }
  if (!worked) {
    if (id === undefined) {
      out.write('no backfill job is due\n');
      return 0;
    }
    const job = await getJob(db, id);
    if (!job) {
      err.write(`sfmirror: no backfill job ${id}\n`);
      return 1;
    }
    if (job.leaseOwner && job.leaseUntil && job.leaseUntil > new Date()) {
      err.write(`sfmirror: job ${id} is being worked by ${job.leaseOwner} (lease until ${job.leaseUntil.toISOString()})\n`);
      return 1;
    }
    out.write(`job ${id} is not due: ${job.active ? `done up to ${job.lastDate}` : 'paused'}\n`);
    return 0;
  }
  return failed ? 1 : 0;
}

export const HOW_TO_CONFIGURE =
  'set SF_INSTANCE_URL and SF_ACCESS_TOKEN, or SF_CLIENT_ID with SF_REFRESH_TOKEN, or SF_CLIENT_ID with SF_USERNAME and SF_PRIVATE_KEY_FILE (see README, "Connect your org"); or connect the org by OAuth';

/**
 * The org a backfill or resync is for, ready to be read: 0, or the exit code after saying why not.
 * The org configured by environment is registered from its token's identity when nothing has
 * registered it yet (no push, no `serve` before), so `backfill start` works on a fresh database.
 * An org sfmirror has no API access to is refused with exit 2 naming what to configure (a job for
 * it would only fail every 15 minutes).
 */
export async function orgWithAccess(org: string, what: string, deps: BackfillRunDeps): Promise<number> {
  const { db, config, err } = deps;
  let known = await findOrg(db, org);
  if (!known && org === config.SF_ORG_ALIAS && config.salesforceConfigured) {
    const session = salesforceSessionOf(config);
    const { orgId } = await session.connect();
    const held = await registerOrg(db, org, orgId, session.instanceUrl());
    if (held) {
      err.write(`sfmirror: alias ${org} belongs to org ${held}, but the configured Salesforce session is org ${orgId}\n`);
      return 1;
    }
    err.write(`sfmirror: registered org ${orgId} as ${org} (from the token's identity)\n`);
    known = await findOrg(db, org);
  }
  if (!known) {
    if (org === config.SF_ORG_ALIAS && !config.salesforceConfigured) {
      err.write(`sfmirror: ${what} needs Salesforce API access to org ${org}: ${HOW_TO_CONFIGURE}\n`);
      return 2;
    }
    err.write(`sfmirror: no org named ${org} (see sfmirror orgs list)\n`);
    return 1;
  }
  if (!deps.source(org)) {
    err.write(`sfmirror: ${what} needs Salesforce API access to org ${org}: ${HOW_TO_CONFIGURE}\n`);
    return 2;
  }
  return 0;
}

/** Whether a lease owner (`host:pid:role`) is a process of this host that no longer exists. */
export function holderIsGone(owner: string, host = os.hostname()): boolean {
  const m = /^(.*):(\d+):[a-z]+$/.exec(owner);
  if (!m || m[1] !== host) return false; // another host: only its lease's expiry can tell
  try {
    process.kill(Number(m[2]), 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * A `backfill run` (or serve) on this host that was SIGKILLed leaves its lease behind; waiting for
 * it to expire (SFMIRROR_BACKFILL_LEASE_MS) would block the next run for minutes. A lease whose
 * holder is a process of this host that no longer exists is ended at once. Holders on other hosts
 * keep their leases until they expire (nothing here can tell whether they are alive).
 */
async function takeOverDeadLeases(db: Db, id: number | undefined, err: NodeJS.WritableStream) {
  const jobs = id === undefined ? await listJobs(db) : [await getJob(db, id)].filter((j): j is Job => !!j);
  for (const j of jobs) {
    if (!j.leaseOwner || !j.leaseUntil || j.leaseUntil <= new Date() || !holderIsGone(j.leaseOwner)) continue;
    if (await releaseLease(db, j.id, j.leaseOwner))
      err.write(`sfmirror: job ${j.id} was held by ${j.leaseOwner}, which is gone: taking it over\n`);
  }
}

/**
 * What `backfill run` and `resync` work with: the org configured by environment, and the orgs
 * connected by OAuth (their stored refresh tokens, with SFMIRROR_ENCRYPTION_KEY).
 */
export async function backfillDeps(config: Config, log: Logger, db: Db): Promise<BackfillRunDeps> {
  let mirror: Mirror | undefined;
  const sessions = createOrgSessions({
    db,
    config,
    log,
    box: config.SFMIRROR_ENCRYPTION_KEY ? createSecretBox(config.SFMIRROR_ENCRYPTION_KEY) : undefined,
    envSession: config.salesforceConfigured ? salesforceSessionOf(config) : undefined,
  });
  // Before the first migration there are no connected orgs to find: the environment's org still works.
  await sessions.sync().catch((e: Error) => log.debug({ err: e.message }, 'no connected orgs read'));
  return {
    db,
    config,
    log,
    out: process.stdout,
    err: process.stderr,
    mirror: () => (mirror ??= createMirror({ db, schema: createSchemaManager(db, { log }), log })),
    source: (org) => sessions.sessionFor(org),
  };
}
