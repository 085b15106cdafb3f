import type { Advice, MetaOutcome, ReplayFrom } from '../salesforce/streaming.ts';

/**
 * The decisions of one org's CDC subscriber, as a pure function: `step(state, input, now)` returns
 * the next state and the effects the shell (subscriber.ts) carries out. Nothing here talks to faye,
 * PostgreSQL or the clock (time is an input); every arrow below has a row in
 * test/stream/machine.test.ts.
 *
 *                  start
 *   stopped ----------------------> connecting <-------------------------------+
 *      ^                            |   |   ^                                  |
 *      | stop (from any phase)      |   |   | unknown-client (faye re-         |
 *      |                            |   |   | handshakes and re-subscribes)    |
 *      |     every channel          |   |   |                                  |
 *      |     subscribed             v   |   |   replay-invalid: resubscribe    | rebuild-due
 *      |                          live -+---+   the channel from -1, record    | (a new client
 *      |                            |   |       a resync request               |  after backoff)
 *      |     auth, refused,         |   |                                      |
 *      |     watchdog (no connect   v   v  transient, batch-failed             |
 *      +----------------------- backing off -----------------------------------+
 *                                   |  ^
 *                                   |  | refresh-failed (try again after more backoff)
 *                                   +--+
 *           batch-committed while backing off with a client: live (every channel
 *           subscribed) or connecting
 *
 * A rebuild (auth, a refused subscribe, the watchdog) closes the client and schedules a new one
 * after a jittered backoff (`schedule-rebuild`); auth also renews the token first. Replay
 * bookkeeping lives here too: `replayFrom(state, channel)` is what the next subscribe of a channel
 * asks for (forced -1 after a refused replayId, else the last received, else -1), and a channel
 * subscribed from -1 moves to -2 at once (what comes after must survive a reconnect).
 */
export type Phase = 'stopped' | 'connecting' | 'live' | 'backing off';

export interface ChannelState {
  readonly subscribed: boolean;
  /** The last replayId received (or -2 once subscribed from -1); undefined: none yet. */
  readonly lastReceived: ReplayFrom | undefined;
  /** A replayId the next subscribe must use (-1 after a refused replayId). */
  readonly forced: ReplayFrom | undefined;
  /** The commitTimestamp of the last event received, for a resync's `since`. */
  readonly lastCommit: number | undefined;
}

export interface MachineState {
  readonly phase: Phase;
  readonly error: string | null;
  readonly channels: Readonly<Record<string, ChannelState>>;
  readonly advice: Advice;
  readonly lastConnectOk: number;
  readonly connectingSince: number;
  /** Backoff attempt of the next rebuild (reset by a successful connect). */
  readonly attempt: number;
  readonly hasClient: boolean;
  /** A rebuild is scheduled (the old client is closed, the new one not yet opened). */
  readonly rebuilding: boolean;
  /** Added to the advice (timeout + interval) before the watchdog rebuilds the client. */
  readonly watchdogGraceMs: number;
}

export type Input =
  | { type: 'start'; checkpoints: Readonly<Record<string, { replayId: ReplayFrom; commitTimestamp?: number | undefined } | undefined>> }
  | { type: 'meta'; outcome: MetaOutcome }
  | { type: 'event'; channel: string; replayId: ReplayFrom; commitTimestamp: number | undefined }
  | { type: 'batch-committed' }
  | { type: 'batch-failed'; error: string }
  | { type: 'tick' }
  | { type: 'rebuild-due' }
  | { type: 'refresh-failed'; error: string }
  | { type: 'resync-not-recorded'; error: string }
  | { type: 'stop' };

export type Effect =
  | { type: 'open-client' }
  | { type: 'close-client' }
  | { type: 'resubscribe'; channel: string }
  | { type: 'save-first-checkpoint'; channel: string }
  /** The channel's events since `lastCommit` (undefined: read it from the checkpoint) are lost: ask for a resync. */
  | { type: 'record-resync'; channel: string; error: string; lastCommit: number | undefined }
  /** Wait backoff(`attempt`), renew the token when `refresh`, then feed `rebuild-due` (or `refresh-failed`). */
  | { type: 'schedule-rebuild'; attempt: number; refresh: boolean }
  /** The metric of client rebuilds, by reason. */
  | { type: 'count-rebuild'; reason: 'auth' | 'subscribe' | 'watchdog' | 'unknown_client' }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string; fields?: Record<string, unknown> };

export interface Step {
  state: MachineState;
  effects: Effect[];
}

