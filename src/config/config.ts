import { readFileSync } from 'node:fs';
import { createPublicKey, type KeyObject } from 'node:crypto';
import path from 'node:path';
import { isValidAlias, isValidSobjectName } from '../changes/names.ts';
import { parseFieldPatterns } from '../changes/field-filter.ts';

/**
 * One schema for the environment (README.md, "Configuration"). Each entry parses one variable and
 * throws a plain message on a bad value; `loadConfig` collects every problem so start-up can print
 * them all at once (exit 2). The Config type is derived from this table, never written twice.
 */
type Env = Record<string, string | undefined>;
type Spec<T> = { doc: string; parse: (raw: string | undefined, env: Env) => T };

const str = (def?: string): Spec<string | undefined> => ({ doc: '', parse: (v) => (v === undefined || v === '' ? def : v) });
const strDef = (def: string): Spec<string> => ({ doc: '', parse: (v) => (v === undefined || v === '' ? def : v) });
const int = (def: number, min: number, max: number): Spec<number> => ({
  doc: '',
  parse: (v) => {
    if (v === undefined || v === '') return def;
    if (!/^\d+$/.test(v.trim())) throw new Error(`must be a whole number, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new Error(`must be between ${min} and ${max}, got ${n}`);
    return n;
  },
});
const share = (def: number): Spec<number> => ({
  doc: '',
  parse: (v) => {
    if (v === undefined || v === '') return def;
    const n = Number(v.trim());
    if (!/^\d*\.?\d+$/.test(v.trim()) || !(n > 0 && n <= 1))
      throw new Error(`must be a share of the allowance above 0 and at most 1 (e.g. 0.5), got "${v}"`);
    return n;
  },
});
const url = (protocols: string[], def?: string): Spec<string | undefined> => ({
  doc: '',
  parse: (v) => {
    if (v === undefined || v === '') return def;
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      throw new Error(`is not a URL: "${redact(v)}"`);
    }
    if (!protocols.includes(u.protocol)) throw new Error(`must start with ${protocols.join(' or ')}`);
    return v.replace(/\/+$/, '');
  },
});
const list = (v: string | undefined) =>
  (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const redact = (v: string) => (v.length > 24 ? `${v.slice(0, 12)}...` : v).replace(/\/\/[^@/]*@/, '//***@');

// A host name (https implied) or an origin: http(s)://host[:port], nothing after it.
const LOGIN_HOST = /^(?:https?:\/\/)?[a-z0-9.-]+(?::\d{1,5})?\/?$/i;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const spec = {
  DATABASE_URL: url(['postgres:', 'postgresql:']),
  SFMIRROR_DATA_DIR: { doc: '', parse: (v: string | undefined) => path.resolve(v || './.sfmirror') },
  HOST: strDef('127.0.0.1'),
  PORT: int(8080, 0, 65535),
  SFMIRROR_INGEST_SECRETS: {
    doc: '',
    parse: (v: string | undefined) => {
      const secrets = list(v);
      for (const s of secrets) if (s.length < 16) throw new Error('each secret must be at least 16 characters');
      return secrets;
    },
  },
  SFMIRROR_INGEST_PUBLIC_KEYS: { doc: '', parse: (v: string | undefined) => parsePublicKeys(v) },
  SFMIRROR_ADMIN_TOKEN: {
    doc: '',
    parse: (v: string | undefined) => {
      if (v === undefined || v === '') return undefined;
      if (v.length < 16) throw new Error('must be at least 16 characters');
      return v;
    },
  },
  SFMIRROR_API_TOKENS: {
    doc: '',
    parse: (v: string | undefined) =>
      list(v).map((pair) => {
        const i = pair.indexOf(':');
        const name = pair.slice(0, i);
        const token = pair.slice(i + 1);
        if (i <= 0 || !/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error('each entry must be name:token (name of letters, digits, _ . -)');
        if (token.length < 16) throw new Error(`token of "${name}" must be at least 16 characters`);
        return { name, token };
      }),
  },
  // Browser origins allowed to call the read API (/api/v1); unset: no CORS headers at all.
  SFMIRROR_API_CORS_ORIGINS: {
    doc: '',
    parse: (v: string | undefined) =>
      list(v).map((o) => {
        if (o === '*') return o;
        let u: URL;
        try {
          u = new URL(o);
        } catch {
          throw new Error(`each entry must be an origin such as https://app.example.com, or *; got "${o}"`);
        }
        if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.origin !== o.replace(/\/$/, ''))
          throw new Error(`each entry must be an origin such as https://app.example.com (scheme, host, port; no path), or *; got "${o}"`);
        return u.origin;
      }),
  },
  // Several keys (comma-separated) = rotation: the first encrypts, all decrypt (src/lib/secret-box.ts).
  SFMIRROR_ENCRYPTION_KEY: {
    doc: '',
    parse: (v: string | undefined) => {
      const keys = list(v).map((k, i) => {
        const key = Buffer.from(k, 'base64');
        if (key.length !== 32)
          throw new Error(`must be 32 bytes in base64 (key ${i + 1} has ${key.length} bytes); make one with: openssl rand -base64 32`);
        return key;
      });
      return keys.length ? keys : undefined;
    },
  },
  /** Where Salesforce sends the operator back after consent, when /oauth/authorize has no redirect_uri. */
  SFMIRROR_OAUTH_REDIRECT_URI: url(['https:', 'http:']),
  SF_INSTANCE_URL: url(['https:', 'http:']),
  SF_ACCESS_TOKEN: str(),
  SF_LOGIN_URL: url(['https:', 'http:'], 'https://login.salesforce.com'),
  SF_CLIENT_ID: str(),
  SF_CLIENT_SECRET: str(),
  SF_REFRESH_TOKEN: str(),
  SF_USERNAME: str(),
  SF_PRIVATE_KEY_FILE: str(),
  SF_API_VERSION: {
    doc: '',
    parse: (v: string | undefined) => {
      const s = v || '62.0';
      if (!/^\d{2,3}\.0$/.test(s)) throw new Error(`must look like 62.0, got "${s}"`);
      return s;
    },
  },
  SF_OBJECTS: {
    doc: '',
    parse: (v: string | undefined) => {
      const names = list(v);
      for (const n of names) if (!isValidSobjectName(n)) throw new Error(`"${n}" is not a Salesforce object API name`);
      return names.length ? names : undefined;
    },
  },
  SF_CDC_CHANNEL: strDef('/data/ChangeEvents'),
  SF_ORG_ALIAS: {
    doc: '',
    parse: (v: string | undefined) => {
      const a = v || 'salesforce';
      if (!isValidAlias(a))
        throw new Error(
          `"${a}" is not a usable alias (lower-case letters, digits and _, starting with a letter; not sfmirror, public, information_schema or pg_*)`,
        );
      return a;
    },
  },
  BIGQUERY_PROJECT: str(),
  BIGQUERY_DATASET: strDef('salesforce'),
  BIGQUERY_API_ENDPOINT: url(['https:', 'http:']),
  // host:port of another Storage Write API endpoint (plaintext gRPC, no Google credentials).
  BIGQUERY_STORAGE_API_ENDPOINT: {
    doc: '',
    parse: (v: string | undefined) => {
      if (v === undefined || v === '') return undefined;
      if (!/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(v)) throw new Error(`must be host:port, got "${redact(v)}"`);
      return v;
    },
  } as Spec<string | undefined>,
  // max_staleness of new latest-state (CDC) tables, in minutes.
  SFMIRROR_BIGQUERY_MAX_STALENESS: int(15, 0, 1440),
  LOG_LEVEL: {
    doc: '',
    parse: (v: string | undefined) => {
      const l = v || 'info';
      if (!(LOG_LEVELS as readonly string[]).includes(l)) throw new Error(`must be one of ${LOG_LEVELS.join(', ')}`);
      return l as (typeof LOG_LEVELS)[number];
    },
  },
  // Tuning knobs (README.md lists them).
  SFMIRROR_DB_POOL_SIZE: int(10, 1, 200),
  SFMIRROR_DB_CONNECT_TIMEOUT_MS: int(5000, 100, 120_000),
  SFMIRROR_INGEST_MAX_INFLIGHT: int(8, 1, 1000),
  SFMIRROR_INGEST_MAX_QUEUED: int(32, 0, 10_000),
  SFMIRROR_SHUTDOWN_TIMEOUT_MS: int(25_000, 0, 600_000),
  SFMIRROR_BACKFILL_PAGE_SIZE: int(2000, 1, 2000),
  SFMIRROR_BACKFILL_LEASE_MS: int(120_000, 1000, 3_600_000),
  SFMIRROR_BACKFILL_POLL_MS: int(10_000, 100, 3_600_000),
  SFMIRROR_CONSOLE_SESSION_MINUTES: int(480, 1, 10_080),
  SFMIRROR_CONSOLE_HISTORY_INTERVAL_MS: int(10_000, 200, 600_000),
  SFMIRROR_RECONCILE_AT: {
    doc: '',
    parse: (v: string | undefined) => {
      const m = /^(\d{2}):(\d{2})$/.exec(v || '00:30');
      if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) throw new Error(`must be HH:MM (UTC), got "${v}"`);
      return Number(m[1]) * 60 + Number(m[2]);
    },
  },
  SFMIRROR_BULK_THRESHOLD: int(10_000, 0, 100_000_000),
  SFMIRROR_BULK_PAGE_SIZE: int(50_000, 1, 1_000_000),
  SFMIRROR_BULK_POLL_MS: int(2000, 10, 600_000),
  SFMIRROR_BULK_TIMEOUT_MS: int(1_800_000, 1000, 86_400_000),
  SFMIRROR_API_BUDGET_SHARE: share(0.5),
  SFMIRROR_API_BUDGET_RECHECK_MS: int(300_000, 1000, 86_400_000),
  SFMIRROR_CDC_FLUSH_IDLE_MS: int(50, 1, 60_000),
  SFMIRROR_CDC_MAX_BATCH: int(2000, 1, 100_000),
  SFMIRROR_CDC_WATCHDOG_GRACE_MS: int(30_000, 100, 3_600_000),
  SFMIRROR_CDC_LEADER_POLL_MS: int(2000, 50, 60_000),
  SFMIRROR_TOMBSTONE_RETENTION_DAYS: int(30, 1, 3650),
  // Fields chosen by the operator and formula freshness (src/formulas; README, "Formula fields" and "Choosing fields").
  SFMIRROR_FIELDS: { doc: '', parse: (v: string | undefined) => parseFieldPatterns(v) },
  SFMIRROR_EXCLUDE_FIELDS: { doc: '', parse: (v: string | undefined) => parseFieldPatterns(v) },
  SFMIRROR_FORMULA_REREAD_DELAY_MS: int(2000, 0, 3_600_000),
  SFMIRROR_FORMULA_REFRESH_INTERVAL_MS: int(86_400_000, 1000, 31 * 86_400_000),
  SFMIRROR_FORMULA_POLL_MS: int(500, 10, 600_000),
  SFMIRROR_FORMULA_BULK_THRESHOLD: int(50_000, 1, 100_000_000),
  SFMIRROR_DESCRIBE_REFRESH_MS: int(3_600_000, 1000, 86_400_000),
  SFMIRROR_API_RATE_LIMIT: int(50, 0, 100_000),
  SFMIRROR_API_RATE_BURST: int(100, 1, 1_000_000),
  SFMIRROR_ORGS_POLL_MS: int(5000, 50, 600_000),
  SFMIRROR_OAUTH_STATE_TTL_SECONDS: int(600, 10, 86_400),
  // Hardening (README, "Security").
  /** Login hosts allowed besides Salesforce's own: host names (https) or origins (http only on loopback). */
  SFMIRROR_OAUTH_LOGIN_HOSTS: {
    doc: '',
    parse: (v: string | undefined) => {
      const entries = list(v);
      for (const e of entries) if (!LOGIN_HOST.test(e)) throw new Error(`"${redact(e)}" is not a host name or an http(s) origin`);
      return entries;
    },
  },
  SFMIRROR_METRICS_DOCS: {
    doc: '',
    parse: (v: string | undefined) => {
      const m = v || 'open';
      if (m !== 'open' && m !== 'admin' && m !== 'off') throw new Error(`must be open, admin or off, got "${m}"`);
      return m as 'open' | 'admin' | 'off';
    },
  },
  SFMIRROR_MAX_CONNECTIONS: int(512, 1, 1_000_000),
  SFMIRROR_HEADERS_TIMEOUT_MS: int(10_000, 100, 600_000),
  SFMIRROR_REQUEST_TIMEOUT_MS: int(60_000, 100, 3_600_000),
  SFMIRROR_INGEST_BODY_TIMEOUT_MS: int(30_000, 100, 600_000),
  SFMIRROR_INGEST_UNVERIFIED_BYTES: int(32 * 1024 * 1024, 16 * 1024 * 1024, 4 * 1024 * 1024 * 1024),
  SFMIRROR_HSTS_MAX_AGE: int(0, 0, 100_000_000),
  SFMIRROR_API_UNKNOWN_TOKEN_RATE: int(5, 0, 100_000),
  // BigQuery drain (src/warehouse); defaults well inside insertAll's limits (50,000 rows, 10 MB).
  SFMIRROR_WAREHOUSE_BATCH_ROWS: int(2000, 1, 50_000),
  SFMIRROR_WAREHOUSE_BATCH_BYTES: int(5_000_000, 10_000, 9_000_000),
  SFMIRROR_WAREHOUSE_FLUSH_MS: int(2000, 10, 600_000),
  SFMIRROR_WAREHOUSE_CONCURRENCY: int(4, 1, 64),
  SFMIRROR_WAREHOUSE_LEASE_MS: int(120_000, 1000, 3_600_000),
  SFMIRROR_WAREHOUSE_REQUEST_TIMEOUT_MS: int(30_000, 100, 600_000),
  SFMIRROR_WAREHOUSE_BACKOFF_BASE_MS: int(1000, 1, 600_000),
  SFMIRROR_WAREHOUSE_BACKOFF_CAP_MS: int(60_000, 1, 3_600_000),
} satisfies Record<string, Spec<unknown>>;

