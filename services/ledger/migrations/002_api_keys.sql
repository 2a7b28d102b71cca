-- API keys managed at run time. The secret is never stored: only its SHA-256 (hex).
-- `version` comes from one sequence, taken again on every create and revoke, so a gateway can ask
-- "what changed since version N".
create sequence api_keys_version_seq;

create table api_keys (
  key_id           text primary key,
  sha256           text not null unique,
  tenant           text not null,
  name             text not null default '',
  budget_micro_usd bigint not null default 0,
  period           text not null default '' check (period in ('', 'day', 'week', 'month')),
  rpm              integer not null default 0,
  tpm              integer not null default 0,
  created_at       timestamptz not null default now(),
  revoked_at       timestamptz,
  version          bigint not null
);

create index api_keys_tenant on api_keys (tenant);
create index api_keys_version on api_keys (version);
