import t from 'tap';
import { loadConfig } from '../../src/config/config.ts';
import { startupSummary } from '../../src/bin/summary.ts';

t.test('the start-up summary says what is on and off and where to go', async (t) => {
  const bare = startupSummary(loadConfig({ SFMIRROR_DATA_DIR: '/var/lib/sfmirror' }), 'http://127.0.0.1:8080');
  t.match(bare, /^sfmirror is serving on http:\/\/127\.0\.0\.1:8080\n/);
  t.match(bare, /ingest +off +set SFMIRROR_INGEST_SECRETS or SFMIRROR_INGEST_PUBLIC_KEYS/);
  t.match(bare, /operator API +off +set SFMIRROR_ADMIN_TOKEN/);
  t.match(bare, /CDC stream +off +no Salesforce configured/);
  t.match(bare, /warehouse +off +set BIGQUERY_PROJECT/);
  t.match(bare, /docs +http:\/\/127\.0\.0\.1:8080\/docs \(OpenAPI: http:\/\/127\.0\.0\.1:8080\/docs\/json\)/);
  t.match(bare, /PostgreSQL +embedded in \/var\/lib\/sfmirror; connect: sfmirror psql/);
  const full = startupSummary(
    loadConfig({
      SFMIRROR_INGEST_SECRETS: 'a'.repeat(20),
      SFMIRROR_ADMIN_TOKEN: 'b'.repeat(20),
      SF_INSTANCE_URL: 'https://acme.my.salesforce.com',
      SF_ACCESS_TOKEN: 'token',
      BIGQUERY_PROJECT: 'p',
      DATABASE_URL: 'postgres://u:secret@db/x',
      SFMIRROR_API_CORS_ORIGINS: 'https://app.example.com',
    }),
    'http://0.0.0.0:8080',
  );
  t.match(full, /ingest +on +1 HMAC secret\(s\), 0 public key\(s\)/);
  t.match(full, /operator API +on/);
  t.match(full, /CDC stream +on +org salesforce on \/data\/ChangeEvents/);
  t.match(full, /warehouse +on +BigQuery p\.salesforce/);
  t.match(full, /CORS for https:\/\/app\.example\.com/);
  t.match(full, /PostgreSQL +DATABASE_URL;/);
  t.notMatch(full, /secret@|a{20}|b{20}/, 'no secret is printed');
});
