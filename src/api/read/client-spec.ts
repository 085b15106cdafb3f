import { createPublicKey } from 'node:crypto';
import { isValidAlias, isValidFieldName, isValidSobjectName } from '../../changes/names.ts';

/**
 * What a read API client may see (README.md, "Mobile app -> sfmirror"): objects, fields, rows,
 * orgs. Stored as JSON in `sfmirror.api_clients.spec`; built from `sfmirror clients add` options by
 * `parseClientSpec`, which refuses anything malformed so the request path can trust it.
 *
 * Field references are `Field` (every allowed object) or `Object.Field` (that object only).
 */
export interface FieldRef {
  /** Object API name this entry is limited to; absent: every allowed object. */
  readonly object?: string | undefined;
  readonly field: string;
}

export interface RowFilter extends FieldRef {
  readonly value: string;
}

export interface ClaimFilter extends FieldRef {
  readonly claim: string;
}

export interface JwtSpec {
  readonly issuer: string;
  readonly audience: string;
  /** PEM of the public key (read from --jwt-key-file when the client was added). */
  readonly publicKeyPem?: string | undefined;
  readonly jwksUrl?: string | undefined;
  /** Each claim's value becomes an equality filter on a field. */
  readonly claims: readonly ClaimFilter[];
}

export interface ClientSpec {
  /** Object API names, or '*' (every mirrored object: clients from SFMIRROR_API_TOKENS). */
  readonly objects: readonly string[] | '*';
  /** Absent: every field. Id and IsDeleted are always readable. */
  readonly fields?: readonly FieldRef[] | undefined;
  readonly where?: readonly RowFilter[] | undefined;
  readonly jwt?: JwtSpec | undefined;
  /** Org aliases the client may read, its own first; absent: the default org only. '*': any org. */
  readonly orgs?: readonly string[] | '*' | undefined;
}

/** Options of `sfmirror clients add`, as the command line gives them. */
export interface ClientOptions {
  objects?: string | undefined;
  fields?: string | undefined;
  where?: readonly string[] | undefined;
  org?: string | undefined;
  jwtIssuer?: string | undefined;
  jwtAudience?: string | undefined;
  jwtKeyPem?: string | undefined;
  jwksUrl?: string | undefined;
  jwtClaim?: readonly string[] | undefined;
}