export type Config = Readonly<{ [K in keyof typeof spec]: ReturnType<(typeof spec)[K]['parse']> }> & {
  /** Salesforce API access is configured: an instance URL (or login URL) and one way to authenticate. */
  readonly salesforceConfigured: boolean;
};

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

/** Parses the whole environment; throws ConfigError listing one line per problem. */
export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(spec)) {
    try {
      out[name] = (s as Spec<unknown>).parse(env[name]?.trim() === '' ? undefined : env[name], env);
    } catch (e) {
      problems.push(`${name} ${(e as Error).message}`);
    }
  }
  const has = (k: string) => !!env[k];
  if (has('SF_REFRESH_TOKEN') && !has('SF_CLIENT_ID')) problems.push('SF_REFRESH_TOKEN needs SF_CLIENT_ID (and usually SF_CLIENT_SECRET)');
  if (has('SF_USERNAME') !== has('SF_PRIVATE_KEY_FILE'))
    problems.push('SF_USERNAME and SF_PRIVATE_KEY_FILE go together (JWT bearer auth, with SF_CLIENT_ID)');
  if (has('SF_PRIVATE_KEY_FILE') && !has('SF_CLIENT_ID')) problems.push('SF_PRIVATE_KEY_FILE needs SF_CLIENT_ID (JWT bearer auth)');
  if (has('SF_ACCESS_TOKEN') && !has('SF_INSTANCE_URL')) problems.push('SF_ACCESS_TOKEN needs SF_INSTANCE_URL');
  if (!problems.length && Number(out.SFMIRROR_WAREHOUSE_REQUEST_TIMEOUT_MS) * 2 > Number(out.SFMIRROR_WAREHOUSE_LEASE_MS)) {
    problems.push(
      'SFMIRROR_WAREHOUSE_REQUEST_TIMEOUT_MS must be at most half of SFMIRROR_WAREHOUSE_LEASE_MS (a request must end while its rows are leased)',
    );
  }
  if (!problems.length && out.BIGQUERY_PROJECT !== undefined && !/^[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}$/.test(String(out.BIGQUERY_PROJECT)))
    problems.push(`BIGQUERY_PROJECT is not a BigQuery project id: "${redact(String(out.BIGQUERY_PROJECT))}"`);
  if (!problems.length && !/^[A-Za-z_][A-Za-z0-9_]{0,1000}$/.test(String(out.BIGQUERY_DATASET)))
    problems.push(`BIGQUERY_DATASET must be letters, digits and underscores, got "${redact(String(out.BIGQUERY_DATASET))}"`);
  if (problems.length) throw new ConfigError(problems);
  const salesforceConfigured =
    (has('SF_INSTANCE_URL') && has('SF_ACCESS_TOKEN')) || has('SF_REFRESH_TOKEN') || (has('SF_USERNAME') && has('SF_PRIVATE_KEY_FILE'));
  return Object.freeze({ ...out, salesforceConfigured }) as unknown as Config;
}

const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----/g;

/** Public keys or X.509 certificates, inline PEM or file paths, comma-separated. */
function parsePublicKeys(v: string | undefined): KeyObject[] {
  const keys: KeyObject[] = [];
  for (const part of list(v)) {
    let pem = part;
    if (!part.includes('-----BEGIN')) {
      try {
        pem = readFileSync(part, 'utf8');
      } catch (e) {
        throw new Error(`cannot read "${part}": ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    const blocks = pem.replace(/\\n/g, '\n').match(PEM_BLOCK) ?? [];
    if (!blocks.length) throw new Error(`"${redact(part)}" holds no PEM public key or certificate`);
    for (const block of blocks) {
      if (/PRIVATE KEY/.test(block)) throw new Error('holds a PRIVATE key: give sfmirror only the public key or certificate');
      try {
        keys.push(createPublicKey(block));
      } catch (e) {
        throw new Error(`has an unreadable key: ${(e as Error).message}`);
      }
    }
  }
  return keys;
}
