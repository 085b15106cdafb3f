import type { Config } from '../config/config.ts';
import { isValidAlias, isValidSobjectName } from '../changes/names.ts';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import { warehouseWarning } from '../api/status.ts';
import { dbtSources } from '../warehouse/dbt-sources.ts';
import {
  enableWarehouse,
  listRegistrations,
  readWarehouseSetting,
  retryDeadLetters,
  setWarehouseEnabled,
} from '../warehouse/warehouse.repository.ts';
import { objectsOf } from '../stream/stream.repository.ts';
import { warehouseOf } from './warehouse.ts';

/** `sfmirror warehouse enable|disable|rebuild|retry-dead-letters|dbt-sources`: operator controls of the BigQuery warehouse. */
export const WAREHOUSE_HELP = `Usage: sfmirror warehouse enable | disable
       sfmirror warehouse rebuild --object X [--org ALIAS]
       sfmirror warehouse retry-dead-letters [--object X] [--org ALIAS]
       sfmirror warehouse dbt-sources [--org ALIAS] > models/sfmirror_sources.yml

enable / disable: starts / stops queueing changes for BigQuery, recorded in the database so every
writer follows (what is already queued stays and is still sent). A 'serve' with BIGQUERY_PROJECT
leaves an operator's 'disable' in place until 'enable'.
rebuild: drops the object's BigQuery change table and latest-state table, makes them again and
re-seeds them from the mirror's current state (queued in the outbox; 'serve' sends it). Needs
BIGQUERY_PROJECT (and Google credentials, or BIGQUERY_API_ENDPOINT and BIGQUERY_STORAGE_API_ENDPOINT).
retry-dead-letters: once the cause is fixed, puts changes BigQuery refused (see 'sfmirror status')
back into the outbox under their own change ids, and has 'serve' send the ones only the
latest-state table refused to that table again; prints how many.
dbt-sources: prints a dbt sources.yml describing each org's dataset (latest-state and history
tables, their columns and types, freshness on _sfm_committed_at); every org unless --org.
--org defaults to SF_ORG_ALIAS (rebuild).`;

export const WAREHOUSE_OPTIONS = { object: { type: 'string' }, org: { type: 'string' } } as const;

export type WarehouseCommand = {
  action: 'rebuild' | 'retry-dead-letters' | 'dbt-sources' | 'enable' | 'disable';
  object: string | undefined;
  org: string | undefined;
};

type Values = Record<string, unknown>;

export function warehouseCommandOf(
  command: string,
  args: string[],
  values: Values,
  usageError: (m: string) => never,
): WarehouseCommand | undefined {
  if (command !== 'warehouse') return undefined;
  const [action, ...rest] = args;
  if (rest.length) usageError(`unexpected arguments: ${rest.join(' ')}`);
  if (action !== 'rebuild' && action !== 'retry-dead-letters' && action !== 'dbt-sources' && action !== 'enable' && action !== 'disable')
    usageError(`warehouse: unknown action '${action ?? ''}' (enable, disable, rebuild, retry-dead-letters, dbt-sources)`);
  const object = values.object as string | undefined;
  const org = values.org as string | undefined;
  if (object !== undefined && !isValidSobjectName(object))
    usageError(`warehouse ${action}: --object must be a Salesforce object API name (got ${object})`);
  if (action === 'rebuild' && !object) usageError('warehouse rebuild: give --object');
  if ((action === 'enable' || action === 'disable') && (object !== undefined || values.org !== undefined))
    usageError(`warehouse ${action} takes no options (it switches the whole deployment)`);
  if (org !== undefined && !isValidAlias(org)) usageError(`warehouse ${action}: --org is not an org alias (got ${org})`);
  return { action, object, org };
}

export async function runWarehouse(
  cmd: WarehouseCommand,
  deps: { config: Config; db: Db; log: Logger; out: NodeJS.WritableStream; err: NodeJS.WritableStream },
): Promise<number> {
  const { config, db, out, err } = deps;
  if (cmd.action === 'enable' || cmd.action === 'disable') {
    const s = await setWarehouseEnabled(db, cmd.action === 'enable', 'operator');
    out.write(
      `warehouse ${s.enabled ? 'on: changes are queued for BigQuery' : 'off: changes are not queued for BigQuery (what is queued is still sent)'}\n`,
    );
    const warning = warehouseWarning(s.enabled, { bigqueryConfigured: Boolean(config.BIGQUERY_PROJECT), envApiAlias: undefined });
    if (warning) err.write(`sfmirror: warning: ${warning}\n`);
    return 0;
  }
  if (cmd.action === 'dbt-sources') {
    const project = config.BIGQUERY_PROJECT ?? (await readWarehouseSetting(db))?.project;
    if (!project) {
      err.write('sfmirror: warehouse dbt-sources needs BIGQUERY_PROJECT (the warehouse is not configured)\n');
      return 2;
    }
    const tables = await listRegistrations(db, cmd.org);
    if (!tables.length) err.write('sfmirror: the warehouse has made no tables yet (serve makes them); the sources list is empty\n');
    out.write(dbtSources(project, tables));
    return 0;
  }
  if (cmd.action === 'retry-dead-letters') {
    const n = await retryDeadLetters(db, { org: cmd.org, object: cmd.object });
    out.write(
      `${n} dead letter(s) queued again (refused by the change table: back in the outbox; by the latest-state table only: sent there again)\n`,
    );
    return 0;
  }
  if (!config.BIGQUERY_PROJECT) {
    err.write('sfmirror: warehouse rebuild needs BIGQUERY_PROJECT (the warehouse is not configured)\n');
    return 2;
  }
  const org = cmd.org ?? config.SF_ORG_ALIAS;
  const object = cmd.object!;
  const known = (await objectsOf(db, org)).find((o) => o.toLowerCase() === object.toLowerCase());
  if (!known) {
    err.write(`sfmirror: org ${org} mirrors no object ${object}\n`);
    return 1;
  }
  await enableWarehouse(db, { project: config.BIGQUERY_PROJECT, dataset: config.BIGQUERY_DATASET });
  const { tables, bq } = warehouseOf(config, db, deps.log);
  const r = await tables.rebuild(org, known).finally(() => bq.close());
  out.write(`rebuilt ${r.dataset}.${r.changeTable} and ${r.dataset}.${r.latestTable}; ${r.seeded} record(s) queued from the mirror\n`);
  return 0;
}