const commaList = (v: string | undefined) =>
  (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

function fieldRef(text: string, what: string, problems: string[]): FieldRef | undefined {
  const parts = text.split('.');
  const [object, field] = parts.length === 2 ? parts : [undefined, parts[0]];
  if (parts.length > 2 || !isValidFieldName(field) || (object !== undefined && !isValidSobjectName(object))) {
    problems.push(`${what}: "${text}" is not Field or Object.Field`);
    return undefined;
  }
  return { ...(object ? { object } : {}), field };
}

/** Builds a client's spec from command-line options; `problems` lists every bad option (exit 2). */
export function parseClientSpec(o: ClientOptions): { spec?: ClientSpec; problems: string[] } {
  const problems: string[] = [];
  const objects = commaList(o.objects);
  if (!objects.length) problems.push('--objects: give the objects the client may read, e.g. --objects Account,Contact');
  for (const n of objects) if (!isValidSobjectName(n)) problems.push(`--objects: "${n}" is not an object API name`);
  const fields =
    o.fields === undefined
      ? undefined
      : commaList(o.fields)
          .map((f) => fieldRef(f, '--fields', problems))
          .filter((f) => f !== undefined);
  const where = (o.where ?? [])
    .map((w) => {
      const i = w.indexOf('=');
      const ref = i > 0 ? fieldRef(w.slice(0, i), '--where', problems) : (problems.push(`--where: "${w}" is not Field=value`), undefined);
      return ref && { ...ref, value: w.slice(i + 1) };
    })
    .filter((w) => w !== undefined);
  const orgs = commaList(o.org);
  for (const a of orgs) if (!isValidAlias(a)) problems.push(`--org: "${a}" is not an org alias`);
  const jwt = parseJwt(o, problems);
  if (problems.length) return { problems };
  return {
    spec: {
      objects,
      ...(fields ? { fields } : {}),
      ...(where.length ? { where } : {}),
      ...(jwt ? { jwt } : {}),
      ...(orgs.length ? { orgs } : {}),
    },
    problems,
  };
}

function parseJwt(o: ClientOptions, problems: string[]): JwtSpec | undefined {
  const claimsGiven = (o.jwtClaim ?? []).length > 0;
  const any = o.jwtIssuer || o.jwtAudience || o.jwtKeyPem || o.jwksUrl || claimsGiven;
  if (!any) return undefined;
  if (!o.jwtIssuer) problems.push('--jwt-issuer is required for end-user JWTs');
  if (!o.jwtAudience) problems.push('--jwt-audience is required for end-user JWTs');
  if (!o.jwtKeyPem === !o.jwksUrl) problems.push('give exactly one of --jwt-key-file and --jwks-url');
  if (o.jwtKeyPem) {
    if (/PRIVATE KEY/.test(o.jwtKeyPem)) problems.push('--jwt-key-file holds a PRIVATE key: give the public key');
    else
      try {
        createPublicKey(o.jwtKeyPem);
      } catch (e) {
        problems.push(`--jwt-key-file: not a PEM public key (${(e as Error).message})`);
      }
  }
  if (o.jwksUrl) {
    let u: URL | undefined;
    try {
      u = new URL(o.jwksUrl);
    } catch {
      problems.push(`--jwks-url: "${o.jwksUrl}" is not a URL`);
    }
    if (u && u.protocol !== 'https:' && u.protocol !== 'http:') problems.push('--jwks-url must be an http(s) URL');
  }
  if (!claimsGiven) problems.push('--jwt-claim: map at least one claim to a field, e.g. --jwt-claim sfuid=OwnerId');
  const claims = (o.jwtClaim ?? [])
    .map((c) => {
      const i = c.indexOf('=');
      const claim = c.slice(0, i);
      if (i <= 0 || !/^[A-Za-z0-9_:.-]+$/.test(claim)) {
        problems.push(`--jwt-claim: "${c}" is not claim=Field`);
        return undefined;
      }
      const ref = fieldRef(c.slice(i + 1), '--jwt-claim', problems);
      return ref && { ...ref, claim };
    })
    .filter((c) => c !== undefined);
  return {
    issuer: o.jwtIssuer ?? '',
    audience: o.jwtAudience ?? '',
    ...(o.jwtKeyPem ? { publicKeyPem: o.jwtKeyPem } : {}),
    ...(o.jwksUrl ? { jwksUrl: o.jwksUrl } : {}),
    claims,
  };
}

/** Whether `ref` applies to `object` (case-insensitive, as Salesforce API names are). */
export const refApplies = (ref: FieldRef, object: string) => !ref.object || ref.object.toLowerCase() === object.toLowerCase();

/** One line per client for `sfmirror clients list`. */
export function describeSpec(spec: ClientSpec): string {
  const ref = (r: FieldRef) => (r.object ? `${r.object}.${r.field}` : r.field);
  const parts = [`objects=${spec.objects === '*' ? '*' : spec.objects.join(',')}`];
  if (spec.fields) parts.push(`fields=${spec.fields.map(ref).join(',')}`);
  for (const w of spec.where ?? []) parts.push(`where ${ref(w)}=${w.value}`);
  if (spec.jwt)
    parts.push(
      `jwt iss=${spec.jwt.issuer} aud=${spec.jwt.audience} ${spec.jwt.jwksUrl ? `jwks=${spec.jwt.jwksUrl}` : 'key=pem'} ${spec.jwt.claims.map((c) => `${c.claim}->${ref(c)}`).join(',')}`,
    );
  if (spec.orgs) parts.push(`orgs=${spec.orgs === '*' ? '*' : spec.orgs.join(',')}`);
  return parts.join(' ');
}
