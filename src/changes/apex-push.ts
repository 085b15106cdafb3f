import { OPERATIONS, type Change, type FieldTypes, type FieldValue, type Operation } from './change.ts';
import { isValidFieldName, isValidSobjectName, toId18, idProblem } from './names.ts';
import { makeVersion, parseSalesforceDateTime } from './version.ts';

/**
 * Decodes the body of `POST /ingest/apex` (README.md, "Pushing changes") into Changes. Pure: validates everything
 * and reports one message per problem, so the caller can refuse the whole batch with a 400 that
 * names each bad change, before anything is written.
 */
export type ApexPush = { orgId: string; changes: Change[]; types: FieldTypes };
export type DecodeResult = { ok: true; push: ApexPush } | { ok: false; errors: string[] };

export const MAX_CHANGES_PER_PUSH = 10_000;
/** Long text area and rich text fields hold at most 131,072 characters in Salesforce. */
export const MAX_TEXT_LENGTH = 131_072;
const MAX_ERRORS = 100;

export interface DecodeOptions {
  /** When set (SF_OBJECTS), changes to other objects are refused. */
  readonly objects?: readonly string[] | undefined;
  /**
   * Now, in epoch ms: a SystemModstamp later than now plus MAX_FUTURE_SKEW_MS is refused, since
   * "newer wins" would pin such a record against every real change (README, "Security").
   */
  readonly nowMs?: number | undefined;
}

/** How far a pushed SystemModstamp may lie ahead of sfmirror's clock (clock skew between the two). */
export const MAX_FUTURE_SKEW_MS = 5 * 60_000;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown) => {
  const s =
    typeof v === 'string'
      ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)
      : Array.isArray(v)
        ? 'an array'
        : v === null
          ? 'null'
          : typeof v;
  return s;
};

export function decodeApexPush(body: unknown, opts: DecodeOptions = {}): DecodeResult {
  const errors: string[] = [];
  if (!isPlainObject(body)) return { ok: false, errors: ['body must be a JSON object with orgId and changes'] };
  for (const key of Object.keys(body)) {
    if (!['orgId', 'changes', 'types'].includes(key)) errors.push(`unknown top-level key ${show(key)} (expected orgId, changes, types)`);
  }
  const orgId = toId18(body.orgId);
  if (!orgId) errors.push(`orgId: ${show(body.orgId)} ${idProblem(body.orgId)}`);
  else if (!orgId.startsWith('00D')) errors.push(`orgId: ${show(body.orgId)} is not a Salesforce org id (00D...)`);
  const types = decodeTypes(body.types, errors);
  const allowed = opts.objects ? new Set(opts.objects.map((o) => o.toLowerCase())) : undefined;
  const changes: Change[] = [];
  if (!Array.isArray(body.changes)) {
    errors.push('changes: must be an array of changes');
  } else if (body.changes.length === 0) {
    errors.push('changes: must hold at least one change');
  } else if (body.changes.length > MAX_CHANGES_PER_PUSH) {
    errors.push(`changes: at most ${MAX_CHANGES_PER_PUSH} changes per push, got ${body.changes.length}; split the batch`);
  } else {
    body.changes.forEach((raw, i) => {
      if (errors.length >= MAX_ERRORS) return;
      const c = decodeChange(raw, `changes[${i}]`, errors, allowed, opts.nowMs);
      if (c) changes.push(c);
    });
  }
  if (errors.length) return { ok: false, errors: errors.slice(0, MAX_ERRORS) };
  return { ok: true, push: { orgId: orgId!, changes, types } };
}

function decodeChange(
  raw: unknown,
  at: string,
  errors: string[],
  allowed: Set<string> | undefined,
  nowMs: number | undefined,
): Change | undefined {
  const before = errors.length;
  if (!isPlainObject(raw)) {
    errors.push(`${at}: must be an object with object, operation and record`);
    return undefined;
  }
  for (const key of Object.keys(raw)) {
    if (!['object', 'operation', 'record'].includes(key)) errors.push(`${at}: unknown key ${show(key)}`);
  }
  const object = raw.object;
  if (!isValidSobjectName(object)) errors.push(`${at}.object: ${show(object)} is not a Salesforce object API name`);
  else if (allowed && !allowed.has(object.toLowerCase())) errors.push(`${at}.object: ${object} is not mirrored here (SF_OBJECTS)`);
  const operation = raw.operation;
  if (typeof operation !== 'string' || !(OPERATIONS as readonly string[]).includes(operation)) {
    errors.push(`${at}.operation: ${show(operation)} must be one of ${OPERATIONS.join(', ')}`);
  }
  const record = raw.record;
  if (!isPlainObject(record)) {
    errors.push(`${at}.record: must be an object with Id and SystemModstamp`);
    return undefined;
  }
  const id = toId18(record.Id);
  if (!id) errors.push(`${at}.record.Id: ${show(record.Id)} ${idProblem(record.Id)}`);
  const stampField = record.SystemModstamp !== undefined ? 'SystemModstamp' : 'LastModifiedDate';
  const ms = parseSalesforceDateTime(record[stampField]);
  if (ms === undefined) {
    errors.push(
      `${at}.record.SystemModstamp: ${show(record[stampField])} must be an ISO 8601 datetime (the record's SystemModstamp, or the time of the delete)`,
    );
  } else if (nowMs !== undefined && ms > nowMs + MAX_FUTURE_SKEW_MS) {
    errors.push(
      `${at}.record.${stampField}: ${show(record[stampField])} is in the future (more than ${MAX_FUTURE_SKEW_MS / 60_000} minutes ahead of this server's clock)`,
    );
  }
  const fields = decodeFields(record, `${at}.record`, errors);
  if (errors.length > before) return undefined;
  return { object: object as string, operation: operation as Operation, id: id!, fields, version: makeVersion(ms!) };
}

