import faye from 'faye';

/**
 * Our CometD client for Change Data Capture: ONE faye client per org with ONE replay extension that
 * knows every channel (SALESFORCE-NOTES.md: several jsforce Replay extensions on one client
 * overwrite each other's `ext.replay`, and a rejected automatic re-subscribe is dropped silently).
 * The extension asks the caller for the replayId each time a `/meta/subscribe` goes out (faye
 * re-subscribes by itself after a re-handshake) and reports every `/meta/*` reply, so the caller
 * sees rejected subscribes, failed handshakes (401) and `/meta/connect` successes (its watchdog).
 * faye stays inside this file (STYLE.md: vendor types stay in the module that wraps them).
 */
export type ReplayFrom = number | string;

export interface MetaReply {
  readonly channel: string;
  readonly successful: boolean;
  readonly error?: string | undefined;
  readonly subscription?: string | undefined;
  readonly advice?: { readonly reconnect?: string; readonly interval?: number; readonly timeout?: number } | undefined;
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
