import fs from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sql } from 'kysely';
import { from as copyFrom } from 'pg-copy-streams';
import { claimJob, createJob } from '../../src/backfill/jobs.repository.ts';
import { runJob } from '../../src/backfill/runner.ts';
import { addDays } from '../../src/backfill/windows.ts';
import { createDatabase } from '../../src/db/database.ts';
import { openEmbedded } from '../../src/db/embedded.ts';
import { migrate } from '../../src/db/migrator.ts';
import { fixedClock } from '../../src/lib/clock.ts';
import { createMirror } from '../../src/mirror/apply.ts';
import { ensureOrgAlias } from '../../src/mirror/orgs.repository.ts';
import { createSchemaManager } from '../../src/mirror/schema.ts';
import { createSalesforceSession } from '../../src/salesforce/client.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { tempDataDir } from '../support/serve.ts';

/**
 * Backfill benchmark: records from the stand-in's Bulk API 2.0 CSV results (paged by
 * Sforce-Locator) into committed mirror rows through mirror.applyCsvPage (COPY, one merge statement), one
 * backfill job over BENCH_BACKFILL_DAYS days (one Bulk job a day), PostgreSQL with its default,
 * durable settings. Next to it, the ceiling measured in the same run: `COPY ... FROM STDIN (FORMAT
 * csv)` of the same CSV pages, fetched from the same stand-in, into a table with the mirror's typed
 * columns (no JSON, no versions, no indexes but the key): median of 3. The stand-in runs in this
 * process, so its CSV writing shares the CPU with the backfill (not with the ceiling's COPY).
 */
