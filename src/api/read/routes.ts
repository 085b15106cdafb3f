import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { isValidSobjectName, toId18, idProblem } from '../../changes/names.ts';
import { parseSalesforceDateTime } from '../../changes/version.ts';
import type { Db } from '../../db/database.ts';
import type { Clock } from '../../lib/clock.ts';
import { AppError } from '../../lib/errors.ts';
import { equality, objectAllowed, project, resolveOrg, selectFields, viewOf, type Condition, type ObjectView } from './access.ts';
import { createCatalog, type ReadObject } from './catalog.ts';
import { refApplies } from './client-spec.ts';
import { decodeChangeCursor, decodeListCursor, encodeChangeCursor, encodeListCursor, cursorBinding, type CursorSigner } from './cursor.ts';
import { loadCursorKey } from './cursor-key.repository.ts';
import { createAuthenticator, USER_TOKEN_HEADER, type Principal } from './principal.ts';
import { createRateLimiter } from './rate-limit.ts';
import { getRecord, listRecords, purgeWatermark, readChanges } from './records.repository.ts';

/**
 * The read API for the mobile app (README.md, "Read API for the mobile app"): records, pages and a
 * change feed, for authenticated clients within their allowlists and row policies.
 */
export interface ReadApiOptions {
  /** Clients from SFMIRROR_API_TOKENS. */
  envTokens?: ReadonlyArray<{ name: string; token: string }> | undefined;
  /** Requests per second per client (and end user); 0: no limit. */
  rateLimit?: number | undefined;
  rateBurst?: number | undefined;
  /** How long a database client lookup is reused: a revoke takes effect within this. */
  clientCacheMs?: number | undefined;
  /** Lookups of uncached tokens per second per address (SFMIRROR_API_UNKNOWN_TOKEN_RATE); 0: no limit. */
  unknownTokenRate?: number | undefined;
}

export interface ReadDeps extends ReadApiOptions {
  db: Db;
  clock: Clock;
  defaultAlias: string;
}

const RESERVED = new Set(['fields', 'limit', 'cursor', 'modifiedSince', 'org']);
const Record_ = Type.Object({}, { additionalProperties: true, description: 'The record: Salesforce field API names as keys' });
const Problem = Type.Object(
  { statusCode: Type.Integer(), error: Type.String(), message: Type.String(), code: Type.Optional(Type.String()) },
  { additionalProperties: true },
);
const security = [{ bearer: [] }];
const headers = Type.Object({
  [USER_TOKEN_HEADER]: Type.Optional(Type.String({ description: "The end user's JWT, for clients with a JWT row policy" })),
});

