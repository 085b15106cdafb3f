-- Change Data Capture stream (src/stream): resync requests and the subscriber's visible state.

-- A resync the stream asks for (a rejected replayId, GAP_OVERFLOW, wildcard ids): re-read the object's
-- records modified since `since` (null: all of them), deletes included. The backfill worker owns these
-- rows once it exists; until then the stream works them itself by REST.
create table sfmirror.resync_requests (
  id          bigserial primary key,
  org_alias   text not null references sfmirror.orgs (alias) on delete cascade,
  object      text not null,
  reason      text not null,
  source      text not null,                -- e.g. 'cdc:/data/ChangeEvents'
  since       timestamptz,
  status      text not null default 'pending' check (status in ('pending', 'running', 'done', 'failed')),
  records     bigint not null default 0,    -- records re-read so far
  error       text,
  created_at  timestamptz not null default now(),
  done_at     timestamptz
);
create index resync_requests_open_idx on sfmirror.resync_requests (org_alias, status) where status in ('pending', 'running');

-- What the subscribing instance reports, for /admin/status and `sfmirror status` (any instance).
create table sfmirror.stream_state (
  org_alias          text not null references sfmirror.orgs (alias) on delete cascade,
  channel            text not null,
  state              text not null,         -- connecting, live, backing off, resyncing, stopped
  holder             text,                  -- host:pid of the subscriber
  replay_id          text,
  last_event_at      timestamptz,           -- when the last event was committed here
  last_commit_at     timestamptz,           -- its commitTimestamp
  lag_ms             bigint,
  events_per_second  double precision,
  error              text,
  updated_at         timestamptz not null default now(),
  primary key (org_alias, channel)
);
