import path from 'node:path';
import type { Config } from '../config/config.ts';

/**
 * What `serve` prints on a terminal once it listens: what is on and off, and where to go next.
 * JSON logs are for machines; a person starting sfmirror by hand reads this. Pure: tested as text.
 */
export function startupSummary(config: Config, url: string): string {
  const onOff = (on: boolean, yes: string, no: string) => (on ? `on   ${yes}` : `off  ${no}`);
  const secrets = config.SFMIRROR_INGEST_SECRETS.length;
  const keys = config.SFMIRROR_INGEST_PUBLIC_KEYS.length;
  const lines = [
    `sfmirror is serving on ${url}`,
    `  ingest        ${onOff(secrets + keys > 0, `${secrets} HMAC secret(s), ${keys} public key(s); per-org keys: sfmirror orgs keys`, 'set SFMIRROR_INGEST_SECRETS or SFMIRROR_INGEST_PUBLIC_KEYS (pushes answer 401 until then)')}`,
    `  operator API  ${onOff(!!config.SFMIRROR_ADMIN_TOKEN, 'Authorization: Bearer $SFMIRROR_ADMIN_TOKEN', 'set SFMIRROR_ADMIN_TOKEN')}`,
    `  read API      ${config.SFMIRROR_API_TOKENS.length} token(s) from SFMIRROR_API_TOKENS; clients: sfmirror clients add${config.SFMIRROR_API_CORS_ORIGINS.length ? `; CORS for ${config.SFMIRROR_API_CORS_ORIGINS.join(', ')}` : ''}`,
    `  CDC stream    ${onOff(config.salesforceConfigured, `org ${config.SF_ORG_ALIAS} on ${config.SF_CDC_CHANNEL}`, 'no Salesforce configured (SF_* variables; README, "Connect your org")')}`,
    `  warehouse     ${onOff(!!config.BIGQUERY_PROJECT, `BigQuery ${config.BIGQUERY_PROJECT}.${config.BIGQUERY_DATASET}`, 'set BIGQUERY_PROJECT')}`,
    `  docs          ${url}/docs (OpenAPI: ${url}/docs/json); status: sfmirror status`,
    `  PostgreSQL    ${config.DATABASE_URL ? 'DATABASE_URL' : `embedded in ${path.resolve(config.SFMIRROR_DATA_DIR)}`}; connect: sfmirror psql, or psql "$(sfmirror db-url)"`,
  ];
  return `${lines.join('\n')}\n`;
}
