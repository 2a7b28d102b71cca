import { z } from "zod";

/** The NAME of an environment variable that holds a secret (never the secret itself). */
const envName = z.string().regex(/^[A-Z_][A-Z0-9_]*$/, "must be the NAME of an environment variable (the secret itself never goes in the config)");

/** The six services of the mesh; one name per service everywhere (folder, port key, OTEL_SERVICE_NAME). */
export const SERVICE_NAMES = ["gateway", "classifier", "policy", "cache", "provider", "ledger"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

const port = z.number().int().min(0).max(65535);
const usdPerMtok = z
  .number()
  .finite()
  .min(0, "a price cannot be negative")
  .max(10_000, "over $10,000 per million tokens is not a real price");
const name = z
  .string()
  .min(1)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, "use letters, digits, '.', '_', ':' or '-' (no '/')");

const corsOrigin = z
  .string()
  .regex(/^https?:\/\/[^/\s?#]+$/i, "an origin is scheme://host[:port], with no path or trailing slash (for example https://app.example.com)")
  .transform((o) => o.toLowerCase());
const hostName = z
  .string()
  .regex(/^(\*|[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])$/, 'a host name or address without a port (or "*" for any)')
  .transform((h) => h.toLowerCase());

const simulatorProfile = z
  .object({
    ttft_ms: z.number().min(0).max(60_000).default(150),
    ttft_jitter_ms: z.number().min(0).max(60_000).default(0),
    tokens_per_second: z.number().positive().max(100_000).default(80),
    output_tokens: z.number().int().min(1).max(32_768).default(120),
    quality: z.number().min(0).max(1).default(0.7),
  })
  .strict();

const model = z
  .object({
    name: z.string().min(1),
    input_usd_per_mtok: usdPerMtok,
    output_usd_per_mtok: usdPerMtok,
    cached_input_usd_per_mtok: usdPerMtok.optional(),
    tiers: z.array(name).min(1, "list at least one tier this model may serve"),
    context_window: z.number().int().positive().default(128_000),
    /** Name of this model in the router's training data, when it differs. */
    router_name: z.string().optional(),
    /** Output cap sent when a request sets none; Anthropic requires one (4096 when unset here). */
    max_output_tokens: z.number().int().positive().optional(),
    simulator: simulatorProfile.optional(),
  })
  .strict();

const provider = z
  .object({
    name,
    kind: z.enum(["openai", "anthropic", "gemini", "simulator"]),
    base_url: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional(),
    api_key_env: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/, "must be the NAME of an environment variable (the key itself never goes in the config)")
      .optional(),
    /**
     * true: always on; false: off; "auto": real providers are on when their key variable is set,
     * the simulator is on when no real provider is.
     */
    enabled: z.union([z.boolean(), z.literal("auto")]).default("auto"),
    max_concurrency: z.number().int().positive().default(1_024),
    requests_per_second: z.number().positive().optional(),
    /** Requests that may start at once above `requests_per_second` (token-bucket size); default max(1, rate). */
    burst: z.number().int().positive().optional(),
    /** Requests waiting for a concurrency slot or a rate token; beyond it, fail fast so the gateway falls back. */
    max_queue: z.number().int().min(0).optional(),
    first_token_timeout_ms: z.number().int().positive().default(15_000),
    /** A started stream that sends nothing for this long is broken. */
    stream_idle_timeout_ms: z.number().int().positive().default(60_000),
    /**
     * Most connections to this upstream; unset = as many as in-flight requests need. Over HTTP/1.1
     * an answer holds its connection while it streams, so a value below max_concurrency caps the
     * answers in flight; an HTTP/2 connection carries up to 100 at once.
     */
    pool_connections: z.number().int().positive().optional(),
    /** Offer HTTP/2 to an https upstream (used when its TLS handshake agrees); http upstreams speak HTTP/1.1. */
    http2: z.boolean().default(true),
    /** Keep-alive connections opened at start and kept open while idle (at most pool_connections). */
    warm_connections: z.number().int().min(0).default(2),
    /** How often idle warm connections are refreshed with a cheap credential-free GET; 0 = never. */
    keep_warm_interval_ms: z.number().int().min(0).default(30_000),
    models: z.array(model).min(1, "a provider needs at least one model"),
  })
  .strict();

const tier = z
  .object({
    name,
    /** Requests whose difficulty is at most this go to this tier (the first that matches). */
    max_difficulty: z.number().min(0).max(1),
    quality_target: z.number().min(0).max(1).default(0),
    latency_slo_ms: z.number().int().positive().optional(),
    expected_output_tokens: z.number().int().positive().default(256),
  })
  .strict();

const budgetPeriod = z.enum(["day", "week", "month"]);

const tenant = z
  .object({
    name,
    /** SHA-256 (hex) of each API key of this tenant; none = no authentication. */
    api_key_sha256: z.array(z.string().regex(/^[0-9a-f]{64}$/, "must be a lowercase hex SHA-256")).default([]),
    quality_target: z.number().min(0).max(1).optional(),
    cost_weight: z.number().min(0).max(1).optional(),
    /** Cap on the share of requests routed to the most expensive tier. */
    max_top_tier_share: z.number().min(0).max(1).default(1),
    /** Semantic cache for this tenant; default `cache.semantic.enabled`. */
    cache_semantic: z.boolean().optional(),
    /** Cosine similarity a last user turn needs to reuse a stored answer; default `cache.semantic.similarity_threshold`. */
    cache_similarity_threshold: z.number().min(0.5).max(1).optional(),
    /**
     * "provider/model" whose price the saving is measured against: what these requests would have
     * cost without routing. Default: the most expensive model of the top tier.
     */
    baseline_model: z.string().regex(/^[^/\s]+\/\S+$/, 'a "provider/model" id').optional(),
    /** Spend allowed per budget_period, in dollars; unset = no budget. */
    budget_usd: z.number().positive().optional(),
    budget_period: budgetPeriod.default("month"),
    /** Requests per minute across every replica; unset = no limit. */
    requests_per_minute: z.number().int().positive().optional(),
    /** Tokens (input + output) per minute across every replica; unset = no limit. */
    tokens_per_minute: z.number().int().positive().optional(),
  })
  .strict();

const serviceEndpoints = z
  .object({
    classifier: z.string().optional(),
    policy: z.string().optional(),
    cache: z.string().optional(),
    provider: z.string().optional(),
    ledger: z.string().optional(),
  })
  .strict();

export const configSchema = z
  .object({
    listen_host: z.string().default("127.0.0.1"),
    ports: z
      .object({
        gateway_http: port.default(8080),
        gateway_grpc: port.default(8081),
        classifier: port.default(9101),
        policy: port.default(9102),
        cache: port.default(9103),
        provider: port.default(9104),
        ledger: port.default(9105),
        // HTTP/1.1 side ports of the internal services: Connect protocol, /metrics, /healthz.
        classifier_http: port.default(9111),
        policy_http: port.default(9112),
        cache_http: port.default(9113),
        provider_http: port.default(9114),
        ledger_http: port.default(9115),
      })
      .strict()
      .prefault({}),
    /** Base URLs where the gateway finds the other services; default http://127.0.0.1:<port>. */
    endpoints: serviceEndpoints.prefault({}),
    providers: z.array(provider).min(1, "configure at least one provider"),
    tiers: z.array(tier).min(1, "configure at least one tier"),
    tenants: z.array(tenant).min(1, "configure at least one tenant").prefault([{ name: "default" }]),
    /** The gateway's public edge: who may call it from where. */
    gateway: z
      .object({
        /**
         * Start even when listening beyond loopback with no tenant API keys (anyone who reaches the
         * port can run completions on the operator's providers). Off by default.
         */
        allow_unauthenticated: z.boolean().default(false),
        /**
         * Every request needs an API key even when no tenant lists one here: for deployments whose
         * keys are all created at run time (`switchyard keys create`). Keys created at run time are
         * accepted whenever they are presented, this setting or not.
         */
        require_api_key: z.boolean().default(false),
        /**
         * Browser origins (`scheme://host[:port]`) allowed to call the REST API with CORS. A request
         * carrying any other `Origin` is refused with 403. None by default.
         */
        cors_origins: z.array(corsOrigin).default([]),
        /**
         * Host names (no port) accepted besides loopback when no tenant has API keys: a guard
         * against DNS rebinding. `"*"` accepts any. Ignored once keys are configured.
         */
        allowed_hosts: z.array(hostName).default([]),
        /**
         * SHA-256 (hex) of each admin key: what the admin API (usage, keys) and the dashboard
         * accept once tenants have keys. With tenant keys and no admin key, the admin API is off.
         */
        admin_key_sha256: z.array(z.string().regex(/^[0-9a-f]{64}$/, "must be a lowercase hex SHA-256")).default([]),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        max_body_bytes: z.number().int().positive().default(2_000_000),
        max_messages: z.number().int().positive().default(1_000),
        /** Deepest nesting of arrays and objects in a request body. */
        max_json_depth: z.number().int().min(2).max(1_000).default(32),
        /** Longest `user` string (OpenAI documents none; 256 is ours). */
        max_user_chars: z.number().int().positive().default(256),
        /** `metadata`: at most this many keys (OpenAI: 16) ... */
        max_metadata_keys: z.number().int().min(0).default(16),
        /** ... each key at most this long (OpenAI: 64) ... */
        max_metadata_key_chars: z.number().int().positive().default(64),
        /** ... each value a string at most this long (OpenAI: 512). */
        max_metadata_value_chars: z.number().int().positive().default(512),
        /** Most functions in `tools` (OpenAI: 128). */
        max_tools: z.number().int().min(0).default(128),
        /** Most sequences in `stop` (OpenAI: 4). */
        max_stop_sequences: z.number().int().min(0).default(4),
        request_timeout_ms: z.number().int().positive().default(300_000),
        /** A client must send its request line and headers within this long (slow-header clients are cut). */
        header_timeout_ms: z.number().int().positive().default(10_000),
        /** A request body that sends nothing for this long is answered 408 and its connection closed. */
        body_timeout_ms: z.number().int().positive().default(30_000),
        shutdown_grace_ms: z.number().int().min(0).default(10_000),
      })
      .strict()
      .prefault({}),
    cache: z
      .object({
        enabled: z.boolean().default(true),
        backend: z.enum(["memory", "redis"]).default("memory"),
        redis_url: z.string().default("redis://127.0.0.1:6379"),
        ttl_seconds: z.number().int().positive().default(3_600),
        max_entries: z.number().int().positive().default(100_000),
        /**
         * Memory of the in-process (memory) backend: values, keys and each entry's place in the
         * semantic index (about 3 KB per entry at 256 dimensions), so the cache process needs
         * about this plus 200 MB: 452 MB RSS measured when full at the default, under the chart's 512Mi.
         */
        max_bytes: z.number().int().positive().default(256 * 1024 * 1024),
        lookup_budget_ms: z.number().int().positive().default(50),
        /** Environment variable holding the HMAC key for cache keys; a random per-process key when unset. */
        hmac_key_env: z.string().default("SWITCHYARD_CACHE_HMAC_KEY"),
        /** Prefix of every Redis key the cache writes (several deployments may share one Redis). */
        redis_key_prefix: z.string().min(1).default("switchyard:cache:"),
        /** A Redis command slower than this counts as failed (a miss); also the connect timeout. */
        redis_timeout_ms: z.number().int().positive().default(250),
        semantic: z
          .object({
            enabled: z.boolean().default(true),
            /** Cosine similarity of the last user turn needed for a hit (per tenant: tenants[].cache_similarity_threshold). */
            similarity_threshold: z.number().min(0.5).max(1).default(0.9),
            /** Entries a partition holds before lookups use the LSH index instead of an exact scan. */
            exact_scan_below: z.number().int().min(0).default(512),
            embedding: z
              .object({
                /** local: hashed word and character n-grams, no network; openai: any OpenAI-compatible /v1/embeddings. */
                kind: z.enum(["local", "openai"]).default("local"),
                base_url: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional(),
                api_key_env: z
                  .string()
                  .regex(/^[A-Z_][A-Z0-9_]*$/, "must be the NAME of an environment variable (the key itself never goes in the config)")
                  .optional(),
                model: z.string().min(1).default("text-embedding-3-small"),
                /** Requested output size (OpenAI `dimensions`); the model's default when unset. */
                dimensions: z.number().int().positive().max(8_192).optional(),
                /** Budget of one embeddings call on Store (Lookup is bounded by its own budget). */
                timeout_ms: z.number().int().positive().default(2_000),
              })
              .strict()
              .refine((e) => e.kind !== "openai" || e.base_url !== undefined, { path: ["base_url"], message: "an openai embedding provider needs base_url" })
              .prefault({}),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    nats: z
      .object({
        /** false: no broadcast; prices from this file, health observed where it happens. */
        enabled: z.boolean().default(true),
        url: z.string().default("nats://127.0.0.1:4222"),
        price_bucket: name.default("switchyard-prices"),
        health_subject: z.string().default("switchyard.health"),
        stale_after_ms: z.number().int().positive().default(60_000),
        health_publish_interval_ms: z.number().int().positive().default(1_000),
        /** Credentials: a .creds file (JWT + NKey seed), or a user whose password is in an environment variable, or a token in one. */
        creds_file: z.string().default(""),
        user: z.string().default(""),
        password_env: envName.optional(),
        token_env: envName.optional(),
        /** TLS to the NATS server (ca_file alone: verify the server; with cert and key: mutual TLS). */
        tls: z
          .object({ ca_file: z.string().default(""), cert_file: z.string().default(""), key_file: z.string().default("") })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /**
     * The books: usage records and API keys. Postgres when the variable named by database_url_env
     * is set; otherwise PGlite (Postgres compiled to WASM) with its data in data_dir.
     */
    ledger: z
      .object({
        database_url_env: envName.default("DATABASE_URL"),
        data_dir: z.string().min(1).default(".switchyard/ledger"),
        /** JetStream stream and subject prefix ("<prefix>.<tenant>") the gateway publishes records to. */
        stream: name.default("SWITCHYARD_USAGE"),
        subject_prefix: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, "a NATS subject without wildcards").default("switchyard.usage"),
        /** Durable consumer name shared by every ledger replica. */
        consumer: name.default("ledger"),
        /** How long the stream keeps records it holds (unwritten ones too), in hours. */
        stream_max_age_hours: z.number().int().positive().default(7 * 24),
        /** Records a ledger writes in one transaction. */
        batch_size: z.number().int().positive().max(10_000).default(500),
        /** Records a gateway holds while neither JetStream nor the ledger takes them; beyond it the oldest are dropped and counted. */
        gateway_buffer_records: z.number().int().positive().default(100_000),
        /** How often a gateway asks the ledger for new and revoked keys. */
        key_refresh_ms: z.number().int().positive().default(500),
        /** Usage records older than this many days are deleted (hourly, in small batches); 0 keeps them all. */
        retention_days: z.number().int().min(0).default(0),
      })
      .strict()
      .prefault({}),
    /**
     * Budgets and rate limits (tenants[].budget_usd, requests_per_minute, tokens_per_minute and
     * per key). memory: counters in this gateway only (one replica); redis: shared by every replica.
     */
    quotas: z
      .object({
        backend: z.enum(["memory", "redis"]).default("memory"),
        redis_url: z.string().default("redis://127.0.0.1:6379"),
        key_prefix: z.string().min(1).default("switchyard:quota:"),
        /**
         * A Redis call slower than this fails over to this replica's own counters. Generous: on a
         * busy event loop a healthy Redis can take tens of milliseconds to be heard, and a fail-over
         * lets each replica spend the whole budget.
         */
        timeout_ms: z.number().int().positive().default(1_000),
        /** Output tokens assumed at admission for a request that sets no max_tokens (its tier's expected_output_tokens when larger). */
        default_output_tokens: z.number().int().positive().default(512),
      })
      .strict()
      .prefault({}),
    mesh: z
      .object({
        /**
         * Mutual TLS between the services: every internal service accepts only callers with a
         * certificate from the mesh CA, and only the callers it exists for (the gateway).
         * auto: on when certificates are configured or generated by `switchyard start`;
         * required: refuse to start without them; off: plaintext (a service mesh such as Istio
         * or Linkerd provides mTLS and authorization instead).
         */
        tls: z
          .object({
            mode: z.enum(["auto", "required", "off"]).default("auto"),
            ca_file: z.string().default(""),
            cert_file: z.string().default(""),
            key_file: z.string().default(""),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    router: z
      .object({
        /** Router weights JSON; empty = the default router shipped with Switchyard. */
        path: z.string().default(""),
        decision_cache_entries: z.number().int().min(0).default(10_000),
        /** How long the gateway reuses a policy plan at most (also dropped on any price or health update); 0 = ask the policy every time. */
        plan_cache_ms: z.number().int().min(0).default(1_000),
      })
      .strict()
      .prefault({}),
    telemetry: z
      .object({
        log_level: z.enum(["debug", "info", "warn", "error"]).default("info"),
        /** Put prompt and completion text on spans and logs (off by default). */
        capture_content: z.boolean().default(false),
        /**
         * Make a client's `traceparent` the parent of the request's span. Off by default: the
         * client's trace is linked to (a span link), so no caller can graft its spans into ours
         * or pick their sampling.
         */
        trust_client_traceparent: z.boolean().default(false),
        /**
         * The Jaeger UI (e.g. http://localhost:16686): the dashboard links each request to
         * `<jaeger_url>/trace/<trace id>`. Empty: trace ids are shown without a link.
         */
        jaeger_url: z
          .string()
          .regex(/^(https?:\/\/[^\s/?#]+(\/[^\s?#]*)?)?$/, "must be an http(s) URL of the Jaeger UI, without query or fragment")
          .default(""),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const tierNames = new Set(cfg.tiers.map((t) => t.name));
    const providerNames = new Set<string>();
    cfg.providers.forEach((p, pi) => {
      if (providerNames.has(p.name)) {
        ctx.addIssue({ code: "custom", path: ["providers", pi, "name"], message: `duplicate provider name "${p.name}"` });
      }
      providerNames.add(p.name);
      if (p.kind !== "simulator" && !p.api_key_env && p.kind !== "openai") {
        ctx.addIssue({ code: "custom", path: ["providers", pi, "api_key_env"], message: `a ${p.kind} provider needs api_key_env` });
      }
      const modelNames = new Set<string>();
      p.models.forEach((m, mi) => {
        if (modelNames.has(m.name)) {
          ctx.addIssue({ code: "custom", path: ["providers", pi, "models", mi, "name"], message: `duplicate model "${m.name}" in provider "${p.name}"` });
        }
        modelNames.add(m.name);
        m.tiers.forEach((t, ti) => {
          if (!tierNames.has(t)) {
            ctx.addIssue({
              code: "custom",
              path: ["providers", pi, "models", mi, "tiers", ti],
              message: `unknown tier "${t}" (tiers are: ${[...tierNames].join(", ")})`,
            });
          }
        });
      });
    });
    for (let i = 1; i < cfg.tiers.length; i++) {
      if (cfg.tiers[i]!.max_difficulty <= cfg.tiers[i - 1]!.max_difficulty) {
        ctx.addIssue({ code: "custom", path: ["tiers", i, "max_difficulty"], message: "tiers must be listed by increasing max_difficulty" });
      }
    }
    const tenantNames = new Set<string>();
    const modelIds = new Set(cfg.providers.flatMap((p) => p.models.map((m) => `${p.name}/${m.name}`)));
    cfg.tenants.forEach((t, i) => {
      if (tenantNames.has(t.name)) ctx.addIssue({ code: "custom", path: ["tenants", i, "name"], message: `duplicate tenant "${t.name}"` });
      tenantNames.add(t.name);
      if (t.baseline_model !== undefined && !modelIds.has(t.baseline_model)) {
        ctx.addIssue({ code: "custom", path: ["tenants", i, "baseline_model"], message: `unknown model "${t.baseline_model}" (configured: ${[...modelIds].join(", ")})` });
      }
    });
  });

/** The validated configuration, keys exactly as in switchyard.yaml. */
export type Config = z.output<typeof configSchema>;
export type ProviderConfig = Config["providers"][number];
export type ModelConfig = ProviderConfig["models"][number];
export type TierConfig = Config["tiers"][number];
export type TenantConfig = Config["tenants"][number];
