import { decodeCdcEvent } from '../changes/cdc-event.ts';
import type { Db } from '../db/database.ts';
import { backoffDelay, sleep } from '../lib/backoff.ts';
import type { Logger } from '../lib/logger.ts';
import type { Metrics } from '../lib/metrics.ts';
import type { Mirror } from '../mirror/apply.ts';
import { registerOrg } from '../mirror/orgs.repository.ts';
import { requestResync } from '../mirror/resync-requests.repository.ts';
import type { SalesforceSession } from '../salesforce/client.ts';
import { classifyMetaReply, type StreamingClient, type StreamingOptions } from '../salesforce/streaming.ts';
import { createBatcher, type Pending } from './batcher.ts';
import { initialState, replayFrom, step, type Effect, type Input, type MachineState } from './machine.ts';
import { createSink } from './sink.ts';
import { createStatusReporter, type StreamStatus } from './status.ts';
import * as repo from './stream.repository.ts';

/**
 * The CDC subscriber of one org: one CometD client for every channel, events grouped by
 * transactionKey (batcher.ts) and applied with the replayId checkpoint in the same transaction
 * (sink.ts). Every decision about the connection is made by the pure state machine in machine.ts
 * (its diagram is there); this file only feeds it inputs (faye's replies, events, committed
 * batches, watchdog ticks) and carries out its effects. The stream never works a resync itself: it
 * records a request (mirror/resync-requests.repository.ts) and the backfill worker works it.
 */
export type { StreamState, StreamStatus } from './status.ts';

