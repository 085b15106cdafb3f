import { createHmac, timingSafeEqual } from 'node:crypto';
import { AppError } from '../../lib/errors.ts';

/**
 * Opaque cursors: base64url JSON, so apps treat them as strings and the format can change. A list
 * cursor is a keyset position (the row's immutable primary key `id`, so updates between pages move
 * nothing: no record is skipped or repeated); a change cursor is an `_sfm_seq`. Both name their org
 * (and a list cursor its object) so a cursor is never silently applied to another table.
 * Decoding validates everything; a cursor only ever becomes a bigint parameter.
 *
 * Cursors are signed (HMAC-SHA256 with a key kept in sfmirror.settings) over their content AND the
 * caller's binding (client and row policy, see routes.ts): a cursor cannot be forged or edited, and
 * one client's cursor is refused for another client or another end user. Without this, a made-up
 * change cursor listed the ids of rows outside a client's policy as deletions.
 */
export interface CursorSigner {
  readonly key: Buffer;
  /** Who the cursor is for: the client and its row policy. */
  readonly bind: string;
}

/** The binding of a principal's cursors: its client name and row policy (JWT claims included). */
export const cursorBinding = (client: string, rowFilters: ReadonlyArray<{ object?: string | undefined; field: string; value: string }>) =>
  JSON.stringify([client, rowFilters.map((f) => [f.object ?? '', f.field.toLowerCase(), f.value])]);

const mac = (s: CursorSigner, body: string) =>
  createHmac('sha256', s.key).update(s.bind).update('\u0000').update(body).digest().subarray(0, 18);
const DIGITS = /^\d{1,19}$/;
const MAX_BIGINT = 9223372036854775807n;

const encode = (s: CursorSigner, o: object) => {
  const body = Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${body}.${mac(s, body).toString('base64url')}`;
};

function decode(s: CursorSigner, param: string, text: string): Record<string, unknown> {
  const bad = () => new AppError('BAD_REQUEST', `${param}: not a cursor this API issued (to this client); start again without it`);
  const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{24})$/.exec(text);
  if (text.length > 500 || !m) throw bad();
  const given = Buffer.from(m[2]!, 'base64url');
  if (given.length !== 18 || !timingSafeEqual(given, mac(s, m[1]!))) throw bad();
  try {
    const v: unknown = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8'));
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw bad();
    return v as Record<string, unknown>;
  } catch {
    throw bad();
  }
}

function position(param: string, v: unknown): bigint {
  if (typeof v !== 'string' || !DIGITS.test(v) || BigInt(v) > MAX_BIGINT)
    throw new AppError('BAD_REQUEST', `${param}: not a cursor this API issued`);
  return BigInt(v);
}

export const encodeListCursor = (s: CursorSigner, org: string, table: string, key: string | bigint) =>
  encode(s, { v: 2, g: org, o: table, k: String(key) });

export function decodeListCursor(s: CursorSigner, text: string, org: string, table: string): bigint {
  const c = decode(s, 'cursor', text);
  if (c.v !== 2 || c.g !== org || c.o !== table)
    throw new AppError('BAD_REQUEST', 'cursor: belongs to another object or org; start again without a cursor');
  return position('cursor', c.k);
}

/**
 * A change cursor holds the position `s` and the purge watermark `w` the API saw when it issued
 * it: a purge after that may have removed deletes the app has not read yet (see routes.ts).
 */
export type ChangeCursor = { seq: bigint; watermark: bigint };

export const encodeChangeCursor = (s: CursorSigner, org: string, seq: string | bigint, watermark: bigint = 0n) =>
  encode(s, { v: 2, g: org, s: String(seq), w: String(watermark) });

/** `since=0` (or a cursor at 0) starts from the beginning. */
export function decodeChangeCursor(s: CursorSigner, text: string, org: string): ChangeCursor {
  if (text === '0') return { seq: 0n, watermark: 0n };
  const c = decode(s, 'since', text);
  if (c.v !== 2 || c.g !== org) throw new AppError('BAD_REQUEST', 'since: belongs to another org; start again with since=0');
  return { seq: position('since', c.s), watermark: c.w === undefined ? 0n : position('since', c.w) };
}
