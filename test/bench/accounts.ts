/**
 * The Account records the ingest, warehouse and read benchmarks write: six typed fields of typical
 * lengths, and the Salesforce types a push declares for them.
 */
export const ACCOUNT_TYPES = {
  Account: {
    Name: 'string',
    Phone: 'phone',
    BillingCity: 'string',
    AnnualRevenue: 'currency',
    NumberOfEmployees: 'int',
    Description: 'textarea',
  },
};

/** The 15-character Account id of record number `n`. */
export const accountId15 = (n: number) => `001${String(n).padStart(12, '0')}`;

/** Record number `n`'s fields, without Id and SystemModstamp; `bench` names the benchmark in its description. */
export const accountFields = (n: number, bench: string) => ({
  Name: `Account ${n}`,
  Phone: '+1 555 0100',
  BillingCity: 'Springfield',
  AnnualRevenue: n * 10.5,
  NumberOfEmployees: n % 5000,
  Description: `A customer account created for the ${bench} benchmark; text of a typical length.`,
});
