import type { Status } from '../api/status.ts';
import { formatFormulaStatus } from '../formulas/status.ts';

/** `sfmirror status` for a terminal: one block per org, one line per object. */
export function formatStatus(s: Status): string {
  const lines: string[] = [];
  lines.push(`sfmirror status at ${s.generatedAt}`);
  lines.push(
    `warehouse: ${s.warehouse.enabled ? 'on' : 'off'}; outbox ${s.warehouse.outboxDepth} change(s)${s.warehouse.outboxOldestAgeSeconds !== null ? `, oldest ${s.warehouse.outboxOldestAgeSeconds} s` : ''}`,
  );
  if (s.warehouse.warning) lines.push(`  WARNING: ${s.warehouse.warning}`);
  if (s.warehouse.lastError) lines.push(`  last error (retried): ${s.warehouse.lastError}`);
  for (const o of s.warehouse.perOrg)
    lines.push(
      `  ${o.org}: outbox ${o.depth}${o.oldestAgeSeconds !== null ? `, oldest ${o.oldestAgeSeconds} s` : ''}${o.deadLetters ? `, ${o.deadLetters} DEAD LETTER(S)` : ''}`,
    );
  if (s.warehouse.deadLetters) {
    lines.push(`  dead letters (BigQuery refused them; fix the cause, then 'sfmirror warehouse retry-dead-letters'):`);
    for (const d of s.warehouse.recentDeadLetters)
      lines.push(`    change ${d.changeId} ${d.org} ${d.object} ${d.sfid} at ${d.deadAt}: ${d.reason}`);
  }
  if (!s.orgs.length) lines.push('no orgs yet');
  for (const o of s.orgs) {
    lines.push('');
    lines.push(
      `org ${o.alias} (${o.orgId ?? 'org id not known yet'}, ${o.source}): change cursor ${o.lastSeq}, last change ${o.lastAppliedAt ?? 'never'}`,
    );
    const c = o.connection;
    const advice =
      c.state === 'revoked'
        ? ': connect it again (GET /oauth/authorize?alias=' + o.alias + ')'
        : c.state === 'locked'
          ? ': check SFMIRROR_ENCRYPTION_KEY'
          : '';
    lines.push(
      `  connection: ${c.state === 'push only' ? 'push only (no API access)' : c.state === 'revoked' || c.state === 'locked' ? c.state.toUpperCase() : c.state}${c.error ? ` (${c.error})` : ''}${advice}${c.instanceUrl ? `, ${c.instanceUrl}` : ''}${c.signingKeys ? `, ${c.signingKeys} own signing key(s)` : ''}`,
    );
    if (!o.objects.length) lines.push('  no objects mirrored yet');
    const w = Math.max(6, ...o.objects.map((x) => x.object.length));
    if (o.objects.length) lines.push(`  ${'object'.padEnd(w)}  ${'rows'.padStart(10)}  ${'deleted'.padStart(8)}  last change`);
    for (const x of o.objects) {
      const rows = (x.estimated ? '~' : '') + String(x.rows);
      lines.push(
        `  ${x.object.padEnd(w)}  ${rows.padStart(10)}  ${String(x.deleted).padStart(8)}  ${x.lastAppliedAt ?? 'never'}${x.lastSource ? ` (${x.lastSource})` : ''}`,
      );
    }
    for (const c of o.stream.channels) {
      lines.push(
        `  stream ${c.channel}: ${c.state}${c.holder ? ` (${c.holder})` : ''}, replayId ${c.replayId ?? '-'}, last event ${c.lastEventAt ?? 'never'}${c.lagMs !== null ? `, lag ${c.lagMs} ms` : ''}${c.error ? `; ${c.error}` : ''}`,
      );
    }
    for (const r of o.stream.resyncs.filter((x) => x.status === 'pending' || x.status === 'running' || x.status === 'failed')) {
      lines.push(`  RESYNC ${r.object} ${r.status}: ${r.reason} (${r.records} records so far)${r.error ? `; ${r.error}` : ''}`);
    }
    for (const b of o.backfills) {
      lines.push(
        `  backfill job ${b.id} ${b.object}: ${b.state === 'paused' && b.reason?.startsWith('API limit') ? 'paused: API limit' : b.state}, from ${b.startDate}, done up to ${b.lastDate}, ${b.rowsImported} rows in the last run${b.workedBy ? `, worked by ${b.workedBy}` : ''}${b.reason ? ` (${b.reason})` : ''}`,
      );
    }
    lines.push(...formatFormulaStatus(o.formulas));
    for (const c of o.checkpoints) lines.push(`  checkpoint ${c.source}: ${JSON.stringify(c.value)} (${c.updatedAt})`);
    if (o.typeProblems.length) {
      lines.push(`  type problems (values kept in _sfm_fields only):`);
      for (const p of o.typeProblems)
        lines.push(`    ${p.object}.${p.field}: ${p.problem} (${p.occurrences}x, e.g. ${p.sampleSfid ?? '-'})`);
    }
  }
  return lines.join('\n');
}
