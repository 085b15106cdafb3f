import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import { isValidAlias } from '../changes/names.ts';
import { AppError } from '../lib/errors.ts';

/**
 * Orgs connected by OAuth (README.md "Orgs"; migration 0008): pending OAuth states, the org's
 * identity and encrypted refresh token, its auth state, and the signing keys that belong to it.
 * Secrets arrive here sealed (src/lib/secret-box.ts); this file never sees plain tokens.
 */

export interface PendingState {
  alias: string;
  loginUrl: string;
  redirectUri: string;
  verifierEnc: string;
}

export async function saveOAuthState(db: Db, stateHash: string, s: PendingState, expiresAt: Date): Promise<void> {
  // Old states are of no use to anyone: drop them while we are here.
  await sql`delete from sfmirror.oauth_states where expires_at < now() - interval '1 day'`.execute(db);
  await sql`insert into sfmirror.oauth_states (state_hash, alias, login_url, redirect_uri, verifier_enc, expires_at)
            values (${stateHash}, ${s.alias}, ${s.loginUrl}, ${s.redirectUri}, ${s.verifierEnc}, ${expiresAt})`.execute(db);
}

/**
 * Takes a state for good (single use: the update that marks it used is what wins a race), then checks
 * its age. An unknown, reused or expired state is refused with the reason.
 */
export async function takeOAuthState(db: Db, stateHash: string, now: Date): Promise<PendingState> {
  const taken = await sql<{ alias: string; login_url: string; redirect_uri: string; verifier_enc: string; expires_at: Date }>`
    update sfmirror.oauth_states set used_at = ${now} where state_hash = ${stateHash} and used_at is null
    returning alias, login_url, redirect_uri, verifier_enc, expires_at`.execute(db);
  const row = taken.rows[0];
  if (!row) {
    const seen = await sql`select 1 from sfmirror.oauth_states where state_hash = ${stateHash}`.execute(db);
    throw new AppError(
      'BAD_REQUEST',
      seen.rows.length
        ? 'this OAuth state was already used: start again from /oauth/authorize'
        : 'unknown OAuth state: start from /oauth/authorize',
    );
  }
  if (new Date(row.expires_at).getTime() < now.getTime())
    throw new AppError('BAD_REQUEST', 'this OAuth state has expired: start again from /oauth/authorize');
  return { alias: row.alias, loginUrl: row.login_url, redirectUri: row.redirect_uri, verifierEnc: row.verifier_enc };
}

export interface ConnectedOrg {
  alias: string;
  orgId: string;
  userId: string;
  identityUrl: string;
  instanceUrl: string;
  loginUrl: string;
  refreshTokenEnc: string;
}

/**
 * Registers (or reconnects) an org under its alias. An alias already holding another org, and an
 * org already registered under another alias, are refused (409) rather than silently moved.
 */
export async function saveConnectedOrg(db: Db, o: ConnectedOrg): Promise<void> {
  if (!isValidAlias(o.alias)) throw new AppError('BAD_REQUEST', `"${o.alias}" is not a usable alias`);
  await db.transaction().execute(async (trx) => {
    const byId = await trx.selectFrom('sfmirror.orgs').select('alias').where('org_id', '=', o.orgId).executeTakeFirst();
    if (byId && byId.alias !== o.alias)
      throw new AppError(
        'CONFLICT',
        `org ${o.orgId} is already connected as "${byId.alias}"; remove it first (sfmirror orgs remove ${byId.alias}) or reconnect under that alias`,
      );
    const byAlias = await trx.selectFrom('sfmirror.orgs').select(['org_id']).where('alias', '=', o.alias).forUpdate().executeTakeFirst();
    if (byAlias?.org_id && byAlias.org_id !== o.orgId)
      throw new AppError('CONFLICT', `alias "${o.alias}" already belongs to org ${byAlias.org_id}; choose another alias`);
    await sql`insert into sfmirror.orgs (alias, org_id, source, instance_url, login_url, user_id, identity_url, refresh_token_enc, auth_state, auth_error, connected_at)
      values (${o.alias}, ${o.orgId}, 'oauth', ${o.instanceUrl}, ${o.loginUrl}, ${o.userId}, ${o.identityUrl}, ${o.refreshTokenEnc}, 'connected', null, now())
      on conflict (alias) do update set org_id = excluded.org_id, source = 'oauth', instance_url = excluded.instance_url, login_url = excluded.login_url,
        user_id = excluded.user_id, identity_url = excluded.identity_url, refresh_token_enc = excluded.refresh_token_enc,
        auth_state = 'connected', auth_error = null, connected_at = now(), updated_at = now()`.execute(trx);
  });
}

export interface OAuthOrgRow {
  alias: string;
  orgId: string;
  instanceUrl: string;
  loginUrl: string;
  refreshTokenEnc: string;
  authState: string;
  connectedAt: Date;
}