const RECORDS = Number(process.env.BENCH_BACKFILL_RECORDS ?? 100_000);
const DAYS = Number(process.env.BENCH_BACKFILL_DAYS ?? 5);
const PAGE = Number(process.env.BENCH_BULK_PAGE_SIZE ?? 10_000);
const TYPES = {
  Name: 'string',
  Phone: 'phone',
  BillingCity: 'string',
  AnnualRevenue: 'currency',
  NumberOfEmployees: 'int',
  Active__c: 'boolean',
  Founded__c: 'date',
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// The wide object (issue 19): cost grows with width, so the bench also reads an Account with 43
// custom fields more (50 fields in all), a mix of the common types.
const WIDE = Number(process.env.BENCH_BACKFILL_WIDE_FIELDS ?? 43);
const WIDE_RECORDS = Number(process.env.BENCH_BACKFILL_WIDE_RECORDS ?? 30_000);
const WIDE_TYPES = ['string', 'double', 'boolean', 'date', 'textarea', 'int'] as const;
const wideValue = (type: (typeof WIDE_TYPES)[number], i: number, k: number) =>
  type === 'string'
    ? `value ${k}-${i % 97}`
    : type === 'double'
      ? (i * k) / 7
      : type === 'boolean'
        ? (i + k) % 2 === 0
        : type === 'date'
          ? '2020-02-29'
          : type === 'textarea'
            ? 'A longer text such as a description field holds, repeated in every record of the wide object.'
            : (i * k) % 100000;

export async function runBackfillBench(): Promise<string> {
  const narrow = await runOne(RECORDS, 0);
  const wide = WIDE > 0 ? await runOne(WIDE_RECORDS, WIDE) : [];
  return [...narrow, ...wide.slice(2)].join('\n');
}

async function runOne(RECORDS: number, extra: number): Promise<string[]> {
  const types: Record<string, string> = { ...TYPES };
  for (let k = 0; k < extra; k++) types[`Wide${k}__c`] = WIDE_TYPES[k % WIDE_TYPES.length]!;
  const dataDir = tempDataDir('sfmirror-bench-backfill-');
  const server = await openEmbedded({ dataDir, mode: 'serve' });
  const handle = createDatabase(server.url, { poolSize: 4 });
  const org = await startSalesforceOrg(undefined, { types: { Account: types } });
  try {
    const { db } = handle;
    const { error } = await migrate(db);
    if (error) throw error;
    await ensureOrgAlias(db, 'salesforce');
    const table = org.records.set('Account', new Map()).get('Account')!;
    for (let i = 0; i < RECORDS; i++) {
      const id = org.newId('Account');
      const stamp = `${addDays('2024-01-01', i % DAYS)}T${String(Math.floor(i / 3600) % 24).padStart(2, '0')}:${String(Math.floor(i / 60) % 60).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}.000Z`;
      table.set(id, {
        Id: id,
        IsDeleted: false,
        CreatedDate: stamp,
        LastModifiedDate: stamp,
        SystemModstamp: stamp,
        Name: `Account ${i}`,
        Phone: '+1 555 0100',
        BillingCity: i % 3 ? 'Springfield' : null,
        AnnualRevenue: i * 10.5,
        NumberOfEmployees: i % 5000,
        Active__c: i % 2 === 0,
        Founded__c: '1999-12-31',
        ...Object.fromEntries(
          Array.from({ length: extra }, (_, k) => [`Wide${k}__c`, wideValue(WIDE_TYPES[k % WIDE_TYPES.length]!, i, k)]),
        ),
      } as never);
    }
    const token = org.issueToken();
    const session = createSalesforceSession({ instanceUrl: org.url, accessToken: token, loginUrl: org.url, version: org.version });
    const mirror = createMirror({ db, schema: createSchemaManager(db) });

    const { job } = await createJob(db, 'salesforce', 'Account', '2024-01-01');
    const claimed = await claimJob(db, 'bench', '2024-01-10', 600_000, { onlyId: job.id });
    const started = performance.now();
    const outcome = await runJob(
      {
        db,
        mirror,
        source: session,
        clock: fixedClock('2024-01-10T02:00:00Z'),
        owner: 'bench',
        leaseMs: 600_000,
        pageSize: 2000,
        bulk: { threshold: 1, pageSize: PAGE, pollMs: 5, timeoutMs: 600_000 },
      },
      claimed!,
    );
    const seconds = (performance.now() - started) / 1000;
    if (outcome.state !== 'done-for-today' || outcome.rows !== RECORDS)
      throw new Error(`backfill did not finish: ${JSON.stringify(outcome)}`);
    const rate = RECORDS / seconds;
    console.error(`backfill: ${RECORDS} records in ${seconds.toFixed(1)} s`);

    // The ceiling: the same CSV pages (the same SOQL, one job over every day), COPYed 3 times.
    const soql = org.bulk.stats.jobs[0]!.query.replace(/\s+WHERE\s+.*$/i, '');
    const base = `${org.url}/services/data/v${org.version}`;
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const created = (await (
      await fetch(`${base}/jobs/query`, { method: 'POST', headers, body: JSON.stringify({ operation: 'queryAll', query: soql }) })
    ).json()) as { id: string };
    while (((await (await fetch(`${base}/jobs/query/${created.id}`, { headers })).json()) as { state: string }).state !== 'JobComplete');
    const pages: string[] = [];
    for (let locator = ''; ; ) {
      const res = await fetch(`${base}/jobs/query/${created.id}/results?maxRecords=${PAGE}${locator ? `&locator=${locator}` : ''}`, {
        headers,
      });
      pages.push(await res.text());
      locator = res.headers.get('sforce-locator') ?? 'null';
      if (locator === 'null') break;
    }
    const fields = soql
      .replace(/^SELECT\s+/i, '')
      .replace(/\s+FROM.*$/i, '')
      .split(',')
      .map((f) => f.trim());
    const colTypes = await sql<{
      column_name: string;
      type: string;
    }>`select a.attname as column_name, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a
      where a.attrelid = 'salesforce.account'::regclass and a.attnum > 0 and not a.attisdropped`.execute(db);
    const typeOf = new Map(colTypes.rows.map((r) => [r.column_name, r.type]));
    const defs = fields.map(
      (f) =>
        `"${f.toLowerCase() === 'id' ? 'sfid' : f.toLowerCase()}" ${f === 'Id' ? 'text primary key' : (typeOf.get(f.toLowerCase()) ?? 'text')}`,
    );
    await sql.raw(`create table bench_copy_ceiling (${defs.join(', ')})`).execute(db);
    const copies: number[] = [];
    for (let i = 0; i < 3; i++) {
      await sql`truncate bench_copy_ceiling`.execute(db);
      const client = await handle.pool.connect();
      try {
        const t0 = performance.now();
        for (const csv of pages)
          await pipeline(Readable.from([csv]), client.query(copyFrom('copy bench_copy_ceiling from stdin with (format csv, header true)')));
        copies.push(RECORDS / ((performance.now() - t0) / 1000));
      } finally {
        client.release();
      }
    }
    const ceiling = median(copies);
    const rows = [
      `| records | fields | days (Bulk jobs) | page (maxRecords) | backfill records/s (Bulk CSV -> mirror, committed) | ceiling rows/s (COPY of the same CSV, median of 3) | share of ceiling |`,
      '|---:|---:|---:|---:|---:|---:|---:|',
      `| ${RECORDS} | ${fields.length} | ${DAYS} | ${PAGE} | ${rate.toFixed(0)} | ${ceiling.toFixed(0)} (runs: ${copies.map((c) => c.toFixed(0)).join(', ')}) | ${((rate / ceiling) * 100).toFixed(1)}% |`,
    ];
    return rows;
  } finally {
    await org.close();
    await handle.close();
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}
