import t from 'tap';
import path from 'node:path';
import { sql } from 'kysely';
import { addDays, type Day } from '../../src/backfill/windows.ts';
import { startTestDatabase } from '../support/pg.ts';
import { startSalesforceOrg } from '../support/salesforce-org.ts';
import { startServe } from '../support/serve.ts';
import { SHOTS, hasChromium, launchChromium } from './support.ts';

// The operator console in a real browser (Chromium, headless) against `sfmirror serve` with the
// Salesforce stand-in: sign-in, the views, a backfill watched to done without a reload, pause and
// resume, a dead letter retried, the cookie's flags, CSRF refused, sign-out. Screenshots of each view.
if (!hasChromium()) {
  console.log('# SKIPPED: the console browser tests need /usr/bin/chromium (apt-get install -y chromium)');
  t.test('console browser tests', { skip: '/usr/bin/chromium is not installed, so they were skipped' }, () => {});
} else {
  await run();
}

async function run() {
  const ADMIN = 'console-admin-token-0123456789';
  const tdb = await startTestDatabase(t);
  const { db } = tdb.handle;
  const org = await startSalesforceOrg(t, { connectTimeout: 1, pageSize: 40 });
  const today = new Date().toISOString().slice(0, 10) as Day;
  const start = addDays(today, -20);
  for (const [object, n] of [
    ['Account', 120],
    ['Contact', 30],
  ] as const) {
    const table = org.records.get(object) ?? org.records.set(object, new Map()).get(object)!;
    for (let i = 0; i < n; i++) {
      const id = org.newId(object);
      const stamp = `${addDays(start, i % 20)}T${String(i % 24).padStart(2, '0')}:00:00.000Z`;
      table.set(id, {
        Id: id,
        Name: `${object} ${i}`,
        IsDeleted: false,
        CreatedDate: stamp,
        LastModifiedDate: stamp,
        SystemModstamp: stamp,
      } as never);
    }
  }
  const srv = await startServe({
    DATABASE_URL: tdb.url,
    SF_INSTANCE_URL: org.url,
    SF_LOGIN_URL: org.url,
    SF_CLIENT_ID: org.clientId,
    SF_REFRESH_TOKEN: org.refreshToken,
    SFMIRROR_ADMIN_TOKEN: ADMIN,
    SFMIRROR_BACKFILL_POLL_MS: '300',
    SFMIRROR_BACKFILL_PAGE_SIZE: '40',
    SFMIRROR_CDC_LEADER_POLL_MS: '200',
    SFMIRROR_CONSOLE_HISTORY_INTERVAL_MS: '500',
    SFMIRROR_CONSOLE_SESSION_MINUTES: '30',
  });
  t.teardown(async () => {
    if (srv.proc.exitCode === null) {
      srv.proc.kill('SIGTERM');
      await srv.exited;
    }
  });
  const context = await launchChromium(t);
  const page = await context.newPage();
  const shot = async (name: string) => {
    await page.mouse.wheel(0, -100_000);
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  };
  const jobRow = (object: string) =>
    page.locator('tr[data-job]').filter({ has: page.getByRole('rowheader', { name: object, exact: true }) });

  t.test('sign-in: a wrong token, then the right one; the cookie', { timeout: 60_000 }, async (t) => {
    await page.goto(`${srv.url}/console`);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    t.equal(await page.getByRole('table').count(), 0, 'without a session: only the sign-in form');
    await shot('01-sign-in');
    await page.getByLabel('Admin token').fill('wrong-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Wrong admin token.' }).waitFor();
    t.pass('a wrong token says so');
    await page.getByLabel('Admin token').fill(ADMIN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Orgs' }).waitFor();
    t.equal(await page.getByLabel('Admin token').inputValue(), '', 'the token is not left in the page');
    const cookies = await context.cookies(srv.url);
    t.match(cookies, [{ name: 'sfmirror_console', httpOnly: true, sameSite: 'Strict', secure: false }], 'HttpOnly, SameSite=Strict');
    const left = cookies[0]!.expires - Date.now() / 1000;
    t.ok(left > 25 * 60 && left < 31 * 60, `valid for a bounded time (${Math.round(left)} s left)`);
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    t.equal(stored, '{}{}', 'nothing in localStorage or sessionStorage');
  });

  t.test('the org, a backfill watched to done, pause and resume, the objects', { timeout: 90_000 }, async (t) => {
    const orgRow = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'salesforce' }) });
    await orgRow.filter({ hasText: org.orgId }).waitFor();
    t.match(await orgRow.innerText(), /environment \(SF_\*\)/, 'the org, its id and how it is connected');
    await page.locator('#stream-body').getByText('live').waitFor({ timeout: 30_000 });
    t.pass('the CDC stream is live');
    await shot('02-orgs-and-stream');

    await page.getByLabel('Org', { exact: true }).selectOption('salesforce');
    await page.getByLabel('Object', { exact: true }).fill('Account');
    await page.getByLabel('Start date').fill(start);
    await page.getByRole('button', { name: 'Start backfill' }).click();
    await page
      .getByRole('status')
      .filter({ hasText: /Backfill job \d+ started for salesforce.Account/ })
      .waitFor();
    const bar = page.getByRole('progressbar', { name: /Progress of job \d+ Account/ });
    await bar.waitFor();
    const seen = new Set<string>();
    const until = Date.now() + 45_000;
    while (Date.now() < until) {
      seen.add(String(await bar.getAttribute('value')));
      if ((await jobRow('Account').innerText()).includes('done-for-today')) break;
      await page.waitForTimeout(100);
    }
    t.equal(await bar.getAttribute('value'), '100', 'the progress bar reached done without a reload');
    t.match(await jobRow('Account').innerText(), /done-for-today[\s\S]*done/);
    t.ok(seen.size >= 1, `progress values seen: ${[...seen].join(', ')}`);
    await shot('03-backfill-done');

    const objects = page.locator('#objects');
    await objects.getByRole('rowheader', { name: 'Account' }).waitFor();
    t.match(
      await objects.getByRole('row').filter({ hasText: 'Account' }).innerText(),
      /120[\s\S]*backfill/,
      'rows and the source of the last change',
    );

    // A second job: paused at once, then resumed and worked to done.
    await page.getByLabel('Object', { exact: true }).fill('Contact');
    await page.getByLabel('Start date').fill(start);
    await page.getByRole('button', { name: 'Start backfill' }).click();
    await page.getByRole('button', { name: /Pause job \d+ Contact/ }).click();
    await page.getByRole('button', { name: /Resume job \d+ Contact/ }).waitFor();
    t.match(await jobRow('Contact').innerText(), /paused/, 'paused');
    await shot('04-backfill-paused');
    await page.getByRole('button', { name: /Resume job \d+ Contact/ }).click();
    await page.locator('tr[data-job]').filter({ hasText: 'Contact' }).filter({ hasText: 'done-for-today' }).waitFor({ timeout: 45_000 });
    t.pass('resumed and done');
    await objects.getByRole('rowheader', { name: 'Contact' }).waitFor();
    await shot('05-objects');
  });

  t.test('a dead letter retried; the warehouse switch', { timeout: 60_000 }, async (t) => {
    await sql`insert into sfmirror.warehouse_dead_letters (change_id, org_alias, object, sfid, op, version, seq, record, committed_at, reason)
      values (424242, 'salesforce', 'Account', '001000000000001AAA', 'update', '1', 1, '{}'::jsonb, now(), 'invalid: Field Name: value too long')`.execute(
      db,
    );
    const retry = page.getByRole('button', { name: 'Retry salesforce Account dead letters' });
    await retry.waitFor();
    await shot('06-warehouse-dead-letter');
    await retry.click();
    await page.getByRole('status').filter({ hasText: '1 dead letter(s) queued again.' }).waitFor();
    const back = await sql<{ n: string }>`select count(*) as n from sfmirror.outbox where id = 424242`.execute(db);
    t.equal(Number(back.rows[0]!.n), 1, 'the change is back in the outbox under its own id');
    await page.getByRole('button', { name: 'Switch the warehouse on' }).click();
    await page.getByRole('alert').filter({ hasText: 'BIGQUERY_PROJECT is not set' }).waitFor();
    t.pass('on without BigQuery here: the console says nobody drains the outbox');
    await page.locator('#charts svg').first().waitFor();
    await shot('07-warehouse-warning');
    await page.getByRole('button', { name: 'Switch the warehouse off' }).click();
    await page.getByRole('button', { name: 'Switch the warehouse on' }).waitFor();
    t.pass('switched off again');
  });

  t.test('CSRF refused; a phone-sized view; sign-out', { timeout: 60_000 }, async (t) => {
    const forged = await page.evaluate(async () => (await fetch('/admin/warehouse/enable', { method: 'POST' })).status);
    t.equal(forged, 403, 'a state change with the cookie but without the CSRF token is refused');
    const cookie = (await context.cookies(srv.url))[0]!;
    const crossSite = await fetch(`${srv.url}/admin/warehouse/enable`, {
      method: 'POST',
      headers: { cookie: `${cookie.name}=${cookie.value}`, origin: 'https://evil.example' },
    });
    t.equal(crossSite.status, 403, 'a cross-site request is refused');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('heading', { name: 'Backfill jobs' }).waitFor();
    await shot('08-phone');
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    const after = await page.evaluate(async () => (await fetch('/admin/status')).status);
    t.equal(after, 401, 'signed out: data endpoints answer 401');
    await page.reload();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    t.equal(await page.locator('#app').isHidden(), true, 'a reload shows only the sign-in form');
  });
}
