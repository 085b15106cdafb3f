import { createPublicKey, randomBytes } from 'node:crypto';
import type { Db } from '../db/database.ts';
import type { Logger } from '../lib/logger.ts';
import type { SecretBox } from '../lib/secret-box.ts';
import { addOrgKey, listOrgKeys, updateOrgKeySecret } from '../mirror/org-connections.repository.ts';
import type { OrgSigningKey } from './signature.ts';

/**
 * The per-org signing keys, cached in memory for the hot path. Reloaded when older than `ttlMs`, and
 * on a signature that matches nothing (a key added a moment ago by `sfmirror orgs keys add` must work
 * at once), at most once per `missReloadMs` so a flood of bad signatures cannot hammer the database.
 */
export interface OrgKeyCache {
  get(): Promise<OrgKeys>;
  /** A reload after a miss; undefined when one happened too recently to be worth another. */
  reloadAfterMiss(): Promise<OrgKeys | undefined>;
}

export interface OrgKeys {
  keys: readonly OrgSigningKey[];
  /** Aliases that have keys of their own: deployment-wide keys may not write them. */
  owners: ReadonlySet<string>;
}

export function createOrgKeyCache(o: {
  db: Db;
  box: SecretBox | undefined;
  log?: Logger | undefined;
  ttlMs?: number;
  missReloadMs?: number;
}): OrgKeyCache {
  const ttl = o.ttlMs ?? 5000;
  const missEvery = o.missReloadMs ?? 1000;
  let current: { at: number; value: OrgKeys } | undefined;
  let loading: Promise<OrgKeys> | undefined;

  async function load(): Promise<OrgKeys> {
    const rows = await listOrgKeys(o.db);
    const keys: OrgSigningKey[] = [];
    const owners = new Set<string>();
    for (const r of rows) {
      // A key the process cannot use still marks its org as one with keys of its own (fail closed).
      owners.add(r.alias);
      try {
        if (r.kind === 'hmac' && r.secretEnc) {
          if (!o.box) {
            o.log?.error({ org: r.alias, key: r.id }, 'org HMAC key cannot be read: SFMIRROR_ENCRYPTION_KEY is unset');
            continue;
          }
          keys.push({ alias: r.alias, secret: o.box.open(r.secretEnc, `ingest_key:${r.id}`) });
        } else if (r.kind === 'rsa' && r.publicKey) {
          keys.push({ alias: r.alias, publicKey: createPublicKey(r.publicKey) });
        }
      } catch (e) {
        o.log?.error({ org: r.alias, key: r.id, err: (e as Error).message }, 'org signing key unusable');
      }
    }
    return { keys, owners };
  }

  function reload(): Promise<OrgKeys> {
    loading ??= load()
      .then((value) => {
        current = { at: Date.now(), value };
        return value;
      })
      .finally(() => {
        loading = undefined;
      });
    return loading;
  }

  return {
    async get() {
      if (current && Date.now() - current.at < ttl) return current.value;
      return reload();
    },
    async reloadAfterMiss() {
      if (current && Date.now() - current.at < missEvery) return undefined;
      return reload();
    },
  };
}

/**
 * Makes a new HMAC signing key for an org and returns its id and secret (the only time it exists
 * in clear; stored sealed). The id is part of the sealing context, so the row is made first and
 * sealed in a second step of the same transaction.
 */
export async function addOrgHmacKey(
  db: Db,
  box: SecretBox,
  alias: string,
  label: string | undefined,
): Promise<{ id: number; secret: string }> {
  const secret = randomBytes(32).toString('base64url');
  const id = await db.transaction().execute(async (trx) => {
    const keyId = await addOrgKey(trx, { alias, kind: 'hmac', secretEnc: 'pending', label });
    await updateOrgKeySecret(trx, keyId, 'pending', box.seal(secret, `ingest_key:${keyId}`));
    return keyId;
  });
  return { id, secret };
}
