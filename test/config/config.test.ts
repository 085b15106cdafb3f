import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { ConfigError, loadConfig } from '../../src/config/config.ts';

t.test('defaults', async (t) => {
  const c = loadConfig({});
  t.equal(c.HOST, '127.0.0.1');
  t.equal(c.PORT, 8080);
  t.equal(c.SF_ORG_ALIAS, 'salesforce');
  t.equal(c.SF_API_VERSION, '62.0');
  t.equal(c.SF_CDC_CHANNEL, '/data/ChangeEvents');
  t.equal(c.BIGQUERY_DATASET, 'salesforce');
  t.equal(c.SF_LOGIN_URL, 'https://login.salesforce.com');
  t.match(c.SFMIRROR_DATA_DIR, /\.sfmirror$/);
  t.equal(c.salesforceConfigured, false);
  t.ok(Object.isFrozen(c));
});

t.test('every problem is reported, one per line', async (t) => {
  try {
    loadConfig({
      PORT: '99999',
      DATABASE_URL: 'mysql://x',
      LOG_LEVEL: 'loud',
      SF_OBJECTS: 'Account,Bad Name',
      SFMIRROR_API_TOKENS: 'noseparator',
      SF_REFRESH_TOKEN: 'r',
    });
    t.fail('should throw');
  } catch (e) {
    t.ok(e instanceof ConfigError);
    const p = (e as ConfigError).problems;
    t.equal(p.length, 6, p.join('\n'));
    t.match(p.join('\n'), /PORT must be between 0 and 65535/);
    t.match(p.join('\n'), /DATABASE_URL must start with postgres:/);
    t.match(p.join('\n'), /LOG_LEVEL must be one of/);
    t.match(p.join('\n'), /SF_OBJECTS "Bad Name"/);
    t.match(p.join('\n'), /SF_REFRESH_TOKEN needs SF_CLIENT_ID/);
  }
});

t.test('public keys inline or as files; private keys refused', async (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const c = loadConfig({ SFMIRROR_INGEST_PUBLIC_KEYS: pub });
  t.equal(c.SFMIRROR_INGEST_PUBLIC_KEYS.length, 1);
  const priv = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  t.throws(() => loadConfig({ SFMIRROR_INGEST_PUBLIC_KEYS: priv }), /PRIVATE key/);
  const c2 = loadConfig({
    SFMIRROR_INGEST_SECRETS: 'aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb',
    SFMIRROR_API_TOKENS: 'app:0123456789abcdef0123',
    SF_INSTANCE_URL: 'https://x.my.salesforce.com/',
    SF_ACCESS_TOKEN: 't',
  });
  t.same(c2.SFMIRROR_INGEST_SECRETS, ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb'], 'several secrets: rotation');
  t.same(c2.SFMIRROR_API_TOKENS, [{ name: 'app', token: '0123456789abcdef0123' }]);
  t.equal(c2.SF_INSTANCE_URL, 'https://x.my.salesforce.com');
  t.equal(c2.salesforceConfigured, true);
});

t.test('Bulk and API budget knobs', async (t) => {
  const d = loadConfig({});
  t.same(
    [d.SFMIRROR_BULK_THRESHOLD, d.SFMIRROR_BULK_PAGE_SIZE, d.SFMIRROR_API_BUDGET_SHARE, d.SFMIRROR_API_BUDGET_RECHECK_MS],
    [10_000, 50_000, 0.5, 300_000],
  );
  t.equal(loadConfig({ SFMIRROR_API_BUDGET_SHARE: '0.8', SFMIRROR_BULK_THRESHOLD: '0' }).SFMIRROR_API_BUDGET_SHARE, 0.8);
  t.equal(loadConfig({ SFMIRROR_API_BUDGET_SHARE: '1' }).SFMIRROR_API_BUDGET_SHARE, 1);
  for (const bad of ['0', '1.5', '50%', '-0.2', 'half']) {
    t.throws(
      () => loadConfig({ SFMIRROR_API_BUDGET_SHARE: bad }),
      /SFMIRROR_API_BUDGET_SHARE must be a share of the allowance above 0 and at most 1/,
      bad,
    );
  }
});

t.test('warehouse settings', async (t) => {
  const c = loadConfig({ BIGQUERY_PROJECT: 'my-project', SFMIRROR_WAREHOUSE_BATCH_ROWS: '1000' });
  t.equal(loadConfig({}).SFMIRROR_WAREHOUSE_BATCH_ROWS, 2000, 'appends of 2,000 rows by default');
  t.same(
    [
      c.BIGQUERY_PROJECT,
      c.BIGQUERY_DATASET,
      c.SFMIRROR_WAREHOUSE_BATCH_ROWS,
      c.SFMIRROR_WAREHOUSE_FLUSH_MS,
      c.SFMIRROR_WAREHOUSE_CONCURRENCY,
    ],
    ['my-project', 'salesforce', 1000, 2000, 4],
  );
  t.throws(
    () => loadConfig({ SFMIRROR_WAREHOUSE_REQUEST_TIMEOUT_MS: '90000', SFMIRROR_WAREHOUSE_LEASE_MS: '120000' }),
    /at most half of SFMIRROR_WAREHOUSE_LEASE_MS/,
    'a request must end within its lease',
  );
  t.throws(() => loadConfig({ BIGQUERY_DATASET: 'sales-force' }), /BIGQUERY_DATASET must be letters, digits and underscores/);
  t.throws(() => loadConfig({ BIGQUERY_PROJECT: 'p`x' }), /BIGQUERY_PROJECT is not a BigQuery project id/);
  t.throws(() => loadConfig({ SFMIRROR_WAREHOUSE_BATCH_ROWS: '60000' }), /between 1 and 50000/, 'within BigQuery limits');
});

t.test('SFMIRROR_API_CORS_ORIGINS: origins or *, off when unset', async (t) => {
  t.same(loadConfig({}).SFMIRROR_API_CORS_ORIGINS, []);
  t.same(loadConfig({ SFMIRROR_API_CORS_ORIGINS: 'https://app.example.com, http://localhost:3000/' }).SFMIRROR_API_CORS_ORIGINS, [
    'https://app.example.com',
    'http://localhost:3000',
  ]);
  t.same(loadConfig({ SFMIRROR_API_CORS_ORIGINS: '*' }).SFMIRROR_API_CORS_ORIGINS, ['*']);
  t.throws(
    () => loadConfig({ SFMIRROR_API_CORS_ORIGINS: 'https://app.example.com/path' }),
    /SFMIRROR_API_CORS_ORIGINS each entry must be an origin/,
  );
  t.throws(() => loadConfig({ SFMIRROR_API_CORS_ORIGINS: 'app.example.com' }), /must be an origin/);
});
