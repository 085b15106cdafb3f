import { stringify } from 'yaml';
import type { BqField } from './bq-schema.ts';

/**
 * A dbt `sources.yml` (https://docs.getdbt.com/reference/source-properties) describing what the
 * warehouse keeps in BigQuery: one source per org (its dataset), with the latest-state table and the
 * history table of each object, their columns and types, and freshness on `_sfm_committed_at`.
 * Pure: the caller reads the registry of tables (warehouse.repository.ts) and writes the text out.
 */
export interface SourceTable {
  readonly org: string;
  readonly dataset: string;
  readonly object: string;
  /** Lower-case object name: the latest-state table; `<table>_changes` is its history. */
  readonly table: string;
  readonly columns: readonly BqField[];
}

const META: Record<string, string> = {
  _sfm_op: 'What the row is: insert, update, delete, undelete, or seed (the state when the table was made).',
  _sfm_change_id: 'The change id in sfmirror (one per applied change).',
  _sfm_version: "Salesforce's time of the change, as sfmirror orders versions.",
  _sfm_seq: "sfmirror's change cursor: higher is newer for a record (the latest-state table's CDC sequence).",
  _sfm_committed_at: 'When sfmirror committed the change (history is partitioned by day on it).',
};

function columnsOf(fields: readonly BqField[], latest: boolean) {
  return fields.map((f) => ({
    name: f.name,
    data_type: f.type,
    ...(META[f.name] ? { description: META[f.name] } : f.name === 'Id' ? { description: 'The 18-character Salesforce record id.' } : {}),
    ...(f.name === 'Id' ? { data_tests: latest ? ['not_null', 'unique'] : ['not_null'] } : {}),
  }));
}

export function dbtSources(
  project: string,
  tables: readonly SourceTable[],
  freshness: { warnAfterHours: number; errorAfterHours: number } = { warnAfterHours: 1, errorAfterHours: 24 },
): string {
  const byOrg = new Map<string, SourceTable[]>();
  for (const t of [...tables].sort((a, b) => (a.org + a.table < b.org + b.table ? -1 : 1))) {
    const list = byOrg.get(t.org) ?? [];
    list.push(t);
    byOrg.set(t.org, list);
  }
  const sources = [...byOrg.entries()].map(([org, list]) => ({
    name: `sfmirror_${org}`,
    description: `Salesforce org "${org}" mirrored by sfmirror: per object a latest-state table and its history (<object>_changes).`,
    database: project,
    schema: list[0]!.dataset,
    loader: 'sfmirror',
    loaded_at_field: '_sfm_committed_at',
    freshness: {
      warn_after: { count: freshness.warnAfterHours, period: 'hour' },
      error_after: { count: freshness.errorAfterHours, period: 'hour' },
    },
    tables: list.flatMap((t) => [
      {
        name: t.table,
        description: `${t.object}: one row per live record, the newest state (kept by BigQuery change data capture; deleted records are removed).`,
        columns: columnsOf(t.columns, true),
      },
      {
        name: `${t.table}_changes`,
        description: `${t.object} history: one row per applied change (exactly once), partitioned by day on _sfm_committed_at, clustered by Id.`,
        columns: columnsOf(t.columns, false),
      },
    ]),
  }));
  return `# Written by \`sfmirror warehouse dbt-sources\`; run it again when objects or fields are added.\n${stringify(
    { version: 2, sources },
    { lineWidth: 0 },
  )}`;
}
