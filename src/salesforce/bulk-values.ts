import { parseResultCsv } from './bulk.ts';
import type { SfRecord } from './client.ts';

const NUMERIC = new Set(['int', 'double', 'currency', 'percent', 'long']);

/**
 * A Bulk API 2.0 CSV row -> a record shaped as REST returns it. Bulk CSV values are all strings and
 * an empty string stands for null (Bulk API 2.0 Developer Guide, "Get Results for a Query Job"), so the field's describe
 * type says what a value is: booleans and numbers become JSON ones, dates and datetimes stay ISO
 * strings (the mirror's columns parse them). A number Salesforce wrote that JS cannot read stays a
 * string: the mirror keeps it in `_sfm_fields` and reports it rather than guessing.
 */
export function typedBulkRecord(row: Record<string, string>, types: Readonly<Record<string, string>>): SfRecord {
  const out: Record<string, string | number | boolean | null> = {};
  for (const [k, v] of Object.entries(row)) {
    const type = k === 'IsDeleted' ? 'boolean' : types[k];
    if (v === '') out[k] = null;
    else if (type === 'boolean') out[k] = v === 'true';
    else if (type && NUMERIC.has(type)) {
      const n = Number(v);
      out[k] = Number.isFinite(n) ? n : v;
    } else out[k] = v;
  }
  return out as SfRecord;
}

/** A Bulk CSV results page (readBulkCsvPage) decoded into records, typed by describe. */
export function decodeBulkCsv(csv: string, types: Readonly<Record<string, string>>): SfRecord[] {
  return parseResultCsv(csv).map((row) => typedBulkRecord(row, types));
}
