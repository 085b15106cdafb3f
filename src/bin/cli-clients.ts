import { readFileSync } from 'node:fs';
import { describeSpec, parseClientSpec, type ClientSpec } from '../api/read/client-spec.ts';
import { addClient, listClients, revokeClient } from '../api/read/clients.repository.ts';
import type { Db } from '../db/database.ts';
import { migrate } from '../db/migrator.ts';

/** `sfmirror clients add|list|revoke`: read API clients kept in the database (tokens stored hashed). */
export const CLIENT_OPTIONS = {
  objects: { type: 'string' },
  fields: { type: 'string' },
  where: { type: 'string', multiple: true },
  org: { type: 'string' },
  'jwt-issuer': { type: 'string' },
  'jwt-audience': { type: 'string' },
  'jwt-key-file': { type: 'string' },
  'jwks-url': { type: 'string' },
  'jwt-claim': { type: 'string', multiple: true },
} as const;

export const CLIENTS_HELP = `Usage: sfmirror clients add NAME --objects A,B [options]
       sfmirror clients list [--json]
       sfmirror clients revoke NAME

Read API clients (GET /api/v1/...). 'add' prints the new client's token once, on stdout; only its
hash is stored. 'revoke' refuses the token from then on (within 2 seconds on a running serve).

Options of 'add' (a field is Field, for every object, or Object.Field):
  --objects A,B            objects the client may read (others answer 404)
  --fields F,G             fields it may read (default: all); Id and IsDeleted always
  --where Field=value      a fixed row filter; repeatable (all must match)
  --org ALIAS[,ALIAS]      orgs it may read, its own first (default: the default org)
  --jwt-issuer ISS --jwt-audience AUD (--jwt-key-file PEM | --jwks-url URL)
                           require an end-user JWT (header X-User-Token), verified against the
                           public key or JWKS, and map its claims to row filters with
  --jwt-claim claim=Field  e.g. --jwt-claim sfuid=OwnerId; repeatable`;

export type ClientsCommand =
  | { action: 'add'; name: string; spec: ClientSpec }
  | { action: 'list'; json: boolean }
  | { action: 'revoke'; name: string };

type Values = Record<string, unknown>;
const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

/**
 * The clients command from the command line, or undefined for other commands. Usage problems go
 * to `usageError` (exit 2) before any database is opened.
 */
export function clientsCommandOf(
  command: string,
  args: string[],
  values: Values,
  usageError: (m: string) => never,
): ClientsCommand | undefined {
  const given = Object.keys(CLIENT_OPTIONS).filter(
    (k) =>
      values[k] !== undefined &&
      !(k === 'org' && (command === 'backfill' || command === 'status' || command === 'resync' || command === 'warehouse')),
  );
  if (command !== 'clients') {
    if (given.length) usageError(`--${given[0]} is an option of 'clients add'`);
    return undefined;
  }
  const [action, name, ...rest] = args;
  if (rest.length) usageError(`unexpected arguments: ${rest.join(' ')}`);
  if (action === 'list') {
    if (name !== undefined || given.length) usageError(`'clients list' takes only --json`);
    return { action, json: values.json === true };
  }
  if (action !== 'add' && action !== 'revoke') usageError(`clients: give add, list or revoke (got ${action ?? 'nothing'})`);
  if (!name || !NAME.test(name)) usageError(`clients ${action}: give the client's NAME (letters, digits, _ . -)`);
  if (values.json !== undefined) usageError(`--json is an option of 'clients list'`);
  if (action === 'revoke') {
    if (given.length) usageError(`'clients revoke' takes only NAME`);
    return { action, name };
  }
  let jwtKeyPem: string | undefined;
  const keyFile = values['jwt-key-file'] as string | undefined;
  if (keyFile) {
    try {
      jwtKeyPem = readFileSync(keyFile, 'utf8');
    } catch (e) {
      usageError(`--jwt-key-file: cannot read "${keyFile}": ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const { spec, problems } = parseClientSpec({
    objects: values.objects as string | undefined,
    fields: values.fields as string | undefined,
    where: values.where as string[] | undefined,
    org: values.org as string | undefined,
    jwtIssuer: values['jwt-issuer'] as string | undefined,
    jwtAudience: values['jwt-audience'] as string | undefined,
    jwtKeyPem,
    jwksUrl: values['jwks-url'] as string | undefined,
    jwtClaim: values['jwt-claim'] as string[] | undefined,
  });
  if (!spec) return usageError(problems.join('\nsfmirror: '));
  return { action, name, spec };
}

/** Runs a clients command against the database (migrated first: the command may come before any `serve`). */
export async function runClients(db: Db, cmd: ClientsCommand, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const { error } = await migrate(db);
  if (error) throw error;
  if (cmd.action === 'add') {
    const token = await addClient(db, cmd.name, cmd.spec);
    if (!token) {
      err.write(`sfmirror: client ${cmd.name} exists; revoke it first to replace it\n`);
      return 1;
    }
    err.write(`client ${cmd.name} added (${describeSpec(cmd.spec)}); its token, shown only now:\n`);
    out.write(`${token}\n`);
    return 0;
  }
  if (cmd.action === 'revoke') {
    if (!(await revokeClient(db, cmd.name))) {
      err.write(`sfmirror: no active client named ${cmd.name}\n`);
      return 1;
    }
    out.write(`client ${cmd.name} revoked\n`);
    return 0;
  }
  const clients = await listClients(db);
  if (cmd.json) {
    out.write(
      `${JSON.stringify(
        clients.map((c) => ({
          name: c.name,
          ...c.spec,
          createdAt: c.createdAt,
          revokedAt: c.revokedAt,
          ...(c.spec.jwt?.publicKeyPem ? { jwt: { ...c.spec.jwt, publicKeyPem: '(pem)' } } : {}),
        })),
        null,
        2,
      )}\n`,
    );
    return 0;
  }
  if (!clients.length) out.write('no clients (sfmirror clients add NAME --objects ...)\n');
  for (const c of clients)
    out.write(`${c.name}\t${c.revokedAt ? `revoked ${c.revokedAt.toISOString()}` : 'active'}\t${describeSpec(c.spec)}\n`);
  return 0;
}
