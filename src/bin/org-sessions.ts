import type { Config } from '../config/config.ts';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import { SecretBoxError, type SecretBox } from '../lib/secret-box.ts';
import {
  listOAuthOrgs,
  listOrgKeys,
  setAuthState,
  updateOrgKeySecret,
  updateRefreshTokenEnc,
  type OAuthOrgRow,
} from '../mirror/org-connections.repository.ts';
import { fieldFilterOf } from './salesforce.ts';
import { createSalesforceSession, type SalesforceSession } from '../salesforce/client.ts';

/**
 * The Salesforce sessions of every org sfmirror has API access to: the org configured by environment,
 * and the orgs connected by OAuth (their refresh tokens decrypted from sfmirror.orgs). `sync()`
 * re-reads the registry: new or reconnected orgs get a session, removed or revoked ones lose it.
 *
 * An org whose refresh token Salesforce refuses (invalid_grant) is marked `revoked` with
 * Salesforce's words and loses its session: status shows it, nothing retries it in a loop, and
 * connecting it again through /oauth/authorize brings it back. A token that does not decrypt
 * (SFMIRROR_ENCRYPTION_KEY unset or wrong) marks the org `locked` until the right key is given.
 */
export interface OrgSessions {
  sessionFor(alias: string): SalesforceSession | undefined;
  /** Aliases with a live session, the environment's org first. */
  aliases(): string[];
  sync(): Promise<{ added: string[]; removed: string[] }>;
}

export function createOrgSessions(o: {
  db: Db;
  config: Config;
  box: SecretBox | undefined;
  log: Logger;
  envSession?: SalesforceSession | undefined;
}): OrgSessions {
  const oauth = new Map<string, { session: SalesforceSession; row: OAuthOrgRow }>();
  const envAlias = o.config.SF_ORG_ALIAS;
  // Orgs whose token did not open, by connection: tried again only when reconnected or restarted.
  const unopened = new Set<string>();

  async function open(row: OAuthOrgRow): Promise<SalesforceSession | undefined> {
    let refreshToken: string;
    try {
      if (!o.box) throw new SecretBoxError('SFMIRROR_ENCRYPTION_KEY is unset: the stored refresh token cannot be read');
      refreshToken = o.box.open(row.refreshTokenEnc, `refresh_token:${row.alias}`);
    } catch (e) {
      const msg = e instanceof SecretBoxError ? e.message : 'stored refresh token unreadable';
      o.log.error({ org: row.alias, err: msg }, "cannot open the org's refresh token");
      await setAuthState(o.db, row.alias, 'locked', msg, row.connectedAt);
      return undefined;
    }
    return createSalesforceSession(
      {
        instanceUrl: row.instanceUrl,
        refreshToken,
        clientId: o.config.SF_CLIENT_ID,
        clientSecret: o.config.SF_CLIENT_SECRET,
        loginUrl: row.loginUrl,
        version: o.config.SF_API_VERSION,
        allowField: fieldFilterOf(o.config).allows,
      },
      {
        onGrantRevoked: (message) => {
          o.log.error(
            { org: row.alias, err: message },
            "Salesforce revoked the org's refresh token: connect it again through /oauth/authorize",
          );
          oauth.delete(row.alias);
          void setAuthState(o.db, row.alias, 'revoked', message, row.connectedAt).catch((e: Error) =>
            o.log.warn({ err: e.message }, 'could not record the revoked state'),
          );
        },
        onGranted: () => {
          if (row.authState !== 'connected') {
            row.authState = 'connected';
            void setAuthState(o.db, row.alias, 'connected', null, row.connectedAt).catch((e: Error) =>
              o.log.warn({ err: e.message }, 'could not record the connected state'),
            );
          }
        },
      },
    );
  }

  return {
    sessionFor: (alias) => (alias === envAlias && o.envSession ? o.envSession : oauth.get(alias)?.session),
    aliases: () => [...(o.envSession ? [envAlias] : []), ...[...oauth.keys()].filter((a) => a !== envAlias)],
    async sync() {
      const rows = (await listOAuthOrgs(o.db)).filter((r) => r.authState !== 'revoked' && !(r.alias === envAlias && o.envSession));
      const added: string[] = [];
      const removed: string[] = [];
      for (const [alias, held] of oauth) {
        const now = rows.find((r) => r.alias === alias);
        // Gone, revoked, or reconnected (a new token): the old session goes.
        if (!now || now.connectedAt.getTime() !== held.row.connectedAt.getTime()) {
          oauth.delete(alias);
          removed.push(alias);
        }
      }
      for (const row of rows) {
        const attempt = `${row.alias}@${row.connectedAt.getTime()}`;
        if (oauth.has(row.alias) || unopened.has(attempt)) continue;
        const session = await open(row);
        if (session) {
          oauth.set(row.alias, { session, row });
          added.push(row.alias);
        } else unopened.add(attempt);
      }
      return { added, removed };
    },
  };
}

