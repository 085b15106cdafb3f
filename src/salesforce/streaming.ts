import faye from 'faye';

/**
 * Our CometD client for Change Data Capture: ONE faye client per org with ONE replay extension that
 * knows every channel (several jsforce Replay extensions on one client
 * overwrite each other's `ext.replay`, and a rejected automatic re-subscribe is dropped silently).
 * The extension asks the caller for the replayId each time a `/meta/subscribe` goes out (faye
 * re-subscribes by itself after a re-handshake) and reports every `/meta/*` reply, so the caller
 * sees rejected subscribes, failed handshakes (401) and `/meta/connect` successes (its watchdog);
 * `classifyMetaReply` says what each reply means.
 * faye stays inside this file (README, "Development": vendor types stay in the module that wraps them).
 */
export type ReplayFrom = number | string;

export interface MetaReply {
  readonly channel: string;
  readonly successful: boolean;
  readonly error?: string | undefined;
  readonly subscription?: string | undefined;
  readonly advice?: { readonly reconnect?: string; readonly interval?: number; readonly timeout?: number } | undefined;
}

/**
 * What a `/meta/*` reply means for the subscriber, decided here so that no one else reads Bayeux
 * error texts Salesforce sends:
 * - `connected`: a handshake or connect succeeded (the server is alive; its advice rides along).
 * - `subscribed`: a channel's subscribe succeeded.
 * - `other-ok`: any other successful reply (unsubscribe, disconnect).
 * - `unknown-client`: the server forgot this client (403::Unknown client at Salesforce, 401::Unknown
 *   client from a restarted faye); faye re-handshakes and re-subscribes by itself.
 * - `auth`: 401 other than unknown client: the token was refused.
 * - `replay-invalid`: the replayId of a subscribe is outside the retention window (or unknown).
 * - `refused`: any other refused subscribe.
 * - `transient`: any other failed request (faye retries it).
 */
export type MetaOutcome =
  | { kind: 'connected'; advice: Advice | undefined }
  | { kind: 'subscribed'; channel: string; advice: Advice | undefined }
  | { kind: 'other-ok'; advice: Advice | undefined }
  | { kind: 'unknown-client'; error: string }
  | { kind: 'auth'; error: string }
  | { kind: 'replay-invalid'; channel: string; error: string }
  | { kind: 'refused'; channel: string; error: string }
  | { kind: 'transient'; error: string };

export type Advice = { timeout: number; interval: number };

const INVALID_REPLAY_ID = /^400::The replayId \{?(-?\d+)\}?\s+you\s+provided\s+was\s+invalid/i;

export function classifyMetaReply(m: MetaReply): MetaOutcome {
  if (m.successful) {
    const advice =
      m.advice && typeof m.advice.timeout === 'number' ? { timeout: m.advice.timeout, interval: m.advice.interval ?? 0 } : undefined;
    if (m.channel === '/meta/connect' || m.channel === '/meta/handshake') return { kind: 'connected', advice };
    if (m.channel === '/meta/subscribe' && m.subscription) return { kind: 'subscribed', channel: m.subscription, advice };
    return { kind: 'other-ok', advice };
  }
  const error = m.error ?? 'no error text';
  // Salesforce says 403::Unknown client; a Bayeux server that restarted (faye) says 401::Unknown client.
  if (/^40[13]::Unknown client/i.test(error)) return { kind: 'unknown-client', error };
  if (/^401/.test(error)) return { kind: 'auth', error };
  if (m.channel === '/meta/subscribe') {
    const channel = m.subscription ?? '';
    return INVALID_REPLAY_ID.test(error) ? { kind: 'replay-invalid', channel, error } : { kind: 'refused', channel, error };
  }
  return { kind: 'transient', error };
}

