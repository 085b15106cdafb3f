-- Rows the latest-state table refused although the history took them (src/warehouse/drain.ts):
-- kept with the dead letters, marked `latest`. Retrying one (sfmirror warehouse retry-dead-letters)
-- sends it to the latest-state table again, never to the history; its sequence number keeps it
-- from overwriting a newer state of the record.
alter table sfmirror.warehouse_dead_letters
  add column target text not null default 'history' check (target in ('history', 'latest')),
  add column retry boolean not null default false;
create index warehouse_dead_letters_retry_idx on sfmirror.warehouse_dead_letters (org_alias, object) where retry;
