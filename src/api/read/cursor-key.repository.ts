import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../../db/database.ts';

/**
 * The key that signs read API cursors (src/api/read/cursor.ts), made once and kept in
 * sfmirror.settings so cursors stay valid across restarts and between several `serve` processes.
 */
export async function loadCursorKey(db: Db): Promise<Buffer> {
  await sql`insert into sfmirror.settings (key, value) values ('read_cursor_key', ${JSON.stringify(randomBytes(32).toString('base64'))}::jsonb)
    on conflict (key) do nothing`.execute(db);
  const r = await sql<{ value: string }>`select value from sfmirror.settings where key = 'read_cursor_key'`.execute(db);
  return Buffer.from(r.rows[0]!.value, 'base64');
}
