import type { Change } from '../changes/change.ts';
import { decodeRestRecord } from '../changes/rest-record.ts';
import type { Logger } from '../lib/logger.ts';
import type { CsvPageOptions, Mirror } from '../mirror/apply.ts';
import { decodeBulkCsv, restRecordsAsCsv } from '../salesforce/bulk-values.ts';
import { isSalesforceError } from '../salesforce/errors.ts';
import type { SalesforceClient, SfRecord } from '../salesforce/client.ts';
import type { Cursor } from './windows.ts';

/**
 * One UTC day read through a Bulk API 2.0 queryAll job, page by page (`Sforce-Locator` until null).
 * The job id and the next locator are the job's cursor, committed with each page by mirror.apply:
 * a run killed mid-job resumes at the page after the last one committed, with the same job (Bulk
 * results stay readable for days). If the job cannot be read any more (deleted, expired), the day
 * is read again by a new job: re-applying a record is harmless (newer wins; an equal version and
 * value is ignored), so nothing is lost and nothing counted twice in the mirror.
 */
export type BulkSource = Pick<SalesforceClient, 'countRecords' | 'startBulkRead' | 'awaitBulkRead' | 'readBulkPage'> &
  Partial<Pick<SalesforceClient, 'readBulkCsvPage'>>;

/** A page as read: the CSV Salesforce sent (applied as it is, mirror.applyCsvPage), or records. */
export type BulkPage = { csv: string; types: Readonly<Record<string, string>> } | { records: SfRecord[] };

/** A page of a Bulk job: as CSV when the source can give it (its records when the object needs REST too). */
export function readBulkPage(
  source: BulkSource,
  object: string,
  job: string,
  locator: string | undefined,
  maxRecords: number,
): Promise<BulkPage & { next: string | null }> {
  return source.readBulkCsvPage
    ? source.readBulkCsvPage(object, job, locator, maxRecords)
    : source.readBulkPage(object, job, locator, maxRecords);
}

/**
 * A CSV page applied in the database (mirror.applyCsvPage, with its checkpoint or resync run);
 * a page that path does not take comes back decoded, for the caller's row path.
 */
export async function applyBulkCsv(
  mirror: Mirror,
  org: string,
  object: string,
  page: { csv: string; types: Readonly<Record<string, string>> },
  opts: Omit<CsvPageOptions, 'types'>,
  log: Logger | undefined,
): Promise<{ rows: number } | { records: SfRecord[] }> {
  const r = await mirror.applyCsvPage(org, object, page.csv, { ...opts, types: page.types });
  if (!('fallback' in r)) return { rows: r.rows };
  log?.info({ org, object, source: opts.source, reason: r.fallback }, 'Bulk page decoded record by record');
  return { records: decodeBulkCsv(page.csv, page.types) };
}

/**
 * A REST page applied by the same CSV path, written as the Bulk CSV of its records
 * (restRecordsAsCsv): `{ records }` back, nothing written, when it cannot be (the caller's row path).
 */
export async function applyRestPage(
  mirror: Mirror,
  org: string,
  object: string,
  records: readonly SfRecord[],
  types: Readonly<Record<string, string>>,
  opts: Omit<CsvPageOptions, 'types'>,
  log: Logger | undefined,
): Promise<{ rows: number } | { records: readonly SfRecord[] }> {
  const page = restRecordsAsCsv(records, types);
  const r = 'csv' in page ? await mirror.applyCsvPage(org, object, page.csv, { ...opts, types }) : { fallback: page.unfit };
  if (!('fallback' in r)) return { rows: r.rows };
  if (records.length) log?.debug({ org, object, source: opts.source, reason: r.fallback }, 'REST page applied record by record');
  return { records };
}

export interface BulkTuning {
  /** A day with at least this many records (a REST `SELECT COUNT()`) is read by Bulk; 0 = never. */
  threshold: number;
  /** maxRecords of a results page. */
  pageSize: number;
  pollMs: number;
  timeoutMs: number;
}

export const hasBulk = (s: object): s is BulkSource =>
  'startBulkRead' in s && 'readBulkPage' in s && 'countRecords' in s && 'awaitBulkRead' in s;

export function decodeAll(object: string, records: readonly SfRecord[], log: Logger | undefined, job: number | string): Change[] {
  const changes: Change[] = [];
  for (const r of records) {
    const c = decodeRestRecord(object, r);
    if ('error' in c) log?.warn({ job, problem: c.error }, 'record skipped');
    else changes.push(c);
  }
  return changes;
}

/** The next page of the day's Bulk job: its records and the cursor to commit with them. */
export async function nextBulkPage(
  source: BulkSource,
  object: string,
  cursor: Cursor & { bulk: NonNullable<Cursor['bulk']> },
  tuning: BulkTuning,
  ready: Set<string>,
  created: Set<string>,
): Promise<{ page: BulkPage; next: Cursor } | { restart: string }> {
  const { job, locator } = cursor.bulk;
  try {
    if (!ready.has(job)) {
      await source.awaitBulkRead(job, { pollMs: tuning.pollMs, timeoutMs: tuning.timeoutMs });
      ready.add(job);
    }
    const page = await readBulkPage(source, object, job, locator, tuning.pageSize);
    return {
      page,
      next: { day: cursor.day, bulk: page.next === null ? { job, done: true } : { job, locator: page.next } },
    };
  } catch (e) {
    // A job of an earlier run that Salesforce no longer has, or no longer serves (deleted, expired,
    // aborted by someone): read the day again with a new job. This run's own jobs fail loudly.
    if (!created.has(job) && isSalesforceError(e) && (e.kind === 'gone' || e.code === 'BULK_JOB_TIMEOUT')) return { restart: e.message };
    throw e;
  }
}
