import os from 'node:os';
import { decodeCdcEvent, type CdcEvent } from '../changes/cdc-event.ts';
import type { Db } from '../db/database.ts';
import { backoffDelay, sleep } from '../lib/backoff.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import type { Mirror } from '../mirror/apply.ts';
import type { SalesforceSession } from '../salesforce/client.ts';
import type { MetaReply, ReplayFrom, StreamingClient, StreamingOptions } from '../salesforce/streaming.ts';
import { createBatcher, type Pending } from './batcher.ts';
import { refetchChanges } from './rest-reads.ts';
import { createResyncWorker } from './resync.ts';
import * as repo from './stream.repository.ts';

/**
 * The CDC subscriber of one org: one CometD client for every channel, events grouped by
 * transactionKey and applied through `mirror.apply` with the replayId checkpoint in the same
 * transaction, and the faults of SALESFORCE-NOTES.md handled so the stream never dies silently.
 *
 *              start
 *                |
 *                v
 *   +-----> connecting ---(every /meta/subscribe ok)---> live <----> resyncing
 *   |         |    ^                                      |         (a resync request is worked)
 *   |         |    +--- 403::Unknown client: faye re-handshakes and re-subscribes by itself
 *   |         v                                           |
 *   +--- backing off <--- 401 (refresh the token), watchdog (no /meta/connect success within the
 *                         advice's timeout + interval + grace), subscribe refused (not a replayId
 *                         problem); a new client after a jittered backoff
 *
 * A rejected replayId (expired, unknown) is not a rebuild: that channel is subscribed again from -1
 * and a resync request is recorded for its objects, since the last applied commitTimestamp.
 */
export type StreamState = 'stopped' | 'connecting' | 'live' | 'backing off' | 'resyncing';

export interface SubscriberTuning {
  /** A transaction without a following event is complete after this idle time. */
  flushIdleMs: number;
  /** Events per applied batch (whole transactions are never split). */
  maxBatch: number;
  /** Added to the server's advice (timeout + interval) before the watchdog rebuilds the client. */
  watchdogGraceMs: number;
  /** Records per REST page of a resync. */
  resyncPageSize: number;
  /** How far before the last applied commitTimestamp a resync starts reading (clock skew, long transactions). */
  resyncMarginMs: number;
  /** False when the backfill worker of `serve` works the resync requests (the stream only records them). */
  workResyncs?: boolean;
}

export interface SubscriberDeps {
  db: Db;
  mirror: Mirror;
  session: SalesforceSession;
  openStreaming(o: StreamingOptions): StreamingClient;
  org: string;
  channels: readonly string[];
  /** SF_OBJECTS: events of other objects are skipped. */
  objects?: readonly string[] | undefined;
  log: Logger;
  metrics?: Metrics | undefined;
  tuning: SubscriberTuning;
  now?: () => number;
}

export interface StreamStatus {
  state: StreamState;
  channels: Array<{ channel: string; replayId: ReplayFrom | null; lastEventAt: string | null; lagMs: number | null }>;
  eventsPerSecond: number;
  error: string | null;
}

export const INVALID_REPLAY_ID = /^400::The replayId \{?(-?\d+)\}?\s+you\s+provided\s+was\s+invalid/i;
const HOLDER = `${os.hostname()}:${process.pid}`;

