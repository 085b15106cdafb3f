import { parseArgs, type ParseArgsOptionDescriptor } from 'node:util';

/**
 * The command table of `sfmirror`: each command declares its own options, its help, what it needs
 * from the database, and how it turns its arguments into a command (usage problems exit 2 before
 * any database is opened). src/bin/sfmirror.ts runs the command the table parsed.
 *
 * `database`:
 *   none      no database at all (db-url and psql look for one themselves)
 *   existing  a read command: refuses, naming what to do, when there is no sfmirror database
 *   migrated  may start from nothing: creates the embedded cluster if needed and migrates first
 *   serve     `serve` opens its own
 */
export type Values = Record<string, unknown>;
export type UsageError = (message: string) => never;
export type DatabaseNeed = 'none' | 'existing' | 'migrated' | 'serve';

export interface CommandSpec<C = unknown> {
  help: string;
  options: Record<string, ParseArgsOptionDescriptor>;
  /** Where an option of this command is described, in messages about other commands ('clients add'). */
  optionsOf?: string;
  /** Arguments are passed on unparsed (psql). */
  passThrough?: boolean;
  /** What the command needs from the database, given its arguments (e.g. 'status' reads, 'start' writes). */
  database: DatabaseNeed | ((args: string[]) => DatabaseNeed);
  parse(args: string[], values: Values, usageError: UsageError): C;
}

export type Parsed = { name: string; spec: CommandSpec; command: unknown; values: Values; args: string[] };

const COMMON = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const satisfies Record<string, ParseArgsOptionDescriptor>;

/**
 * Parses a command line against the table. Returns the help text to print (exit 0, or 2 for no
 * command at all) or the parsed command; calls `usageError` for every usage problem.
 */
export function parseCommandLine(
  argv: string[],
  table: Record<string, CommandSpec>,
  topHelp: string,
  usageError: UsageError,
): { help: string; code: number } | { version: true } | Parsed {
  const first = argv.findIndex((a) => !a.startsWith('-'));
  const name = first === -1 ? '' : argv[first]!;
  const before = first === -1 ? argv : argv.slice(0, first);
  if (name === '' || name === 'help') {
    if (before.some((a) => a === '-v' || a === '--version')) return { version: true };
    const unknown = before.find((a) => a !== '-h' && a !== '--help');
    if (unknown) usageError(`unknown option ${unknown}`);
    if (name === 'help') {
      const topic = argv[first + 1] ?? '';
      if (topic && !(topic in table)) usageError(`unknown command '${topic}'`);
      return { help: topic ? table[topic]!.help : topHelp, code: 0 };
    }
    return { help: topHelp, code: before.length ? 0 : 2 };
  }
  const spec = table[name];
  if (!spec) usageError(`unknown command '${name}'`);
  const rest = [...before, ...argv.slice(first + 1)];
  if (spec.passThrough) {
    if (rest[0] === '--help' || rest[0] === '-h') return { help: spec.help, code: 0 };
    return { name, spec, command: spec.parse(rest, {}, usageError), values: {}, args: rest };
  }
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, strict: true, options: { ...COMMON, ...spec.options } });
  } catch (e) {
    usageError(optionProblem(name, e as Error & { code?: string }, rest, table));
  }
  if (parsed.values.help) return { help: spec.help, code: 0 };
  if (parsed.values.version) usageError(`--version is not an option of '${name}' (sfmirror --version)`);
  const command = spec.parse(parsed.positionals, parsed.values, usageError);
  return { name, spec, command, values: parsed.values, args: parsed.positionals };
}

/** Node's parseArgs messages, said plainly: which option, and which command has it when another does. */
function optionProblem(name: string, e: Error & { code?: string }, args: string[], table: Record<string, CommandSpec>): string {
  const option = /'(-[^']*)'/.exec(e.message)?.[1] ?? args.find((a) => a.startsWith('-')) ?? '';
  const bare = option.replace(/^-+/, '').split(/[= ]/)[0]!;
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const owners = Object.entries(table)
      .filter(([, s]) => bare in s.options)
      .map(([n, s]) => `'${s.optionsOf ?? n}'`);
    if (owners.length) return `--${bare} is an option of ${owners.join(', ')}, not of '${name}' (see 'sfmirror ${name} --help')`;
    return `unknown option ${option.split('=')[0]} for '${name}' (see 'sfmirror ${name} --help')`;
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const spec = table[name]!.options[bare];
    return spec?.type === 'boolean' ? `--${bare} takes no value` : `--${bare} needs a value (see 'sfmirror ${name} --help')`;
  }
  return `${name}: ${e.message}`;
}
