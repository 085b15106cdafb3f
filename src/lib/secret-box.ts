import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * Encryption at rest for Salesforce refresh tokens and per-org signing secrets: AES-256-GCM with a
 * random 96-bit IV per value, the key's id stored next to the ciphertext so keys can be rotated.
 *
 * Envelope: `v1.<key id>.<iv>.<tag>.<ciphertext>` (base64url parts). The key id is the first 8 bytes
 * of SHA-256(key): it names the key without revealing it. `SFMIRROR_ENCRYPTION_KEY` may list several
 * keys: the first encrypts, every listed key decrypts; `serve` re-encrypts values still under an older
 * key at start, after which the older key can be dropped from the list.
 *
 * The associated data binds a value to its purpose (e.g. `refresh_token:<alias>`), so a ciphertext
 * copied into another org's row does not decrypt there.
 */
export interface SecretBox {
  /** Id of the key new values are encrypted with. */
  readonly currentKeyId: string;
  seal(plain: string, context: string): string;
  /** Throws a `SecretBoxError` when no configured key opens the value (wrong key, tampered, other context). */
  open(sealed: string, context: string): string;
  /** The key id a sealed value was made with (no key needed). */
  keyIdOf(sealed: string): string | undefined;
}

export class SecretBoxError extends Error {
  readonly code = 'SECRET_UNREADABLE';
}

export const keyIdOf = (key: Buffer) => createHash('sha256').update(key).digest().subarray(0, 8).toString('hex');

export function createSecretBox(keys: readonly Buffer[]): SecretBox {
  if (!keys.length) throw new Error('createSecretBox needs at least one key');
  for (const k of keys) if (k.length !== 32) throw new Error('encryption keys must be 32 bytes');
  const byId = new Map(keys.map((k) => [keyIdOf(k), k] as const));
  const current = keys[0]!;
  const currentKeyId = keyIdOf(current);
  const b64 = (b: Buffer) => b.toString('base64url');

  return {
    currentKeyId,
    seal(plain, context) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', current, iv);
      cipher.setAAD(Buffer.from(context, 'utf8'));
      const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return ['v1', currentKeyId, b64(iv), b64(cipher.getAuthTag()), b64(ct)].join('.');
    },
    open(sealed, context) {
      const parts = sealed.split('.');
      if (parts.length !== 5 || parts[0] !== 'v1') throw new SecretBoxError('stored secret is not in the v1 envelope format');
      const key = byId.get(parts[1]!);
      if (!key) throw new SecretBoxError(`stored secret was encrypted with key ${parts[1]}, which is not in SFMIRROR_ENCRYPTION_KEY`);
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(parts[2]!, 'base64url'));
        decipher.setAAD(Buffer.from(context, 'utf8'));
        decipher.setAuthTag(Buffer.from(parts[3]!, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(parts[4]!, 'base64url')), decipher.final()]).toString('utf8');
      } catch {
        throw new SecretBoxError(`stored secret does not decrypt with key ${parts[1]} (tampered, or stored for another purpose)`);
      }
    },
    keyIdOf(sealed) {
      const parts = sealed.split('.');
      return parts.length === 5 && parts[0] === 'v1' ? parts[1] : undefined;
    },
  };
}