export function createSubscriber(d: SubscriberDeps) {
  const now = d.now ?? Date.now;
  const { log, metrics, org } = d;
  const allowed = d.objects ? new Set(d.objects.map((o) => o.toLowerCase())) : undefined;
  const isAllowed = (object: string) => !allowed || allowed.has(object.toLowerCase());
  let state: StreamState = 'stopped';
  let error: string | null = null;
  let client: StreamingClient | undefined;
  let stopped = true;
  let rebuilding: Promise<void> | undefined;
  let attempt = 0;
  let advice = { timeout: 110_000, interval: 0 };
  let lastConnectOk = now();
  let connectingSince = now();
  let watchdog: NodeJS.Timeout | undefined;
  const subscribed = new Set<string>();
  const lastReceived = new Map<string, ReplayFrom>();
  const forced = new Map<string, ReplayFrom>();
  const lastCommit = new Map<string, number>();
  const applied = new Map<string, { replayId: ReplayFrom; commitTimestamp: number; at: number }>();
  const recent: Array<{ at: number; n: number }> = [];
  let lastPersist = 0;

  const resync = createResyncWorker({
    db: d.db,
    mirror: d.mirror,
    sf: d.session,
    org,
    log,
    metrics,
    pageSize: d.tuning.resyncPageSize,
    isAllowed,
    onChange: () => refreshState(),
    workRequests: d.tuning.workResyncs ?? true,
  });
  const batcher = createBatcher({
    maxBatch: d.tuning.maxBatch,
    idleMs: d.tuning.flushIdleMs,
    apply: applyBatch,
    log,
    isStopped: () => stopped,
  });

  function setState(s: StreamState, err?: string | null) {
    if (err !== undefined) error = err;
    if (s === state) return;
    if (s === 'connecting') connectingSince = now();
    log.info({ org, from: state, to: s, error }, 'cdc stream state');
    state = s;
    metrics?.streamState.reset();
    metrics?.streamState.set({ org, state: s }, 1);
    void persist(true);
  }
  function refreshState() {
    if (state === 'live' || state === 'resyncing') setState(resync.running() ? 'resyncing' : 'live');
  }

  function eventsPerSecond() {
    const since = now() - 10_000;
    while (recent.length && recent[0]!.at < since) recent.shift();
    return recent.reduce((n, r) => n + r.n, 0) / 10;
  }

  async function persist(force = false) {
    if (!force && now() - lastPersist < 1000) return;
    lastPersist = now();
    try {
      for (const channel of d.channels) {
        const a = applied.get(channel);
        await repo.saveStreamState(d.db, org, {
          channel,
          state,
          holder: HOLDER,
          replayId: a ? String(a.replayId) : lastReceived.has(channel) ? String(lastReceived.get(channel)) : null,
          lastEventAt: a ? new Date(a.at) : null,
          lastCommitAt: a ? new Date(a.commitTimestamp) : null,
          lagMs: a ? a.at - a.commitTimestamp : null,
          eventsPerSecond: eventsPerSecond(),
          error,
        });
      }
    } catch (e) {
      log.warn({ org, err: (e as Error).message }, 'could not record the stream state');
    }
  }

  function build() {
    client?.close();
    subscribed.clear();
    lastConnectOk = now();
    setState('connecting');
    client = d.openStreaming({
      instanceUrl: d.session.instanceUrl(),
      version: d.session.version,
      accessToken: d.session.accessToken(),
      channels: d.channels,
      replayFrom: (ch) => forced.get(ch) ?? lastReceived.get(ch) ?? -1,
      onEvent,
      onMeta,
    });
  }

  function onMeta(m: MetaReply) {
    if (m.successful && m.advice && typeof m.advice.timeout === 'number')
      advice = { timeout: m.advice.timeout, interval: m.advice.interval ?? 0 };
    if (m.successful) {
      if (m.channel === '/meta/connect' || m.channel === '/meta/handshake') {
        lastConnectOk = now();
        attempt = 0;
      }
      if (m.channel === '/meta/subscribe' && m.subscription) {
        const ch = m.subscription;
        subscribed.add(ch);
        forced.delete(ch);
        log.info({ org, channel: ch }, 'cdc subscribed');
        if (!lastReceived.has(ch)) {
          // Subscribed from -1 and no event yet: whatever comes from now on must not be lost by a
          // reconnect or a restart before the first event, so both replay all that is retained (-2).
          lastReceived.set(ch, -2);
          repo
            .saveFirstCheckpoint(d.db, org, ch, { replayId: -2 })
            .catch((e: Error) => log.warn({ org, channel: ch, err: e.message }, 'could not store the first checkpoint'));
        }
      }
      if (state === 'connecting' && d.channels.every((c) => subscribed.has(c))) setState(resync.running() ? 'resyncing' : 'live', null);
      return;
    }
    const err = m.error ?? 'no error text';
    // Salesforce says 403::Unknown client; a Bayeux server that restarted (faye) says 401::Unknown client.
    if (/^40[13]::Unknown client/i.test(err)) {
      // faye follows the advice (reconnect: handshake) and re-subscribes through our replay extension.
      log.warn({ org, error: err }, 'cdc server forgot this client: re-handshaking');
      metrics?.streamRebuilds.inc({ org, reason: 'unknown_client' });
      subscribed.clear();
      setState('connecting', err);
      return;
    }
    if (/^401/.test(err)) {
      log.warn({ org, channel: m.channel, error: err }, 'cdc authentication refused: renewing the token and rebuilding the client');
      return rebuild('auth', true);
    }
    if (m.channel === '/meta/subscribe') {
      const channel = m.subscription ?? '';
      subscribed.delete(channel);
      if (INVALID_REPLAY_ID.test(err)) {
        replayRejected(channel, err).catch((e: Error) => {
          // The resync request could not be recorded: rebuild, the refused subscribe will come again.
          log.error({ org, channel, err: e.message }, 'could not record the resync request; rebuilding');
          rebuild('subscribe', false, e.message);
        });
        return;
      }
      log.error({ org, channel, error: err }, 'cdc subscribe refused: rebuilding the client');
      return rebuild('subscribe', false, err);
    }
    log.warn({ org, channel: m.channel, error: err }, 'cdc request failed; faye retries');
    setState('backing off', err);
  }

  async function replayRejected(channel: string, err: string) {
    log.error(
      { org, channel, error: err },
      'CDC EVENTS LOST: the stored replayId was refused (older than the retention window?); subscribing from -1 and resynchronising',
    );
    // Read where the last applied event was before anything else can move the checkpoint.
    const lastCommitTs = lastCommit.get(channel) ?? applied.get(channel)?.commitTimestamp;
    forced.set(channel, -1);
    lastReceived.delete(channel);
    client?.resubscribe(channel);
    const cp = lastCommitTs ? { commitTimestamp: lastCommitTs } : await repo.readStreamCheckpoint(d.db, org, channel);
    const since = cp?.commitTimestamp ? new Date(cp.commitTimestamp - d.tuning.resyncMarginMs) : null;
    const objects = objectsOfChannel(channel) ?? (await objectsToResync());
    for (const object of objects)
      await resync.request(
        object,
        `replayId refused on ${channel}: ${err.slice(0, 120)}`,
        repo.checkpointSource(channel),
        since,
        'replay_invalid',
      );
    setState('resyncing', err);
  }

  async function objectsToResync(): Promise<string[]> {
    const known = await repo.objectsOf(d.db, org);
    return [...new Set([...(d.objects ?? []), ...known])];
  }

  function rebuild(reason: string, refresh: boolean, err?: string) {
    if (rebuilding || stopped) return;
    metrics?.streamRebuilds.inc({ org, reason });
    client?.close();
    client = undefined;
    setState('backing off', err ?? reason);
    rebuilding = (async () => {
      while (!stopped) {
        await sleep(backoffDelay(attempt++, 250, 30_000), stopSignal.signal);
        if (stopped) return;
        try {
          if (refresh && !(await d.session.refresh())) {
            log.error(
              { org },
              'the access token was refused and cannot be renewed (SF_ACCESS_TOKEN only): configure SF_REFRESH_TOKEN or JWT bearer',
            );
          }
          build();
          return;
        } catch (e) {
          log.error({ org, err: (e as Error).message }, 'cdc token renewal failed; retrying');
          setState('backing off', (e as Error).message);
        }
      }
    })().finally(() => {
      rebuilding = undefined;
    });
  }

  function checkWatchdog() {
    if (stopped || !client || rebuilding) return;
    const limit = advice.timeout + advice.interval + d.tuning.watchdogGraceMs;
    const quiet = now() - lastConnectOk;
    if (quiet > limit) {
      log.error(
        { org, quietMs: quiet, limitMs: limit },
        'cdc stream went quiet: no successful /meta/connect within the advice; rebuilding the client',
      );
      rebuild('watchdog', false, `no /meta/connect success for ${Math.round(quiet / 1000)} s`);
    } else if (state === 'connecting' && now() - connectingSince > limit) {
      // Connected but a (re-)subscribe never answered: without this the stream would wait forever.
      log.error({ org, waitedMs: now() - connectingSince }, 'cdc subscribe not confirmed within the advice; rebuilding the client');
      rebuild('watchdog', false, 'subscribe not confirmed');
    }
  }

  function onEvent(channel: string, data: unknown) {
    const r = decodeCdcEvent(data);
    let item: Pending;
    if (r.ok) {
      const e: CdcEvent = r.event;
      metrics?.streamEvents.inc({ org, result: 'received' });
      item = {
        channel,
        replayId: e.replayId,
        commitTimestamp: e.header.commitTimestamp,
        key: e.header.transactionKey || `replay:${e.replayId}`,
        event: e,
      };
    } else {
      // A malformed event is reported and skipped; its replayId still moves the checkpoint on.
      metrics?.streamEvents.inc({ org, result: 'bad' });
      log.error({ org, channel, replayId: r.replayId, error: r.error }, 'cdc event could not be decoded; skipped');
      if (r.replayId === undefined) return;
      // No usable commitTimestamp: keep the channel's last one (a resync reads from it).
      item = {
        channel,
        replayId: r.replayId,
        commitTimestamp: lastCommit.get(channel) ?? now(),
        key: `bad:${r.replayId}`,
        event: undefined,
      };
    }
    lastReceived.set(channel, item.replayId);
    lastCommit.set(channel, item.commitTimestamp);
    forced.delete(channel);
    batcher.add(item);
  }

  async function applyBatch(channel: string, items: readonly Pending[]) {
    const events = items.flatMap((i) => (i.event ? [i.event] : []));
    const changes = events.flatMap((e) => e.changes).filter((c) => isAllowed(c.object));
    const refetched = await refetchChanges(
      d.session,
      events.flatMap((e) => e.refetch).filter((f) => isAllowed(f.object)),
    );
    for (const e of events) {
      if (!e.resync || !isAllowed(e.resync.object)) continue;
      log.error(
        { org, object: e.resync.object, reason: e.resync.reason },
        'CDC cannot tell which records changed: resynchronising the object',
      );
      await resync.request(
        e.resync.object,
        e.resync.reason,
        repo.checkpointSource(channel),
        new Date(e.header.commitTimestamp - d.tuning.resyncMarginMs),
        e.resync.reason === 'GAP_OVERFLOW' ? 'gap_overflow' : 'wildcard',
      );
    }
    const last = items[items.length - 1]!;
    const value = { replayId: last.replayId, commitTimestamp: last.commitTimestamp };
    const all = [...changes, ...refetched];
    if (all.length) await d.mirror.apply(org, all, { checkpoint: { source: repo.checkpointSource(channel), value }, source: 'cdc' });
    else await repo.saveStreamCheckpoint(d.db, org, channel, value);
    const at = now();
    applied.set(channel, { ...value, at });
    recent.push({ at, n: items.length });
    for (const i of items) metrics?.streamLag.observe({ org }, Math.max(0, at - i.commitTimestamp) / 1000);
    metrics?.streamEvents.inc({ org, result: 'committed' }, items.length);
    if (state === 'backing off' && client && !rebuilding)
      setState(d.channels.every((c) => subscribed.has(c)) ? 'live' : 'connecting', null);
    void persist();
  }
  batcher.onRetry((e, n) => {
    log.error(
      { org, attempt: n, err: (e as Error).message },
      'cdc batch could not be committed; retrying (nothing is checkpointed until it is)',
    );
    setState('backing off', (e as Error).message);
  });

  function objectsOfChannel(channel: string): string[] | undefined {
    const m = /^\/data\/(\w+?)ChangeEvent$/.exec(channel);
    if (!m) return undefined;
    return [m[1]!.endsWith('__') ? `${m[1]}c` : m[1]!];
  }

  let stopSignal = new AbortController();
  return {
    async start() {
      if (!stopped) return;
      stopped = false;
      stopSignal = new AbortController();
      const { orgId } = await d.session.connect();
      const other = await repo.registerOrg(d.db, org, orgId, d.session.instanceUrl());
      if (other) throw new Error(`alias ${org} already belongs to org ${other}, not to ${orgId} (SF_ORG_ALIAS)`);
      for (const ch of d.channels) {
        const cp = await repo.readStreamCheckpoint(d.db, org, ch);
        if (cp) {
          lastReceived.set(ch, cp.replayId);
          if (cp.commitTimestamp) lastCommit.set(ch, cp.commitTimestamp);
        }
      }
      log.info({ org, orgId, channels: d.channels.map((c) => ({ channel: c, from: lastReceived.get(c) ?? -1 })) }, 'cdc stream starting');
      build();
      resync.kick();
      watchdog = setInterval(checkWatchdog, Math.max(100, Math.min(1000, Math.floor(d.tuning.watchdogGraceMs / 2))));
    },
    /** Closes the client, then finishes the batches in flight (graceful) before returning. */
    async stop() {
      if (stopped) return;
      stopped = true;
      stopSignal.abort();
      clearInterval(watchdog);
      client?.close();
      client = undefined;
      await rebuilding;
      await batcher.drain();
      await resync.stop();
      setState('stopped');
      await persist(true);
    },
    status(): StreamStatus {
      return {
        state,
        error,
        eventsPerSecond: eventsPerSecond(),
        channels: d.channels.map((c) => {
          const a = applied.get(c);
          return {
            channel: c,
            replayId: a?.replayId ?? null,
            lastEventAt: a ? new Date(a.at).toISOString() : null,
            lagMs: a ? a.at - a.commitTimestamp : null,
          };
        }),
      };
    },
  };
}

export type Subscriber = ReturnType<typeof createSubscriber>;
