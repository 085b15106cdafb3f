// Renders /admin/status into the console's tables. Text only through textContent (no HTML from data).

export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, String(v));
    else if (k in e) e[k] = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** "12 s ago" with the exact time as a tooltip. */
export function ago(isoTime, now = Date.now()) {
  if (!isoTime) return h('span', { class: 'muted' }, 'never');
  const s = Math.max(0, Math.round((now - new Date(isoTime).getTime()) / 1000));
  const text =
    s < 60
      ? `${s} s ago`
      : s < 3600
        ? `${Math.round(s / 60)} min ago`
        : s < 172800
          ? `${Math.round(s / 3600)} h ago`
          : `${Math.round(s / 86400)} days ago`;
  return h('time', { dateTime: isoTime, title: isoTime }, text);
}

const STATE_CLASS = {
  live: 'ok',
  connected: 'ok',
  environment: 'ok',
  'done-for-today': 'ok',
  done: 'ok',
  running: 'ok',
  on: 'ok',
  connecting: 'warn',
  resyncing: 'warn',
  pending: 'warn',
  paused: 'warn',
  'push only': 'warn',
  stopped: 'warn',
  off: 'warn',
  'backing off': 'bad',
  failed: 'bad',
  revoked: 'bad',
  locked: 'bad',
};
export const chip = (state, text = state) => h('span', { class: `chip ${STATE_CLASS[state] ?? ''}` }, text);

/** Fills a table body; each cell gets its column's name as data-label (the phone layout shows it). */
function rowsOr(tbody, rows, cols, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colSpan: cols, class: 'empty' }, empty))]));
  const table = tbody.closest('table');
  table.classList.add('cards');
  const names = [...table.querySelectorAll('thead th')].map((th) => th.textContent.trim());
  if (rows.length) for (const tr of tbody.rows) [...tr.cells].forEach((cell, i) => names[i] && cell.setAttribute('data-label', names[i]));
}

const SOURCE = { env: 'environment (SF_*)', oauth: 'OAuth', push: 'signed pushes' };
const CONNECTION = { 'push only': 'push only (no API access)' };

export function renderOrgs(tbody, s) {
  rowsOr(
    tbody,
    s.orgs.map((o) =>
      h(
        'tr',
        {},
        h('th', { scope: 'row' }, o.alias),
        h('td', { class: 'mono' }, o.orgId ?? h('span', { class: 'muted' }, 'not known yet')),
        h('td', {}, SOURCE[o.source] ?? o.source),
        h(
          'td',
          {},
          chip(o.connection.state, CONNECTION[o.connection.state] ?? o.connection.state),
          o.connection.error ? h('div', { class: 'err' }, o.connection.error) : null,
          o.connection.instanceUrl ? h('div', { class: 'muted mono' }, o.connection.instanceUrl) : null,
        ),
        h('td', { class: 'mono' }, o.lastSeq),
        h('td', {}, ago(o.lastAppliedAt)),
      ),
    ),
    6,
    'no orgs yet: connect one below',
  );
}

export function renderStream(tbody, resyncBody, s) {
  const channels = s.orgs.flatMap((o) => o.stream.channels.map((c) => ({ org: o.alias, ...c })));
  rowsOr(
    tbody,
    channels.map((c) =>
      h(
        'tr',
        {},
        h('td', {}, c.org),
        h('td', { class: 'mono' }, c.channel),
        h('td', {}, chip(c.state)),
        h('td', {}, ago(c.lastEventAt)),
        h('td', { class: 'num' }, c.lagMs === null ? '–' : `${(c.lagMs / 1000).toFixed(1)} s`),
        h('td', { class: 'num' }, c.eventsPerSecond === null ? '–' : c.eventsPerSecond.toFixed(1)),
        h('td', { class: 'err' }, c.error ?? ''),
      ),
    ),
    7,
    'no CDC subscription (no org with API access, or Salesforce not configured)',
  );
  const resyncs = s.orgs.flatMap((o) => o.stream.resyncs.map((r) => ({ org: o.alias, ...r }))).reverse();
  rowsOr(
    resyncBody,
    resyncs.map((r) =>
      h(
        'tr',
        {},
        h('td', {}, r.org),
        h('td', {}, r.object),
        h('td', {}, chip(r.status)),
        h('td', {}, r.reason),
        h('td', { class: 'num' }, r.records),
        h('td', {}, ago(r.createdAt)),
        h('td', { class: 'err' }, r.error ?? ''),
      ),
    ),
    7,
    'no resyncs',
  );
}

export function renderObjects(tbody, s) {
  const rows = s.orgs.flatMap((o) =>
    o.objects.map((x) => {
      const problems = o.typeProblems.filter((p) => p.object.toLowerCase() === x.object.toLowerCase());
      return h(
        'tr',
        {},
        h('td', {}, o.alias),
        h('th', { scope: 'row' }, x.object),
        h('td', { class: 'num' }, `${x.estimated ? '~' : ''}${x.rows.toLocaleString('en')}`),
        h('td', { class: 'num' }, x.deleted.toLocaleString('en')),
        h('td', {}, ago(x.lastAppliedAt)),
        h('td', {}, x.lastSource ?? h('span', { class: 'muted' }, '–')),
        h(
          'td',
          {},
          problems.length
            ? problems.map((p) => h('div', { class: 'err' }, `${p.field}: ${p.problem} (${p.occurrences}×)`))
            : h('span', { class: 'muted' }, 'none'),
        ),
        h(
          'td',
          {},
          h(
            'button',
            {
              type: 'button',
              'data-action': 'resync',
              'data-org': o.alias,
              'data-object': x.object,
              'aria-label': `Resync ${o.alias} ${x.object}`,
            },
            'Resync',
          ),
        ),
      );
    }),
  );
  rowsOr(tbody, rows, 8, 'no objects mirrored yet');
}

