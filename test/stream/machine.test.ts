import t from 'tap';
import { initialState, replayFrom, step, type Effect, type Input, type MachineState, type Phase } from '../../src/stream/machine.ts';
import { classifyMetaReply, type MetaOutcome } from '../../src/salesforce/streaming.ts';

// Every arrow of the diagram in src/stream/machine.ts, one row each: from a state, an input, at a
// time -> the phase, the effects (by type) and what else must hold. No faye, no database.
const A = '/data/AccountChangeEvent';
const B = '/data/ContactChangeEvent';
const T0 = 1_000_000;
const GRACE = 1000;

const base = initialState([A, B], T0, GRACE);
const started = step(base, { type: 'start', checkpoints: { [A]: { replayId: 41, commitTimestamp: T0 - 5000 }, [B]: undefined } }, T0).state;
const meta = (outcome: MetaOutcome): Input => ({ type: 'meta', outcome });
const subscribed = (channel: string) => meta({ kind: 'subscribed', channel, advice: undefined });
const run = (s: MachineState, inputs: Input[], now = T0) => inputs.reduce((x, i) => step(x, i, now).state, s);
const live = run(started, [subscribed(A), subscribed(B)]);
const backingOff = step(live, meta({ kind: 'transient', error: '500::oops' }), T0).state;
const rebuilding = step(live, meta({ kind: 'auth', error: '401::Authentication invalid' }), T0).state;
const types = (effects: Effect[]) => effects.map((e) => e.type).filter((x) => x !== 'log');

type Row = [
  name: string,
  from: MachineState,
  input: Input,
  now: number,
  phase: Phase,
  effects: string[],
  check?: (s: MachineState, e: Effect[]) => void,
];
const rows: Row[] = [
  ['stopped -> connecting: start opens a client', base, { type: 'start', checkpoints: {} }, T0, 'connecting', ['open-client']],
  ['stopped: anything but start is ignored', base, meta({ kind: 'connected', advice: undefined }), T0, 'stopped', []],
  ['connecting: one channel of two subscribed', started, subscribed(A), T0, 'connecting', []],
  [
    'connecting -> live: every channel subscribed',
    run(started, [subscribed(A)]),
    subscribed(B),
    T0,
    'live',
    ['save-first-checkpoint'],
    (s) => {
      t.equal(s.error, null);
      t.equal(s.channels[B]!.lastReceived, -2, 'a channel subscribed from -1 moves to -2 at once');
      t.equal(s.channels[A]!.lastReceived, 41, 'a channel with a checkpoint keeps it');
    },
  ],
  [
    'live -> connecting: unknown client (faye re-handshakes)',
    live,
    meta({ kind: 'unknown-client', error: '403::Unknown client' }),
    T0 + 5,
    'connecting',
    ['count-rebuild'],
    (s, e) => {
      t.match(e, [{ type: 'log' }, { type: 'count-rebuild', reason: 'unknown_client' }]);
      t.equal(s.connectingSince, T0 + 5);
      t.notOk(s.channels[A]!.subscribed);
    },
  ],
  [
    'live -> connecting: a refused replayId resubscribes from -1 and records a resync',
    run(live, [{ type: 'event', channel: A, replayId: 50, commitTimestamp: T0 - 100 }]),
    meta({ kind: 'replay-invalid', channel: A, error: '400::The replayId {50} you provided was invalid' }),
    T0,
    'connecting',
    ['resubscribe', 'record-resync'],
    (s, e) => {
      t.equal(replayFrom(s, A), -1, 'the next subscribe of the channel asks for -1');
      t.match(e, [{}, { channel: A }, { channel: A, lastCommit: T0 - 100 }], 'since the last event received');
    },
  ],
  [
    'live -> backing off: auth refused renews the token and rebuilds',
    live,
    meta({ kind: 'auth', error: '401::Authentication invalid' }),
    T0,
    'backing off',
    ['count-rebuild', 'close-client', 'schedule-rebuild'],
    (s, e) => {
      t.match(e, [{}, { reason: 'auth' }, {}, { type: 'schedule-rebuild', attempt: 0, refresh: true }]);
      t.ok(s.rebuilding);
      t.notOk(s.hasClient);
    },
  ],
  [
    'live -> backing off: a subscribe refused for another reason rebuilds without renewing',
    live,
    meta({ kind: 'refused', channel: A, error: '403::Restricted channel' }),
    T0,
    'backing off',
    ['count-rebuild', 'close-client', 'schedule-rebuild'],
    (_s, e) => t.match(e.at(-1), { refresh: false }),
  ],
  [
    'live -> backing off: a failed request (faye retries by itself)',
    live,
    meta({ kind: 'transient', error: '500::oops' }),
    T0,
    'backing off',
    [],
    (s) => t.equal(s.error, '500::oops'),
  ],
  [
    'live -> backing off: a batch that cannot be committed',
    live,
    { type: 'batch-failed', error: 'connection refused' },
    T0,
    'backing off',
    [],
  ],
  [
    'backing off -> live: a committed batch, every channel subscribed',
    backingOff,
    { type: 'batch-committed' },
    T0,
    'live',
    [],
    (s) => t.equal(s.error, null),
  ],
  [
    'backing off -> connecting: a committed batch, a channel not subscribed',
    run(backingOff, [meta({ kind: 'unknown-client', error: 'x' }), meta({ kind: 'transient', error: 'y' })]),
    { type: 'batch-committed' },
    T0,
    'connecting',
    [],
  ],
  ['backing off (rebuilding): a committed batch changes nothing', rebuilding, { type: 'batch-committed' }, T0, 'backing off', []],
  [
    'live -> backing off: the watchdog (no /meta/connect within advice + grace)',
    live,
    { type: 'tick' },
    T0 + 110_000 + GRACE + 1,
    'backing off',
    ['count-rebuild', 'close-client', 'schedule-rebuild'],
    (_s, e) => t.match(e, [{ type: 'log', level: 'error' }, { reason: 'watchdog' }]),
  ],
  ['live: the watchdog stays quiet within the advice', live, { type: 'tick' }, T0 + 110_000, 'live', []],
  [
    'connecting -> backing off: the watchdog (a subscribe never confirmed)',
    run(started, [meta({ kind: 'connected', advice: { timeout: 100, interval: 0 } })], T0 + 1500),
    { type: 'tick' },
    T0 + 1500,
    'backing off',
    ['count-rebuild', 'close-client', 'schedule-rebuild'],
    (s) => t.equal(s.error, 'subscribe not confirmed'),
  ],
  [
    'backing off -> connecting: rebuild-due opens a new client',
    rebuilding,
    { type: 'rebuild-due' },
    T0 + 300,
    'connecting',
    ['open-client'],
    (s) => {
      t.ok(s.hasClient);
      t.notOk(s.rebuilding);
      t.equal(s.lastConnectOk, T0 + 300, 'the watchdog counts from the new client');
    },
  ],
  [
    'backing off -> backing off: refresh-failed tries again after more backoff',
    rebuilding,
    { type: 'refresh-failed', error: 'Salesforce token request failed' },
    T0,
    'backing off',
    ['schedule-rebuild'],
    (s, e) => {
      t.match(e.at(-1), { attempt: 1, refresh: true }, 'the next attempt waits longer');
      t.equal(s.attempt, 2);
    },
  ],
  [
    'connecting -> backing off: the resync request could not be recorded',
    run(live, [meta({ kind: 'replay-invalid', channel: A, error: '400::The replayId {1} you provided was invalid' })]),
    { type: 'resync-not-recorded', error: 'database down' },
    T0,
    'backing off',
    ['count-rebuild', 'close-client', 'schedule-rebuild'],
  ],
  ['any -> stopped: stop closes the client', live, { type: 'stop' }, T0, 'stopped', ['close-client']],
  ['backing off -> stopped: a scheduled rebuild is dropped', rebuilding, { type: 'stop' }, T0, 'stopped', ['close-client']],
];

