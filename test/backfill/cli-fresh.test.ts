import t from 'tap';
import { sql } from 'kysely';
import { listJobs } from '../../src/backfill/jobs.repository.ts';
import { startTestDatabase } from '../support/pg.ts';
import { runCli } from '../support/serve.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';

// `backfill start` and `resync` on a database no `serve` and no push has touched: the org of the
// environment is registered from its token's identity; without any Salesforce configuration the
// commands refuse, naming what to configure, instead of accepting a job that can only fail.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const org = await startSalesforceOrg(t);

t.test('without Salesforce configured: exit 2 naming the variables, no job', async (t) => {
  for (const args of [
    ['backfill', 'start', '--object', 'Account', '--start-date', '2024-01-01'],
    ['resync', '--object', 'Account'],
  ]) {
    const r = await runCli(args, { DATABASE_URL: tdb.url });
    t.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.match(r.stderr, /needs Salesforce API access to org salesforce: set SF_INSTANCE_URL and SF_ACCESS_TOKEN, or SF_CLIENT_ID/);
  }
  t.same(await listJobs(db), []);
  const other = await runCli(['backfill', 'start', '--object', 'Account', '--start-date', '2024-01-01', '--org', 'emea'], {
    DATABASE_URL: tdb.url,
  });
  t.equal(other.code, 1);
  t.match(other.stderr, /no org named emea/);
});

t.test('with Salesforce configured: the org is registered from the token and the job made', async (t) => {
  const env = { DATABASE_URL: tdb.url, SF_INSTANCE_URL: org.url, SF_ACCESS_TOKEN: org.issueToken(), SF_LOGIN_URL: org.url };
  const r = await runCli(['backfill', 'start', '--object', 'Account', '--start-date', '2024-01-01'], env);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, new RegExp(`registered org ${org.orgId} as salesforce`));
  t.ok(Number(r.stdout.trim()) > 0, 'prints the job id');
  const row = await sql<{ org_id: string; source: string }>`select org_id, source from sfmirror.orgs where alias = 'salesforce'`.execute(
    db,
  );
  t.match(row.rows, [{ org_id: org.orgId, source: 'env' }]);
});
