import type { IncomingMessage } from 'node:http';
import { AppError } from '../lib/errors.ts';
import type { BodyVerifier, Verdict } from './signature.ts';

/**
 * Reads the body of a signed push while hashing it, so that an unauthenticated sender can make
 * sfmirror hold only a bounded amount of memory (README, "Security"):
 *
 *   - every request's unverified bytes count against ONE budget shared by all requests; a chunk
 *     that would exceed it refuses that request with 503 + Retry-After (the Apex outbox retries),
 *     and the bytes it held are released at once;
 *   - a body larger than `maxBytes` is refused with 413;
 *   - a body that has not arrived within `timeoutMs` (a sender trickling bytes to hold a slot) is
 *     cut off: its socket is destroyed;
 *   - the verdict is known at the last byte (the HMAC or RSA digest is updated per chunk); the
 *     bytes become "verified" (released from the budget) whether it matches or not.
 *
 * A request refused mid-body is answered once the rest of its body has been read and dropped (up
 * to `maxBytes` more), so the sender reads the 413 or 503 instead of a connection reset.
 *
 *   reading --chunk fits--> reading --end--> verdict (release budget)
 *      |  \--over maxBytes (413) / over budget (503), release budget--> dropping --end | maxBytes more--> answer
 *      +--timeout (either state)--> socket destroyed
 */
export interface UnverifiedBudget {
  readonly limit: number;
  /** Bytes of bodies currently read but not yet verified, over all requests. */
  inUse: number;
}

export const createUnverifiedBudget = (limit: number): UnverifiedBudget => ({ limit, inUse: 0 });

const EMPTY = Buffer.alloc(0);

export interface SignedBody {
  body: Buffer;
  verdict: Verdict;
}

export function readSignedBody(
  raw: IncomingMessage,
  payload: NodeJS.ReadableStream,
  opts: {
    verifier: BodyVerifier;
    budget: UnverifiedBudget;
    maxBytes: number;
    timeoutMs: number;
    /** On a mismatch: a verifier with keys reloaded since (a key added a moment ago), or none. */
    retry?: (() => Promise<BodyVerifier | undefined>) | undefined;
  },
): Promise<SignedBody> {
  const { budget, verifier } = opts;
  return new Promise<SignedBody>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let held = 0;
    let settled = false;
    // Once refused, the rest of the body is read and dropped (up to maxBytes more) before the answer:
    // Fastify closes the connection after a parser error, and closing a socket with unread data
    // sends a reset that can destroy the answer before the sender reads it.
    let refused: AppError | undefined;
    let dropped = 0;
    const release = () => {
      budget.inUse -= held;
      held = 0;
      chunks.length = 0;
    };
    const cleanup = () => {
      clearTimeout(timer);
      payload.removeListener('data', onData);
      payload.removeListener('end', onEnd);
      payload.removeListener('error', onError);
    };
    const settle = (err: AppError) => {
      if (settled) return;
      settled = true;
      cleanup();
      release();
      reject(err);
    };
    const timer = setTimeout(() => {
      if (settled) return;
      raw.socket?.destroy();
      settle(new AppError('BAD_REQUEST', `the body did not arrive within ${opts.timeoutMs} ms`));
    }, opts.timeoutMs);
    timer.unref?.();
    const refuse = (err: AppError) => {
      refused = err;
      release();
    };
    function onData(chunk: Buffer) {
      if (settled) return;
      if (refused) {
        dropped += chunk.length;
        if (dropped > opts.maxBytes) settle(refused);
        return;
      }
      if (held + chunk.length > opts.maxBytes) {
        refuse(new AppError('PAYLOAD_TOO_LARGE', `a push holds at most ${opts.maxBytes} bytes; split the batch`));
        return;
      }
      if (budget.inUse + chunk.length > budget.limit) {
        refuse(new AppError('OVERLOADED', 'too many unverified push bytes in flight; retry shortly'));
        return;
      }
      budget.inUse += chunk.length;
      held += chunk.length;
      chunks.push(chunk);
      verifier.update(chunk);
    }
    function onEnd() {
      if (settled) return;
      if (refused) return settle(refused);
      settled = true;
      cleanup();
      void conclude().then(resolve, reject);
    }
    // The body is joined into one buffer only once it verified: a forged body is dropped as chunks.
    async function conclude(): Promise<SignedBody> {
      try {
        let verdict = verifier.finish();
        if (!verdict.ok && opts.retry) {
          const again = await opts.retry();
          if (again) {
            for (const c of chunks) again.update(c);
            verdict = again.finish();
          }
        }
        return { body: verdict.ok ? Buffer.concat(chunks, held) : EMPTY, verdict };
      } finally {
        release();
      }
    }
    function onError(e: Error) {
      // An aborted upload is the sender's doing: a 400 that is never read, logged as what it is.
      settle(new AppError('BAD_REQUEST', `the push body was not received completely: ${e.message}`, { cause: e }));
    }
    payload.on('data', onData);
    payload.on('end', onEnd);
    payload.on('error', onError);
  });
}
