-- Read API (README.md, "Mobile app -> sfmirror"): clients managed in the database, and the
-- bookkeeping of the tombstone purge that bounds how old a change-feed cursor may be.

-- A client's token is stored only as its sha256 (tokens are 32 random bytes: no salt needed).
-- `spec`: allowed objects and fields, fixed row filter, end-user JWT settings, orgs (src/api/read/client-spec.ts).
create table sfmirror.api_clients (
  name        text primary key,
  token_hash  text not null unique,
  spec        jsonb not null,
  created_at  timestamptz not null default now(),
  revoked_at  timestamptz
);

-- Per org: the highest _sfm_seq of a purged tombstone. A change cursor below it may have missed a
-- delete, so the feed answers 410 and the app resyncs from since=0.
create table sfmirror.purge_watermarks (
  org_alias    text primary key references sfmirror.orgs (alias) on delete cascade,
  watermark    bigint not null default 0,
  purged_rows  bigint not null default 0,
  last_run_at  timestamptz
);

-- The org's change cursor as the purge job saw it at a time: tombstones at or below a mark older
-- than the retention were committed before that time, so they are old enough to purge (a delete
-- that arrives late, with an old SystemModstamp, still stays for the whole retention).
create table sfmirror.seq_marks (
  org_alias  text not null references sfmirror.orgs (alias) on delete cascade,
  marked_at  timestamptz not null,
  seq        bigint not null,
  primary key (org_alias, marked_at)
);
