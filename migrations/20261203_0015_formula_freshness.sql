-- Formula freshness (src/formulas): records whose formula fields must be re-read from Salesforce,
-- because a change arrived without formula values (CDC never carries them), a parent their
-- cross-object formulas read changed, or the periodic refresh of time formulas is due.
-- One row per record: a record queued again before it was read stays one row (its reasons merge).
create table sfmirror.formula_queue (
  org_alias     text not null references sfmirror.orgs (alias) on delete cascade,
  object        text not null,
  sfid          varchar(18) not null,
  reason        text not null,                      -- same-record, cross-object, periodic
  queued_at     timestamptz not null default now(),
  due_at        timestamptz not null,               -- end of the collection window
  claimed_until timestamptz,                        -- a re-reader works it until then
  primary key (org_alias, object, sfid)
);
create index formula_queue_due_idx on sfmirror.formula_queue (org_alias, object, due_at);

-- When the periodic refresh (time formulas, and what sfmirror cannot follow) last ran, per object.
create table sfmirror.formula_refresh (
  org_alias    text not null references sfmirror.orgs (alias) on delete cascade,
  object       text not null,
  last_run_at  timestamptz not null,
  primary key (org_alias, object)
);

-- The formula fields of each object and their kind (from describe), as the re-reader last saw
-- them: status reads them without spending an API call.
create table sfmirror.formula_objects (
  org_alias   text not null references sfmirror.orgs (alias) on delete cascade,
  object      text not null,
  fields      jsonb not null,                         -- [{ field, kind, note? }]
  updated_at  timestamptz not null default now(),
  primary key (org_alias, object)
);

-- Small state status shows: `fields` (SFMIRROR_FIELDS / SFMIRROR_EXCLUDE_FIELDS of the last start),
-- `paused:<alias>` (why re-reads of an org wait, e.g. the API budget is spent).
create table sfmirror.formula_settings (
  key         text primary key,
  value       jsonb not null,
  updated_at  timestamptz not null default now()
);
