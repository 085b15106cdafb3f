import type { FastifyError, FastifyInstance } from 'fastify';
import { isAppError, isDatabaseUnavailable, type ErrorCode } from '../lib/errors.ts';

/** The one place that maps error codes to HTTP statuses. 5xx internals are logged, never returned. */
const STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  // A feature the operator asked for whose configuration is missing: the message names the variables.
  NOT_CONFIGURED: 409,
  // Salesforce answered the OAuth exchange with an error: its words are passed on.
  BAD_GATEWAY: 502,
  PAYLOAD_TOO_LARGE: 413,
  UNAVAILABLE: 503,
  OVERLOADED: 503,
  RATE_LIMITED: 429,
  CURSOR_EXPIRED: 410,
  EXISTS: 409,
  CSRF: 403,
  CONFIG: 500,
  INTERNAL: 500,
};

/** Seconds to wait before trying again, per code, unless the error says (Retry-After). */
const RETRY_AFTER: Partial<Record<ErrorCode, number>> = { OVERLOADED: 1, UNAVAILABLE: 5, RATE_LIMITED: 1 };

const REASON: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  410: 'Gone',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

type ValidationProblem = NonNullable<FastifyError['validation']>[number];

/**
 * A schema validation failure as README promises it: each problem starts with the parameter at
 * fault (`limit: must be <= 1000`), not with Ajv's `querystring/limit must be ...`.
 */
export function validationMessage(problems: ValidationProblem[]): string {
  return problems
    .map((p) => {
      const params = p.params as { missingProperty?: string; additionalProperty?: string };
      if (params.missingProperty) return `${params.missingProperty}: is required`;
      if (params.additionalProperty) return `${params.additionalProperty}: is not a known parameter`;
      const at = p.instancePath.replace(/^\//, '').replaceAll('/', '.');
      return `${at || 'body'}: ${p.message ?? 'is not valid'}`;
    })
    .join('; ');
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (isAppError(err)) {
      const statusCode = STATUS[err.code];
      const retryAfter = err.retryAfterSeconds ?? RETRY_AFTER[err.code];
      if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
      if (statusCode >= 500) req.log.error({ err }, 'request failed');
      else req.log.info({ code: err.code, reason: err.message.slice(0, 300) }, 'request refused');
      return reply.status(statusCode).send({
        statusCode,
        error: REASON[statusCode],
        message:
          statusCode >= 500 && err.code !== 'UNAVAILABLE' && err.code !== 'OVERLOADED' && err.code !== 'BAD_GATEWAY'
            ? 'internal error'
            : err.message,
        code: err.code,
        ...(err.details ? { details: err.details } : {}),
        ...err.extra,
      });
    }
    // A sender that hung up mid-body: its own doing, not the database's (ECONNRESET looks alike).
    if (req.raw.readableAborted || (req.raw.destroyed && !req.raw.complete)) {
      req.log.info({ err: err.message }, 'request aborted by the client');
      return reply.status(400).send({ statusCode: 400, error: REASON[400], message: 'request aborted', code: 'ABORTED' });
    }
    if (isDatabaseUnavailable(err)) {
      req.log.warn({ err: err.message }, 'database unavailable');
      return reply
        .status(503)
        .header('retry-after', '5')
        .send({ statusCode: 503, error: REASON[503], message: 'the database is unavailable; retry later', code: 'UNAVAILABLE' });
    }
    const statusCode = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (statusCode >= 500) {
      req.log.error({ err }, 'request failed');
      return reply.status(500).send({ statusCode: 500, error: REASON[500], message: 'internal error', code: 'INTERNAL' });
    }
    // Fastify's own 4xx (validation, body too large, unsupported media type): its message names the problem.
    const message = err.validation ? validationMessage(err.validation) : err.message;
    return reply.status(statusCode).send({ statusCode, error: REASON[statusCode] ?? 'Error', message, code: err.code });
  });
  app.setNotFoundHandler((req, reply) =>
    reply
      .status(404)
      .send({ statusCode: 404, error: 'Not Found', message: `no route ${req.method} ${req.url.split('?')[0]}`, code: 'NOT_FOUND' }),
  );
}