/**
 * Values sealed with an older key (still listed in SFMIRROR_ENCRYPTION_KEY) are sealed again with the
 * current one, so the older key can then be dropped. Run by `serve` at start; a value another instance
 * re-sealed meanwhile is left as it is (compare-and-set on the old value).
 */
export async function resealStoredSecrets(db: Db, box: SecretBox, log: Logger): Promise<number> {
  let n = 0;
  for (const row of await listOAuthOrgs(db)) {
    if (box.keyIdOf(row.refreshTokenEnc) === box.currentKeyId) continue;
    const ctx = `refresh_token:${row.alias}`;
    try {
      await updateRefreshTokenEnc(db, row.alias, row.refreshTokenEnc, box.seal(box.open(row.refreshTokenEnc, ctx), ctx));
      n++;
    } catch (e) {
      log.warn({ org: row.alias, err: (e as Error).message }, "could not re-encrypt the org's refresh token with the current key");
    }
  }
  for (const key of await listOrgKeys(db)) {
    if (!key.secretEnc || box.keyIdOf(key.secretEnc) === box.currentKeyId) continue;
    const ctx = `ingest_key:${key.id}`;
    try {
      await updateOrgKeySecret(db, key.id, key.secretEnc, box.seal(box.open(key.secretEnc, ctx), ctx));
      n++;
    } catch (e) {
      log.warn(
        { org: key.alias, key: key.id, err: (e as Error).message },
        "could not re-encrypt the org's signing secret with the current key",
      );
    }
  }
  return n;
}

/**
 * Keeps one CDC stream per org with a session: `sync()` (every `pollMs`, and when an org is connected)
 * starts streams of new orgs and stops those of removed or revoked ones. Syncs never overlap.
 */
export function superviseOrgStreams(o: {
  sessions: OrgSessions;
  log: Logger;
  pollMs: number;
  start: (alias: string, session: SalesforceSession) => { stop(): Promise<void> };
}) {
  const streams = new Map<string, { stop(): Promise<void> }>();
  let closing = false;
  let chain: Promise<void> = Promise.resolve();
  const sync = () =>
    (chain = chain
      .then(async () => {
        if (closing) return;
        await o.sessions.sync();
        for (const [alias, stream] of streams) {
          if (o.sessions.sessionFor(alias)) continue;
          streams.delete(alias);
          await stream.stop();
          o.log.info({ org: alias }, 'org has no Salesforce session any more: its cdc stream stopped');
        }
        for (const alias of o.sessions.aliases()) {
          if (!streams.has(alias) && !closing) streams.set(alias, o.start(alias, o.sessions.sessionFor(alias)!));
        }
      })
      .catch((e: Error) => o.log.warn({ err: e.message }, 'org sessions: sync failed; trying again')));
  const timer = setInterval(() => void sync(), o.pollMs);
  timer.unref();
  return {
    sync,
    running: () => [...streams.keys()],
    async stop() {
      closing = true;
      clearInterval(timer);
      await chain;
      await Promise.all([...streams.values()].map((st) => st.stop()));
      streams.clear();
    },
  };
}
