import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { WarehouseTable } from './bigquery.ts';
import { changeTableOf, datasetFor, tableFields, viewOf, viewSql, type BqField } from './bq-schema.ts';
import * as repo from './warehouse.repository.ts';

/**
 * The BigQuery side of each mirrored object: dataset per org, change table `<object>_changes`
 * (day partitions on `_sfm_committed_at`, clustered by Id) and the latest-state view `<object>`.
 * Made on first need, extended when the mirror learns a field (tables.patch adds the column; no
 * restart), rebuilt on demand. A change table this module creates or rebuilds is seeded from the
 * mirror's current state (as outbox rows, which the drain sends like any change).
 * Every step for one table runs under a Postgres advisory lock, so instances take turns.
 */
export interface Target {
  readonly org: string;
  readonly object: string;
  readonly dataset: string;
  /** BigQuery name of the change table. */
  readonly changeTable: string;
  readonly fields: readonly BqField[];
}

export interface TableManagerDeps {
  db: Db;
  bq: WarehouseTable;
  project: string;
  /** BIGQUERY_DATASET and SF_ORG_ALIAS: that org's dataset has no suffix. */
  defaults: { dataset: string; alias: string };
  log?: Logger | undefined;
}

export function createTableManager(deps: TableManagerDeps) {
  const { db, bq, log } = deps;
  const cache = new Map<string, Target>();
  const key = (org: string, table: string) => `${org}\u0000${table}`;

  /** Creates or extends the change table and its view; seeds a table it created. */
  async function sync(org: string, object: string, opts: { rebuild?: boolean } = {}): Promise<Target & { seeded: number }> {
    const table = object.toLowerCase();
    return repo.withTableLock(db, org, table, async () => {
      const mirror = await repo.mirrorColumns(db, org, table);
      const name = mirror?.object ?? object;
      const dataset = datasetFor(org, deps.defaults);
      const changeTable = changeTableOf(table);
      const view = viewOf(table);
      await bq.ensureDataset(dataset);
      const reg = await repo.getRegistration(db, org, table);
      if (opts.rebuild) {
        await bq.deleteTable(dataset, view);
        await bq.deleteTable(dataset, changeTable);
      }
      const existing = opts.rebuild ? undefined : await bq.getTable(dataset, changeTable);
      const fields = tableFields(mirror?.columns ?? [], existing?.fields ?? []);
      let created = false;
      if (!existing) {
        created =
          (await bq.createTable(dataset, changeTable, { fields, partitionField: '_sfm_committed_at', clusterFields: ['Id'] })) ===
          'created';
        if (!created) await bq.patchTable(dataset, changeTable, { fields });
      } else if (fields.length > existing.fields.length) {
        await bq.patchTable(dataset, changeTable, { fields });
        log?.info(
          { org, object: name, added: fields.slice(existing.fields.length).map((f) => f.name) },
          'warehouse: change table extended',
        );
      }
      const query = viewSql(deps.project, dataset, table);
      if (
        (await bq.createTable(dataset, view, { view: query })) === 'exists' &&
        (created || !existing || fields.length > existing.fields.length)
      ) {
        // A view's stored schema is fixed when it is written: write it again so new columns show.
        await bq.patchTable(dataset, view, { view: query });
      }
      await repo.saveRegistration(db, { org, table, object: name, dataset, columns: fields });
      let seeded = 0;
      if (mirror && (created || opts.rebuild || !reg?.seededAt)) {
        seeded = await repo.seedFromMirror(db, org, table, name);
        log?.info({ org, object: name, dataset, rows: seeded, rebuild: !!opts.rebuild }, 'warehouse: change table seeded from the mirror');
      }
      const target: Target = { org, object: name, dataset, changeTable, fields };
      cache.set(key(org, table), target);
      return { ...target, seeded };
    });
  }

  return {
    /** The change table of an object, made (and seeded) on first need. */
    async ensure(org: string, object: string): Promise<Target> {
      return cache.get(key(org, object.toLowerCase())) ?? sync(org, object);
    },
    /** Reads the mirror's columns again and adds the new ones (a record brought a field the table lacks). */
    refresh: (org: string, object: string) => sync(org, object),
    /** Drops and re-creates the change table and view, then seeds them from the mirror. */
    rebuild: (org: string, object: string) => sync(org, object, { rebuild: true }),
    /** Forgets what is known of a table (BigQuery said it is gone). */
    forget(org: string, object: string) {
      cache.delete(key(org, object.toLowerCase()));
    },
    /** Tables for mirrored objects that have none yet (the warehouse was turned on later). */
    async syncUnregistered(): Promise<number> {
      let n = 0;
      for (const o of await repo.unregisteredObjects(db)) {
        await sync(o.org, o.object);
        n++;
      }
      return n;
    },
  };
}

export type TableManager = ReturnType<typeof createTableManager>;
