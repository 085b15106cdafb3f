import { createPublicKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Db } from '../db/database.ts';
import { migrate } from '../db/migrator.ts';
import { isValidAlias } from '../changes/names.ts';
import type { SecretBox } from '../lib/secret-box.ts';
import { addOrgKey, listOrgKeys, removeOrg, revokeOrgKey, setOrgKeySecret } from '../mirror/org-connections.repository.ts';
import { listOrgs } from '../mirror/orgs.repository.ts';
import { connectionState, type StatusContext } from '../api/status.ts';

/** `sfmirror orgs list|remove|keys ...`: the connected orgs and their own signing keys. */
export const ORGS_OPTIONS = {
  yes: { type: 'boolean' },
  'public-key': { type: 'string' },
  label: { type: 'string' },
} as const;

export const ORGS_HELP = `Usage: sfmirror orgs list [--json]
       sfmirror orgs remove ALIAS --yes
       sfmirror orgs keys add ALIAS [--public-key FILE] [--label TEXT]
       sfmirror orgs keys list [ALIAS] [--json]
       sfmirror orgs keys revoke ALIAS KEY_ID

Orgs are connected by OAuth (GET /oauth/authorize?alias=...), or configured by environment
(SF_ORG_ALIAS). 'list' shows each org's id, source, instance, connection state (connected,
revoked: Salesforce refused the refresh token, connect again; locked: the stored token does not
decrypt with SFMIRROR_ENCRYPTION_KEY) and its own signing keys.

'remove' deletes the org's registration, stored tokens, signing keys, backfill jobs, checkpoints,
queued warehouse changes and its mirror schema (every table in it). It needs --yes.
A running serve stops the org's stream within SFMIRROR_ORGS_POLL_MS.

Signing keys of one org: a push signed with one of them may only write that org, and once an org has
keys of its own, pushes for it signed with the deployment-wide keys (SFMIRROR_INGEST_SECRETS,
SFMIRROR_INGEST_PUBLIC_KEYS) are refused. 'keys add' without --public-key makes an HMAC secret and
prints it once, on stdout (stored encrypted: needs SFMIRROR_ENCRYPTION_KEY); with --public-key FILE
it registers the org's certificate or public key (PEM) for rsa-sha256 signatures.`;

export type OrgsCommand =
  | { action: 'list'; json: boolean }
  | { action: 'remove'; alias: string }
  | { action: 'keys-add'; alias: string; publicKeyPem?: string | undefined; label?: string | undefined }
  | { action: 'keys-list'; alias?: string | undefined; json: boolean }
  | { action: 'keys-revoke'; alias: string; id: number };

type Values = Record<string, unknown>;

