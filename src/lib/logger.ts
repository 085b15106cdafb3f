import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * JSON logs on stdout. Secrets and record values never go to info level: the redact list is a
 * second line of defence for fields that carry credentials.
 */
export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream): Logger {
  const opts = {
    level,
    base: { service: 'sfmirror' },
    redact: {
      paths: ['req.headers.authorization', 'req.headers["x-sfmirror-signature"]', '*.password', '*.token', '*.secret', '*.accessToken', '*.refreshToken'],
      censor: '[redacted]',
    },
  };
  return destination ? pino(opts, destination as pino.DestinationStream) : pino(opts);
}
