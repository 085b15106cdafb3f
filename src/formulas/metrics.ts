import client from 'prom-client';

/** Counters of formula freshness, on the service's registry (`/metrics`). */
export function createFormulaMetrics(registry: client.Registry) {
  return {
    rereads: new client.Counter({
      name: 'sfmirror_formula_rereads_total',
      help: 'Records whose formula fields were re-read, by result (changed: applied to the mirror; unchanged)',
      labelNames: ['org', 'object', 'result'] as const,
      registers: [registry],
    }),
    apiCalls: new client.Counter({
      name: 'sfmirror_formula_api_calls_total',
      help: 'Salesforce API calls spent re-reading formula fields, by API (rest, bulk)',
      labelNames: ['org', 'object', 'api'] as const,
      registers: [registry],
    }),
  };
}

export type FormulaMetrics = ReturnType<typeof createFormulaMetrics>;
