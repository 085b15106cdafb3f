import http from 'node:http';
import type net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import faye from 'faye';
import { toId18 } from '../../src/changes/names.ts';
import { createBulkStandIn, type Deletion } from './salesforce-bulk.ts';

/**
 * A Salesforce-like org for tests, at the protocol level: the real jsforce and
 * faye clients talk to it over loopback HTTP.
 *
 * It holds the org's records (the truth a test compares the mirror with) and serves:
 * - OAuth: `GET /services/oauth2/authorize` (the web-server flow: the "user" approves at once and is
 *   redirected to `redirect_uri` with `code` and `state`, or with `error=access_denied` on demand),
 *   `POST /services/oauth2/token` (authorization_code with PKCE S256, refresh_token, jwt-bearer;
 *   single-use codes; `invalid_grant` for revoked refresh tokens), identity in `id`;
 * - REST: `/services/data/vXX.X` (identity), describe, query / queryAll (the SOQL shapes sfmirror
 *   sends: `WHERE Id IN (...)` and `WHERE SystemModstamp ... ORDER BY SystemModstamp, Id LIMIT n`),
 *   `nextRecordsUrl` paging, retrieve `sobjects/X/id`; 401 INVALID_SESSION_ID for unknown tokens;
 * - CometD at `/cometd/<version>`: a faye Bayeux server, long-polling only, `Authorization` checked on
 *   every message (`401::Authentication invalid`), CDC events on `/data/ChangeEvents` and
 *   `/data/<Object>ChangeEvent` with a replay log (`ext.replay`; -1, -2, or a retained id; older ids
 *   are refused with Salesforce's text), `403::Unknown client` on demand, restart, silence.
 *
 * DML (`insert`, `update`, `remove`, `undelete`) changes the records and publishes the matching
 * change event, compound fields nested the way CDC nests them; `transaction()` groups DML under
 * one transactionKey; `{ silent: true }` changes records without an event (events lost upstream).
 */
export type Fields = Record<string, string | number | boolean | null>;
type Rec = Fields & { Id: string; IsDeleted: boolean; SystemModstamp: string; LastModifiedDate: string; CreatedDate: string };
type Stored = { replayId: number; channels: string[]; data: unknown };
type Teardown = { teardown(fn: () => unknown): void };

export interface OrgOptions {
  version?: string;
  /** Long-poll hold time of /meta/connect in seconds (the advice's timeout). */
  connectTimeout?: number;
  /** How many events the replay log retains. */
  retain?: number;
  /** Records per query page when the query has no LIMIT. */
  pageSize?: number;
  /** Field types per object for describe; other fields are `string`. */
  types?: Record<string, Record<string, string>>;
  /** 15 or 18 characters; several stand-in orgs at once need different ids. */
  orgId?: string;
  userId?: string;
  /** The connected app's consumer key the token endpoint accepts. */
  clientId?: string;
  /**
   * Formula fields per object: describe lists them with `calculated: true` and their
   * `calculatedFormula`; every read (REST query, retrieve, Bulk) computes them from the records held
   * and the stand-in's clock (`advanceClock`); change events never carry them, as in Salesforce.
   */
  formulas?: Record<string, Record<string, FormulaDef>>;
  /** Lookup fields per object -> the objects they point to (describe's `referenceTo`); type `reference`. */
  references?: Record<string, Record<string, string[]>>;
}

/** A formula of the stand-in: its text (what describe shows) and how the stand-in computes it. */
export interface FormulaDef {
  formula: string;
  type?: string;
  compute(record: Fields, ctx: { get(object: string, id: unknown): Fields | undefined; now: Date }): string | number | boolean | null;
}

const KEY_PREFIX: Record<string, string> = { Account: '001', Contact: '003', Lead: '00Q', Opportunity: '006' };
const BASE_TYPES: Record<string, string> = {
  Id: 'id',
  IsDeleted: 'boolean',
  SystemModstamp: 'datetime',
  LastModifiedDate: 'datetime',
  CreatedDate: 'datetime',
  Name: 'string',
};
const COMPOUNDS: Array<{ compound: string; prefix: string; parts: string[] }> = [
  ...['Billing', 'Shipping', 'Mailing', 'Other'].map((p) => ({
    compound: `${p}Address`,
    prefix: p,
    parts: ['Street', 'City', 'State', 'PostalCode', 'Country'],
  })),
];
const NAME_PARTS = ['Salutation', 'FirstName', 'LastName'];

