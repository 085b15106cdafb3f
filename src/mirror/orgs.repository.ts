import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

/**
 * The org registry (README.md, "Several orgs: connecting by OAuth"): an 18-character org id <-> an alias (its Postgres schema).
 * The alias row exists before its id is known, so the default org can be written to from the start.
 */
export async function ensureOrgAlias(db: Db, alias: string, source = 'env'): Promise<void> {
  await db
    .insertInto('sfmirror.orgs')
    .values({ alias, source })
    .onConflict((oc) => oc.column('alias').doNothing())
    .execute();
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

/** The registered org with this alias and where it came from, or undefined. */
export async function findOrg(db: Db, alias: string): Promise<{ alias: string; source: string } | undefined> {
  return db.selectFrom('sfmirror.orgs').select(['alias', 'source']).where('alias', '=', alias).executeTakeFirst();
}

/** Whether any org is connected by OAuth (then sfmirror has API access without SF_* variables). */
export async function hasOAuthOrgs(db: Db): Promise<boolean> {
  return !!(await db.selectFrom('sfmirror.orgs').select('alias').where('source', '=', 'oauth').executeTakeFirst());
}

/** Whether an org is registered under `alias`. */
export async function orgExists(db: Db, alias: string): Promise<boolean> {
  return !!(await db.selectFrom('sfmirror.orgs').select('alias').where('alias', '=', alias).executeTakeFirst());
}

/** Every registered alias. */
export async function listOrgAliases(db: Db): Promise<string[]> {
  return (await db.selectFrom('sfmirror.orgs').select('alias').execute()).map((r) => r.alias);
}

export async function listOrgs(db: Db) {
  return db
    .selectFrom('sfmirror.orgs')
    .select([
      'alias',
      'org_id',
      'source',
      'instance_url',
      'last_seq',
      'last_applied_at',
      'created_at',
      'login_url',
      'user_id',
      'auth_state',
      'auth_error',
      'connected_at',
    ])
    .orderBy('alias')
    .execute();
}

/**
 * The alias a verified push writes to, given who signed it (README.md, "Signing keys per org"):
 * - signed with an org's own key: only that org, whose id the push must carry (an org whose id is not
 *   known yet learns it from its first push);
 * - signed with a deployment-wide key (environment): any registered org that has no keys of its own.
 * Anything else is refused with the reason (403), so one org's admin cannot write another org's mirror.
 */
export async function resolveSignedPushOrg(
  db: Db,
  orgId: string,
  defaultAlias: string,
  signer: { owner?: string | undefined; ownersWithKeys: ReadonlySet<string> },
): Promise<{ alias: string } | { refused: string }> {
  if (signer.owner) {
    const row = await db.selectFrom('sfmirror.orgs').select(['alias', 'org_id']).where('alias', '=', signer.owner).executeTakeFirst();
    if (!row) return { refused: `the key that signed this push belongs to org "${signer.owner}", which is no longer registered` };
    if (row.org_id === orgId) return { alias: row.alias };
    if (row.org_id === null) {
      const claimed = await db
        .updateTable('sfmirror.orgs')
        .set({ org_id: orgId, updated_at: sql`now()` })
        .where('alias', '=', row.alias)
        .where('org_id', 'is', null)
        .returning('alias')
        .executeTakeFirst()
        .catch((e: { code?: string }) => (e.code === '23505' ? undefined : Promise.reject(e)));
      if (claimed) return { alias: claimed.alias };
    }
    return { refused: `this push is signed with a key of org "${signer.owner}" but claims org ${orgId}` };
  }
  const alias = await resolvePushOrg(db, orgId, defaultAlias);
  if (!alias) return { refused: `org ${orgId} is not registered with this sfmirror` };
  if (signer.ownersWithKeys.has(alias))
    return { refused: `org "${alias}" has signing keys of its own: pushes signed with a deployment-wide key are refused` };
  return { alias };
}

/**
 * Registers the org id behind the configured alias (README.md, "Several orgs: connecting by OAuth").
 * Returns the org id the alias already holds when it is another org (the caller refuses to mirror it there).
 */
export async function registerOrg(db: Db, alias: string, orgId: string, instanceUrl: string): Promise<string | undefined> {
  const r = await sql<{
    org_id: string | null;
  }>`insert into sfmirror.orgs (alias, org_id, source, instance_url) values (${alias}, ${orgId}, 'env', ${instanceUrl})
    on conflict (alias) do update set org_id = coalesce(sfmirror.orgs.org_id, excluded.org_id), instance_url = excluded.instance_url, updated_at = now()
    returning org_id`.execute(db);
  const held = r.rows[0]?.org_id?.trim();
  return held && held !== orgId ? held : undefined;
}
