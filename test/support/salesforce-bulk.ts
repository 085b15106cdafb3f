import type http from 'node:http';
import { randomBytes } from 'node:crypto';

/**
 * The stand-in org's Bulk API 2.0 query jobs, getDeleted and limits (issue 6), served from the org's
 * records at the protocol level, so sfmirror's real client code is what the tests exercise:
 * - `POST /jobs/query` {operation: query|queryAll, query} -> job (the result set is fixed at creation);
 *   `GET /jobs/query/<id>` -> InProgress for `polls` polls, then JobComplete, or Failed with
 *   `errorMessage` (`failNextJob`), or InProgress forever (`stallJobs`); `PATCH` {state: Aborted};
 *   `GET /jobs/query/<id>/results?locator=&maxRecords=` -> CSV (all strings, '' for null) with
 *   `Sforce-Locator` (the literal `null` on the last page) and `Sforce-NumberOfRecords`;
 * - `GET /sobjects/X/deleted/?start=&end=` -> `{ deletedRecords, earliestDateAvailable, latestDateCovered }`,
 *   refusing a start more than 15 days back (INVALID_REPLICATION_DATE) and more than `idLimit` ids
 *   (EXCEEDED_ID_LIMIT);
 * - `GET /limits` -> DailyApiRequests (one less with every REST call, 403 REQUEST_LIMIT_EXCEEDED at 0)
 *   and DailyBulkV2QueryJobs (one less per job); every response carries `Sforce-Limit-Info`.
 * Also `SELECT COUNT() FROM X [WHERE SystemModstamp >= a AND SystemModstamp < b]` for the REST query.
 */
type Value = string | number | boolean | null;
type Rec = Record<string, Value> & { Id: string; IsDeleted: boolean; SystemModstamp: string };
export type Deletion = { object: string; id: string; deletedDate: string };
type Job = {
  id: string;
  object: string;
  operation: string;
  fields: string[];
  rows: Rec[];
  polls: number;
  state: string;
  errorMessage?: string;
};
type Reply = (res: http.ServerResponse, status: number, body: unknown) => void;

export interface BulkContext {
  table(object: string): Map<string, Rec>;
  /** A record as a read returns it: formula fields computed now (salesforce-org.ts). */
  view(object: string, rec: Rec): Rec;
  deletions: Deletion[];
  json: Reply;
  readBody(req: http.IncomingMessage): Promise<string>;
}

const REACH_MS = 15 * 86_400_000;

