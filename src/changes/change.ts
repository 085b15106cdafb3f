/**
 * The domain's unit of work: one change to one Salesforce record, whatever its source
 * (Apex push, CDC event, backfill page). Decoders in this folder turn payloads into Changes;
 * `mirror.apply` is the only consumer.
 */
export type Operation = 'insert' | 'update' | 'delete' | 'undelete';
export const OPERATIONS: readonly Operation[] = ['insert', 'update', 'delete', 'undelete'];

/** A JSON scalar as Salesforce REST returns it. Compound fields are already flattened. */
export type FieldValue = string | number | boolean | null;

export interface Change {
  /** Object API name as Salesforce spells it, e.g. `Account`, `My_Object__c`. */
  readonly object: string;
  readonly operation: Operation;
  /** 18-character record id. */
  readonly id: string;
  /** Field API name -> value; `null` clears, an absent key leaves the field as it is. Excludes `Id`. */
  readonly fields: Readonly<Record<string, FieldValue>>;
  /** Ordering version (see version.ts): newer wins, per field. */
  readonly version: string;
}

/** Salesforce field types (describe `type` or Apex `DisplayType` name, lower-cased), per object and field. */
export type FieldTypes = Readonly<Record<string, Readonly<Record<string, string>>>>;
