import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { WarehouseTable } from './bigquery.ts';
import { cdcRowOf, changeTableOf, datasetFor, latestTableOf, maxStalenessOf, tableFields, type BqField } from './bq-schema.ts';
import * as repo from './warehouse.repository.ts';

/**
 * The BigQuery side of each mirrored object: dataset per org, change table `<object>_changes`
 * (history: day partitions on `_sfm_committed_at`, clustered by Id) and the latest-state table
 * `<object>` (primary key Id NOT ENFORCED, `max_staleness`, kept by change data capture).
 * Made on first need, extended when the mirror learns a field (the column is added to both; no
 * restart), rebuilt on demand. A change table this module creates or rebuilds is seeded from the
 * mirror's current state for the records with no change queued (as outbox rows, which the drain
 * sends like any change). A latest-state view of an earlier version is replaced by the table, which
 * is then filled from the mirror directly (CDC sequence numbers keep it right whatever arrives
 * meanwhile). Every step for one table runs under a Postgres advisory lock, so instances take turns.
 */
export interface Target {
  readonly org: string;
  readonly object: string;
  readonly dataset: string;
  /** BigQuery name of the change table. */
  readonly changeTable: string;
  /** BigQuery name of the latest-state (CDC) table. */
  readonly latestTable: string;
  readonly fields: readonly BqField[];
}

export interface TableManagerDeps {
  db: Db;
  bq: WarehouseTable;
  project: string;
  /** BIGQUERY_DATASET and SF_ORG_ALIAS: that org's dataset has no suffix. */
  defaults: { dataset: string; alias: string };
  /** `max_staleness` of new latest-state tables, in minutes (SFMIRROR_BIGQUERY_MAX_STALENESS). */
  maxStalenessMinutes?: number;
  log?: Logger | undefined;
}

export function createTableManager(deps: TableManagerDeps) {
  const { db, bq, log } = deps;
  const cache = new Map<string, Target>();
  const key = (org: string, table: string) => `${org}\u0000${table}`;

  /** Creates or extends the change table and the latest-state table; seeds a change table it created. */
  async function sync(org: string, object: string, opts: { rebuild?: boolean } = {}): Promise<Target & { seeded: number }> {
    const table = object.toLowerCase();
    return repo.withTableLock(db, org, table, async () => {
      const mirror = await repo.mirrorColumns(db, org, table);
      const name = mirror?.object ?? object;
      const dataset = datasetFor(org, deps.defaults);
      const changeTable = changeTableOf(table);
      const latestTable = latestTableOf(table);
      await bq.ensureDataset(dataset);
      const reg = await repo.getRegistration(db, org, table);
      if (opts.rebuild) {
        await bq.deleteTable(dataset, latestTable);
        await bq.deleteTable(dataset, changeTable);
        // The old stream died with its table: the next append opens one on the new table.
        await repo.resetStream(db, org, name);
      }
      const existing = opts.rebuild ? undefined : await bq.getTable(dataset, changeTable);
      let latest = opts.rebuild ? undefined : await bq.getTable(dataset, latestTable);
      const fields = tableFields(mirror?.columns ?? [], existing?.fields ?? []);
      let created = false;
      if (!existing) {
        created =
          (await bq.createTable(dataset, changeTable, { fields, partitionField: '_sfm_committed_at', clusterFields: ['Id'] })) ===
          'created';
        if (!created) await bq.patchTable(dataset, changeTable, { fields });
        if (!opts.rebuild) await repo.resetStream(db, org, name);
      } else if (fields.length > existing.fields.length) {
        await bq.patchTable(dataset, changeTable, { fields });
        log?.info(
          { org, object: name, added: fields.slice(existing.fields.length).map((f) => f.name) },
          'warehouse: change table extended',
        );
      }
      if (latest && (latest.isView || !latest.primaryKey.length)) {
        // An earlier version's latest-state view: the table takes its name.
        await bq.deleteTable(dataset, latestTable);
        latest = undefined;
        await repo.markLatestFilled(db, org, table, false);
        log?.info({ org, object: name, dataset, table: latestTable }, 'warehouse: latest-state view replaced by a CDC table');
      }
      let latestMade = false;
      if (!latest) {
        const made = await bq.createTable(dataset, latestTable, {
          fields,
          clusterFields: ['Id'],
          primaryKey: ['Id'],
          maxStaleness: maxStalenessOf(deps.maxStalenessMinutes ?? 15),
        });
        if (made === 'exists') await bq.patchTable(dataset, latestTable, { fields });
        latestMade = made === 'created';
      } else if (fields.length > latest.fields.length) {
        await bq.patchTable(dataset, latestTable, { fields });
      }
      await repo.saveRegistration(db, { org, table, object: name, dataset, columns: fields });
      let seeded = 0;
      if (mirror && (created || opts.rebuild || !reg?.seededAt)) {
        seeded = await repo.seedFromMirror(db, org, table, name);
        log?.info({ org, object: name, dataset, rows: seeded, rebuild: !!opts.rebuild }, 'warehouse: change table seeded from the mirror');
        await repo.markLatestFilled(db, org, table, true);
      } else if (mirror && (latestMade || !reg?.latestFilledAt)) {
        // History exists already: only the latest-state table needs the mirror's records.
        const n = await fillLatest(org, table, dataset, latestTable, fields);
        await repo.markLatestFilled(db, org, table, true);
        log?.info({ org, object: name, dataset, rows: n }, 'warehouse: latest-state table filled from the mirror');
      }
      const target: Target = { org, object: name, dataset, changeTable, latestTable, fields };
      cache.set(key(org, table), target);
      return { ...target, seeded };
    });
  }

  /** Upserts every mirror record into the latest-state table, by page, with its change sequence number. */
  async function fillLatest(org: string, table: string, dataset: string, latestTable: string, fields: readonly BqField[]): Promise<number> {
    let after = '';
    let n = 0;
    for (;;) {
      const page = await repo.mirrorPage(db, org, table, after, 500);
      if (!page.length) return n;
      const rows = page.map((r) =>
        cdcRowOf({ id: '0', op: 'seed', version: r.version, seq: r.seq, committedAt: new Date(), record: r.record }, fields),
      );
      const out = await bq.upsert(dataset, latestTable, fields, rows);
      if (out.kind !== 'ok') throw new Error(`filling ${dataset}.${latestTable} failed: ${out.kind}`);
      n += page.length;
      after = page[page.length - 1]!.sfid;
    }
  }

  return {
    /** The change table of an object, made (and seeded) on first need. */
    async ensure(org: string, object: string): Promise<Target> {
      return cache.get(key(org, object.toLowerCase())) ?? sync(org, object);
    },
    /** Reads the mirror's columns again and adds the new ones (a record brought a field the table lacks). */
    refresh: (org: string, object: string) => sync(org, object),
    /** Drops and re-creates the change table and the latest-state table, then seeds them from the mirror. */
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
