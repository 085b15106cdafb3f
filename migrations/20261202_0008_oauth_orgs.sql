-- Orgs connected by OAuth (issue 7): who connected them, their tokens (encrypted), their state.
alter table sfmirror.orgs
  add column login_url          text,
  add column user_id            char(18),
  add column identity_url       text,
  -- AES-256-GCM envelope "v1.<key id>.<iv>.<tag>.<ciphertext>" (src/lib/secret-box.ts); never plain text.
  add column refresh_token_enc  text,
  -- 'connected' | 'revoked' (Salesforce refused the refresh token) | 'locked' (token does not decrypt)
  -- | null (configured by environment)
  add column auth_state         text,
  add column auth_error         text,
  add column connected_at       timestamptz;

-- The OAuth web-server flow's pending states: single use, expiring, holding the PKCE verifier.
-- Only a hash of the state is stored, so a database reader cannot complete someone's flow.
create table sfmirror.oauth_states (
  state_hash      text primary key,
  alias           text not null,
  login_url       text not null,
  redirect_uri    text not null,
  verifier_enc    text not null,
  created_at      timestamptz not null default now(),
  expires_at      timestamptz not null,
  used_at         timestamptz
);

-- Signing keys that belong to one org: a push verified with one of them may only write that org.
create table sfmirror.org_ingest_keys (
  id              bigserial primary key,
  org_alias       text not null references sfmirror.orgs (alias) on delete cascade,
  kind            text not null check (kind in ('hmac', 'rsa')),
  -- hmac: the shared secret, encrypted like tokens; rsa: the PEM public key or certificate
  secret_enc      text,
  public_key      text,
  label           text,
  created_at      timestamptz not null default now(),
  revoked_at      timestamptz,
  check ((kind = 'hmac' and secret_enc is not null) or (kind = 'rsa' and public_key is not null))
);
create index org_ingest_keys_alias_idx on sfmirror.org_ingest_keys (org_alias) where revoked_at is null;