const dayMs = (d) => Date.parse(`${d}T00:00:00Z`);

/** How far a job got: the days from its start date to today that are done. */
export function progressOf(b, now = Date.now()) {
  if (b.state === 'done-for-today') return 1;
  const total = (now - dayMs(b.startDate)) / 86_400_000;
  if (total <= 0) return 1;
  return Math.max(0, Math.min(1, (dayMs(b.lastDate) - dayMs(b.startDate)) / 86_400_000 / total));
}

export function renderBackfills(tbody, s) {
  const jobs = s.orgs.flatMap((o) => o.backfills.map((b) => ({ org: o.alias, ...b })));
  rowsOr(
    tbody,
    jobs.map((b) => {
      const p = progressOf(b);
      const name = `job ${b.id} ${b.object}`;
      const actions = [];
      if (b.active)
        actions.push(h('button', { type: 'button', 'data-action': 'pause', 'data-id': b.id, 'aria-label': `Pause ${name}` }, 'Pause'));
      if (!b.active)
        actions.push(h('button', { type: 'button', 'data-action': 'resume', 'data-id': b.id, 'aria-label': `Resume ${name}` }, 'Resume'));
      if (b.state === 'failed' || (b.state === 'paused' && b.active))
        actions.push(h('button', { type: 'button', 'data-action': 'run', 'data-id': b.id, 'aria-label': `Run ${name} now` }, 'Run now'));
      return h(
        'tr',
        { 'data-job': b.id },
        h('td', { class: 'mono' }, b.id),
        h('td', {}, b.org),
        h('th', { scope: 'row' }, b.object),
        h('td', {}, chip(b.state)),
        h('td', {}, b.startDate),
        h('td', {}, b.lastDate),
        h(
          'td',
          {},
          h('progress', { max: 100, value: Math.round(p * 100), 'aria-label': `Progress of ${name}` }),
          h('span', { class: 'pct' }, b.state === 'done-for-today' ? 'done' : `${Math.round(p * 100)} %`),
        ),
        h('td', { class: 'num' }, b.rowsImported.toLocaleString('en')),
        h('td', { class: b.state === 'failed' ? 'err' : '' }, b.reason ?? ''),
        h('td', {}, h('div', { class: 'actions' }, actions)),
      );
    }),
    10,
    'no backfill jobs: start one above',
  );
}

export function renderWarehouse(els, s) {
  const w = s.warehouse;
  els.state.replaceChildren(
    chip(w.enabled ? 'on' : 'off', w.enabled ? 'on' : 'off'),
    ` ${w.enabled ? 'changes are queued for BigQuery' : 'changes are not queued for BigQuery'}; outbox ${w.outboxDepth.toLocaleString('en')} change(s)`,
    w.outboxOldestAgeSeconds !== null ? `, oldest ${w.outboxOldestAgeSeconds} s` : '',
    w.configuredHere ? '' : ' · BigQuery is not configured in this server',
  );
  els.toggle.textContent = w.enabled ? 'Switch the warehouse off' : 'Switch the warehouse on';
  els.toggle.dataset.action = w.enabled ? 'warehouse-disable' : 'warehouse-enable';
  els.warning.hidden = !w.warning;
  els.warning.textContent = w.warning ?? '';
  els.error.hidden = !w.lastError;
  els.error.textContent = w.lastError ? `Last error (retried): ${w.lastError}` : '';
  rowsOr(
    els.outbox,
    w.perOrg.map((o) =>
      h(
        'tr',
        {},
        h('td', {}, o.org),
        h('td', { class: 'num' }, o.depth.toLocaleString('en')),
        h('td', {}, o.oldestAgeSeconds === null ? '–' : `${o.oldestAgeSeconds} s`),
        h('td', { class: 'num' }, o.deadLetters ? chip('failed', String(o.deadLetters)) : '0'),
      ),
    ),
    4,
    'the outbox is empty',
  );
  rowsOr(
    els.dead,
    w.recentDeadLetters.map((d) =>
      h(
        'tr',
        {},
        h('td', { class: 'mono' }, d.changeId),
        h('td', {}, d.org),
        h('td', {}, d.object),
        h('td', { class: 'mono' }, d.sfid),
        h('td', { class: 'err' }, d.reason),
        h('td', {}, ago(d.deadAt)),
        h(
          'td',
          {},
          h(
            'button',
            {
              type: 'button',
              'data-action': 'retry',
              'data-org': d.org,
              'data-object': d.object,
              'aria-label': `Retry ${d.org} ${d.object} dead letters`,
            },
            'Retry',
          ),
        ),
      ),
    ),
    7,
    'no dead letters',
  );
}
