import { createHmac, createVerify, timingSafeEqual, type KeyObject } from 'node:crypto';

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

/** What the headers alone tell: refused before a byte of the body is read, or how to check the body. */
export type HeaderCheck =
  | { ok: false; reason: string }
  | { ok: true; timestamp: string; scheme: 'hmac'; given: Buffer }
  | { ok: true; timestamp: string; scheme: 'rsa'; given: Buffer };

/**
 * Checks the timestamp and the form of the signature. Runs before the body is read, so a stale or
 * malformed request costs no body bytes (README, "Security").
 */
export function checkSignatureHeaders(
  timestampHeader: string | undefined,
  signatureHeader: string | undefined,
  nowMs: number,
): HeaderCheck {
  if (!timestampHeader) return { ok: false, reason: 'missing X-Sfmirror-Timestamp header' };
  if (!signatureHeader) return { ok: false, reason: 'missing X-Sfmirror-Signature header' };
  if (!/^\d{1,12}$/.test(timestampHeader)) return { ok: false, reason: 'X-Sfmirror-Timestamp must be unix seconds' };
  const skew = Math.abs(nowMs / 1000 - Number(timestampHeader));
  if (skew > TIMESTAMP_WINDOW_SECONDS)
    return {
      ok: false,
      reason: `X-Sfmirror-Timestamp is ${Math.round(skew)} s away from now (at most ${TIMESTAMP_WINDOW_SECONDS} s allowed); check the sender's clock`,
    };
  const eq = signatureHeader.indexOf('=');
  const scheme = signatureHeader.slice(0, eq);
  const value = signatureHeader.slice(eq + 1).trim();
  if (scheme === 'sha256') {
    if (!/^[0-9a-fA-F]{64}$/.test(value)) return { ok: false, reason: 'sha256 signature must be 64 hex characters' };
    return { ok: true, timestamp: timestampHeader, scheme: 'hmac', given: Buffer.from(value, 'hex') };
  }
  if (scheme === 'rsa-sha256') {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value) || value.length > 2048) return { ok: false, reason: 'rsa-sha256 signature must be base64' };
    return { ok: true, timestamp: timestampHeader, scheme: 'rsa', given: Buffer.from(value, 'base64') };
  }
  return { ok: false, reason: 'X-Sfmirror-Signature must be sha256=<hex> or rsa-sha256=<base64>' };
}

/** Hashes a body while it streams in: `update` per chunk, `finish` once, at the last byte. */
export interface BodyVerifier {
  update(chunk: Buffer): void;
  finish(): Verdict;
}

/**
 * A verifier for one request whose headers passed `checkSignatureHeaders`. Every candidate key
 * (deployment-wide and per-org) is hashed alongside, so the verdict needs no copy of the body.
 */
export function createBodyVerifier(
  keys: SigningKeys,
  header: Extract<HeaderCheck, { ok: true }>,
  orgKeys: readonly OrgSigningKey[] = [],
): BodyVerifier {
  const prefix = Buffer.from(`${header.timestamp}.`, 'utf8');
  if (header.scheme === 'hmac') {
    const candidates = [
      ...keys.secrets.map((secret) => ({ secret, owner: undefined as string | undefined })),
      ...orgKeys.filter((k) => k.secret).map((k) => ({ secret: k.secret!, owner: k.alias as string | undefined })),
    ].map((c) => ({ owner: c.owner, hmac: createHmac('sha256', c.secret).update(prefix) }));
    return {
      update: (chunk) => {
        for (const c of candidates) c.hmac.update(chunk);
      },
      finish: () => {
        if (!candidates.length)
          return { ok: false, reason: 'HMAC signatures are not enabled (SFMIRROR_INGEST_SECRETS is unset and no org has an HMAC key)' };
        // Compare against every secret (no early exit) in constant time per comparison.
        let match: { owner?: string | undefined } | undefined;
        for (const c of candidates) if (timingSafeEqual(c.hmac.digest(), header.given)) match ??= c;
        if (!match) return { ok: false, reason: 'signature does not match' };
        return match.owner ? { ok: true, scheme: 'hmac', owner: match.owner } : { ok: true, scheme: 'hmac' };
      },
    };
  }
  const candidates = [
    ...keys.publicKeys.map((key) => ({ key, owner: undefined as string | undefined })),
    ...orgKeys.filter((k) => k.publicKey).map((k) => ({ key: k.publicKey!, owner: k.alias as string | undefined })),
  ].map((c) => ({ ...c, verifier: createVerify('sha256').update(prefix) }));
  return {
    update: (chunk) => {
      for (const c of candidates) c.verifier.update(chunk);
    },
    finish: () => {
      if (!candidates.length)
        return { ok: false, reason: 'RSA signatures are not enabled (SFMIRROR_INGEST_PUBLIC_KEYS is unset and no org has a public key)' };
      for (const c of candidates) {
        try {
          if (c.verifier.verify(c.key, header.given))
            return c.owner ? { ok: true, scheme: 'rsa', owner: c.owner } : { ok: true, scheme: 'rsa' };
        } catch {
          /* a key of another kind: try the next */
        }
      }
      return { ok: false, reason: 'signature does not match' };
    },
  };
}

/** The whole check on a body held in memory (for callers that have the body already, e.g. tests). */
export function verifySignature(
  keys: SigningKeys,
  timestampHeader: string | undefined,
  signatureHeader: string | undefined,
  rawBody: Buffer,
  nowMs: number,
  orgKeys: readonly OrgSigningKey[] = [],
): Verdict {
  const header = checkSignatureHeaders(timestampHeader, signatureHeader, nowMs);
  if (!header.ok) return header;
  const v = createBodyVerifier(keys, header, orgKeys);
  v.update(rawBody);
  return v.finish();
}

/** What a sender computes (tests, benchmarks, and the documentation's example). */
export function signHmac(secret: string, timestamp: number | string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}
