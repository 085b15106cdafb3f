import type { Db } from '../../db/database.ts';
import type { PgType } from '../../mirror/field-types.ts';
import { listOrgAliases } from '../../mirror/orgs.repository.ts';
import { readMirrorCatalog } from './catalog.repository.ts';

/**
 * What the mirror holds, for the read path: per org, its objects and their columns, from
 * `sfmirror.mirror_objects` / `mirror_columns` (written by mirror/schema.ts). Names from the query
 * string are looked up here before they reach SQL. Tables and columns only ever get added, so the
 * cache is reloaded when a name is missing, never expired; concurrent misses share one reload.
 */
export interface ReadColumn {
  /** Field API name as the mirror first saw it. */
  readonly field: string;
  readonly column: string;
  readonly pgType: PgType;
}

export interface ReadObject {
  readonly org: string;
  /** Object API name as Salesforce spells it. */
  readonly object: string;
  readonly table: string;
  /** Lower-case field name -> column. */
  readonly columns: ReadonlyMap<string, ReadColumn>;
}

type OrgCatalog = { objects: Map<string, ReadObject> };

const BUILTIN = new Set(['id', 'isdeleted']);
const SYSTEM_MODSTAMP: ReadColumn = { field: 'SystemModstamp', column: 'systemmodstamp', pgType: 'timestamptz' };

export function createCatalog(db: Db) {
  let orgs: Promise<Set<string>> | undefined;
  const byOrg = new Map<string, Promise<OrgCatalog>>();

  const loadOrgs = async () => new Set(await listOrgAliases(db));

  async function loadOrg(org: string): Promise<OrgCatalog> {
    const { objects: objs, columns: cols } = await readMirrorCatalog(db, org);
    const objects = new Map<string, ReadObject>();
    for (const o of objs) {
      const columns = new Map<string, ReadColumn>([['systemmodstamp', SYSTEM_MODSTAMP]]);
      for (const c of cols)
        if (c.table_name === o.table_name)
          columns.set(c.column_name, { field: c.field, column: c.column_name, pgType: c.pg_type as PgType });
      objects.set(o.table_name, { org, object: o.object, table: o.table_name, columns });
    }
    return { objects };
  }

  const reload = (org: string) => {
    const p = loadOrg(org);
    byOrg.set(org, p);
    p.catch(() => byOrg.delete(org));
    return p;
  };

  return {
    /** Whether `alias` is a registered org. */
    async hasOrg(alias: string): Promise<boolean> {
      if ((await (orgs ??= loadOrgs())).has(alias)) return true;
      orgs = loadOrgs();
      orgs.catch(() => {
        orgs = undefined;
      });
      return (await orgs).has(alias);
    },
    /**
     * The object's table in `org`, or undefined when nothing of it is mirrored there. `fields`
     * (API names) that the cached copy lacks trigger one reload: columns are added at run time.
     */
    async object(org: string, name: string, fields: Iterable<string> = []): Promise<ReadObject | undefined> {
      const key = name.toLowerCase();
      const found = (await (byOrg.get(org) ?? reload(org))).objects.get(key);
      if (found && [...fields].every((f) => found.columns.has(f.toLowerCase()) || BUILTIN.has(f.toLowerCase()))) return found;
      return (await reload(org)).objects.get(key);
    },
    /** Every object mirrored in `org`. */
    async objects(org: string): Promise<ReadObject[]> {
      return [...(await reload(org)).objects.values()];
    },
  };
}

export type Catalog = ReturnType<typeof createCatalog>;
