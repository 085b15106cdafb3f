import type { Config } from '../config/config.ts';
import { resyncObject } from '../backfill/full-resync.ts';
import { isValidSobjectName } from '../changes/names.ts';
import { orgWithAccess, type BackfillRunDeps } from './cli-backfill.ts';
import { bulkTuningOf } from './salesforce.ts';

/** `sfmirror resync --object X [--org ALIAS]`: a whole-object resync in the foreground. */
export const RESYNC_HELP = `Usage: sfmirror resync --object Account [--org ALIAS]

Re-reads a whole object from Salesforce, deleted records still in the Recycle Bin included
(Bulk API 2.0 when it holds at least SFMIRROR_BULK_THRESHOLD records, REST otherwise), applies it to
the mirror (newer wins: 'serve' may keep running), then compares ids: mirror rows whose records
Salesforce no longer has become tombstones. That is how hard deletes older than getDeleted's
15-day reach are found. Prints progress; stops with exit 1 when Salesforce fails or the API budget
(SFMIRROR_API_BUDGET_SHARE of the daily allowance) is spent.
Needs Salesforce API access (SF_INSTANCE_URL and a way to authenticate).`;

export const RESYNC_OPTIONS = { object: { type: 'string' }, org: { type: 'string' } } as const;

export type ResyncCommand = { object: string; org: string | undefined };

export function resyncCommandOf(
  command: string,
  args: string[],
  values: Record<string, unknown>,
  usageError: (m: string) => never,
): ResyncCommand | undefined {
  if (command !== 'resync') return undefined;
  if (args.length) usageError(`resync takes --object and --org, not arguments (got ${args.join(' ')})`);
  if (values['start-date'] !== undefined) usageError(`--start-date is an option of 'backfill start'`);
  const object = values.object as string | undefined;
  if (!object || !isValidSobjectName(object))
    usageError(`resync: --object must be a Salesforce object API name (got ${object ?? 'nothing'})`);
  return { object, org: values.org as string | undefined };
}

export async function runResyncCommand(cmd: ResyncCommand, deps: BackfillRunDeps): Promise<number> {
  const { db, out, err, config } = deps;
  const org = cmd.org ?? config.SF_ORG_ALIAS;
  const ready = await orgWithAccess(org, 'resync', deps);
  if (ready !== 0) return ready;
  const source = deps.source(org)!;
  const started = Date.now();
  let last = 0;
  const label = `resync ${org}.${cmd.object}`;
  out.write(`${label}: reading every record from Salesforce\n`);
  try {
    const r = await resyncObject(
      {
        db,
        mirror: deps.mirror(),
        source,
        pageSize: config.SFMIRROR_BACKFILL_PAGE_SIZE,
        bulk: bulkTuningOf(config),
        apiBudgetShare: config.SFMIRROR_API_BUDGET_SHARE,
        log: deps.log,
        onProgress: (p) => {
          if (Date.now() - last < 1000 && !out.isTTY) return;
          last = Date.now();
          const text = `${label}: ${p.phase === 'reading' ? 'read' : 'compared'} ${p.records} records${p.bulkJob ? ` (Bulk job ${p.bulkJob})` : ''}, ${p.tombstoned} tombstoned, ${((Date.now() - started) / 1000).toFixed(0)} s`;
          out.write(out.isTTY ? `\r${text}\u001b[K` : `${text}\n`);
        },
      },
      org,
      cmd.object,
    );
    if (out.isTTY) out.write('\n');
    if (r.state === 'paused') {
      err.write(`sfmirror: ${label} paused after ${r.records} records: ${r.reason}; run it again later\n`);
      return 1;
    }
    out.write(
      `${label}: done: ${r.records} records read, ${r.tombstoned} mirror rows tombstoned (gone from Salesforce), in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
    );
    return 0;
  } catch (e) {
    if (out.isTTY) out.write('\n');
    err.write(`sfmirror: ${label} failed: ${(e as Error).message}\n`);
    return 1;
  }
}

export type { Config };