const one = (q: Record<string, unknown>, name: string): string | undefined => {
  const v = q[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new AppError('BAD_REQUEST', `${name}: give one value`);
  return v;
};

export async function readRoutes(scope: FastifyInstance, deps: ReadDeps): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();
  const catalog = createCatalog(deps.db);
  const auth = createAuthenticator({
    db: deps.db,
    clock: deps.clock,
    envTokens: deps.envTokens,
    cacheMs: deps.clientCacheMs,
    unknownTokenRate: deps.unknownTokenRate,
  });
  const limiter = createRateLimiter({ rate: deps.rateLimit ?? 50, burst: deps.rateBurst ?? 100, clock: deps.clock });
  const principals = new WeakMap<FastifyRequest, Principal>();
  const principal = (req: FastifyRequest) => principals.get(req)!;
  let cursorKey: Promise<Buffer> | undefined;
  /** Cursors are bound to the client and its row policy (JWT claims included): see cursor.ts. */
  const signer = async (p: Principal): Promise<CursorSigner> => ({
    key: await (cursorKey ??= loadCursorKey(deps.db).catch((e: unknown) => {
      cursorKey = undefined;
      throw e;
    })),
    bind: cursorBinding(p.client, p.rowFilters),
  });

  // Authentication and the rate limit come first, before parameters are even looked at.
  app.addHook('onRequest', async (req) => {
    const p = await auth.authenticate(req);
    const verdict = limiter.take(p.rateKey);
    if (!verdict.ok) {
      throw new AppError('RATE_LIMITED', `rate limit of client ${p.client} exceeded; retry in ${verdict.retryAfterSeconds} s`, {
        retryAfterSeconds: verdict.retryAfterSeconds,
      });
    }
    principals.set(req, p);
  });

  /** The object a path names, as the principal may see it; `fields` are names the request uses. */
  async function objectView(p: Principal, org: string, name: string, fields: string[]): Promise<ObjectView | undefined> {
    if (!isValidSobjectName(name)) throw new AppError('BAD_REQUEST', 'object: not an object API name');
    if (!objectAllowed(p.spec, name)) throw new AppError('NOT_FOUND', `object: no object ${name}`);
    const policyFields = p.rowFilters.filter((f) => refApplies(f, name)).map((f) => f.field);
    const o = await catalog.object(org, name, [...fields, ...policyFields]);
    if (!o && p.spec.objects === '*') throw new AppError('BAD_REQUEST', `object: ${name} is not mirrored in org ${org}`);
    return o && viewOf(p, o);
  }

  app.get(
    '/api/v1/objects/:object',
    {
      schema: {
        summary: 'A page of live records of an object',
        description:
          "Other query parameters named like fields of the object (`Name=Acme`, `Id=001...`) are equality filters. Pages follow the record's primary key: writes between pages never make a record appear twice or go missing.",
        tags: ['read'],
        security,
        headers,
        params: Type.Object({ object: Type.String({ maxLength: 100 }) }),
        querystring: Type.Object({
          fields: Type.Optional(Type.String({ description: 'Comma-separated field API names; default: every field the client may read' })),
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          cursor: Type.Optional(Type.String({ description: '`next` of the previous page' })),
          modifiedSince: Type.Optional(Type.String({ description: 'ISO 8601 datetime: records whose SystemModstamp is at or after it' })),
          org: Type.Optional(Type.String()),
        }),
        response: { 200: Type.Object({ records: Type.Array(Record_), next: Type.Union([Type.String(), Type.Null()]) }), '4xx': Problem },
      },
    },
    async (req) => {
      const p = principal(req);
      const q = req.query as Record<string, unknown>;
      const org = await resolveOrg(p, one(q, 'org'), deps.defaultAlias, catalog);
      const filterParams = Object.keys(q).filter((k) => !RESERVED.has(k));
      const fieldsParam = one(q, 'fields');
      const view = await objectView(p, org, req.params.object, [...filterParams, ...(fieldsParam?.split(',').map((s) => s.trim()) ?? [])]);
      if (!view) return { records: [], next: null };
      const fields = selectFields(view, fieldsParam);
      const filters = filterParams.map((k) => filterOf(view, k, one(q, k)!));
      const since = one(q, 'modifiedSince');
      // Filtering on a field the client may not read would reveal its values one probe at a time.
      if (since !== undefined && !view.canRead('SystemModstamp'))
        throw new AppError('BAD_REQUEST', 'modifiedSince: this client may not read SystemModstamp (add it to its fields)');
      const sinceMs = since === undefined ? undefined : parseSalesforceDateTime(since);
      if (since !== undefined && sinceMs === undefined)
        throw new AppError('BAD_REQUEST', 'modifiedSince: not an ISO 8601 datetime (e.g. 2024-03-10T12:00:00Z)');
      const cursor = one(q, 'cursor');
      const sig = await signer(p);
      const after = cursor === undefined ? 0n : decodeListCursor(sig, cursor, org, view.object.table);
      const page = await listRecords(deps.db, {
        view,
        filters,
        after,
        modifiedSince: sinceMs === undefined ? undefined : new Date(sinceMs).toISOString(),
        limit: req.query.limit,
      });
      const last = page.rows.at(-1);
      return {
        records: page.rows.map((r) => project(view, r.fields, fields)),
        next: page.more && last ? encodeListCursor(sig, org, view.object.table, last.key) : null,
      };
    },
  );

  app.get(
    '/api/v1/objects/:object/:id',
    {
      schema: {
        summary: "One live record; 404 when deleted, unknown or outside the client's rows. ETag / If-None-Match supported",
        tags: ['read'],
        security,
        headers,
        params: Type.Object({ object: Type.String({ maxLength: 100 }), id: Type.String({ maxLength: 100 }) }),
        querystring: Type.Object({ fields: Type.Optional(Type.String()), org: Type.Optional(Type.String()) }),
        response: { 200: Record_, 304: Type.Null(), '4xx': Problem },
      },
    },
    async (req, reply) => {
      const p = principal(req);
      const org = await resolveOrg(p, req.query.org, deps.defaultAlias, catalog);
      const id = toId18(req.params.id);
      if (!id) throw new AppError('BAD_REQUEST', `id: ${JSON.stringify(req.params.id)} ${idProblem(req.params.id)}`);
      const view = await objectView(p, org, req.params.object, req.query.fields?.split(',').map((s) => s.trim()) ?? []);
      const fields = view && selectFields(view, req.query.fields);
      const found = view && (await getRecord(deps.db, view, id));
      if (!view || !found) throw new AppError('NOT_FOUND', `no ${req.params.object} with id ${id}`);
      // The ETag covers exactly what is returned: the record's state and this client's view of it.
      // The JSON is made once, for the hash and the body (a string skips the serializer).
      const body = JSON.stringify(project(view, found.fields, fields));
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
      reply.header('etag', etag).header('cache-control', 'private, no-cache');
      if (etagMatches(req.headers['if-none-match'], etag)) return reply.status(304).send(null);
      return reply.type('application/json; charset=utf-8').send(body as unknown as object);
    },
  );

  app.get(
    '/api/v1/changes',
    {
      schema: {
        summary: "Changes after a cursor, oldest first, across the client's objects",
        description:
          "Start with since=0 (and an empty local store), then pass `next`; an empty page means caught up. A record deleted, or no longer within the caller's rows, comes with deleted: true and no record. 410: the cursor is older than purged deletes; resync from since=0.",
        tags: ['read'],
        security,
        headers,
        querystring: Type.Object({
          since: Type.String({ description: '0, or `next` of the previous page' }),
          objects: Type.Optional(Type.String({ description: 'Comma-separated objects; default: every object the client may read' })),
          limit: Type.Integer({ minimum: 1, maximum: 2000, default: 500 }),
          org: Type.Optional(Type.String()),
        }),
        response: {
          200: Type.Object({
            changes: Type.Array(
              Type.Object({ object: Type.String(), id: Type.String(), deleted: Type.Boolean(), record: Type.Optional(Record_) }),
            ),
            next: Type.String(),
          }),
          '4xx': Problem,
        },
      },
    },
    async (req) => {
      const p = principal(req);
      const org = await resolveOrg(p, req.query.org, deps.defaultAlias, catalog);
      const sig = await signer(p);
      const since = decodeChangeCursor(sig, req.query.since, org);
      const views = await feedViews(p, org, req.query.objects);
      const rows = await readChanges(deps.db, views, since.seq, req.query.limit, since.seq === 0n);
      // Read after the rows: a purge commits its deletes with the watermark, so a delete missing from
      // the rows just read is covered by the watermark read now. Only a purge since the cursor was
      // issued can have taken deletes the app has not seen, and only those above its position.
      const watermark = await purgeWatermark(deps.db, org);
      if (since.seq > 0n && watermark > since.watermark && since.seq < watermark) {
        throw new AppError(
          'CURSOR_EXPIRED',
          'this cursor is older than deleted records that have been purged since; clear the local copy and resync from since=0',
        );
      }
      const byObject = new Map(views.map((v) => [v.object.object, v]));
      return {
        changes: rows.map((r) =>
          r.removed || !r.fields
            ? { object: r.object, id: r.sfid, deleted: true }
            : { object: r.object, id: r.sfid, deleted: false, record: project(byObject.get(r.object)!, r.fields, undefined) },
        ),
        next: encodeChangeCursor(sig, org, rows.at(-1)?.seq ?? since.seq, watermark),
      };
    },
  );

  async function feedViews(p: Principal, org: string, objectsParam: string | undefined): Promise<ObjectView[]> {
    let names: string[];
    if (objectsParam !== undefined) {
      names = [
        ...new Set(
          objectsParam
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        ),
      ];
      if (!names.length) throw new AppError('BAD_REQUEST', 'objects: give object names, e.g. objects=Account,Contact');
      for (const n of names)
        if (!isValidSobjectName(n) || !objectAllowed(p.spec, n))
          throw new AppError('BAD_REQUEST', `objects: unknown object "${n.slice(0, 80)}"`);
    } else {
      names = p.spec.objects === '*' ? (await catalog.objects(org)).map((o) => o.object) : [...p.spec.objects];
    }
    const objects: ReadObject[] = [];
    for (const n of names) {
      const o = await catalog.object(
        org,
        n,
        p.rowFilters.filter((f) => refApplies(f, n)).map((f) => f.field),
      );
      // Not mirrored yet: nothing to report (the object's first change will be).
      if (o && !objects.includes(o)) objects.push(o);
    }
    return objects.map((o) => viewOf(p, o));
  }
}

/** `Name=value` from the query string as a checked equality condition (400 naming the parameter). */
function filterOf(view: ObjectView, param: string, value: string): Condition {
  const shown = param.length > 80 ? `${param.slice(0, 80)}...` : param;
  if (!view.canRead(param.toLowerCase() === 'id' ? 'Id' : param))
    throw new AppError('BAD_REQUEST', `${shown}: unknown parameter or field of ${view.object.object}`);
  const c = equality(view.object, param, value);
  if ('problem' in c) throw new AppError('BAD_REQUEST', `${shown}: ${c.problem}`);
  return c;
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const v = t.trim();
    return v === '*' || v === etag || v === `W/${etag}`;
  });
}
