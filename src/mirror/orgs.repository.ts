import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

/**
 * The org registry (INTERFACE.md, "Orgs"): an 18-character org id <-> an alias (its Postgres schema).
 * The alias row exists before its id is known, so the default org can be written to from the start.
 */
export async function ensureOrgAlias(db: Db, alias: string, source = 'env'): Promise<void> {
  await db.insertInto('sfmirror.orgs').values({ alias, source }).onConflict((oc) => oc.column('alias').doNothing()).execute();
}

/**
 * The alias a signed push from `orgId` writes to, or undefined when the org is unknown (403).
 * While no org id is registered, the first pushing org is registered under the default alias.
 */
export async function resolvePushOrg(db: Db, orgId: string, defaultAlias: string): Promise<string | undefined> {
  const known = await db.selectFrom('sfmirror.orgs').select('alias').where('org_id', '=', orgId).executeTakeFirst();
  if (known) return known.alias;
  const anyRegistered = await db.selectFrom('sfmirror.orgs').select('alias').where('org_id', 'is not', null).limit(1).executeTakeFirst();
  if (anyRegistered) return undefined;
  // Two first pushes from different orgs may race here: the conditional upsert lets one win.
  const claimed = await db
    .insertInto('sfmirror.orgs')
    .values({ alias: defaultAlias, org_id: orgId, source: 'push' })
    .onConflict((oc) => oc.column('alias').doUpdateSet({ org_id: orgId, updated_at: sql`now()` }).where('sfmirror.orgs.org_id', 'is', null))
    .returning('alias')
    .executeTakeFirst()
    .catch((e: { code?: string }) => (e.code === '23505' ? undefined : Promise.reject(e)));
  if (claimed) return claimed.alias;
  const again = await db.selectFrom('sfmirror.orgs').select('alias').where('org_id', '=', orgId).executeTakeFirst();
  return again?.alias;
}

export async function listOrgs(db: Db) {
  return db.selectFrom('sfmirror.orgs').select(['alias', 'org_id', 'source', 'instance_url', 'last_seq', 'last_applied_at', 'created_at']).orderBy('alias').execute();
}