export function initialState(channels: readonly string[], now: number, watchdogGraceMs: number): MachineState {
  return {
    phase: 'stopped',
    error: null,
    channels: Object.fromEntries(
      channels.map((c) => [c, { subscribed: false, lastReceived: undefined, forced: undefined, lastCommit: undefined }]),
    ),
    advice: { timeout: 110_000, interval: 0 },
    lastConnectOk: now,
    connectingSince: now,
    attempt: 0,
    hasClient: false,
    rebuilding: false,
    watchdogGraceMs,
  };
}

/** The replayId the next subscribe of `channel` asks for. */
export const replayFrom = (s: MachineState, channel: string): ReplayFrom => {
  const c = s.channels[channel];
  return c?.forced ?? c?.lastReceived ?? -1;
};

const allSubscribed = (s: MachineState) => Object.values(s.channels).every((c) => c.subscribed);

function withPhase(s: MachineState, phase: Phase, now: number, error?: string | null): MachineState {
  const next = { ...s, phase, error: error === undefined ? s.error : error };
  return phase === 'connecting' && s.phase !== 'connecting' ? { ...next, connectingSince: now } : next;
}

function withChannel(s: MachineState, channel: string, patch: Partial<ChannelState>): MachineState {
  const c = s.channels[channel];
  if (!c) return s;
  return { ...s, channels: { ...s.channels, [channel]: { ...c, ...patch } } };
}

const unsubscribeAll = (s: MachineState): MachineState => ({
  ...s,
  channels: Object.fromEntries(Object.entries(s.channels).map(([k, c]) => [k, { ...c, subscribed: false }])),
});

/** Closes the client and schedules a new one; a rebuild already scheduled (or a stopped machine) is left alone. */
function rebuild(s: MachineState, now: number, reason: 'auth' | 'subscribe' | 'watchdog', refresh: boolean, error?: string): Step {
  if (s.rebuilding || s.phase === 'stopped') return { state: s, effects: [] };
  const state = withPhase({ ...s, hasClient: false, rebuilding: true, attempt: s.attempt + 1 }, 'backing off', now, error ?? reason);
  return {
    state,
    effects: [{ type: 'count-rebuild', reason }, { type: 'close-client' }, { type: 'schedule-rebuild', attempt: s.attempt, refresh }],
  };
}

export function step(s: MachineState, input: Input, now: number): Step {
  if (s.phase === 'stopped' && input.type !== 'start') return { state: s, effects: [] };
  switch (input.type) {
    case 'start': {
      if (s.phase !== 'stopped') return { state: s, effects: [] };
      let state: MachineState = { ...s, lastConnectOk: now, hasClient: true, rebuilding: false };
      for (const [channel, cp] of Object.entries(input.checkpoints)) {
        if (cp) state = withChannel(state, channel, { lastReceived: cp.replayId, lastCommit: cp.commitTimestamp });
      }
      return { state: withPhase(unsubscribeAll(state), 'connecting', now), effects: [{ type: 'open-client' }] };
    }
    case 'stop':
      return { state: withPhase({ ...s, hasClient: false, rebuilding: false }, 'stopped', now), effects: [{ type: 'close-client' }] };
    case 'meta':
      return onMeta(s, input.outcome, now);
    case 'event': {
      const c = s.channels[input.channel];
      if (!c) return { state: s, effects: [] };
      const state = withChannel(s, input.channel, {
        lastReceived: input.replayId,
        lastCommit: input.commitTimestamp ?? c.lastCommit,
        forced: undefined,
      });
      return { state, effects: [] };
    }
    case 'batch-committed':
      if (s.phase === 'backing off' && s.hasClient && !s.rebuilding) {
        return { state: withPhase(s, allSubscribed(s) ? 'live' : 'connecting', now, null), effects: [] };
      }
      return { state: s, effects: [] };
    case 'batch-failed':
      return { state: withPhase(s, 'backing off', now, input.error), effects: [] };
    case 'tick': {
      if (!s.hasClient || s.rebuilding) return { state: s, effects: [] };
      const limit = s.advice.timeout + s.advice.interval + s.watchdogGraceMs;
      const quiet = now - s.lastConnectOk;
      if (quiet > limit) {
        const r = rebuild(s, now, 'watchdog', false, `no /meta/connect success for ${Math.round(quiet / 1000)} s`);
        return {
          state: r.state,
          effects: [
            {
              type: 'log',
              level: 'error',
              message: 'cdc stream went quiet: no successful /meta/connect within the advice; rebuilding the client',
              fields: { quietMs: quiet, limitMs: limit },
            },
            ...r.effects,
          ],
        };
      }
      if (s.phase === 'connecting' && now - s.connectingSince > limit) {
        // Connected but a (re-)subscribe never answered: without this the stream would wait forever.
        const r = rebuild(s, now, 'watchdog', false, 'subscribe not confirmed');
        return {
          state: r.state,
          effects: [
            {
              type: 'log',
              level: 'error',
              message: 'cdc subscribe not confirmed within the advice; rebuilding the client',
              fields: { waitedMs: now - s.connectingSince },
            },
            ...r.effects,
          ],
        };
      }
      return { state: s, effects: [] };
    }
    case 'rebuild-due': {
      if (!s.rebuilding) return { state: s, effects: [] };
      const state = unsubscribeAll({ ...s, rebuilding: false, hasClient: true, lastConnectOk: now });
      return { state: withPhase(state, 'connecting', now), effects: [{ type: 'open-client' }] };
    }
    case 'refresh-failed': {
      if (!s.rebuilding) return { state: s, effects: [] };
      const state = withPhase({ ...s, attempt: s.attempt + 1 }, 'backing off', now, input.error);
      return {
        state,
        effects: [
          { type: 'log', level: 'error', message: 'cdc token renewal failed; retrying', fields: { err: input.error } },
          { type: 'schedule-rebuild', attempt: s.attempt, refresh: true },
        ],
      };
    }
    case 'resync-not-recorded': {
      // The refused subscribe comes again with the new client, and with it the resync request.
      const r = rebuild(s, now, 'subscribe', false, input.error);
      return {
        state: r.state,
        effects: [
          { type: 'log', level: 'error', message: 'could not record the resync request; rebuilding', fields: { err: input.error } },
          ...r.effects,
        ],
      };
    }
  }
}

