import type { SalesforceClient } from '../salesforce/client.ts';

/**
 * The share of the org's daily API allowance a backfill may use (SFMIRROR_API_BUDGET_SHARE, default
 * 0.5): the rest stays for the org's users and integrations. Usage is read from the
 * `Sforce-Limit-Info: api-usage=N/M` header Salesforce puts on every REST response (free), and from
 * `/limits` (DailyApiRequests, DailyBulkV2QueryJobs: {Max, Remaining}) when no response has told
 * yet, e.g. at the start of a run after a pause, and before each Bulk API 2.0 job (the header does
 * not count Bulk jobs). Over budget, a run stops in the `paused: API limit` state; the worker looks
 * again later and continues when the allowance has come back (Salesforce's is a rolling 24 hours).
 */
export type BudgetSource = Pick<SalesforceClient, 'readLimits' | 'apiUsage'>;

export const API_LIMIT = 'API limit';

export interface ApiBudget {
  /** Why the run must stop now, or undefined while under budget. */
  check(): Promise<string | undefined>;
  /** Same, for starting one more Bulk API 2.0 query job. */
  checkBulkJob(): Promise<string | undefined>;
}

export function createApiBudget(source: BudgetSource, share: number): ApiBudget {
  let limitsRead = false;
  const pct = `${Math.round(share * 100)}%`;
  return {
    async check() {
      let usage = limitsRead ? source.apiUsage() : undefined;
      if (!usage) {
        const l = await source.readLimits();
        limitsRead = true;
        usage = { used: l.dailyApiRequests.max - l.dailyApiRequests.remaining, max: l.dailyApiRequests.max };
      }
      if (usage.used >= share * usage.max) {
        return `${API_LIMIT}: ${usage.used} of ${usage.max} daily API requests used; backfills stop at ${pct} (SFMIRROR_API_BUDGET_SHARE) and continue when allowance returns`;
      }
      return undefined;
    },
    async checkBulkJob() {
      const l = await source.readLimits();
      limitsRead = true;
      const jobs = l.dailyBulkV2QueryJobs;
      if (jobs && jobs.max - jobs.remaining >= share * jobs.max) {
        return `${API_LIMIT}: ${jobs.max - jobs.remaining} of ${jobs.max} daily Bulk API 2.0 query jobs used; backfills stop at ${pct} (SFMIRROR_API_BUDGET_SHARE) and continue when allowance returns`;
      }
      const api = l.dailyApiRequests;
      if (api.max - api.remaining >= share * api.max)
        return `${API_LIMIT}: ${api.max - api.remaining} of ${api.max} daily API requests used; backfills stop at ${pct} (SFMIRROR_API_BUDGET_SHARE) and continue when allowance returns`;
      return undefined;
    },
  };
}
