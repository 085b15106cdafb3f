import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../../db/database.ts';
import type { ClientSpec } from './client-spec.ts';

/** SQL of `sfmirror.api_clients`: read API clients managed with `sfmirror clients`. */
export interface StoredClient {
  readonly name: string;
  readonly spec: ClientSpec;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
}

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

/** A new random token: 32 bytes, base64url, with a prefix that secret scanners can recognise. */
export const newToken = () => `sfm_${randomBytes(32).toString('base64url')}`;

type Row = { name: string; spec: ClientSpec; created_at: Date; revoked_at: Date | null };
const toClient = (r: Row): StoredClient => ({ name: r.name, spec: r.spec, createdAt: r.created_at, revokedAt: r.revoked_at });

/**
 * Adds a client and returns its token, the only time it exists in clear. A revoked client's name
 * may be reused; an active one may not (undefined).
 */
export async function addClient(db: Db, name: string, spec: ClientSpec): Promise<string | undefined> {
  const token = newToken();
  const r = await sql<{ name: string }>`insert into sfmirror.api_clients (name, token_hash, spec)
    values (${name}, ${hashToken(token)}, ${JSON.stringify(spec)}::jsonb)
    on conflict (name) do update set token_hash = excluded.token_hash, spec = excluded.spec, created_at = now(), revoked_at = null
      where sfmirror.api_clients.revoked_at is not null
    returning name`.execute(db);
  return r.rows.length ? token : undefined;
}

export async function listClients(db: Db): Promise<StoredClient[]> {
  const r = await sql<Row>`select name, spec, created_at, revoked_at from sfmirror.api_clients order by name`.execute(db);
  return r.rows.map(toClient);
}

/** Revokes a client; false when no active client has that name. */
export async function revokeClient(db: Db, name: string): Promise<boolean> {
  const r = await sql`update sfmirror.api_clients set revoked_at = now() where name = ${name} and revoked_at is null`.execute(db);
  return Number(r.numAffectedRows ?? 0) > 0;
}

/** The active client whose token hashes to `tokenHash`. */
export async function findClientByTokenHash(db: Db, tokenHash: string): Promise<StoredClient | undefined> {
  const r = await sql<Row>`select name, spec, created_at, revoked_at from sfmirror.api_clients
    where token_hash = ${tokenHash} and revoked_at is null`.execute(db);
  return r.rows[0] && toClient(r.rows[0]);
}
