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
    // Query strings carry filter values (record data) and cursors: log the path only.
    serializers: {
      req: (req: { method?: string; url?: string; headers?: Record<string, unknown>; ip?: string }) => ({
        method: req.method,
        url: req.url?.split('?')[0],
        userAgent: req.headers?.['user-agent'],
        remoteAddress: req.ip,
      }),
    },
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["x-sfmirror-signature"]',
        '*.password',
        '*.token',
        '*.secret',
        '*.accessToken',
        '*.refreshToken',
      ],
      censor: '[redacted]',
    },
  };
  return destination ? pino(opts, destination as pino.DestinationStream) : pino(opts);
}
