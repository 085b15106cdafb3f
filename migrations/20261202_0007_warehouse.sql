-- The BigQuery warehouse (src/warehouse). Outbox rows are claimed with a lease, so several
-- instances can drain and no two drainers send the same row at the same time; a failed send puts
-- the lease forward (backoff) instead of holding a transaction open across an HTTP call.
alter table sfmirror.outbox
  add column lease_owner text,
  add column lease_until timestamptz,
  add column attempts integer not null default 0,
  add column last_error text;
-- A queue table: room on each page lets a claim update its rows in place (HOT, no index writes),
-- and vacuum keeps up with the deletes, so claims do not wade through dead rows.
alter table sfmirror.outbox set (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);

-- Changes BigQuery will never accept (invalid rows), with BigQuery's reason. The operator moves
-- them back to the outbox (same change id) once the cause is fixed.
create table sfmirror.warehouse_dead_letters (
  change_id     bigint primary key,          -- the outbox id, sent as insertId and _sfm_change_id
  org_alias     text not null,
  object        text not null,
  sfid          char(18) not null,
  op            text not null,
  version       text not null,
  seq           bigint not null,
  record        jsonb not null,
  committed_at  timestamptz not null,
  reason        text not null,
  dead_at       timestamptz not null default now()
);
create index warehouse_dead_letters_org_object_idx on sfmirror.warehouse_dead_letters (org_alias, object);

-- The change tables the warehouse made, with the columns it gave them: a table made (or rebuilt)
-- here is seeded from the mirror, and a field the mirror learns later becomes a new column.
create table sfmirror.warehouse_tables (
  org_alias    text not null,
  table_name   text not null,                -- lower-case object name; BigQuery table <table_name>_changes
  object       text not null,
  dataset      text not null,
  columns      jsonb not null default '[]',  -- [{ name, type }] as sent to BigQuery
  seeded_at    timestamptz,
  seeded_rows  bigint not null default 0,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (org_alias, table_name)
);
