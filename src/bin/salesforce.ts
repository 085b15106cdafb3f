import type { Config } from '../config/config.ts';
import { createFieldFilter, type FieldFilter } from '../changes/field-filter.ts';
import { createSalesforceSession, type SessionHooks } from '../salesforce/client.ts';

const filters = new WeakMap<Config, FieldFilter>();
/** SFMIRROR_FIELDS / SFMIRROR_EXCLUDE_FIELDS as one filter (one per config). */
export function fieldFilterOf(config: Config): FieldFilter {
  let f = filters.get(config);
  if (!f) filters.set(config, (f = createFieldFilter(config.SFMIRROR_FIELDS, config.SFMIRROR_EXCLUDE_FIELDS)));
  return f;
}

/** A Salesforce session for the org configured by environment (access token, refresh token or JWT). */
export function salesforceSessionOf(config: Config, hooks: SessionHooks = {}) {
  return createSalesforceSession(
    {
      instanceUrl: config.SF_INSTANCE_URL,
      accessToken: config.SF_ACCESS_TOKEN,
      refreshToken: config.SF_REFRESH_TOKEN,
      clientId: config.SF_CLIENT_ID,
      clientSecret: config.SF_CLIENT_SECRET,
      loginUrl: config.SF_LOGIN_URL ?? 'https://login.salesforce.com',
      username: config.SF_USERNAME,
      privateKeyFile: config.SF_PRIVATE_KEY_FILE,
      version: config.SF_API_VERSION,
      allowField: fieldFilterOf(config).allows,
    },
    hooks,
  );
}

/** Bulk API 2.0 tuning of backfills and resyncs (SFMIRROR_BULK_*). */
export const bulkTuningOf = (config: Config) => ({
  threshold: config.SFMIRROR_BULK_THRESHOLD,
  pageSize: config.SFMIRROR_BULK_PAGE_SIZE,
  pollMs: config.SFMIRROR_BULK_POLL_MS,
  timeoutMs: config.SFMIRROR_BULK_TIMEOUT_MS,
});
