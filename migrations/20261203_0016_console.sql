-- Issue 16: the operator console.
-- Sessions of the browser console: the cookie holds a random id; only its hash is stored, with the
-- fingerprint of the admin token it was made with (a rotated token ends every session).
create table sfmirror.console_sessions (
  id_hash        text primary key,
  token_print    text not null,
  created_at     timestamptz not null default now(),
  expires_at     timestamptz not null,
  revoked_at     timestamptz
);
create index console_sessions_expires_idx on sfmirror.console_sessions (expires_at);

-- The source of the last change applied to an object ('cdc', 'apex', 'backfill', ...), for status.
alter table sfmirror.mirror_objects add column last_source text;