export interface SubscriberTuning {
  /** A transaction without a following event is complete after this idle time. */
  flushIdleMs: number;
  /** Events per applied batch (whole transactions are never split). */
  maxBatch: number;
  /** Added to the server's advice (timeout + interval) before the watchdog rebuilds the client. */
  watchdogGraceMs: number;
  /** How far before the last applied commitTimestamp a resync starts reading (clock skew, long transactions). */
  resyncMarginMs: number;
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

export function createSubscriber(d: SubscriberDeps) {
  const now = d.now ?? Date.now;
  const { log, metrics, org } = d;
  const allowed = d.objects ? new Set(d.objects.map((o) => o.toLowerCase())) : undefined;
  const isAllowed = (object: string) => !allowed || allowed.has(object.toLowerCase());
  let machine: MachineState = initialState(d.channels, now(), d.tuning.watchdogGraceMs);
  let client: StreamingClient | undefined;
  let watchdog: NodeJS.Timeout | undefined;
  let rebuilding: Promise<void> | undefined;
  let stopSignal = new AbortController();
  const stopped = () => machine.phase === 'stopped';

  const status = createStatusReporter({
    db: d.db,
    org,
    channels: d.channels,
    log,
    metrics,
    now,
    replayFrom: (ch) => machine.channels[ch]?.lastReceived,
  });
  const recordResync = async (r: { object: string; reason: string; source: string; since: Date | null; label: string }) => {
    await requestResync(d.db, org, r);
    metrics?.streamResyncs.inc({ org, object: r.object, reason: r.label });
  };
  const sink = createSink({
    db: d.db,
    mirror: d.mirror,
    sf: d.session,
    org,
    isAllowed,
    requestResync: recordResync,
    resyncMarginMs: d.tuning.resyncMarginMs,
    log,
    metrics,
  });
  const batcher = createBatcher({
    maxBatch: d.tuning.maxBatch,
    idleMs: d.tuning.flushIdleMs,
    log,
    isStopped: stopped,
    async apply(channel, items) {
      const value = await sink.apply(channel, items);
      status.committed(
        channel,
        value,
        items.map((i) => i.commitTimestamp),
      );
      feed({ type: 'batch-committed' });
    },
  });
  batcher.onRetry((e, n) => {
    log.error(
      { org, attempt: n, err: (e as Error).message },
      'cdc batch could not be committed; retrying (nothing is checkpointed until it is)',
    );
    feed({ type: 'batch-failed', error: (e as Error).message });
  });

  /** One input through the machine, then its effects, then the visible state. */
  function feed(input: Input) {
    const r = step(machine, input, now());
    machine = r.state;
    for (const e of r.effects) run(e);
    void status.changed(machine.phase, machine.error);
  }

  function run(e: Effect) {
    switch (e.type) {
      case 'open-client':
        client?.close();
        client = d.openStreaming({
          instanceUrl: d.session.instanceUrl(),
          version: d.session.version,
          accessToken: d.session.accessToken(),
          channels: d.channels,
          replayFrom: (ch) => replayFrom(machine, ch),
          onEvent,
          onMeta: (m) => feed({ type: 'meta', outcome: classifyMetaReply(m) }),
        });
        return;
      case 'close-client':
        client?.close();
        client = undefined;
        return;
      case 'resubscribe':
        client?.resubscribe(e.channel);
        return;
      case 'save-first-checkpoint':
        repo
          .saveFirstCheckpoint(d.db, org, e.channel, { replayId: -2 })
          .catch((err: Error) => log.warn({ org, channel: e.channel, err: err.message }, 'could not store the first checkpoint'));
        return;
      case 'record-resync':
        replayRejected(e.channel, e.error, e.lastCommit).catch((err: Error) => feed({ type: 'resync-not-recorded', error: err.message }));
        return;
      case 'schedule-rebuild':
        rebuilding = scheduleRebuild(e.attempt, e.refresh).finally(() => {
          rebuilding = undefined;
        });
        return;
      case 'count-rebuild':
        metrics?.streamRebuilds.inc({ org, reason: e.reason });
        return;
      case 'log':
        log[e.level]({ org, ...e.fields }, e.message);
        return;
    }
  }

  async function scheduleRebuild(attempt: number, refresh: boolean) {
    await sleep(backoffDelay(attempt, 250, 30_000), stopSignal.signal);
    if (stopped()) return;
    try {
      if (refresh && !(await d.session.refresh())) {
        log.error(
          { org },
          'the access token was refused and cannot be renewed (SF_ACCESS_TOKEN only): configure SF_REFRESH_TOKEN or JWT bearer',
        );
      }
    } catch (err) {
      return feed({ type: 'refresh-failed', error: (err as Error).message });
    }
    feed({ type: 'rebuild-due' });
  }

  /** The channel's lost events: a resync request for its objects, since the last applied commit. */
  async function replayRejected(channel: string, err: string, lastCommit: number | undefined) {
    const cp = lastCommit ? { commitTimestamp: lastCommit } : await repo.readStreamCheckpoint(d.db, org, channel);
    const since = cp?.commitTimestamp ? new Date(cp.commitTimestamp - d.tuning.resyncMarginMs) : null;
    const objects = objectsOfChannel(channel) ?? [...new Set([...(d.objects ?? []), ...(await repo.objectsOf(d.db, org))])];
    for (const object of objects.filter(isAllowed)) {
      await recordResync({
        object,
        reason: `replayId refused on ${channel}: ${err.slice(0, 120)}`,
        source: repo.checkpointSource(channel),
        since,
        label: 'replay_invalid',
      });
    }
  }

  function onEvent(channel: string, data: unknown) {
    const r = decodeCdcEvent(data);
    let item: Pending;
    if (r.ok) {
      const e = r.event;
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
      const commitTimestamp = machine.channels[channel]?.lastCommit ?? now();
      item = { channel, replayId: r.replayId, commitTimestamp, key: `bad:${r.replayId}`, event: undefined };
    }
    feed({ type: 'event', channel, replayId: item.replayId, commitTimestamp: item.commitTimestamp });
    batcher.add(item);
  }

  return {
    async start() {
      if (!stopped()) return;
      stopSignal = new AbortController();
      const { orgId } = await d.session.connect();
      const other = await registerOrg(d.db, org, orgId, d.session.instanceUrl());
      if (other) throw new Error(`alias ${org} already belongs to org ${other}, not to ${orgId} (SF_ORG_ALIAS)`);
      const checkpoints: Record<string, repo.StreamCheckpoint | undefined> = {};
      for (const ch of d.channels) checkpoints[ch] = await repo.readStreamCheckpoint(d.db, org, ch);
      log.info(
        { org, orgId, channels: d.channels.map((c) => ({ channel: c, from: checkpoints[c]?.replayId ?? -1 })) },
        'cdc stream starting',
      );
      feed({ type: 'start', checkpoints });
      watchdog = setInterval(() => feed({ type: 'tick' }), Math.max(100, Math.min(1000, Math.floor(d.tuning.watchdogGraceMs / 2))));
    },
    /** Closes the client, then finishes the batches in flight (graceful) before returning. */
    async stop() {
      if (stopped()) return;
      clearInterval(watchdog);
      stopSignal.abort();
      // Stopped first, so that nothing the batcher or faye reports afterwards starts anything new.
      const r = step(machine, { type: 'stop' }, now());
      machine = r.state;
      for (const e of r.effects) run(e);
      await rebuilding;
      await batcher.drain();
      await status.changed('stopped', machine.error);
      await status.persist(true);
    },
    status(): StreamStatus {
      return status.snapshot();
    },
  };
}

function objectsOfChannel(channel: string): string[] | undefined {
  const m = /^\/data\/(\w+?)ChangeEvent$/.exec(channel);
  if (!m) return undefined;
  return [m[1]!.endsWith('__') ? `${m[1]}c` : m[1]!];
}