export function createBulkStandIn(ctx: BulkContext) {
  const jobs = new Map<string, Job>();
  const limits = { DailyApiRequests: { Max: 1_000_000, Remaining: 1_000_000 }, DailyBulkV2QueryJobs: { Max: 10_000, Remaining: 10_000 } };
  const settings = {
    polls: 1,
    pageSize: 50_000,
    idLimit: 600_000,
    failNext: undefined as string | undefined,
    stall: false,
    now: () => Date.now(),
  };
  const stats = {
    jobs: [] as Array<{ id: string; query: string; operation: string }>,
    resultPages: [] as Array<{ job: string; locator: string | null; rows: number }>,
    getDeleted: 0,
    limits: 0,
    calls: 0,
  };

  function select(query: string, all: boolean): { object: string; fields: string[]; rows: Rec[] } {
    const m = /^SELECT\s+(.+?)\s+FROM\s+(\w+)(?:\s+WHERE\s+(.+))?$/is.exec(query.trim());
    if (!m) throw new Error(`unsupported SOQL: ${query}`);
    let rows = [...ctx.table(m[2]!).values()].filter((r) => all || !r.IsDeleted);
    for (const cond of m[3] ? m[3].split(/\s+AND\s+/i) : []) {
      const c = /^SystemModstamp\s*(>=|<)\s*(\S+)$/i.exec(cond.trim());
      if (!c) throw new Error(`unsupported WHERE: ${m[3]}`);
      const ts = Date.parse(c[2]!);
      rows = rows.filter((r) => (c[1] === '>=' ? Date.parse(r.SystemModstamp) >= ts : Date.parse(r.SystemModstamp) < ts));
    }
    return { object: m[2]!, fields: m[1]!.split(',').map((s) => s.trim()), rows };
  }

  const cell = (v: Value | undefined) => {
    if (v === null || v === undefined) return '';
    const s = String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };

  async function handleJobs(req: http.IncomingMessage, res: http.ServerResponse, rest: string, u: URL): Promise<boolean> {
    if (rest === '/jobs/query' && req.method === 'POST') {
      const body = JSON.parse(await ctx.readBody(req)) as { operation?: string; query?: string };
      if (body.operation !== 'query' && body.operation !== 'queryAll') {
        ctx.json(res, 400, [{ errorCode: 'INVALIDJOB', message: `InvalidJob : operation ${body.operation}` }]);
        return true;
      }
      if (/\b(COUNT\(|ORDER BY|LIMIT|OFFSET|GROUP BY)/i.test(body.query ?? '')) {
        ctx.json(res, 400, [{ errorCode: 'INVALIDJOB', message: 'Bulk API 2.0 does not support this SOQL' }]);
        return true;
      }
      if (limits.DailyBulkV2QueryJobs.Remaining <= 0) {
        ctx.json(res, 400, [{ errorCode: 'LIMIT_EXCEEDED', message: 'Max number of Bulk API 2.0 query jobs reached' }]);
        return true;
      }
      let sel;
      try {
        sel = select(body.query ?? '', body.operation === 'queryAll');
      } catch (e) {
        ctx.json(res, 400, [{ errorCode: 'INVALIDJOB', message: (e as Error).message }]);
        return true;
      }
      limits.DailyBulkV2QueryJobs.Remaining--;
      const id = `750${randomBytes(6).toString('hex').slice(0, 12)}AAA`;
      const job: Job = {
        id,
        object: sel.object,
        operation: body.operation,
        fields: sel.fields,
        rows: sel.rows.map((r) => ctx.view(sel.object, r)),
        polls: 0,
        state: 'UploadComplete',
      };
      if (settings.failNext) {
        job.errorMessage = settings.failNext;
        settings.failNext = undefined;
      }
      jobs.set(id, job);
      stats.jobs.push({ id, query: body.query!, operation: body.operation });
      ctx.json(res, 200, {
        id,
        operation: job.operation,
        object: job.object,
        state: job.state,
        contentType: 'CSV',
        apiVersion: 62.0,
        lineEnding: 'LF',
        columnDelimiter: 'COMMA',
      });
      return true;
    }
    const m = /^\/jobs\/query\/(\w+)(\/results)?$/.exec(rest);
    if (!m) return false;
    const job = jobs.get(m[1]!);
    if (!job) {
      ctx.json(res, 404, [{ errorCode: 'NOT_FOUND', message: `No query job ${m[1]}` }]);
      return true;
    }
    if (!m[2] && req.method === 'PATCH') {
      job.state = 'Aborted';
      ctx.json(res, 200, { id: job.id, state: job.state });
      return true;
    }
    if (!m[2]) {
      if (job.state === 'UploadComplete' || job.state === 'InProgress') {
        job.polls++;
        job.state = settings.stall || job.polls <= settings.polls ? 'InProgress' : job.errorMessage ? 'Failed' : 'JobComplete';
      }
      ctx.json(res, 200, {
        id: job.id,
        operation: job.operation,
        object: job.object,
        state: job.state,
        numberRecordsProcessed: job.rows.length,
        ...(job.state === 'Failed' ? { errorMessage: job.errorMessage } : {}),
      });
      return true;
    }
    if (job.state !== 'JobComplete') {
      ctx.json(res, 400, [{ errorCode: 'INVALIDJOBSTATE', message: `job ${job.id} is ${job.state}` }]);
      return true;
    }
    const locator = u.searchParams.get('locator');
    const at = locator ? parseInt(locator, 36) : 0;
    if (!Number.isFinite(at) || at < 0 || at > job.rows.length) {
      ctx.json(res, 400, [{ errorCode: 'INVALID_LOCATOR', message: 'invalid locator' }]);
      return true;
    }
    const max = Number(u.searchParams.get('maxRecords') ?? settings.pageSize) || settings.pageSize;
    const slice = job.rows.slice(at, at + max);
    const next = at + max < job.rows.length ? (at + max).toString(36) : 'null';
    const lines = [job.fields.join(','), ...slice.map((r) => job.fields.map((f) => cell(r[f])).join(','))];
    stats.resultPages.push({ job: job.id, locator, rows: slice.length });
    res.writeHead(200, { 'content-type': 'text/csv', 'sforce-locator': next, 'sforce-numberofrecords': String(slice.length) });
    res.end(`${lines.join('\n')}\n`);
    return true;
  }

  const api = {
    stats,
    settings,
    limits,
    /** Counts one API call; false (and a 403 sent) once the daily allowance is spent. */
    countCall(res: http.ServerResponse): boolean {
      stats.calls++;
      const a = limits.DailyApiRequests;
      if (a.Remaining <= 0) {
        ctx.json(res, 403, [{ errorCode: 'REQUEST_LIMIT_EXCEEDED', message: `TotalRequests Limit exceeded.` }]);
        return false;
      }
      a.Remaining--;
      res.setHeader('Sforce-Limit-Info', `api-usage=${a.Max - a.Remaining}/${a.Max}`);
      return true;
    },
    /** `SELECT COUNT() ...` through the REST query: the count, or undefined for other SOQL. */
    count(query: string, all: boolean): number | undefined {
      if (!/^SELECT\s+COUNT\(\)\s+FROM/i.test(query.trim())) return undefined;
      return select(query.replace(/COUNT\(\)/i, 'Id'), all).rows.length;
    },
    /** The routes above, under `/services/data/vXX.X`; false when `rest` is not one of them. */
    async handle(req: http.IncomingMessage, res: http.ServerResponse, rest: string, u: URL): Promise<boolean> {
      if (rest === '/limits' || rest === '/limits/') {
        stats.limits++;
        ctx.json(res, 200, { ...limits, DailyBulkApiBatches: { Max: 15_000, Remaining: 15_000 } });
        return true;
      }
      const d = /^\/sobjects\/(\w+)\/deleted\/?$/.exec(rest);
      if (d) {
        stats.getDeleted++;
        const start = Date.parse(u.searchParams.get('start') ?? '');
        const end = Date.parse(u.searchParams.get('end') ?? '');
        const earliest = settings.now() - REACH_MS;
        if (!Number.isFinite(start) || !Number.isFinite(end) || end < start) {
          ctx.json(res, 400, [{ errorCode: 'INVALID_DATE', message: 'start and end must be dateTimes, start before end' }]);
          return true;
        }
        if (start < earliest) {
          ctx.json(res, 400, [
            {
              errorCode: 'INVALID_REPLICATION_DATE',
              message: `startDate must be within 15 days of today (earliest ${new Date(earliest).toISOString()})`,
            },
          ]);
          return true;
        }
        const hits = ctx.deletions.filter(
          (x) => x.object === d[1] && Date.parse(x.deletedDate) >= start && Date.parse(x.deletedDate) <= end,
        );
        if (hits.length > settings.idLimit) {
          ctx.json(res, 400, [
            { errorCode: 'EXCEEDED_ID_LIMIT', message: `more than ${settings.idLimit} ids: choose start and end dates closer together` },
          ]);
          return true;
        }
        ctx.json(res, 200, {
          deletedRecords: hits.map((x) => ({ id: x.id, deletedDate: x.deletedDate })),
          earliestDateAvailable: new Date(earliest).toISOString(),
          latestDateCovered: new Date(Math.min(end, settings.now())).toISOString(),
        });
        return true;
      }
      return handleJobs(req, res, rest, u);
    },
    /** The next Bulk job created fails with this errorMessage. */
    failNextJob(message: string) {
      settings.failNext = message;
    },
    /** While on, jobs stay InProgress (a job that never completes). */
    stallJobs(on: boolean) {
      settings.stall = on;
    },
    /** Sets the daily API allowance (Max, Remaining). */
    setApiRequests(max: number, remaining: number) {
      limits.DailyApiRequests = { Max: max, Remaining: remaining };
    },
    setBulkJobs(max: number, remaining: number) {
      limits.DailyBulkV2QueryJobs = { Max: max, Remaining: remaining };
    },
  };
  return api;
}
