-- One row per completion (switchyard.events.v1.UsageRecord). The request id is the primary key:
-- a record delivered twice (JetStream redelivery, a gateway retrying Record) is one row.
create table usage_records (
  request_id            text primary key,
  time                  timestamptz not null,
  tenant                text not null,
  key_id                text not null default '',
  api                   text not null default '',
  requested_model       text not null default '',
  tier                  text not null default '',
  model                 text not null default '',
  provider              text not null default '',
  reason                text not null default '',
  task_type             text not null default '',
  fallbacks             integer not null default 0,
  cache                 text not null default '',
  cache_kind            text not null default '',
  input_tokens          bigint not null default 0,
  output_tokens         bigint not null default 0,
  cached_input_tokens   bigint not null default 0,
  usage_estimated       boolean not null default false,
  -- Money in integer micro-dollars.
  cost_micro_usd        bigint not null default 0,
  baseline_micro_usd    bigint not null default 0,
  saved_micro_usd       bigint not null default 0,
  cache_saved_micro_usd bigint not null default 0,
  baseline_model        text not null default '',
  ttft_ms               double precision not null default 0,
  total_ms              double precision not null default 0,
  status                integer not null,
  error_code            text not null default '',
  trace_id              text not null default '',
  finish_reason         text not null default '',
  streamed              boolean not null default false,
  -- When the ledger wrote it (the request's own time is `time`).
  recorded_at           timestamptz not null default now()
);

create index usage_records_tenant_time on usage_records (tenant, time);
create index usage_records_time on usage_records (time);
create index usage_records_key_time on usage_records (key_id, time);