export function orgsCommandOf(command: string, args: string[], values: Values, usageError: (m: string) => never): OrgsCommand | undefined {
  const given = Object.keys(ORGS_OPTIONS).filter((k) => values[k] !== undefined);
  if (command !== 'orgs') {
    if (given.length) usageError(`--${given[0]} is an option of 'orgs'`);
    return undefined;
  }
  const only = (allowed: string[], what: string) => {
    const bad = given.find((g) => !allowed.includes(g));
    if (bad) usageError(`--${bad} is not an option of '${what}'`);
  };
  const alias = (a: string | undefined, what: string) => {
    if (!a) usageError(`${what}: give the org's ALIAS (see sfmirror orgs list)`);
    if (!isValidAlias(a)) usageError(`${what}: "${a}" is not an org alias`);
    return a;
  };
  const json = values.json === true;
  const [action, ...rest] = args;
  if (action === 'list') {
    only([], 'orgs list');
    if (rest.length) usageError(`'orgs list' takes no arguments`);
    return { action: 'list', json };
  }
  if (json && action !== 'keys') usageError(`--json is an option of 'orgs list' and 'orgs keys list'`);
  if (action === 'remove') {
    only(['yes'], 'orgs remove');
    if (rest.length !== 1) usageError(`'orgs remove' takes one ALIAS`);
    const a = alias(rest[0], 'orgs remove');
    if (values.yes !== true)
      usageError(`orgs remove ${a} deletes the org's tokens, keys, jobs and its whole mirror schema "${a}": add --yes to go ahead`);
    return { action: 'remove', alias: a };
  }
  if (action === 'keys') {
    const [sub, a, id, ...extra] = rest;
    if (extra.length) usageError(`unexpected arguments: ${extra.join(' ')}`);
    if (sub === 'add') {
      only(['public-key', 'label'], 'orgs keys add');
      if (id !== undefined) usageError(`'orgs keys add' takes one ALIAS`);
      let publicKeyPem: string | undefined;
      const file = values['public-key'] as string | undefined;
      if (file !== undefined) {
        try {
          publicKeyPem = readFileSync(file, 'utf8');
        } catch (e) {
          usageError(`--public-key: cannot read "${file}": ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
        if (/PRIVATE KEY/.test(publicKeyPem))
          usageError('--public-key: the file holds a PRIVATE key; give sfmirror only the certificate or public key');
        try {
          createPublicKey(publicKeyPem);
        } catch (e) {
          usageError(`--public-key: "${file}" holds no usable PEM public key or certificate (${(e as Error).message})`);
        }
      }
      return { action: 'keys-add', alias: alias(a, 'orgs keys add'), publicKeyPem, label: values.label as string | undefined };
    }
    if (sub === 'list') {
      only([], 'orgs keys list');
      if (id !== undefined) usageError(`'orgs keys list' takes at most an ALIAS`);
      return { action: 'keys-list', alias: a === undefined ? undefined : alias(a, 'orgs keys list'), json };
    }
    if (sub === 'revoke') {
      only([], 'orgs keys revoke');
      if (!id || !/^\d{1,15}$/.test(id)) usageError(`'orgs keys revoke' takes ALIAS and the KEY_ID shown by 'orgs keys list'`);
      return { action: 'keys-revoke', alias: alias(a, 'orgs keys revoke'), id: Number(id) };
    }
    usageError(`orgs keys: give add, list or revoke (got ${sub ?? 'nothing'})`);
  }
  return usageError(`orgs: give list, remove or keys (got ${action ?? 'nothing'})`);
}

export async function runOrgs(
  db: Db,
  cmd: OrgsCommand,
  box: SecretBox | undefined,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
  ctx: StatusContext = { bigqueryConfigured: false, envApiAlias: undefined },
): Promise<number> {
  const { error } = await migrate(db);
  if (error) throw error;
  switch (cmd.action) {
    case 'list': {
      const orgs = await listOrgs(db);
      const keys = await listOrgKeys(db);
      const rows = orgs.map((o) => {
        return {
          alias: o.alias,
          orgId: o.org_id?.trim() ?? null,
          source: o.source,
          instanceUrl: o.instance_url,
          loginUrl: o.login_url,
          userId: o.user_id?.trim() ?? null,
          // The words of /admin/status: 'push only' for an org with no API access here.
          state: connectionState({ alias: o.alias, source: o.source, authState: o.auth_state, instanceUrl: o.instance_url }, ctx),
          error: o.auth_error,
          connectedAt: o.connected_at,
          signingKeys: keys.filter((k) => k.alias === o.alias).length,
          lastChangeAt: o.last_applied_at,
        };
      });
      if (cmd.json) {
        out.write(`${JSON.stringify(rows, null, 2)}\n`);
        return 0;
      }
      if (!rows.length) out.write('no orgs yet (connect one: GET /oauth/authorize?alias=...)\n');
      for (const r of rows) {
        out.write(
          `${r.alias}\t${r.orgId ?? '(org id not known yet)'}\t${r.source}\t${r.state}${r.error ? ` (${r.error})` : ''}\t${r.instanceUrl ?? '-'}\t${r.signingKeys} own signing key(s)\tlast change ${r.lastChangeAt ? new Date(r.lastChangeAt).toISOString() : 'never'}\n`,
        );
      }
      return 0;
    }
    case 'remove': {
      const r = await removeOrg(db, cmd.alias);
      if (!r.removed) {
        err.write(`sfmirror: no org named ${cmd.alias}\n`);
        return 1;
      }
      out.write(`org ${cmd.alias} removed, with its schema "${cmd.alias}" (${r.tables} table(s))\n`);
      return 0;
    }
    case 'keys-add': {
      if (cmd.publicKeyPem) {
        const id = await addOrgKey(db, { alias: cmd.alias, kind: 'rsa', publicKey: cmd.publicKeyPem, label: cmd.label });
        out.write(`key ${id} added to org ${cmd.alias} (rsa-sha256)\n`);
        return 0;
      }
      if (!box) {
        err.write('sfmirror: HMAC keys are stored encrypted: set SFMIRROR_ENCRYPTION_KEY (or give --public-key FILE)\n');
        return 2;
      }
      const secret = randomBytes(32).toString('base64url');
      // The id is part of the sealing context, so the row is made first and sealed in a second step.
      const id = await db.transaction().execute(async (trx) => {
        const keyId = await addOrgKey(trx, { alias: cmd.alias, kind: 'hmac', secretEnc: 'pending', label: cmd.label });
        await setOrgKeySecret(trx, keyId, box.seal(secret, `ingest_key:${keyId}`));
        return keyId;
      });
      err.write(`key ${id} added to org ${cmd.alias} (sha256 HMAC); its secret, shown only now (put it in the org's sfmirror settings):\n`);
      out.write(`${secret}\n`);
      return 0;
    }
    case 'keys-list': {
      const keys = (await listOrgKeys(db, cmd.alias)).map((k) => ({
        id: k.id,
        org: k.alias,
        kind: k.kind,
        label: k.label,
        createdAt: k.createdAt,
      }));
      if (cmd.json) {
        out.write(`${JSON.stringify(keys, null, 2)}\n`);
        return 0;
      }
      if (!keys.length) out.write('no org signing keys (pushes are verified with SFMIRROR_INGEST_SECRETS / SFMIRROR_INGEST_PUBLIC_KEYS)\n');
      for (const k of keys) out.write(`${k.id}\t${k.org}\t${k.kind}\t${k.label ?? ''}\t${k.createdAt.toISOString()}\n`);
      return 0;
    }
    case 'keys-revoke': {
      if (!(await revokeOrgKey(db, cmd.alias, cmd.id))) {
        err.write(`sfmirror: org ${cmd.alias} has no key ${cmd.id} in use\n`);
        return 1;
      }
      out.write(`key ${cmd.id} of org ${cmd.alias} revoked\n`);
      return 0;
    }
  }
}
