import t from 'tap';
import fc from 'fast-check';
import type { FieldValue } from '../../src/changes/change.ts';
import { parseSalesforceDateTime } from '../../src/changes/version.ts';
import { fitValue, type PgType } from '../../src/mirror/field-types.ts';

// fitValue's shortcuts (JSON numbers without BigInt, text without a NUL untouched, datetimes parsed
// once per distinct value) against the plain rules they shortcut, written out here.
const INT = /^[+-]?\d+$/;
const NUMERIC = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$/;
function reference(pgType: PgType, value: FieldValue): { ok: boolean; value?: FieldValue } {
  if (value === null) return { ok: true, value: null };
  if (pgType === 'text') return { ok: true, value: typeof value === 'string' ? value.replace(/\u0000/g, '') : String(value) };
  if (pgType === 'integer' || pgType === 'bigint') {
    const s = typeof value === 'number' ? (Number.isInteger(value) ? String(value) : '') : typeof value === 'string' ? value.trim() : '';
    if (!INT.test(s)) return { ok: false };
    const n = BigInt(s);
    const limit = pgType === 'integer' ? 2n ** 31n : 2n ** 63n;
    return n < -limit || n >= limit ? { ok: false } : { ok: true, value: s };
  }
  if (pgType === 'numeric') {
    const s = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : '';
    return NUMERIC.test(s) ? { ok: true, value: s } : { ok: false };
  }
  const ms = parseSalesforceDateTime(value);
  return ms === undefined || new Date(ms).getUTCFullYear() > 9999 ? { ok: false } : { ok: true, value: new Date(ms).toISOString() };
}
const same = (pgType: PgType, v: FieldValue) => {
  const got = fitValue(pgType, v);
  const want = reference(pgType, v);
  return got.ok === want.ok && (!got.ok || got.value === want.value);
};

t.test('numbers, text and datetimes fit as the plain rules say', async (t) => {
  const numbers = fc.oneof(
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.constantFrom(2 ** 31, -(2 ** 31), 2 ** 31 - 1, 2 ** 53, 2 ** 63, -(2 ** 63), 1e21, 0.1, -0),
  );
  fc.assert(fc.property(numbers, (n) => same('integer', n) && same('bigint', n) && same('numeric', n) && same('text', n)));
  fc.assert(fc.property(fc.string(), (s) => same('text', s) && same('integer', s) && same('numeric', s)));
  t.same(fitValue('text', 'a\u0000b'), { ok: true, value: 'ab' }, 'NUL removed');
  const stamps = fc.oneof(
    fc.date({ min: new Date('1970-01-01'), max: new Date('9999-12-31'), noInvalidDate: true }).map((d) => d.toISOString()),
    fc.constantFrom('2024-03-10T12:00:00+0000', '2024-03-10T12:00:00.123456Z', '2024-02-30T00:00:00.000Z', 'soon', '1969-12-31T23:59:59Z'),
  );
  // Twice each: the second answer comes from the cache.
  fc.assert(fc.property(stamps, (s) => same('timestamptz', s) && same('timestamptz', s)));
  t.pass('fast paths agree with the rules');
});
