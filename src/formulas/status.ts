import type { Db } from '../db/database.ts';
import type { FormulaKind } from './catalog.ts';
import * as repo from './formulas.repository.ts';

/** What `/admin/status` and `sfmirror status` show of formula freshness and field choice, per org. */
export interface FormulaStatus {
  objects: Array<{
    object: string;
    fields: Array<{ field: string; kind: FormulaKind; note?: string | undefined }>;
    waiting: number;
    oldestWaitingSeconds: number | null;
    lastPeriodicRefresh: string | null;
  }>;
  /** Why re-reads wait, e.g. the API budget is spent; null while they run. */
  paused: string | null;
  /** SFMIRROR_FIELDS / SFMIRROR_EXCLUDE_FIELDS as `serve` last started with them. */
  fields: { include: string[]; exclude: string[] };
}

/**
 * The formula section of status (src/api/status.ts calls it), from the database alone, so the
 * CLI shows what `serve` knows: the catalog the re-reader recorded, the queue, the pause reason.
 */
export async function formulaStatus(db: Db, org: string): Promise<FormulaStatus> {
  const catalog = new Map((await repo.readCatalog(db, org)).map((c) => [c.object.toLowerCase(), c]));
  const queue = new Map((await repo.queueStats(db, org)).map((q) => [q.object.toLowerCase(), q]));
  const refreshed = await repo.lastRefresh(db, org);
  const names = new Set([...catalog.keys(), ...queue.keys()]);
  const objects = [...names].sort().map((k) => {
    const c = catalog.get(k);
    const q = queue.get(k);
    return {
      object: c?.object ?? q!.object,
      fields: (c?.fields ?? []) as FormulaStatus['objects'][number]['fields'],
      waiting: q?.waiting ?? 0,
      oldestWaitingSeconds: q?.oldestSeconds ?? null,
      lastPeriodicRefresh: refreshed.get(k)?.toISOString() ?? null,
    };
  });
  const paused = await repo.getSetting<string>(db, `paused:${org}`);
  const fields = (await repo.getSetting<{ include: string[]; exclude: string[] }>(db, 'fields')) ?? { include: [], exclude: [] };
  return { objects, paused: paused ?? null, fields };
}

/** The terminal lines of `sfmirror status` for one org's formula section (src/bin/cli-status.ts). */
export function formatFormulaStatus(f: FormulaStatus | undefined): string[] {
  if (!f) return [];
  const lines: string[] = [];
  if (f.paused) lines.push(`  formula re-reads PAUSED: ${f.paused}`);
  for (const o of f.objects) {
    const kinds = o.fields.map((x) => `${x.field} (${x.kind}${x.note ? `: ${x.note}` : ''})`).join(', ');
    lines.push(
      `  formulas ${o.object}: ${kinds || 'none'}; ${o.waiting} waiting for a re-read${o.oldestWaitingSeconds !== null ? `, oldest ${o.oldestWaitingSeconds} s` : ''}${o.lastPeriodicRefresh ? `; periodic refresh ${o.lastPeriodicRefresh}` : ''}`,
    );
  }
  if (f.fields.include.length) lines.push(`  fields mirrored (SFMIRROR_FIELDS): ${f.fields.include.join(', ')}`);
  if (f.fields.exclude.length) lines.push(`  fields excluded (SFMIRROR_EXCLUDE_FIELDS): ${f.fields.exclude.join(', ')}`);
  return lines;
}