for (const [name, from, input, now, phase, effects, check] of rows) {
  t.test(name, async (t) => {
    const r = step(from, input, now);
    t.equal(r.state.phase, phase, 'phase');
    t.same(types(r.effects), effects, 'effects');
    check?.(r.state, r.effects);
  });
}

t.test('replay bookkeeping: events move the replayId on; a rebuild already scheduled is not scheduled twice', async (t) => {
  let s = run(live, [{ type: 'event', channel: A, replayId: 60, commitTimestamp: T0 }]);
  t.equal(replayFrom(s, A), 60);
  t.equal(replayFrom(s, B), -2);
  s = run(s, [meta({ kind: 'replay-invalid', channel: A, error: 'e' })]);
  t.equal(replayFrom(s, A), -1);
  s = run(s, [{ type: 'event', channel: A, replayId: 70, commitTimestamp: T0 }]);
  t.equal(replayFrom(s, A), 70, 'an event after the forced -1 is the new replayId');
  const twice = step(rebuilding, meta({ kind: 'auth', error: '401' }), T0);
  t.same(types(twice.effects), [], 'a second refusal while rebuilding changes nothing');
  t.equal(step(live, { type: 'meta', outcome: { kind: 'connected', advice: undefined } }, T0 + 7).state.lastConnectOk, T0 + 7);
  t.equal(step(rebuilding, meta({ kind: 'connected', advice: undefined }), T0).state.attempt, 0, 'a successful connect resets the backoff');
});

t.test('faye replies are classified in src/salesforce/streaming.ts', async (t) => {
  const cases: Array<[Parameters<typeof classifyMetaReply>[0], MetaOutcome['kind']]> = [
    [{ channel: '/meta/handshake', successful: true }, 'connected'],
    [{ channel: '/meta/connect', successful: true, advice: { timeout: 110_000, interval: 0 } }, 'connected'],
    [{ channel: '/meta/subscribe', successful: true, subscription: A }, 'subscribed'],
    [{ channel: '/meta/unsubscribe', successful: true }, 'other-ok'],
    [{ channel: '/meta/connect', successful: false, error: '403::Unknown client' }, 'unknown-client'],
    [{ channel: '/meta/connect', successful: false, error: '401::Unknown client' }, 'unknown-client'],
    [{ channel: '/meta/handshake', successful: false, error: '401::Authentication invalid' }, 'auth'],
    [
      {
        channel: '/meta/subscribe',
        successful: false,
        subscription: A,
        error: '400::The replayId {12} you provided was invalid.  Please provide a valid ID',
      },
      'replay-invalid',
    ],
    [{ channel: '/meta/subscribe', successful: false, subscription: A, error: '403::Restricted channel' }, 'refused'],
    [{ channel: '/meta/connect', successful: false, error: '500::Internal error' }, 'transient'],
    [{ channel: '/meta/connect', successful: false }, 'transient'],
  ];
  for (const [reply, kind] of cases) t.equal(classifyMetaReply(reply).kind, kind, `${reply.channel} ${reply.error ?? 'ok'}`);
  t.same(classifyMetaReply({ channel: '/meta/connect', successful: true, advice: { timeout: 5, interval: 2 } }), {
    kind: 'connected',
    advice: { timeout: 5, interval: 2 },
  });
});