// Fields the envelope owns: Id is the row key, IsDeleted follows from the operation. Salesforce
// field names are case-insensitive, so `ID` or `ISDELETED` are these too (never stored as fields).
const SKIPPED_KEYS = new Set(['attributes', 'id', 'isdeleted']);

function decodeFields(record: Record<string, unknown>, at: string, errors: string[]): Record<string, FieldValue> {
  const fields: Record<string, FieldValue> = {};
  for (const [key, value] of Object.entries(record)) {
    if (SKIPPED_KEYS.has(key.toLowerCase())) continue;
    if (!isValidFieldName(key)) {
      errors.push(`${at}: ${show(key)} is not a Salesforce field API name`);
      continue;
    }
    if (isPlainObject(value) && /Address$/.test(key)) {
      // Apex serialises compound address fields as a nested object (`BillingAddress: { city, ... }`);
      // the mirror keeps their flat components (`BillingCity`) as the REST API returns them.
      const prefix = key.slice(0, -'Address'.length);
      for (const [part, v] of Object.entries(value)) {
        const flat = prefix + part.charAt(0).toUpperCase() + part.slice(1);
        if (!isValidFieldName(flat)) errors.push(`${at}.${key}: ${show(part)} is not an address component`);
        else if (checkScalar(v, `${at}.${key}.${part}`, errors) && !Object.hasOwn(fields, flat)) fields[flat] = v as FieldValue;
      }
      continue;
    }
    if (checkScalar(value, `${at}.${key}`, errors)) fields[key] = value as FieldValue;
  }
  return fields;
}

function checkScalar(value: unknown, at: string, errors: string[]): boolean {
  if (value === null || typeof value === 'boolean') return true;
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return true;
    errors.push(`${at}: must be a finite number`);
    return false;
  }
  if (typeof value === 'string') {
    if (value.length > MAX_TEXT_LENGTH) {
      errors.push(`${at}: text longer than ${MAX_TEXT_LENGTH} characters (Salesforce's largest text field)`);
      return false;
    }
    // PostgreSQL's text and jsonb refuse NUL and unpaired UTF-16 surrogates; Salesforce cannot hold
    // them either, so such a value is a sender's bug: refused here, by field, not a 500 later.
    if (value.includes('\u0000')) {
      errors.push(`${at}: contains the NUL character (\\u0000), which cannot be stored`);
      return false;
    }
    if (!value.isWellFormed()) {
      errors.push(`${at}: contains an unpaired UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode`);
      return false;
    }
    return true;
  }
  errors.push(`${at}: must be a string, number, boolean or null, got ${show(value)}`);
  return false;
}

function decodeTypes(raw: unknown, errors: string[]): FieldTypes {
  if (raw === undefined || raw === null) return {};
  if (!isPlainObject(raw)) {
    errors.push('types: must map object names to { field: type }');
    return {};
  }
  const out: Record<string, Record<string, string>> = {};
  for (const [object, fields] of Object.entries(raw)) {
    if (!isValidSobjectName(object)) {
      errors.push(`types: ${show(object)} is not a Salesforce object API name`);
      continue;
    }
    if (!isPlainObject(fields)) {
      errors.push(`types.${object}: must map field names to type names`);
      continue;
    }
    const m: Record<string, string> = {};
    for (const [field, type] of Object.entries(fields)) {
      if (!isValidFieldName(field)) errors.push(`types.${object}: ${show(field)} is not a Salesforce field API name`);
      else if (typeof type !== 'string' || !/^[A-Za-z_]{2,40}$/.test(type))
        errors.push(`types.${object}.${field}: ${show(type)} is not a Salesforce field type`);
      else m[field] = type.toLowerCase();
    }
    out[object] = m;
  }
  return out;
}
