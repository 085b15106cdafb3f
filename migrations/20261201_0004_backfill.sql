-- Backfill jobs (src/backfill): one per (org, object). The first run imports from start_date; every
-- later run (daily reconciliation) imports from last_date up to yesterday (UTC days).
create table sfmirror.backfill_jobs (
  id             bigserial primary key,
  org_alias      text not null references sfmirror.orgs (alias) on delete cascade,
  object         text not null,
  start_date     date not null,
  last_date      date not null,              -- the first UTC day not imported yet
  active         boolean not null default true,
  state          text not null default 'pending'
                 check (state in ('pending', 'running', 'paused', 'done-for-today', 'failed')),
  reason         text,                       -- why it failed
  rows_imported  bigint not null default 0,  -- records read in the current or last run
  lease_owner    text,                       -- who works it now (host:pid), until lease_until
  lease_until    timestamptz,
  last_run_at    timestamptz,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
);
create unique index backfill_jobs_org_object_idx on sfmirror.backfill_jobs (org_alias, lower(object));
