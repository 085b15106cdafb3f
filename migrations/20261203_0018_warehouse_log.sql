-- The outbox becomes a log (src/warehouse/drain.ts). Rows are only inserted (by the write path)
-- and deleted (by the drain, in ranges); nothing updates them, so the lease columns go.
--
-- Drain order is (txid, id): the inserting transaction's id, then the row id. A drainer reads
-- only rows whose transaction is older than every transaction still running
-- (txid < pg_snapshot_xmin(pg_current_snapshot())), so a row that commits later always sorts
-- after the cursor: an id (a sequence value) is taken before commit and can commit out of order,
-- a transaction id below the snapshot's xmin cannot.
alter table sfmirror.outbox
  drop column lease_owner,
  drop column lease_until,
  drop column attempts,
  drop column last_error,
  add column txid xid8 not null default pg_current_xact_id();
drop index sfmirror.outbox_org_object_idx;
create index outbox_log_idx on sfmirror.outbox (org_alias, object, txid, id);
alter table sfmirror.outbox reset (fillfactor);

-- One row per (org, object): the partition of the outbox one drainer owns at a time (a lease),
-- its cursor (the last (txid, id) drained), the committed-type write stream of the change table
-- and the offset of its end, and the batch in flight (the rows after the cursor up to
-- `pending_txid, pending_id`): appended at `stream_offset`, not yet known to have arrived. After a crash the same rows are appended again at the same offset, and
-- BigQuery answers ALREADY_EXISTS for a batch it already has.
create table sfmirror.warehouse_partitions (
  org_alias       text not null,
  object          text not null,
  owner           text,
  lease_until     timestamptz not null default '-infinity',
  cursor_txid     xid8 not null default '0',
  cursor_id       bigint not null default 0,
  stream_name     text,
  stream_offset   bigint not null default 0,
  pending_txid    xid8,
  pending_id      bigint,
  pending_rows    integer,
  failures        integer not null default 0,
  last_error      text,
  last_error_at   timestamptz,
  drained_rows    bigint not null default 0,
  updated_at      timestamptz not null default now(),
  primary key (org_alias, object)
);
insert into sfmirror.warehouse_partitions (org_alias, object)
select distinct org_alias, object from sfmirror.outbox on conflict do nothing;

-- The latest-state table (a CDC table, no longer a view) and when it was filled from the mirror.
alter table sfmirror.warehouse_tables add column latest_filled_at timestamptz;
