// The operator console: signs in with the admin token (a session cookie, never stored by the page),
// then polls the operator API and renders it. State-changing calls carry the session's CSRF token.
import { lineChart } from './charts.js';
import { renderBackfills, renderObjects, renderOrgs, renderStream, renderWarehouse } from './render.js';

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
let csrf = null;
let timer = null;
let lastHistory = 0;
/** How often the charts are redrawn: the server's sampling interval (at least the poll interval). */
let historyMs = POLL_MS;
let orgsKnown = '';

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, url, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const r = await fetch(url, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new HttpError(r.status, data?.message ?? `${r.status} ${r.statusText}`);
  return data;
}

function flash(message, bad = false) {
  const f = $('flash');
  f.textContent = message;
  f.className = bad ? 'flash bad' : 'flash';
  f.hidden = false;
}

function showSignedIn(on) {
  $('signin').hidden = on;
  $('app').hidden = !on;
  $('nav').hidden = !on;
  $('session').hidden = !on;
  if (!on) {
    clearTimeout(timer);
    timer = null;
    csrf = null;
    $('token').focus();
  }
}

async function refresh() {
  try {
    const s = await api('GET', '/admin/status');
    renderOrgs($('orgs-body'), s);
    renderStream($('stream-body'), $('resyncs-body'), s);
    renderObjects($('objects-body'), s);
    renderBackfills($('backfills-body'), s);
    renderWarehouse(
      {
        state: $('warehouse-state'),
        toggle: $('warehouse-toggle'),
        warning: $('warehouse-warning'),
        error: $('warehouse-error'),
        outbox: $('outbox-body'),
        dead: $('dead-body'),
      },
      s,
    );
    const aliases = s.orgs.map((o) => o.alias).join(',');
    if (aliases !== orgsKnown) {
      orgsKnown = aliases;
      $('bf-org').replaceChildren(...s.orgs.map((o) => new Option(o.alias, o.alias)));
    }
    $('updated').textContent = `updated ${new Date(s.generatedAt).toLocaleTimeString()}`;
    if (Date.now() - lastHistory >= historyMs) {
      lastHistory = Date.now();
      const hist = await api('GET', '/admin/status/history');
      historyMs = Math.max(POLL_MS, hist.intervalSeconds * 1000);
      lineChart($('chart-ingest'), hist.points, (p) => p.changesPerSecond, 'Ingest, changes per second');
      lineChart($('chart-lag'), hist.points, (p) => (p.lagMs === null ? null : p.lagMs / 1000), 'Stream lag in seconds');
      lineChart($('chart-outbox'), hist.points, (p) => p.outboxDepth, 'Outbox depth');
    }
  } catch (e) {
    if (e.status === 401) {
      showSignedIn(false);
      $('signin-error').textContent = 'Your session ended: sign in again.';
      return;
    }
    $('updated').textContent = `update failed: ${e.message}`;
  }
  timer = setTimeout(refresh, POLL_MS);
}

async function start() {
  try {
    const s = await api('GET', '/console/session');
    csrf = s.csrfToken;
  } catch {
    showSignedIn(false);
    return;
  }
  showSignedIn(true);
  lastHistory = 0;
  clearTimeout(timer);
  await refresh();
}

$('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('token');
  $('signin-error').textContent = '';
  try {
    const s = await api('POST', '/console/session', { token: input.value });
    csrf = s.csrfToken;
    input.value = '';
    $('flash').hidden = true;
    await start();
  } catch (e) {
    input.value = '';
    $('signin-error').textContent = e.status === 401 ? 'Wrong admin token.' : e.message;
  }
});

$('signout').addEventListener('click', async () => {
  try {
    await api('DELETE', '/console/session');
  } finally {
    showSignedIn(false);
    flash('Signed out.');
  }
});

/** Buttons in the tables: one listener for all (the tables are re-rendered on every poll). */
async function act(button) {
  const { action, id, org, object } = button.dataset;
  const calls = {
    pause: () => api('POST', `/admin/backfills/${id}/pause`).then(() => `Job ${id} paused.`),
    resume: () => api('POST', `/admin/backfills/${id}/resume`).then(() => `Job ${id} resumed.`),
    run: () => api('POST', `/admin/backfills/${id}/run`).then(() => `Job ${id} runs at the worker's next poll.`),
    resync: () =>
      api('POST', '/admin/resyncs', { org, object }).then((r) =>
        r.queued ? `Resync of ${org}.${object} queued.` : `A resync of ${org}.${object} is already open.`,
      ),
    retry: () =>
      api('POST', '/admin/warehouse/dead-letters/retry', { org, object }).then((r) => `${r.requeued} dead letter(s) queued again.`),
    'warehouse-enable': () => api('POST', '/admin/warehouse/enable').then(() => 'Warehouse on: changes are queued for BigQuery.'),
    'warehouse-disable': () => api('POST', '/admin/warehouse/disable').then(() => 'Warehouse off: changes are no longer queued.'),
  };
  if (!calls[action]) return;
  button.disabled = true;
  try {
    flash(await calls[action]());
  } catch (e) {
    flash(e.message, true);
  } finally {
    button.disabled = false;
    clearTimeout(timer);
    await refresh();
  }
}
document.addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-action]');
  if (b) void act(b);
});

$('backfill-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const job = await api('POST', '/admin/backfills', { org: f.get('org'), object: f.get('object'), startDate: f.get('startDate') });
    flash(`Backfill job ${job.id} started for ${job.org}.${job.object} from ${job.startDate}.`);
    ev.target.reset();
  } catch (e) {
    flash(e.message, true);
  }
  clearTimeout(timer);
  await refresh();
});

$('connect-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const q = new URLSearchParams({ alias: f.get('alias'), redirect_uri: `${location.origin}/oauth/callback` });
  if (f.get('loginUrl')) q.set('loginUrl', f.get('loginUrl'));
  try {
    const r = await api('GET', `/oauth/authorize?${q}`);
    location.assign(r.url);
  } catch (e) {
    flash(`Connect an org: ${e.message}`, true);
  }
});

void start();
