import type { Change, FieldValue, Operation } from './change.ts';
import { isValidFieldName, isValidSobjectName, toId18 } from './names.ts';
import { makeVersion, parseSalesforceDateTime } from './version.ts';
import { MAX_FUTURE_SKEW_MS } from './apex-push.ts';

/**
 * Decodes one Change Data Capture event as CometD delivers it (`data` of the Bayeux message:
 * `{ schema, payload: { ChangeEventHeader, ...fields }, event: { replayId } }`) into Changes.
 * Pure. The shapes, in short:
 * - CREATE / UNDELETE carry all non-empty fields, UPDATE only the changed ones (explicit null clears),
 *   DELETE none; `recordIds` may name several records: the same change applies to each.
 * - Compound fields arrive nested (`BillingAddress: { Street }`, `Name: { FirstName }`,
 *   `Loc__c: { Latitude }`) and are flattened into their REST names (`BillingStreet`, `FirstName`,
 *   `Loc__Latitude__s`). On UPDATE, components not named in `changedFields` are dropped (they may
 *   arrive as null without having changed).
 * - A long text value may arrive as `{ diff }`: the field is left out and listed in `refetch`.
 * - GAP_* events carry no data: their records are listed in `refetch` (whole records).
 * - GAP_OVERFLOW and wildcard ids (`001*`) ask for a resync of the whole object.
 *
 * Version (README.md, "Change Data Capture", Ordering): the time is `commitTimestamp` (milliseconds), or the payload's
 * `LastModifiedDate` should it be later (clock skew): every event of a record, deletes included,
 * is ordered on the same clock. The tie-break is the event's replayId (stream order, and stable
 * across replays, so a replayed event is recognised as a duplicate), modulo 10^12 (the version's
 * tie-break width). REST re-reads and pushes use SystemModstamp (second precision, tie-break 0).
 * `commitNumber` can exceed 2^53: it is kept as a string, never used as a number.
 */
export type ReplayId = number | string;

export interface CdcHeader {
  readonly entityName: string;
  readonly changeType: string;
  readonly recordIds: readonly string[];
  readonly transactionKey: string;
  readonly sequenceNumber: number;
  readonly commitTimestamp: number;
  readonly commitNumber: string | undefined;
  readonly changeOrigin: string | undefined;
}

export interface Refetch {
  readonly object: string;
  readonly ids: readonly string[];
  /** Fields to re-read; undefined = the whole record (a GAP event: gone or IsDeleted = delete). */
  readonly fields?: readonly string[] | undefined;
  /** Version of the event: the re-read is at least this new. */
  readonly version: string;
}

export interface CdcEvent {
  readonly replayId: ReplayId;
  readonly header: CdcHeader;
  readonly changes: readonly Change[];
  readonly refetch: readonly Refetch[];
  readonly resync?: { readonly object: string; readonly reason: string } | undefined;
}

export type CdcDecodeResult = { ok: true; event: CdcEvent } | { ok: false; error: string; replayId?: ReplayId | undefined };

const OPERATION: Record<string, Operation> = { CREATE: 'insert', UPDATE: 'update', DELETE: 'delete', UNDELETE: 'undelete' };
const GAPS = new Set(['GAP_CREATE', 'GAP_UPDATE', 'GAP_DELETE', 'GAP_UNDELETE']);
const TIE_MOD = 10n ** 12n;
/** Payload keys that are not fields of the record. */
const SKIPPED = new Set(['ChangeEventHeader', 'Id', 'IsDeleted', 'attributes']);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The replayId as a tie-break: any integer, number or string, reduced modulo 10^12. */
export function replayTieBreak(replayId: ReplayId): number {
  const big = BigInt(typeof replayId === 'number' ? Math.trunc(replayId) : replayId);
  return Number(((big % TIE_MOD) + TIE_MOD) % TIE_MOD);
}

function validReplayId(v: unknown): v is ReplayId {
  return (typeof v === 'number' && Number.isInteger(v)) || (typeof v === 'string' && /^-?\d{1,30}$/.test(v));
}