export const INVALID_REPLAY = (id: unknown) =>
  `400::The replayId {${id}} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.`;

export async function startSalesforceOrg(t: Teardown | undefined, opts: OrgOptions = {}) {
  const version = opts.version ?? '62.0';
  const orgId = toId18(opts.orgId ?? '00D000000000042')!;
  const userId = toId18(opts.userId ?? '005000000000042')!;
  const clientId = opts.clientId ?? 'test-client-id';
  const refreshToken = `refresh-${randomBytes(6).toString('hex')}`;
  // The web-server flow: codes waiting to be exchanged (single use), refresh tokens it issued.
  const codes = new Map<string, { redirectUri: string; challenge: string | null; clientId: string }>();
  const refreshTokens = new Set<string>([refreshToken]);
  const oauth = { denyNext: false, lastAuthorize: undefined as URLSearchParams | undefined };
  const validTokens = new Set<string>();
  const records = new Map<string, Map<string, Rec>>();
  const log: Stored[] = [];
  const counters = { id: 0, replay: 1000, commit: 2n ** 53n + 7n, txn: 0, lastMs: 0 };
  const stats = {
    handshakes: 0,
    connects: 0,
    subscribes: [] as Array<{ channel: string; replay: unknown; error?: string }>,
    tokenGrants: 0,
    tokenRefusals: 0,
    restJobs: 0,
  };
  let retain = opts.retain ?? 1_000_000;
  /** Specific replayIds below this are refused (dropped from the log, or expired). */
  let floor = 0;
  const asked = new Map<string, unknown>();
  const clientIds = new Set<string>();
  const forgotten = new Set<string>();
  let silent = false;
  let unavailable = false;
  const held = new Set<http.ServerResponse>();
  const sockets = new Set<net.Socket>();
  let currentTxn: { key: string; seq: number; commit: bigint } | undefined;
  let port = 0;
  let bayeux: any;
  let server: http.Server;

  const issueToken = () => {
    const tok = `00D!${randomBytes(12).toString('hex')}`;
    validTokens.add(tok);
    return tok;
  };
  const nowMs = () => (counters.lastMs = Math.max(Date.now(), counters.lastMs));
  const url = () => `http://127.0.0.1:${port}`;
  const identityUrl = () => `${url()}/id/${orgId}/${userId}`;
  const tokenOf = (h: string | undefined) => h?.replace(/^(OAuth|Bearer)\s+/i, '');
  const table = (object: string) => records.get(object) ?? records.set(object, new Map()).get(object)!;
  /** The delete log getDeleted reads: every delete, hard or soft, with its time. */
  const deletions: Deletion[] = [];

  // --- CometD -------------------------------------------------------------------------------
  function makeBayeux() {
    const b = new (faye as any).NodeAdapter({ mount: `/cometd/${version}`, timeout: opts.connectTimeout ?? 2 });
    b.addExtension({
      incoming(msg: any, req: any, cb: (m: any) => void) {
        if (msg.channel === '/meta/handshake') {
          stats.handshakes++;
          // Salesforce offers long-polling only: without this the client upgrades to WebSocket.
          msg.supportedConnectionTypes = ['long-polling'];
        }
        if (msg.channel === '/meta/connect') stats.connects++;
        const token = tokenOf(req?.headers?.authorization);
        if (msg.channel?.startsWith('/meta/') && msg.channel !== '/meta/disconnect' && !(token && validTokens.has(token))) {
          msg.error = '401::Authentication invalid';
          return cb(msg);
        }
        if (msg.clientId && forgotten.has(msg.clientId) && (msg.channel === '/meta/connect' || msg.channel === '/meta/subscribe')) {
          // (Destroying the session too would make faye answer its own `401::Unknown client`.)
          msg.error = '403::Unknown client';
          return cb(msg);
        }
        if (msg.channel === '/meta/subscribe') {
          const channel = String(msg.subscription);
          const replay = msg.ext?.replay?.[channel];
          const entry: { channel: string; replay: unknown; error?: string } = { channel, replay };
          stats.subscribes.push(entry);
          if (replay !== undefined && replay !== -1 && replay !== -2) {
            if (typeof replay !== 'number' || replay > counters.replay || replay < floor) msg.error = entry.error = INVALID_REPLAY(replay);
          }
          if (!msg.error && msg.clientId) asked.set(`${msg.clientId}|${channel}`, replay);
        }
        cb(msg);
      },
      outgoing(msg: any, req: any, cb: (m: any) => void) {
        if (msg.channel === '/meta/handshake' && msg.successful) {
          msg.supportedConnectionTypes = ['long-polling'];
          clientIds.add(msg.clientId);
        }
        if (msg.channel === '/meta/subscribe' && msg.successful) {
          // Replay what the subscriber asked for, to this client only, before any newer event.
          const channel = String(msg.subscription);
          const replay = asked.get(`${msg.clientId}|${channel}`);
          asked.delete(`${msg.clientId}|${channel}`);
          if (typeof replay === 'number' && replay !== -1) {
            const events = log
              .filter((e) => e.channels.includes(channel) && (replay === -2 || e.replayId > replay))
              .map((e) => ({ channel, data: e.data }));
            if (events.length) b._server._engine.deliver(msg.clientId, events);
          }
        }
        cb(msg);
      },
    });
    return b;
  }

  function publish(object: string, payload: Record<string, unknown>) {
    const replayId = (counters.replay += 1 + (counters.replay % 3 === 0 ? 1 : 0)); // opaque, not contiguous
    const data = { schema: `schema-${object}`, payload, event: { replayId } };
    const channels = ['/data/ChangeEvents', `/data/${object.replace(/__c$/, '__')}ChangeEvent`];
    log.push({ replayId, channels, data });
    while (log.length > retain) floor = log.shift()!.replayId;
    for (const channel of channels) bayeux._server._engine.publish({ channel, data });
    return replayId;
  }

  // --- HTTP ----------------------------------------------------------------------------------
  async function readBody(req: http.IncomingMessage): Promise<string> {
    let s = '';
    for await (const c of req) s += c;
    return s;
  }
  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const describe = (object: string) => {
    const refs = opts.references?.[object] ?? {};
    const formulas = opts.formulas?.[object] ?? {};
    const types: Record<string, string> = { ...BASE_TYPES, ...(opts.types?.[object] ?? {}) };
    for (const f of Object.keys(refs)) types[f] ??= 'reference';
    for (const [f, d] of Object.entries(formulas)) types[f] = d.type ?? 'string';
    for (const r of table(object).values()) for (const f of Object.keys(r)) types[f] ??= 'string';
    return Object.entries(types).map(([name, type]) => ({
      name,
      type,
      calculated: name in formulas,
      calculatedFormula: formulas[name]?.formula ?? null,
      // Salesforce's naming: AccountId -> Account, Parent__c -> Parent__r.
      relationshipName: refs[name] ? (name.endsWith('__c') ? name.replace(/__c$/, '__r') : name.replace(/Id$/, '')) : null,
      referenceTo: refs[name] ?? [],
    }));
  };
  /** The stand-in's own clock: wall time plus what a test advanced it by. */
  const clock = { offsetMs: 0 };
  const view = <R extends Fields>(object: string, r: R): R => {
    const formulas = opts.formulas?.[object];
    if (!formulas) return { ...r };
    const ctx = {
      get: (o: string, id: unknown) => {
        const p = typeof id === 'string' ? table(o).get(id) : undefined;
        return p && !p.IsDeleted ? view(o, p) : undefined;
      },
      now: new Date(Date.now() + clock.offsetMs),
    };
    const out: Fields = { ...r };
    for (const [f, d] of Object.entries(formulas)) out[f] = d.compute(r, ctx);
    return out as R;
  };
  const cursors = new Map<string, { rows: Fields[]; at: number }>();
  function page(rows: Fields[], at: number) {
    const size = opts.pageSize ?? 2000;
    const slice = rows.slice(at, at + size);
    const done = at + size >= rows.length;
    let nextRecordsUrl: string | undefined;
    if (!done) {
      const key = `01g${randomBytes(5).toString('hex')}-${at + size}`;
      cursors.set(key, { rows, at: at + size });
      nextRecordsUrl = `/services/data/v${version}/query/${key}`;
    }
    return {
      totalSize: rows.length,
      done,
      records: slice.map((r) => ({ attributes: { type: 'x' }, ...r })),
      ...(nextRecordsUrl ? { nextRecordsUrl } : {}),
    };
  }
  // Bulk API 2.0, getDeleted and limits live in salesforce-bulk.ts (issue 6).
  const bulk = createBulkStandIn({ table, view, deletions, json, readBody });
  function runSoql(q: string, all: boolean): Fields[] {
    const m = /^SELECT\s+(.+?)\s+FROM\s+(\w+)(?:\s+WHERE\s+(.+?))?(?:\s+ORDER BY\s+SystemModstamp,\s*Id)?(?:\s+LIMIT\s+(\d+))?$/is.exec(
      q.trim(),
    );
    if (!m) throw new Error(`unsupported SOQL: ${q}`);
    const fields = m[1]!.split(',').map((s) => s.trim());
    let rows = [...table(m[2]!).values()].filter((r) => all || !r.IsDeleted);
    const where = m[3] ?? '';
    const idIn = /^Id IN \(([^)]*)\)$/i.exec(where);
    const since =
      /^\(?SystemModstamp > (\S+) OR \(SystemModstamp = (\S+) AND Id > '(\w+)'\)\)?$/i.exec(where) ??
      /^SystemModstamp >= (\S+)$/i.exec(where);
    if (idIn) {
      const ids = new Set(idIn[1]!.split(',').map((s) => s.trim().replace(/'/g, '')));
      rows = rows.filter((r) => ids.has(r.Id));
    } else if (since && since.length === 4) {
      const ts = Date.parse(since[1]!);
      rows = rows.filter((r) => Date.parse(r.SystemModstamp) > ts || (Date.parse(r.SystemModstamp) === ts && r.Id > since[3]!));
    } else if (since) {
      rows = rows.filter((r) => Date.parse(r.SystemModstamp) >= Date.parse(since[1]!));
    } else if (where) throw new Error(`unsupported WHERE: ${where}`);
    rows.sort((a, b) => a.SystemModstamp.localeCompare(b.SystemModstamp) || a.Id.localeCompare(b.Id));
    if (m[4]) rows = rows.slice(0, Number(m[4]));
    return rows.map((r) => {
      const v = view(m[2]!, r);
      return Object.fromEntries(fields.map((f) => [f, v[f] ?? null]));
    });
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const u = new URL(req.url ?? '/', url());
    const p = u.pathname;
    if (req.method === 'GET' && p === '/services/oauth2/authorize') return authorize(u, res);
    if (req.method === 'POST' && p === '/services/oauth2/token') {
      const form = new URLSearchParams(await readBody(req));
      const grant = form.get('grant_type');
      if (grant === 'authorization_code') return exchangeCode(form, res);
      const ok =
        (grant === 'refresh_token' && refreshTokens.has(form.get('refresh_token') ?? '') && form.get('client_id') === clientId) ||
        (grant === 'urn:ietf:params:oauth:grant-type:jwt-bearer' && (form.get('assertion') ?? '').split('.').length === 3);
      if (!ok) {
        stats.tokenRefusals++;
        return json(res, 400, { error: 'invalid_grant', error_description: 'expired access/refresh token' });
      }
      stats.tokenGrants++;
      return json(res, 200, {
        access_token: issueToken(),
        instance_url: url(),
        id: identityUrl(),
        token_type: 'Bearer',
        issued_at: String(Date.now()),
        signature: 'x',
      });
    }
    if (p.startsWith('/services/data/')) {
      const token = tokenOf(req.headers.authorization);
      if (!token || !validTokens.has(token))
        return json(res, 401, [{ message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' }]);
      const rest = p.slice(`/services/data/v${version}`.length);
      if (!bulk.countCall(res)) return;
      try {
        if (await bulk.handle(req, res, rest, u)) return;
        if (rest === '' || rest === '/') return json(res, 200, { identity: identityUrl(), sobjects: '/sobjects' });
        let m = /^\/sobjects\/(\w+)\/describe\/?$/.exec(rest);
        if (m) return json(res, 200, { name: m[1], fields: describe(m[1]!) });
        m = /^\/sobjects\/(\w+)\/(\w{15,18})$/.exec(rest);
        if (m) {
          const r = table(m[1]!).get(toId18(m[2]!) ?? '');
          if (!r || r.IsDeleted) return json(res, 404, [{ errorCode: 'NOT_FOUND', message: 'The requested resource does not exist' }]);
          return json(res, 200, { attributes: { type: m[1] }, ...view(m[1]!, r) });
        }
        m = /^\/(query|queryAll)(?:\/([\w-]+))?$/.exec(rest);
        if (m) {
          if (m[2]) {
            const c = cursors.get(m[2]);
            if (!c) return json(res, 400, [{ errorCode: 'INVALID_QUERY_LOCATOR', message: 'invalid query locator' }]);
            return json(res, 200, page(c.rows, c.at));
          }
          const counted = bulk.count(u.searchParams.get('q') ?? '', m[1] === 'queryAll');
          if (counted !== undefined) return json(res, 200, { totalSize: counted, done: true, records: [] });
          return json(res, 200, page(runSoql(u.searchParams.get('q') ?? '', m[1] === 'queryAll'), 0));
        }
      } catch (e) {
        return json(res, 400, [{ errorCode: 'MALFORMED_QUERY', message: (e as Error).message }]);
      }
      return json(res, 404, [{ errorCode: 'NOT_FOUND', message: `no route ${p}` }]);
    }
    if (p === `/id/${orgId}/${userId}`) return json(res, 200, { organization_id: orgId, user_id: userId, username: 'test@example.com' });
    json(res, 404, { error: 'not found' });
  }

  // --- OAuth web-server flow ----------------------------------------------------------------
  function authorize(u: URL, res: http.ServerResponse) {
    const q = u.searchParams;
    oauth.lastAuthorize = q;
    const redirect = q.get('redirect_uri');
    if (q.get('response_type') !== 'code' || q.get('client_id') !== clientId || !redirect) {
      return json(res, 400, { error: 'invalid_client_id', error_description: 'client identifier invalid' });
    }
    if (q.get('code_challenge') && q.get('code_challenge_method') !== 'S256')
      return json(res, 400, { error: 'invalid_request', error_description: 'unsupported code_challenge_method' });
    const back = new URL(redirect);
    if (oauth.denyNext) {
      oauth.denyNext = false;
      back.searchParams.set('error', 'access_denied');
      back.searchParams.set('error_description', 'end-user denied authorization');
    } else {
      const code = `aPrx${randomBytes(16).toString('hex')}`;
      codes.set(code, { redirectUri: redirect, challenge: q.get('code_challenge'), clientId: q.get('client_id')! });
      back.searchParams.set('code', code);
    }
    if (q.get('state') !== null) back.searchParams.set('state', q.get('state')!);
    res.writeHead(302, { location: back.toString() }).end();
  }
  function exchangeCode(form: URLSearchParams, res: http.ServerResponse) {
    const code = form.get('code') ?? '';
    const pending = codes.get(code);
    codes.delete(code); // single use, whatever happens next
    const verifier = form.get('code_verifier');
    const challengeOk =
      !pending?.challenge || (verifier !== null && createHash('sha256').update(verifier).digest('base64url') === pending.challenge);
    if (!pending || pending.clientId !== form.get('client_id') || pending.redirectUri !== form.get('redirect_uri')) {
      return json(res, 400, { error: 'invalid_grant', error_description: 'invalid authorization code' });
    }
    if (!challengeOk) return json(res, 400, { error: 'invalid_grant', error_description: 'invalid code verifier' });
    stats.tokenGrants++;
    const issued = `5Aep${randomBytes(20).toString('hex')}`;
    refreshTokens.add(issued);
    return json(res, 200, {
      access_token: issueToken(),
      refresh_token: issued,
      instance_url: url(),
      id: identityUrl(),
      token_type: 'Bearer',
      scope: 'api refresh_token',
      issued_at: String(Date.now()),
      signature: 'x',
    });
  }

  async function listen(onPort: number) {
    bayeux = makeBayeux();
    server = http.createServer((req, res) => {
      if (unavailable && req.url?.startsWith('/cometd'))
        return json(res, 503, [{ errorCode: 'SERVER_UNAVAILABLE', message: 'maintenance' }]);
      if (silent && req.url?.startsWith('/cometd')) {
        held.add(res);
        return;
      }
      if (req.url?.startsWith('/cometd')) return void bayeux.handle(req, res);
      handle(req, res).catch((e) => json(res, 500, [{ errorCode: 'UNKNOWN_EXCEPTION', message: String(e) }]));
    });
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    // Not bayeux.attach(): that would also take WebSocket upgrades, which Salesforce never offers.
    await new Promise<void>((resolve) => server.listen(onPort, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  }

  async function stop() {
    for (const r of held) r.destroy();
    held.clear();
    await bayeux.close();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    for (const s of sockets) s.destroy();
    await closed;
  }

  // --- DML --------------------------------------------------------------------------------------
  function header(object: string, changeType: string, ids: string[], changedFields: string[], ms: number) {
    const txn = currentTxn ?? { key: `txn-${++counters.txn}`, seq: 0, commit: (counters.commit += 3n) };
    txn.seq++;
    return {
      entityName: object,
      recordIds: ids,
      changeType,
      changeOrigin: 'com/salesforce/api/soap/62.0;client=test',
      transactionKey: txn.key,
      sequenceNumber: txn.seq,
      commitTimestamp: ms,
      // Beyond 2^53: JSON carries the digits, JSON.parse rounds them (why sfmirror never relies on it).
      commitNumber: Number(txn.commit),
      commitUser: userId,
      changedFields,
      someFutureHeaderKey: 'tolerated',
    };
  }
  /** Flat REST fields -> CDC payload: compound fields nested, as CometD delivers them. */
  function nest(object: string, fields: Fields): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields)) {
      const c = COMPOUNDS.find((x) => k.startsWith(x.prefix) && x.parts.includes(k.slice(x.prefix.length)));
      if (c) ((out[c.compound] ??= {}) as Record<string, unknown>)[k.slice(c.prefix.length)] = v;
      else if ((object === 'Contact' || object === 'Lead') && NAME_PARTS.includes(k)) ((out.Name ??= {}) as Record<string, unknown>)[k] = v;
      else out[k] = v;
    }
    return out;
  }
  const changedNames = (object: string, fields: Fields) =>
    Object.keys(nest(object, fields)).flatMap((k) => {
      const v = nest(object, fields)[k];
      return typeof v === 'object' && v !== null ? Object.keys(v).map((p) => `${k}.${p}`) : [k];
    });
  // Salesforce datetimes have second precision (REST shows `.000`); SOQL literals are seconds too.
  const stamp = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString();

  const org = {
    get url() {
      return url();
    },
    version,
    orgId,
    userId,
    clientId,
    refreshToken,
    records,
    stats,
    log,
    /** Bulk API 2.0 jobs, getDeleted and limits: controls and counters (salesforce-bulk.ts). */
    bulk,
    deletions,
    /** A new valid access token (what `SF_ACCESS_TOKEN` would hold). */
    issueToken,
    /** Every access token stops working (sessions expire); the refresh token still works. */
    revokeTokens() {
      validTokens.clear();
    },
    /** An admin revoked the app's access: every refresh token and access token stops working. */
    revokeRefreshTokens() {
      refreshTokens.clear();
      validTokens.clear();
    },
    /** The next authorize request is denied by the "user" (`error=access_denied`). */
    denyNextAuthorization() {
      oauth.denyNext = true;
    },
    /** The query of the last authorize request (what sfmirror sent the browser to). */
    get lastAuthorize() {
      return oauth.lastAuthorize;
    },
    newId(object: string) {
      return toId18(`${KEY_PREFIX[object] ?? 'a00'}${String(++counters.id).padStart(12, '0')}`)!;
    },
    get lastReplayId() {
      return counters.replay;
    },

    insert(object: string, fields: Fields, o: { silent?: boolean; id?: string } = {}): string {
      const ms = nowMs();
      const id = o.id ?? org.newId(object);
      const rec = {
        ...fields,
        Id: id,
        IsDeleted: false,
        CreatedDate: stamp(ms),
        LastModifiedDate: stamp(ms),
        SystemModstamp: stamp(ms),
      } as Rec;
      table(object).set(id, rec);
      const nonEmpty = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== null));
      if (!o.silent)
        publish(object, {
          ChangeEventHeader: header(object, 'CREATE', [id], [], ms),
          ...nest(object, { ...nonEmpty, CreatedDate: rec.CreatedDate, LastModifiedDate: rec.LastModifiedDate }),
        });
      return id;
    },
    update(object: string, id: string, fields: Fields, o: { silent?: boolean } = {}) {
      const ms = nowMs();
      const rec = table(object).get(id);
      if (!rec || rec.IsDeleted) throw new Error(`no live ${object} ${id}`);
      Object.assign(rec, fields, { LastModifiedDate: stamp(ms), SystemModstamp: stamp(ms) });
      const sent = { ...fields, LastModifiedDate: rec.LastModifiedDate };
      if (!o.silent)
        publish(object, { ChangeEventHeader: header(object, 'UPDATE', [id], changedNames(object, sent), ms), ...nest(object, sent) });
    },
    remove(object: string, id: string, o: { silent?: boolean; hard?: boolean } = {}) {
      const ms = nowMs();
      const rec = table(object).get(id);
      if (!rec) throw new Error(`no ${object} ${id}`);
      Object.assign(rec, { IsDeleted: true, SystemModstamp: stamp(ms) });
      deletions.push({ object, id, deletedDate: rec.SystemModstamp });
      if (o.hard) table(object).delete(id);
      if (!o.silent) publish(object, { ChangeEventHeader: header(object, 'DELETE', [id], [], ms) });
    },
    undelete(object: string, id: string, o: { silent?: boolean } = {}) {
      const ms = nowMs();
      const rec = table(object).get(id);
      if (!rec?.IsDeleted) throw new Error(`no deleted ${object} ${id}`);
      Object.assign(rec, { IsDeleted: false, LastModifiedDate: stamp(ms), SystemModstamp: stamp(ms) });
      const { Id: _i, IsDeleted: _d, SystemModstamp: _s, ...rest } = rec;
      const nonEmpty = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== null)) as Fields;
      if (!o.silent) publish(object, { ChangeEventHeader: header(object, 'UNDELETE', [id], [], ms), ...nest(object, nonEmpty) });
    },
    /** DML inside `fn` shares one transactionKey (and commitNumber), as one Salesforce transaction. */
    transaction(fn: () => void) {
      currentTxn = { key: `txn-${++counters.txn}`, seq: 0, commit: (counters.commit += 3n) };
      try {
        fn();
      } finally {
        currentTxn = undefined;
      }
    },
    /** Publishes a raw change event payload (fixtures, GAP events); returns its replayId. */
    publishRaw(object: string, payload: Record<string, unknown>) {
      return publish(object, payload);
    },
    /** A GAP event for these records (no data), e.g. after Salesforce lost track of them. */
    gap(object: string, changeType: string, ids: string[]) {
      return publish(object, { ChangeEventHeader: header(object, changeType, ids, [], nowMs()) });
    },
    /** Drops every retained event: stored replayIds become invalid (the 72 h window has passed). */
    expireReplay() {
      log.length = 0;
      floor = counters.replay + 1;
    },
    /** The server forgets every current session: their next /meta/connect gets `403::Unknown client`. */
    forgetClients() {
      for (const id of clientIds) forgotten.add(id);
      clientIds.clear();
    },
    /** While on, CometD requests get no answer at all (a stream gone quiet); off drops the held ones. */
    silence(on: boolean) {
      silent = on;
      if (!on) {
        for (const r of held) r.socket?.destroy();
        held.clear();
      }
    },
    /** While on, CometD requests are answered 503 (maintenance, a proxy in trouble). */
    unavailable(on: boolean) {
      unavailable = on;
    },
    /** Stops and starts the server on the same port: sessions are forgotten, records and replay log kept. */
    async restart() {
      await stop();
      await listen(port);
    },
    close: stop,
    /** The live records of an object, as REST returns them (no attributes, formulas computed now), by id. */
    live(object: string): Map<string, Fields> {
      return new Map([...table(object)].filter(([, r]) => !r.IsDeleted).map(([id, r]) => [id, view(object, r)]));
    },
    /** Moves the stand-in's clock (what TODAY() and NOW() in formulas see). */
    advanceClock(ms: number) {
      clock.offsetMs += ms;
    },
  };
  await listen(0);
  t?.teardown(() => stop());
  return org;
}

export type SalesforceOrg = Awaited<ReturnType<typeof startSalesforceOrg>>;
