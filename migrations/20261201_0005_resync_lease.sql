-- Resync requests are claimed with a lease, like backfill jobs, so the backfill worker (and the
-- stream's own fallback worker) never work one request twice at the same time.
alter table sfmirror.resync_requests add column lease_owner text, add column lease_until timestamptz;
