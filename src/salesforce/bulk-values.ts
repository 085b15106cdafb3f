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

/**
 * REST query records (as readModifiedSince returns a page) -> the Bulk API 2.0 CSV of the same
 * records, header first, so that a REST page takes the mirror's CSV path (mirror.applyCsvPage)
 * and ends as decodeRestRecord and the row path would leave it. The CSV can say only what Bulk
 * says: a null is an empty cell, and a cell's JSON type comes from the field's describe type
 * (typedBulkRecord). A page whose JSON the CSV would not reproduce comes back as `{ unfit }`, with
 * the first reason, for the row path: a JSON number or boolean in a field describe does not type
 * so (or a string in one it does), an empty string (Bulk's null), a nested value, records that do
 * not all have the same fields (a missing field is left alone by the row path, a null is written).
 */
export function restRecordsAsCsv(
  records: readonly SfRecord[],
  types: Readonly<Record<string, string>>,
): { csv: string } | { unfit: string } {
  if (records.length === 0) return { unfit: 'no records' };
  const lower = new Map(Object.entries(types).map(([f, t]) => [f.toLowerCase(), t]));
  const header = Object.keys(records[0]!).filter((k) => k !== 'attributes');
  const odd = header.find((k) => !/^[A-Za-z0-9_]+$/.test(k));
  if (odd !== undefined) return { unfit: `${JSON.stringify(odd)} is not a field name` };
  const kinds = header.map((k) => {
    const type = k === 'IsDeleted' ? 'boolean' : (types[k] ?? lower.get(k.toLowerCase()));
    return type === 'boolean' ? 'boolean' : type && NUMERIC.has(type) ? 'number' : 'string';
  });
  const lines = [header.join(',')];
  for (const r of records) {
    let n = 0;
    for (const k in r) if (k !== 'attributes') n++;
    if (n !== header.length) return { unfit: 'the records do not all have the same fields' };
    let line = '';
    for (let i = 0; i < header.length; i++) {
      const k = header[i]!;
      if (!(k in r)) return { unfit: 'the records do not all have the same fields' };
      const v: unknown = r[k];
      let cell: string;
      if (v === null) cell = '';
      else if (typeof v === 'string') {
        if (kinds[i] !== 'string') return { unfit: `${k} holds a string, its describe type is not text` };
        if (v === '') return { unfit: `${k} holds an empty string (Bulk's null)` };
        cell = `"${v.replaceAll('"', '""')}"`;
      } else if (typeof v === 'boolean') {
        if (kinds[i] !== 'boolean') return { unfit: `${k} holds a boolean, its describe type is not boolean` };
        cell = v ? 'true' : 'false';
      } else if (typeof v === 'number' && Number.isFinite(v)) {
        if (kinds[i] !== 'number') return { unfit: `${k} holds a number, its describe type is not numeric` };
        cell = String(v);
      } else return { unfit: `${k} holds a ${typeof v === 'object' ? 'nested value' : typeof v}` };
      line += i ? `,${cell}` : cell;
    }
    lines.push(line);
  }
  return { csv: `${lines.join('\n')}\n` };
}
