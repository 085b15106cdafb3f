import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

/** SQL of `sfmirror.console_sessions`: browser sessions of the operator console (hashes only). */

export async function insertSession(db: Db, idHash: string, tokenPrint: string, expiresAt: Date): Promise<void> {
  // Expired sessions are swept here: sign-ins are rare, so this keeps the table small without a timer.
  await sql`delete from sfmirror.console_sessions where expires_at < now() - interval '1 day'`.execute(db);
  await sql`insert into sfmirror.console_sessions (id_hash, token_print, expires_at) values (${idHash}, ${tokenPrint}, ${expiresAt})`.execute(
    db,
  );
}

/** The session's expiry when it is live (not expired, not revoked, made with the current admin token). */
export async function liveSession(db: Db, idHash: string, tokenPrint: string): Promise<Date | undefined> {
  const r = await sql<{ expires_at: Date }>`select expires_at from sfmirror.console_sessions
    where id_hash = ${idHash} and token_print = ${tokenPrint} and revoked_at is null and expires_at > now()`.execute(db);
  return r.rows[0]?.expires_at;
}

export async function revokeSession(db: Db, idHash: string): Promise<void> {
  await sql`update sfmirror.console_sessions set revoked_at = now() where id_hash = ${idHash} and revoked_at is null`.execute(db);
}