export function decodeCdcEvent(data: unknown): CdcDecodeResult {
  if (!isObject(data) || !isObject(data.payload)) return { ok: false, error: 'event has no payload' };
  const replayId = isObject(data.event) ? data.event.replayId : undefined;
  if (!validReplayId(replayId)) return { ok: false, error: `event has no usable replayId (${JSON.stringify(replayId)})` };
  const payload = data.payload;
  const h = payload.ChangeEventHeader;
  if (!isObject(h)) return { ok: false, error: 'payload has no ChangeEventHeader', replayId };
  const entityName = h.entityName;
  if (!isValidSobjectName(entityName))
    return { ok: false, error: `entityName ${JSON.stringify(entityName)} is not an object API name`, replayId };
  const changeType = String(h.changeType);
  const commitTimestamp = typeof h.commitTimestamp === 'number' ? h.commitTimestamp : Number(h.commitTimestamp);
  if (!Number.isSafeInteger(commitTimestamp) || commitTimestamp < 0)
    return { ok: false, error: `commitTimestamp ${JSON.stringify(h.commitTimestamp)} is not epoch milliseconds`, replayId };
  if (!Array.isArray(h.recordIds) || !h.recordIds.every((x) => typeof x === 'string'))
    return { ok: false, error: 'recordIds is not a list of ids', replayId };
  const header: CdcHeader = {
    entityName,
    changeType,
    recordIds: h.recordIds as string[],
    transactionKey: typeof h.transactionKey === 'string' ? h.transactionKey : '',
    sequenceNumber: typeof h.sequenceNumber === 'number' ? h.sequenceNumber : 0,
    commitTimestamp,
    // JSON.parse has already rounded a number beyond 2^53; a string (or a safe number) is exact.
    commitNumber: h.commitNumber === undefined || h.commitNumber === null ? undefined : String(h.commitNumber),
    changeOrigin: typeof h.changeOrigin === 'string' ? h.changeOrigin : undefined,
  };
  const lmd = parseSalesforceDateTime(payload.LastModifiedDate);
  // The commit follows the modification: commitTimestamp >= LastModifiedDate (which has second precision).
  // A LastModifiedDate after the commit is impossible; one far ahead would pin the record ("newer
  // wins"), so beyond the commit plus the allowed skew it is not used.
  const usableLmd = lmd !== undefined && lmd <= commitTimestamp + MAX_FUTURE_SKEW_MS ? lmd : 0;
  const version = makeVersion(Math.max(commitTimestamp, usableLmd), replayTieBreak(replayId));
  const base = { replayId, header };

  if (changeType === 'GAP_OVERFLOW')
    return { ok: true, event: { ...base, changes: [], refetch: [], resync: { object: entityName, reason: 'GAP_OVERFLOW' } } };
  if (header.recordIds.some((id) => id.includes('*'))) {
    return {
      ok: true,
      event: {
        ...base,
        changes: [],
        refetch: [],
        resync: { object: entityName, reason: `wildcard recordIds (${header.recordIds.join(',')}) in ${changeType}` },
      },
    };
  }
  const ids: string[] = [];
  for (const raw of header.recordIds) {
    const id = toId18(raw);
    if (!id) return { ok: false, error: `recordId ${JSON.stringify(raw)} is not a Salesforce id`, replayId };
    ids.push(id);
  }
  if (GAPS.has(changeType))
    return { ok: true, event: { ...base, changes: [], refetch: ids.length ? [{ object: entityName, ids, version }] : [] } };
  const operation = OPERATION[changeType];
  if (!operation) return { ok: false, error: `unknown changeType ${JSON.stringify(changeType)}`, replayId };

  const changed = Array.isArray(h.changedFields) && operation === 'update' ? new Set(h.changedFields.map(String)) : undefined;
  const { fields, diffs, problems } = operation === 'delete' ? { fields: {}, diffs: [], problems: [] } : flattenFields(payload, changed);
  if (problems.length) return { ok: false, error: problems.join('; '), replayId };
  const changes = ids.map((id): Change => ({ object: entityName, operation, id, fields, version }));
  const refetch: Refetch[] = diffs.length ? [{ object: entityName, ids, fields: diffs, version }] : [];
  return { ok: true, event: { ...base, changes, refetch } };
}

/** The REST name of a compound field's component. */
export function flatName(compound: string, component: string): string {
  if (compound === 'Name') return component;
  if (compound.endsWith('Address')) return compound.slice(0, -'Address'.length) + component;
  // Custom geolocation fields: Loc__c.Latitude -> Loc__Latitude__s.
  if (compound.endsWith('__c')) return `${compound.slice(0, -3)}__${component}__s`;
  return compound + component;
}

function flattenFields(payload: Record<string, unknown>, changed: Set<string> | undefined) {
  const fields: Record<string, FieldValue> = {};
  const diffs: string[] = [];
  const problems: string[] = [];
  const put = (name: string, value: unknown, at: string) => {
    if (!isValidFieldName(name)) return void problems.push(`${at} is not a field API name`);
    if (isObject(value) && typeof value.diff === 'string' && Object.keys(value).length === 1) return void diffs.push(name);
    if (
      value === null ||
      typeof value === 'string' ||
      typeof value === 'boolean' ||
      (typeof value === 'number' && Number.isFinite(value))
    ) {
      fields[name] = value;
      return;
    }
    problems.push(`${at} is not a scalar value`);
  };
  for (const [key, value] of Object.entries(payload)) {
    if (SKIPPED.has(key)) continue;
    if (isObject(value) && !(typeof value.diff === 'string' && Object.keys(value).length === 1)) {
      const wholeChanged = changed?.has(key);
      for (const [part, v] of Object.entries(value)) {
        if (changed && !wholeChanged && !changed.has(`${key}.${part}`)) continue;
        put(flatName(key, part), v, `${key}.${part}`);
      }
      continue;
    }
    put(key, value, key);
  }
  return { fields, diffs, problems };
}
