-- Backfill at scale (issue 6).
-- Up to when the job has asked Salesforce's getDeleted for hard deletes (its delete log reaches back
-- 15 days): the next run asks from there, and a gap past that reach is reconciled by a resync.
alter table sfmirror.backfill_jobs add column deletes_checked_until timestamptz;

-- The ids a whole-object resync read from Salesforce, per run: mirror rows of that object that are
-- live but not among them were hard-deleted in Salesforce and become tombstones. Unlogged: a run
-- that dies starts over, so these rows need no crash safety.
create unlogged table sfmirror.resync_seen (
  run  text not null,
  sfid text not null,
  primary key (run, sfid)
);
