import { AppError } from '../../lib/errors.ts';

/**
 * Opaque cursors: base64url JSON, so apps treat them as strings and the format can change. A list
 * cursor is a keyset position (the row's immutable primary key `id`, so updates between pages move
 * nothing: no record is skipped or repeated); a change cursor is an `_sfm_seq`. Both name their org
 * (and a list cursor its object) so a cursor is never silently applied to another table.
 * Decoding validates everything; a cursor only ever becomes a bigint parameter.
 */
const DIGITS = /^\d{1,19}$/;
const MAX_BIGINT = 9223372036854775807n;

const encode = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

function decode(param: string, text: string): Record<string, unknown> {
  const bad = () => new AppError('BAD_REQUEST', `${param}: not a cursor this API issued`);
  if (text.length > 500 || !/^[A-Za-z0-9_-]+$/.test(text)) throw bad();
  try {
    const v: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
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

export const encodeListCursor = (org: string, table: string, key: string | bigint) => encode({ v: 1, g: org, o: table, k: String(key) });

export function decodeListCursor(text: string, org: string, table: string): bigint {
  const c = decode('cursor', text);
  if (c.v !== 1 || c.g !== org || c.o !== table)
    throw new AppError('BAD_REQUEST', 'cursor: belongs to another object or org; start again without a cursor');
  return position('cursor', c.k);
}

/**
 * A change cursor holds the position `s` and the purge watermark `w` the API saw when it issued
 * it: a purge after that may have removed deletes the app has not read yet (see routes.ts).
 */
export type ChangeCursor = { seq: bigint; watermark: bigint };

export const encodeChangeCursor = (org: string, seq: string | bigint, watermark: bigint = 0n) =>
  encode({ v: 1, g: org, s: String(seq), w: String(watermark) });

/** `since=0` (or a cursor at 0) starts from the beginning. */
export function decodeChangeCursor(text: string, org: string): ChangeCursor {
  if (text === '0') return { seq: 0n, watermark: 0n };
  const c = decode('since', text);
  if (c.v !== 1 || c.g !== org) throw new AppError('BAD_REQUEST', 'since: belongs to another org; start again with since=0');
  return { seq: position('since', c.s), watermark: c.w === undefined ? 0n : position('since', c.w) };
}