/** Orgs connected by OAuth, with what is needed to open their sessions. */
export async function listOAuthOrgs(db: Db): Promise<OAuthOrgRow[]> {
  const r = await sql<{
    alias: string;
    org_id: string;
    instance_url: string;
    login_url: string;
    refresh_token_enc: string;
    auth_state: string;
    connected_at: Date;
  }>`
    select alias, org_id, instance_url, login_url, refresh_token_enc, auth_state, connected_at from sfmirror.orgs
    where source = 'oauth' and refresh_token_enc is not null order by alias`.execute(db);
  return r.rows.map((x) => ({
    alias: x.alias,
    orgId: x.org_id,
    instanceUrl: x.instance_url,
    loginUrl: x.login_url,
    refreshTokenEnc: x.refresh_token_enc,
    authState: x.auth_state,
    connectedAt: x.connected_at,
  }));
}

/**
 * 'revoked' with Salesforce's words when the refresh token stops working (until connected again);
 * 'locked' when the stored token cannot be decrypted (key missing or wrong); 'connected' on success.
 */
export async function setAuthState(
  db: Db,
  alias: string,
  state: 'connected' | 'revoked' | 'locked',
  error: string | null,
  connectedAt?: Date,
): Promise<void> {
  // connectedAt guards against marking a newer connection (reconnected meanwhile) as revoked;
  // JavaScript dates hold milliseconds, Postgres microseconds.
  await sql`update sfmirror.orgs set auth_state = ${state}, auth_error = ${error}, updated_at = now()
            where alias = ${alias} and (${connectedAt ?? null}::timestamptz is null or date_trunc('milliseconds', connected_at) = ${connectedAt ?? null})`.execute(
    db,
  );
}

export async function updateRefreshTokenEnc(db: Db, alias: string, from: string, to: string): Promise<void> {
  await sql`update sfmirror.orgs set refresh_token_enc = ${to} where alias = ${alias} and refresh_token_enc = ${from}`.execute(db);
}

/**
 * Removes an org: its registration, tokens, keys, jobs, checkpoints (cascade), queued warehouse
 * changes, and its mirror schema. One transaction: a half-removed org never shows.
 */
export async function removeOrg(db: Db, alias: string): Promise<{ removed: boolean; tables: number }> {
  if (!isValidAlias(alias)) return { removed: false, tables: 0 };
  return db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('sfmirror.orgs').select('alias').where('alias', '=', alias).forUpdate().executeTakeFirst();
    if (!row) return { removed: false, tables: 0 };
    const tables = await trx
      .selectFrom('sfmirror.mirror_objects')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('org_alias', '=', alias)
      .executeTakeFirst();
    await trx.deleteFrom('sfmirror.outbox').where('org_alias', '=', alias).execute();
    await trx.deleteFrom('sfmirror.type_problems').where('org_alias', '=', alias).execute();
    await trx.deleteFrom('sfmirror.orgs').where('alias', '=', alias).execute();
    // The alias passed isValidAlias and is quoted as an identifier: never spliced as text.
    await sql`drop schema if exists ${sql.id(alias)} cascade`.execute(trx);
    return { removed: true, tables: Number(tables?.n ?? 0) };
  });
}

// --- per-org signing keys ------------------------------------------------------------------------

export interface OrgKeyRow {
  id: number;
  alias: string;
  kind: 'hmac' | 'rsa';
  secretEnc: string | null;
  publicKey: string | null;
  label: string | null;
  createdAt: Date;
}

export async function addOrgKey(
  db: Db,
  k: { alias: string; kind: 'hmac' | 'rsa'; secretEnc?: string; publicKey?: string; label?: string | undefined },
): Promise<number> {
  const org = await db.selectFrom('sfmirror.orgs').select('alias').where('alias', '=', k.alias).executeTakeFirst();
  if (!org) throw new AppError('NOT_FOUND', `no org "${k.alias}" (see sfmirror orgs list)`);
  const r = await sql<{ id: string }>`insert into sfmirror.org_ingest_keys (org_alias, kind, secret_enc, public_key, label)
    values (${k.alias}, ${k.kind}, ${k.secretEnc ?? null}, ${k.publicKey ?? null}, ${k.label ?? null}) returning id`.execute(db);
  return Number(r.rows[0]!.id);
}

/** Keys in use (not revoked), of every org or one. */
export async function listOrgKeys(db: Db, alias?: string): Promise<OrgKeyRow[]> {
  const r = await sql<{
    id: string;
    org_alias: string;
    kind: 'hmac' | 'rsa';
    secret_enc: string | null;
    public_key: string | null;
    label: string | null;
    created_at: Date;
  }>`
    select id, org_alias, kind, secret_enc, public_key, label, created_at from sfmirror.org_ingest_keys
    where revoked_at is null and (${alias ?? null}::text is null or org_alias = ${alias ?? null}) order by id`.execute(db);
  return r.rows.map((x) => ({
    id: Number(x.id),
    alias: x.org_alias,
    kind: x.kind,
    secretEnc: x.secret_enc,
    publicKey: x.public_key,
    label: x.label,
    createdAt: x.created_at,
  }));
}

export async function revokeOrgKey(db: Db, alias: string, id: number): Promise<boolean> {
  const r =
    await sql`update sfmirror.org_ingest_keys set revoked_at = now() where id = ${id} and org_alias = ${alias} and revoked_at is null`.execute(
      db,
    );
  return Number(r.numAffectedRows ?? 0) > 0;
}

export async function updateOrgKeySecret(db: Db, id: number, from: string, to: string): Promise<void> {
  await sql`update sfmirror.org_ingest_keys set secret_enc = ${to} where id = ${id} and secret_enc = ${from}`.execute(db);
}
