import t from 'tap';
import { sql } from 'kysely';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { runCli, startServe } from '../support/serve.ts';
import { waitFor } from '../support/wait.ts';

// `sfmirror serve` as a user runs it, formulas and field choice wired (src/bin/formulas.ts): tables
// from describe, formulas fresh after CDC changes of the record and of its parent, an excluded field
// nowhere, and both status views showing formulas and exclusions.
const tdb = await startTestDatabase(t);
const { db } = tdb.handle;
const org = await startSalesforceOrg(t, {
  connectTimeout: 1,
  types: { Contact: { Phone: 'phone', FirstName: 'string', LastName: 'string', SSN__c: 'string' } },
  references: { Contact: { AccountId: ['Account'] } },
  formulas: {
    Contact: {
      Full_Label__c: { formula: "FirstName & ' ' & LastName", compute: (r) => `${r.FirstName ?? ''} ${r.LastName ?? ''}` },
      Account_Name__c: { formula: 'Account.Name', compute: (r, ctx) => (ctx.get('Account', r.AccountId)?.Name as string) ?? null },
    },
  },
});
const ADMIN = 'admin-token-for-formulas-0123';
const env = {
  DATABASE_URL: tdb.url,
  SF_INSTANCE_URL: org.url,
  SF_LOGIN_URL: org.url,
  SF_CLIENT_ID: org.clientId,
  SF_REFRESH_TOKEN: org.refreshToken,
  SFMIRROR_ADMIN_TOKEN: ADMIN,
  SFMIRROR_CDC_LEADER_POLL_MS: '200',
  SFMIRROR_CDC_FLUSH_IDLE_MS: '20',
  // The formula knobs keep their defaults (2 s collection window, 500 ms poll): the delay measured below is a user's.
  SFMIRROR_EXCLUDE_FIELDS: 'Contact.SSN__c',
};
const serve = await startServe(env);
t.teardown(async () => {
  if (serve.proc.exitCode === null && serve.proc.signalCode === null) {
    serve.proc.kill('SIGTERM');
    await serve.exited;
  }
});
const contact = async (id: string) =>
  (
    await sql<{ f: Record<string, unknown> }>`select _sfm_fields as f from salesforce.contact where sfid = ${id}`
      .execute(db)
      .catch(() => ({ rows: [] as Array<{ f: Record<string, unknown> }> }))
  ).rows[0]?.f;

t.test('serve keeps formulas fresh and never mirrors an excluded field', { timeout: 120_000 }, async (t) => {
  await waitFor('subscribed', async () => org.stats.subscribes.length > 0, { timeoutMs: 30_000 });
  const a = org.insert('Account', { Name: 'Acme' });
  const c = org.insert('Contact', { FirstName: 'Ann', LastName: 'Lee', AccountId: a, SSN__c: '123-45-6789' });
  await waitFor(
    'formulas filled',
    async () => (await contact(c))?.Account_Name__c === 'Acme' && (await contact(c))?.Full_Label__c === 'Ann Lee',
  );
  const cols = await sql<{ c: string }>`select column_name as c from information_schema.columns
    where table_schema = 'salesforce' and table_name = 'contact'`.execute(db);
  const names = cols.rows.map((r) => r.c);
  t.ok(names.includes('phone'), 'a described field null everywhere has its column');
  t.notOk(names.includes('ssn__c'), 'the excluded field has none');
  t.notOk('SSN__c' in (await contact(c))!);
  const started = Date.now();
  org.update('Account', a, { Name: 'Acme 2' });
  await waitFor('parent change reached the child', async () => (await contact(c))?.Account_Name__c === 'Acme 2');
  t.comment(`parent change -> child's formula fresh, defaults: ${Date.now() - started} ms`);

  const res = await fetch(`${serve.url}/admin/status`, { headers: { authorization: `Bearer ${ADMIN}` } });
  const status = (await res.json()) as {
    orgs: Array<{ formulas: { objects: Array<{ object: string; fields: unknown[] }>; fields: unknown } }>;
  };
  const formulas = status.orgs[0]!.formulas;
  t.same(formulas.fields, { include: [], exclude: ['Contact.SSN__c'] });
  t.same(formulas.objects.find((o) => o.object === 'Contact')?.fields, [
    { field: 'Full_Label__c', kind: 'same-record' },
    { field: 'Account_Name__c', kind: 'cross-object' },
  ]);
  const metrics = await (await fetch(`${serve.url}/metrics`)).text();
  t.match(metrics, /sfmirror_formula_api_calls_total\{org="salesforce",object="Contact",api="rest"\} \d+/);
  const cli = await runCli(['status'], { DATABASE_URL: tdb.url });
  t.equal(cli.code, 0, cli.stderr);
  t.match(cli.stdout, /formulas Contact: Full_Label__c \(same-record\), Account_Name__c \(cross-object\); 0 waiting/);
  t.match(cli.stdout, /fields excluded \(SFMIRROR_EXCLUDE_FIELDS\): Contact\.SSN__c/);
});
