/**
 * The OpenAPI document at /docs/json, made for generators (openapi-typescript, redocly lint with 0
 * errors; test/api/openapi.test.ts runs both). Routes declare their own schemas; this file adds what
 * is the same for every route, once, to the document only (never to validation or serialization):
 * servers, operationIds, the security of public and signed routes, a 4XX answer in the shape of
 * every error (api/errors.ts), named shared shapes (Error, Record, Change, ApexPush), and `required`
 * dropped from parameters that have a default.
 */
type Json = Record<string, unknown>;
type Operation = Json & { responses?: Record<string, Json>; parameters?: Json[]; security?: unknown[] };

export const ERROR_SCHEMA = {
  type: 'object',
  description: "Every error answer: Fastify's shape; a 400's message starts with the parameter at fault",
  required: ['statusCode', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string' },
    message: { type: 'string' },
    code: { type: 'string' },
    details: { type: 'array', items: { type: 'string' }, description: 'One message per problem (400 on /ingest/apex)' },
  },
};

/** The body of POST /ingest/apex (README.md, "Pushing changes"); the route validates it by hand after the signature. */
export const APEX_PUSH_SCHEMA = {
  type: 'object',
  required: ['orgId', 'changes'],
  additionalProperties: false,
  properties: {
    orgId: { type: 'string', description: 'The 18-character org id (00D...)' },
    changes: {
      type: 'array',
      items: {
        type: 'object',
        required: ['object', 'operation', 'record'],
        properties: {
          object: { type: 'string', description: 'Object API name' },
          operation: { type: 'string', enum: ['insert', 'update', 'delete', 'undelete'] },
          record: {
            type: 'object',
            required: ['Id'],
            properties: { Id: { type: 'string' }, SystemModstamp: { type: 'string', format: 'date-time' } },
            additionalProperties: true,
            description: 'Id, SystemModstamp (or LastModifiedDate) and the fields the sender knows; null clears a field',
          },
        },
      },
    },
    types: {
      type: 'object',
      additionalProperties: { type: 'object', additionalProperties: { type: 'string' } },
      description: 'Salesforce field types per object, for new columns',
    },
  },
};

const OPERATION_IDS: Record<string, string> = {
  'get /healthz': 'getHealth',
  'get /readyz': 'getReadiness',
  'get /metrics': 'getMetrics',
  'get /admin/status': 'getStatus',
  'post /ingest/apex': 'ingestApexPush',
  'post /admin/backfills': 'createBackfill',
  'get /admin/backfills': 'listBackfills',
  'get /admin/backfills/{id}': 'getBackfill',
  'post /admin/backfills/{id}/pause': 'pauseBackfill',
  'post /admin/backfills/{id}/resume': 'resumeBackfill',
  'get /oauth/authorize': 'startOAuth',
  'get /oauth/callback': 'completeOAuth',
  'get /admin/warehouse/dead-letters': 'listDeadLetters',
  'post /admin/warehouse/dead-letters/retry': 'retryDeadLetters',
  'get /api/v1/objects/{object}': 'listRecords',
  'get /api/v1/objects/{object}/{id}': 'getRecord',
  'get /api/v1/changes': 'listChanges',
};

/** `get /admin/things/{id}` -> `getAdminThingsById`, for routes without a name above. */
const operationIdOf = (method: string, path: string) =>
  OPERATION_IDS[`${method} ${path}`] ??
  method +
    path
      .split('/')
      .filter(Boolean)
      .map((p) => (p.startsWith('{') ? `By-${p.slice(1, -1)}` : p))
      .join('-')
      .split(/[-_]/)
      .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
      .join('');

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const jsonContent = (schema: unknown) => ({ 'application/json': { schema } });

/** Replaces, anywhere under `node`, a schema equal to `shape` with a reference to `name`. */
function nameShape(node: unknown, shape: string, name: string): unknown {
  if (!node || typeof node !== 'object') return node;
  if (JSON.stringify(node) === shape) return ref(name);
  if (Array.isArray(node)) return node.map((n) => nameShape(n, shape, name));
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, nameShape(v, shape, name)]));
}

const schemaOf = (op: Operation | undefined, status: string, ...path: string[]): unknown => {
  const content = (op?.responses?.[status]?.content as Json | undefined)?.['application/json'] as Json | undefined;
  let node: unknown = content?.schema;
  for (const p of path) node = (node as Json | undefined)?.[p];
  return node;
};

export function finishDocument(doc: Json): Json {
  const paths = doc.paths as Record<string, Record<string, Operation>>;
  const components = (doc.components ?? {}) as Json & { schemas?: Json; securitySchemes?: Json };
  components.securitySchemes = {
    ...components.securitySchemes,
    sfmirrorSignature: {
      type: 'apiKey',
      in: 'header',
      name: 'X-Sfmirror-Signature',
      description: '`sha256=<hex>` (HMAC-SHA256) or `rsa-sha256=<base64>` over `<timestamp>.<raw body>` (README.md, "Pushing changes")',
    },
    sfmirrorTimestamp: { type: 'apiKey', in: 'header', name: 'X-Sfmirror-Timestamp', description: 'Unix seconds, within 5 minutes of now' },
  };
  // Shared shapes, taken from the routes that declare them.
  const record = schemaOf(paths['/api/v1/objects/{object}/{id}']?.get, '200');
  const change = schemaOf(paths['/api/v1/changes']?.get, '200', 'properties', 'changes', 'items');
  const schemas: Json = { ...components.schemas, Error: ERROR_SCHEMA, ApexPush: APEX_PUSH_SCHEMA };
  if (record) schemas.Record = record;
  if (change) schemas.Change = change;
  components.schemas = schemas;

  const errorShape = JSON.stringify(ERROR_SCHEMA);
  for (const [path, ops] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(ops)) {
      op.operationId ??= operationIdOf(method, path);
      // Public routes say so; the ingest route is authenticated by its signature headers.
      op.security ??= path === '/ingest/apex' ? [{ sfmirrorSignature: [], sfmirrorTimestamp: [] }] : [];
      if (path === '/ingest/apex' && method === 'post') {
        op.requestBody = { required: true, content: jsonContent(ref('ApexPush')) };
        op.parameters = op.parameters?.filter((p) => p.in !== 'header' || !/^x-sfmirror-(signature|timestamp)$/.test(String(p.name)));
      }
      for (const p of op.parameters ?? []) if ((p.schema as Json | undefined)?.default !== undefined) p.required = false;
      const responses = (op.responses ??= {});
      for (const status of Object.keys(responses)) if (/^4xx$/i.test(status) && status !== '4XX') delete responses[status];
      responses['4XX'] = { description: 'The request was refused; the message says why', content: jsonContent(ref('Error')) };
      // Change before Record: a change's record may have the shape of a Record.
      let named: unknown = op.responses;
      if (change) named = nameShape(named, JSON.stringify(change), 'Change');
      if (record) named = nameShape(named, JSON.stringify(record), 'Record');
      named = nameShape(named, errorShape, 'Error');
      op.responses = named as Record<string, Json>;
    }
  }
  return {
    ...doc,
    info: { ...(doc.info as Json), license: { name: 'UNLICENSED (private)' } },
    servers: [{ url: '/', description: 'this sfmirror (the host that served this document)' }],
    components,
  };
}
