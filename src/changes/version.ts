/**
 * A change's version orders it against every other change to the same record (README.md, "Newer wins,
 * per field"). It is the record's modification time in UTC milliseconds plus a tie-break (for CDC,
 * stream order; 0 for Apex pushes and backfills), encoded as a fixed-width string so that string
 * comparison is version comparison, in JavaScript and in SQL alike, without floating point.
 */
const MS_WIDTH = 15;
const TIE_WIDTH = 12;

export function makeVersion(epochMs: number, tieBreak = 0): string {
  if (!Number.isSafeInteger(epochMs) || epochMs < 0) throw new RangeError(`bad version time ${epochMs}`);
  if (!Number.isSafeInteger(tieBreak) || tieBreak < 0 || tieBreak >= 10 ** TIE_WIDTH) throw new RangeError(`bad tie-break ${tieBreak}`);
  return `${String(epochMs).padStart(MS_WIDTH, '0')}.${String(tieBreak).padStart(TIE_WIDTH, '0')}`;
}

const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;

/** Parses a Salesforce datetime (`2024-03-10T12:00:00.000Z`, `...+0000`) to epoch ms, or undefined. */
export function parseSalesforceDateTime(value: unknown): number | undefined {
  if (typeof value !== 'string' || !ISO_DATETIME.test(value)) return undefined;
  // Date.parse does not accept `+0000` without a colon, which Salesforce REST uses.
  const normalised = value.replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
  const ms = Date.parse(normalised);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}
