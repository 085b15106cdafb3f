import { createHmac, timingSafeEqual, verify, type KeyObject } from 'node:crypto';

/**
 * Signatures of `POST /ingest/apex` (README.md, "Pushing changes"): over `<timestamp>.<raw body>`, either
 * `sha256=<hex>` (HMAC-SHA256 with any configured secret: several allow rotation) or
 * `rsa-sha256=<base64>` (RSA PKCS#1 v1.5 SHA-256, what Apex's Crypto.signWithCertificate makes,
 * checked with any configured public key). Timestamps more than 5 minutes from now are refused so
 * a captured request cannot be replayed later.
 */
export const TIMESTAMP_WINDOW_SECONDS = 300;

export interface SigningKeys {
  readonly secrets: readonly string[];
  readonly publicKeys: readonly KeyObject[];
}

/** A signing key that belongs to one org (sfmirror.org_ingest_keys): it may only write that org. */
export interface OrgSigningKey {
  readonly alias: string;
  readonly secret?: string | undefined;
  readonly publicKey?: KeyObject | undefined;
}

/** `owner`: the org whose own key matched; absent when a deployment-wide key (environment) matched. */
export type Verdict = { ok: true; scheme: 'hmac' | 'rsa'; owner?: string } | { ok: false; reason: string };

export function verifySignature(
  keys: SigningKeys,
  timestampHeader: string | undefined,
  signatureHeader: string | undefined,
  rawBody: Buffer,
  nowMs: number,
  orgKeys: readonly OrgSigningKey[] = [],
): Verdict {
  if (!timestampHeader) return { ok: false, reason: 'missing X-Sfmirror-Timestamp header' };
  if (!signatureHeader) return { ok: false, reason: 'missing X-Sfmirror-Signature header' };
  if (!/^\d{1,12}$/.test(timestampHeader)) return { ok: false, reason: 'X-Sfmirror-Timestamp must be unix seconds' };
  const skew = Math.abs(nowMs / 1000 - Number(timestampHeader));
  if (skew > TIMESTAMP_WINDOW_SECONDS)
    return {
      ok: false,
      reason: `X-Sfmirror-Timestamp is ${Math.round(skew)} s away from now (at most ${TIMESTAMP_WINDOW_SECONDS} s allowed); check the sender's clock`,
    };
  const signed = Buffer.concat([Buffer.from(`${timestampHeader}.`, 'utf8'), rawBody]);
  const eq = signatureHeader.indexOf('=');
  const scheme = signatureHeader.slice(0, eq);
  const value = signatureHeader.slice(eq + 1).trim();
  if (scheme === 'sha256') {
    const candidates: Array<{ secret: string; owner?: string }> = [
      ...keys.secrets.map((secret) => ({ secret })),
      ...orgKeys.filter((k) => k.secret).map((k) => ({ secret: k.secret!, owner: k.alias })),
    ];
    if (!candidates.length)
      return { ok: false, reason: 'HMAC signatures are not enabled (SFMIRROR_INGEST_SECRETS is unset and no org has an HMAC key)' };
    if (!/^[0-9a-fA-F]{64}$/.test(value)) return { ok: false, reason: 'sha256 signature must be 64 hex characters' };
    const given = Buffer.from(value, 'hex');
    // Compare against every secret (no early exit) in constant time per comparison.
    let match: { owner?: string } | undefined;
    for (const c of candidates) {
      const expected = createHmac('sha256', c.secret).update(signed).digest();
      if (timingSafeEqual(expected, given)) match ??= c;
    }
    if (!match) return { ok: false, reason: 'signature does not match' };
    return match.owner ? { ok: true, scheme: 'hmac', owner: match.owner } : { ok: true, scheme: 'hmac' };
  }
  if (scheme === 'rsa-sha256') {
    const candidates: Array<{ key: KeyObject; owner?: string }> = [
      ...keys.publicKeys.map((key) => ({ key })),
      ...orgKeys.filter((k) => k.publicKey).map((k) => ({ key: k.publicKey!, owner: k.alias })),
    ];
    if (!candidates.length)
      return { ok: false, reason: 'RSA signatures are not enabled (SFMIRROR_INGEST_PUBLIC_KEYS is unset and no org has a public key)' };
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value) || value.length > 2048) return { ok: false, reason: 'rsa-sha256 signature must be base64' };
    const sig = Buffer.from(value, 'base64');
    for (const c of candidates) {
      try {
        if (verify('sha256', signed, c.key, sig))
          return c.owner ? { ok: true, scheme: 'rsa', owner: c.owner } : { ok: true, scheme: 'rsa' };
      } catch {
        /* a key of another kind: try the next */
      }
    }
    return { ok: false, reason: 'signature does not match' };
  }
  return { ok: false, reason: 'X-Sfmirror-Signature must be sha256=<hex> or rsa-sha256=<base64>' };
}

/** What a sender computes (tests, benchmarks, and the documentation's example). */
export function signHmac(secret: string, timestamp: number | string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}
