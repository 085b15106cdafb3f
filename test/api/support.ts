import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { Change, FieldTypes, FieldValue } from '../../src/changes/change.ts';
import type { AppDeps } from '../../src/api/app.ts';
import { addClient } from '../../src/api/read/clients.repository.ts';
import { parseClientSpec, type ClientOptions } from '../../src/api/read/client-spec.ts';
import type { Db } from '../../src/db/database.ts';
import { buildTestApp } from '../support/app.ts';
import { accountId, change } from '../support/changes.ts';
import type { TestDatabase } from '../support/pg.ts';

/** Shared pieces of the read API tests: an app with the read API on, data, clients, requests. */
export const ENV_TOKEN = 'env-token-0123456789abcdef';
export const TYPES: FieldTypes = {
  Account: {
    Name: 'string',
    OwnerId: 'reference',
    AnnualRevenue: 'currency',
    NumberOfEmployees: 'int',
    Active__c: 'boolean',
    Founded__c: 'date',
  },
  Contact: { LastName: 'string', OwnerId: 'reference', AccountId: 'reference' },
};
export const T0 = Date.UTC(2024, 2, 10, 12);
export const OWNER_A = '005000000000001AAA';
export const OWNER_B = '005000000000002AAA';

export type TestApp = FastifyInstance & { deps: AppDeps };

export async function readApp(tdb: TestDatabase, overrides: Partial<AppDeps> = {}): Promise<TestApp> {
  return buildTestApp(tdb, {
    readApi: { envTokens: [{ name: 'backend', token: ENV_TOKEN }], rateLimit: 0, clientCacheMs: 0 },
    ...overrides,
  });
}

export async function apply(app: TestApp, changes: Change[]): Promise<void> {
  await app.deps.mirror.apply('salesforce', changes, { types: TYPES });
}

export const account = (n: number, at: number, fields: Record<string, FieldValue>) => change('insert', n, at, fields, 'Account');
export const contact = (n: number, at: number, fields: Record<string, FieldValue>) => change('insert', n, at, fields, 'Contact');
export const contactId = (n: number) => accountId(n, '003');

export async function newClient(db: Db, name: string, o: ClientOptions): Promise<string> {
  const { spec, problems } = parseClientSpec(o);
  if (!spec) throw new Error(problems.join('; '));
  const token = await addClient(db, name, spec);
  if (!token) throw new Error(`client ${name} exists`);
  return token;
}

export function get(
  app: FastifyInstance,
  url: string,
  token: string | undefined,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
}

/** Every page of a list, following `next`. */
export async function listAll(
  app: FastifyInstance,
  url: string,
  token: string,
  headers: Record<string, string> = {},
): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  let next: string | null = null;
  do {
    const sep = url.includes('?') ? '&' : '?';
    const res = await get(app, next ? `${url}${sep}cursor=${encodeURIComponent(next)}` : url, token, headers);
    if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`);
    const body = res.json() as { records: Array<Record<string, unknown>>; next: string | null };
    out.push(...body.records);
    next = body.next;
  } while (next);
  return out;
}

export type FeedChange = { object: string; id: string; deleted: boolean; record?: Record<string, unknown> };

/**
 * A device's local store fed by the change feed: syncs until an empty page, applying upserts and
 * removals. Returns the number of pages read.
 */
export function device() {
  const store = new Map<string, Record<string, unknown>>();
  let cursor = '0';
  return {
    store,
    get cursor() {
      return cursor;
    },
    reset() {
      store.clear();
      cursor = '0';
    },
    async sync(
      app: FastifyInstance,
      token: string,
      opts: { limit?: number; headers?: Record<string, string>; query?: string } = {},
    ): Promise<LightMyRequestResponse | undefined> {
      for (;;) {
        const res = await get(
          app,
          `/api/v1/changes?since=${encodeURIComponent(cursor)}&limit=${opts.limit ?? 7}${opts.query ?? ''}`,
          token,
          opts.headers,
        );
        if (res.statusCode !== 200) return res;
        const body = res.json() as { changes: FeedChange[]; next: string };
        for (const c of body.changes) {
          const key = `${c.object}/${c.id}`;
          if (c.deleted) store.delete(key);
          else store.set(key, c.record!);
        }
        cursor = body.next;
        if (!body.changes.length) return undefined;
      }
    },
  };
}