export interface StreamingOptions {
  readonly instanceUrl: string;
  readonly version: string;
  readonly accessToken: string;
  readonly channels: readonly string[];
  /** The replayId to subscribe `channel` from, asked at every (re-)subscribe. */
  replayFrom(channel: string): ReplayFrom;
  onEvent(channel: string, data: unknown): void;
  onMeta(reply: MetaReply): void;
  /** Seconds between faye's own retries of a failed request. */
  readonly retrySeconds?: number | undefined;
}

export interface StreamingClient {
  /** Subscribes `channel` again (after a rejected subscribe). */
  resubscribe(channel: string): void;
  /** Stops every timer and request of this client; idempotent. */
  close(): void;
}

type FayeClient = {
  setHeader(name: string, value: string): void;
  addExtension(ext: unknown): void;
  disable(feature: string): void;
  subscribe(channel: string, listener: (data: unknown) => void): { cancel(): void; then(ok: () => void, fail: (e: unknown) => void): void };
  disconnect(): unknown;
  _advice: { reconnect: string };
  _dispatcher: {
    close(): void;
    _envelopes: Map<string, { timer?: NodeJS.Timeout | null; request?: Promise<{ abort?(): void } | undefined> | null }>;
  };
};

export function openStreamingClient(o: StreamingOptions): StreamingClient {
  const Client = (faye as unknown as { Client: new (url: string, opts: object) => FayeClient }).Client;
  const client = new Client(`${o.instanceUrl}/cometd/${o.version}`, { retry: o.retrySeconds ?? 1, proxy: { origin: undefined } });
  // Salesforce speaks long-polling only; anything else hangs or is refused.
  for (const f of ['websocket', 'eventsource', 'callback-polling']) client.disable(f);
  client.setHeader('Authorization', `OAuth ${o.accessToken}`);
  let closed = false;
  client.addExtension({
    outgoing(msg: { channel: string; subscription?: string; ext?: Record<string, unknown> }, cb: (m: unknown) => void) {
      if (msg.channel === '/meta/subscribe' && msg.subscription) {
        msg.ext = { ...(msg.ext ?? {}), replay: { [msg.subscription]: o.replayFrom(msg.subscription) } };
      }
      cb(msg);
    },
    incoming(msg: MetaReply & { successful?: boolean }, cb: (m: unknown) => void) {
      if (!closed && msg.channel?.startsWith('/meta/') && msg.successful !== undefined) {
        o.onMeta({
          channel: msg.channel,
          successful: msg.successful,
          error: msg.error,
          subscription: msg.subscription === undefined ? undefined : String(msg.subscription),
          advice: msg.advice,
        });
      }
      cb(msg);
    },
  });
  const subs = new Map<string, { cancel(): void }>();
  const subscribe = (channel: string) => {
    subs.get(channel)?.cancel();
    const s = client.subscribe(channel, (data) => {
      if (!closed) o.onEvent(channel, data);
    });
    // The failure is reported through onMeta (the /meta/subscribe reply); nothing to do here.
    s.then(
      () => {},
      () => {},
    );
    subs.set(channel, s);
  };
  for (const ch of o.channels) subscribe(ch);
  return {
    resubscribe(channel) {
      if (!closed) subscribe(channel);
    },
    close() {
      if (closed) return;
      closed = true;
      // A held /meta/connect would keep the process alive for up to the server's timeout (110 s at
      // Salesforce), and faye's retry timers would go on: abort every request in flight.
      const envelopes = client._dispatcher._envelopes;
      const abortAll = () => {
        for (const e of envelopes.values()) {
          if (e.timer) clearTimeout(e.timer);
          // A request that failed to start has nothing to abort.
          void e.request?.then(
            (req) => req?.abort?.(),
            () => {},
          );
        }
        envelopes.clear();
      };
      abortAll();
      try {
        client.disconnect();
      } catch {
        /* not connected */
      }
      client._advice.reconnect = 'none';
      // The disconnect gets a moment to reach the server (it frees the session there), then goes too.
      setTimeout(() => {
        abortAll();
        client._dispatcher.close();
      }, 2000).unref();
    },
  };
}