function onMeta(s: MachineState, m: MetaOutcome, now: number): Step {
  switch (m.kind) {
    case 'connected':
    case 'subscribed':
    case 'other-ok': {
      let state: MachineState = m.advice ? { ...s, advice: m.advice } : s;
      const effects: Effect[] = [];
      if (m.kind === 'connected') state = { ...state, lastConnectOk: now, attempt: 0 };
      if (m.kind === 'subscribed' && state.channels[m.channel]) {
        const c = state.channels[m.channel]!;
        state = withChannel(state, m.channel, { subscribed: true, forced: undefined });
        effects.push({ type: 'log', level: 'info', message: 'cdc subscribed', fields: { channel: m.channel } });
        if (c.lastReceived === undefined) {
          // Subscribed from -1 and no event yet: whatever comes from now on must not be lost by a
          // reconnect or a restart before the first event, so both replay all that is retained (-2).
          state = withChannel(state, m.channel, { lastReceived: -2 });
          effects.push({ type: 'save-first-checkpoint', channel: m.channel });
        }
      }
      if (state.phase === 'connecting' && allSubscribed(state)) state = withPhase(state, 'live', now, null);
      return { state, effects };
    }
    case 'unknown-client':
      // faye follows the advice (reconnect: handshake) and re-subscribes through our replay extension.
      return {
        state: withPhase(unsubscribeAll(s), 'connecting', now, m.error),
        effects: [
          { type: 'log', level: 'warn', message: 'cdc server forgot this client: re-handshaking', fields: { error: m.error } },
          { type: 'count-rebuild', reason: 'unknown_client' },
        ],
      };
    case 'auth': {
      const r = rebuild(s, now, 'auth', true);
      return {
        state: r.state,
        effects: [
          {
            type: 'log',
            level: 'warn',
            message: 'cdc authentication refused: renewing the token and rebuilding the client',
            fields: { error: m.error },
          },
          ...r.effects,
        ],
      };
    }
    case 'replay-invalid': {
      const c = s.channels[m.channel];
      if (!c) return { state: s, effects: [] };
      // Where the last applied event was is read before anything can move the checkpoint.
      const state = withChannel(s, m.channel, { subscribed: false, forced: -1, lastReceived: undefined });
      return {
        state: withPhase(state, 'connecting', now, m.error),
        effects: [
          {
            type: 'log',
            level: 'error',
            message:
              'CDC EVENTS LOST: the stored replayId was refused (older than the retention window?); subscribing from -1 and resynchronising',
            fields: { channel: m.channel, error: m.error },
          },
          { type: 'resubscribe', channel: m.channel },
          { type: 'record-resync', channel: m.channel, error: m.error, lastCommit: c.lastCommit },
        ],
      };
    }
    case 'refused': {
      const state = s.channels[m.channel] ? withChannel(s, m.channel, { subscribed: false }) : s;
      const r = rebuild(state, now, 'subscribe', false, m.error);
      return {
        state: r.state,
        effects: [
          {
            type: 'log',
            level: 'error',
            message: 'cdc subscribe refused: rebuilding the client',
            fields: { channel: m.channel, error: m.error },
          },
          ...r.effects,
        ],
      };
    }
    case 'transient':
      return {
        state: withPhase(s, 'backing off', now, m.error),
        effects: [{ type: 'log', level: 'warn', message: 'cdc request failed; faye retries', fields: { error: m.error } }],
      };
  }
}
