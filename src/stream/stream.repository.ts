import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import { readCheckpoint, saveCheckpoint } from '../mirror/mirror.repository.ts';

/** SQL of the CDC stream: checkpoints, visible state (org registration: mirror/orgs.repository.ts; resync requests: mirror/resync-requests.repository.ts). */

/** The checkpoint of one channel: the replayId as received (opaque) and its commitTimestamp. */
export type StreamCheckpoint = { replayId: number | string; commitTimestamp?: number | undefined };

export const checkpointSource = (channel: string) => `cdc:${channel}`;

export async function readStreamCheckpoint(db: Db, org: string, channel: string): Promise<StreamCheckpoint | undefined> {
  const v = (await readCheckpoint(db, org, checkpointSource(channel))) as StreamCheckpoint | undefined;
  return v && (typeof v.replayId === 'number' || typeof v.replayId === 'string') ? v : undefined;
}

/** For a batch that produced no change (all events filtered or bad): the checkpoint alone. */
export async function saveStreamCheckpoint(db: Db, org: string, channel: string, value: StreamCheckpoint): Promise<void> {
  await db.transaction().execute((trx) => saveCheckpoint(trx, org, checkpointSource(channel), value));
}

/** The first checkpoint of a channel, unless one exists (never races a batch's checkpoint backwards). */
export async function saveFirstCheckpoint(db: Db, org: string, channel: string, value: StreamCheckpoint): Promise<void> {
  await sql`insert into sfmirror.checkpoints (org_alias, source, value) values (${org}, ${checkpointSource(channel)}, ${JSON.stringify(value)}::jsonb)
    on conflict (org_alias, source) do nothing`.execute(db);
}

export async function objectsOf(db: Db, org: string): Promise<string[]> {
  const r = await db.selectFrom('sfmirror.mirror_objects').select('object').where('org_alias', '=', org).orderBy('object').execute();
  return r.map((x) => x.object);
}

export type StreamStateRow = {
  channel: string;
  state: string;
  holder: string;
  replayId: string | null;
  lastEventAt: Date | null;
  lastCommitAt: Date | null;
  lagMs: number | null;
  eventsPerSecond: number;
  error: string | null;
};

export async function saveStreamState(db: Db, org: string, s: StreamStateRow): Promise<void> {
  // A restarted subscriber knows no event yet: the last one stays shown until a new one comes.
  await sql`insert into sfmirror.stream_state as s (org_alias, channel, state, holder, replay_id, last_event_at, last_commit_at, lag_ms, events_per_second, error, updated_at)
    values (${org}, ${s.channel}, ${s.state}, ${s.holder}, ${s.replayId}, ${s.lastEventAt}, ${s.lastCommitAt}, ${s.lagMs}, ${s.eventsPerSecond}, ${s.error}, now())
    on conflict (org_alias, channel) do update set state = excluded.state, holder = excluded.holder, replay_id = excluded.replay_id,
      last_event_at = coalesce(excluded.last_event_at, s.last_event_at), last_commit_at = coalesce(excluded.last_commit_at, s.last_commit_at),
      lag_ms = coalesce(excluded.lag_ms, s.lag_ms),
      events_per_second = excluded.events_per_second, error = excluded.error, updated_at = now()`.execute(db);
}

/** What `/admin/status` shows of the stream, per org: channel states and open or failed resyncs. */
export type StreamStatusDoc = {
  channels: Array<{
    channel: string;
    state: string;
    holder: string | null;
    replayId: string | null;
    lastEventAt: string | null;
    lastCommitAt: string | null;
    lagMs: number | null;
    eventsPerSecond: number | null;
    error: string | null;
    updatedAt: string;
  }>;
  resyncs: Array<{
    id: string;
    object: string;
    reason: string;
    status: string;
    since: string | null;
    records: number;
    error: string | null;
    createdAt: string;
  }>;
};

export async function readStreamStatus(db: Db): Promise<Map<string, StreamStatusDoc>> {
  const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);
  const states = await sql<{
    org_alias: string;
    channel: string;
    state: string;
    holder: string | null;
    replay_id: string | null;
    last_event_at: Date | null;
    last_commit_at: Date | null;
    lag_ms: string | null;
    events_per_second: number | null;
    error: string | null;
    updated_at: Date;
  }>`
    select * from sfmirror.stream_state order by org_alias, channel`.execute(db);
  // Open ones, and the last 20 finished ones (the operator sees that a resync happened).
  const resyncs = await sql<{
    id: string;
    org_alias: string;
    object: string;
    reason: string;
    status: string;
    since: Date | null;
    records: string;
    error: string | null;
    created_at: Date;
  }>`
    (select * from sfmirror.resync_requests where status in ('pending', 'running'))
    union (select * from sfmirror.resync_requests where status not in ('pending', 'running') order by id desc limit 20) order by id`.execute(
    db,
  );
  const out = new Map<string, StreamStatusDoc>();
  const doc = (org: string) => out.get(org) ?? out.set(org, { channels: [], resyncs: [] }).get(org)!;
  for (const s of states.rows) {
    doc(s.org_alias).channels.push({
      channel: s.channel,
      state: s.state,
      holder: s.holder,
      replayId: s.replay_id,
      lastEventAt: iso(s.last_event_at),
      lastCommitAt: iso(s.last_commit_at),
      lagMs: s.lag_ms === null ? null : Number(s.lag_ms),
      eventsPerSecond: s.events_per_second,
      error: s.error,
      updatedAt: iso(s.updated_at)!,
    });
  }
  for (const r of resyncs.rows) {
    doc(r.org_alias).resyncs.push({
      id: String(r.id),
      object: r.object,
      reason: r.reason,
      status: r.status,
      since: iso(r.since),
      records: Number(r.records),
      error: r.error,
      createdAt: iso(r.created_at)!,
    });
  }
  return out;
}

/**
 * A subscriber that could not start (Salesforce unreachable, token refused) is backing off, with
 * the reason: recorded per channel so status does not show a quiet 'stopped' while the start is
 * retried. The last event, replayId and lag stay as they were.
 */
export async function recordStartFailure(db: Db, org: string, channels: readonly string[], error: string): Promise<void> {
  for (const channel of channels)
    await sql`insert into sfmirror.stream_state as s (org_alias, channel, state, error, updated_at)
      values (${org}, ${channel}, 'backing off', ${error.slice(0, 1000)}, now())
      on conflict (org_alias, channel) do update set state = excluded.state, error = excluded.error, updated_at = now()`.execute(db);
}
