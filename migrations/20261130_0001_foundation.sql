-- sfmirror's internal tables. Mirror tables live in one schema per org alias and are created on demand.

create table sfmirror.orgs (
  alias            text primary key,
  org_id           char(18) unique,          -- null until the org's id is known
  source           text not null default 'env',
  instance_url     text,
  last_seq         bigint not null default 0, -- the change cursor: _sfm_seq of the org's schema
  last_applied_at  timestamptz,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now()
);

create table sfmirror.settings (
  key         text primary key,
  value       jsonb not null,
  updated_at  timestamptz not null default now()
);

create table sfmirror.mirror_objects (
  org_alias        text not null references sfmirror.orgs (alias) on delete cascade,
  table_name       text not null,            -- lower-case API name
  object           text not null,            -- API name as Salesforce spells it
  last_applied_at  timestamptz,
  last_seq         bigint,
  created_at       timestamptz not null default now(),
  primary key (org_alias, table_name)
);

create table sfmirror.mirror_columns (
  org_alias    text not null,
  table_name   text not null,
  column_name  text not null,
  field        text not null,                -- field API name as Salesforce spells it
  sf_type      text,                         -- null: type unknown when the column was made (text)
  pg_type      text not null,
  created_at   timestamptz not null default now(),
  primary key (org_alias, table_name, column_name),
  foreign key (org_alias, table_name) references sfmirror.mirror_objects on delete cascade
);

create table sfmirror.checkpoints (
  org_alias   text not null references sfmirror.orgs (alias) on delete cascade,
  source      text not null,                 -- e.g. 'cdc:/data/ChangeEvents', 'backfill:42'
  value       jsonb not null,
  updated_at  timestamptz not null default now(),
  primary key (org_alias, source)
);

-- Changes waiting for BigQuery; filled by mirror.apply when the warehouse is on (settings.warehouse).
create table sfmirror.outbox (
  id            bigserial primary key,       -- also the change id sent to BigQuery as insertId
  org_alias     text not null,
  object        text not null,
  sfid          char(18) not null,
  op            text not null,
  version       text not null,
  seq           bigint not null,
  record        jsonb not null,              -- the full record after the change
  committed_at  timestamptz not null default now()
);
create index outbox_org_object_idx on sfmirror.outbox (org_alias, object, id);

-- Values that did not fit their column (kept in _sfm_fields) and fields whose type changed.
create table sfmirror.type_problems (
  org_alias     text not null,
  object        text not null,
  field         text not null,
  problem       text not null,
  sample_sfid   text,
  sample_value  text,
  occurrences   bigint not null default 1,
  first_seen    timestamptz not null default now(),
  last_seen     timestamptz not null default now(),
  primary key (org_alias, object, field)
);
