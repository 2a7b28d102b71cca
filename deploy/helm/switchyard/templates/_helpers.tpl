{{/*
Labels of one component. Call with (dict "name" <component name> "root" $).
*/}}
{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "switchyard.labels" -}}
{{ include "switchyard.selectorLabels" . }}
app.kubernetes.io/part-of: switchyard
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{/*
NATS URL the services use: the bundled server, else nats.externalUrl.
*/}}
{{- define "switchyard.natsUrl" -}}
{{- if .Values.nats.enabled -}}
nats://nats:4222
{{- else -}}
{{- required "nats.externalUrl is required when nats.enabled is false" .Values.nats.externalUrl -}}
{{- end -}}
{{- end }}

{{/*
Redis URL of the shared cache: the bundled Redis, else redis.externalUrl, else "" (in-memory cache).
*/}}
{{- define "switchyard.redisUrl" -}}
{{- if .Values.redis.enabled -}}
redis://redis:6379
{{- else -}}
{{- .Values.redis.externalUrl -}}
{{- end -}}
{{- end }}

{{/*
True ("true") when traces have somewhere to go: bundled Jaeger or an external collector.
*/}}
{{- define "switchyard.tracing" -}}
{{- if or .Values.jaeger.enabled .Values.jaeger.externalHost -}}true{{- end -}}
{{- end }}

{{/*
"true" when the gateway may run more than one replica (its autoscaler's maximum, else its
replicas): then each replica's own quota counters would let a tenant spend N times its budget.
*/}}
{{- define "switchyard.gatewayReplicated" -}}
{{- $g := include "switchyard.component" (dict "name" "gateway" "root" .) | fromYaml -}}
{{- if $g.autoscaling.enabled -}}
{{- if gt (int $g.autoscaling.maxReplicas) 1 -}}true{{- end -}}
{{- else if gt (int $g.replicas) 1 -}}true{{- end -}}
{{- end }}

{{/*
Where the ledger keeps its books: "postgres" when ledger.database.external.existingSecret names
the Secret holding the database URL, else "pglite" (a folder on the PersistentVolumeClaim).
*/}}
{{- define "switchyard.ledgerDatabase" -}}
{{- if .Values.ledger.database.external.existingSecret -}}postgres{{- else -}}pglite{{- end -}}
{{- end }}

{{/* The PersistentVolumeClaim holding PGlite's folder: the operator's own, else the chart's ledger-data. */}}
{{- define "switchyard.ledgerClaim" -}}
{{- .Values.ledger.database.pglite.existingClaim | default "ledger-data" -}}
{{- end }}

{{/* PGlite's folder in the ledger's pod: below the volume's mount point (its root may hold lost+found). */}}
{{- define "switchyard.ledgerDataDir" -}}/var/lib/switchyard/ledger{{- end }}

{{/*
The switchyard.yaml the services load: `config`, with what the chart decides set over it: the
cache in Redis when there is one; the gateway's quotas in Redis when it may run several replicas
(unless config.quotas says otherwise); the ledger's PGlite folder on its volume; mesh.tls from
mesh.tls.mode (certificates mounted at /etc/switchyard/tls); NATS credentials and TLS;
gateway.allow_unauthenticated, allowed_hosts, require_api_key and admin_key_sha256.
*/}}
{{- define "switchyard.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $redisUrl := include "switchyard.redisUrl" . -}}
{{- if $redisUrl -}}
{{- $cache := get $config "cache" | default dict -}}
{{- $_ := set $cache "backend" "redis" -}}
{{- $_ := set $cache "redis_url" $redisUrl -}}
{{- $_ := set $config "cache" $cache -}}
{{- end -}}
{{- $quotas := get $config "quotas" | default dict -}}
{{- if and (not (get $quotas "backend")) $redisUrl (include "switchyard.gatewayReplicated" .) -}}
{{- $_ := set $quotas "backend" "redis" -}}
{{- end -}}
{{- if and (eq (get $quotas "backend" | default "") "redis") (not (get $quotas "redis_url")) -}}
{{- $_ := set $quotas "redis_url" (required "config.quotas.backend is redis but there is no Redis: set redis.enabled=true, redis.externalUrl or config.quotas.redis_url" $redisUrl) -}}
{{- end -}}
{{- if $quotas -}}
{{- $_ := set $config "quotas" $quotas -}}
{{- end -}}
{{- if eq (include "switchyard.ledgerDatabase" .) "pglite" -}}
{{- $ledger := get $config "ledger" | default dict -}}
{{- $_ := set $ledger "data_dir" (include "switchyard.ledgerDataDir" .) -}}
{{- $_ := set $config "ledger" $ledger -}}
{{- end -}}
{{- $files := dict "ca_file" "/etc/switchyard/tls/ca.crt" "cert_file" "/etc/switchyard/tls/tls.crt" "key_file" "/etc/switchyard/tls/tls.key" -}}
{{- if include "switchyard.meshTls" . -}}
{{- $_ := set $config "mesh" (dict "tls" (merge (dict "mode" "required") $files)) -}}
{{- else -}}
{{- $_ := set $config "mesh" (dict "tls" (dict "mode" "off")) -}}
{{- end -}}
{{- $nats := get $config "nats" | default dict -}}
{{- $auth := include "switchyard.natsAuth" . -}}
{{- if eq $auth "certificates" -}}
{{- $_ := set $nats "tls" $files -}}
{{- else if eq $auth "passwords" -}}
{{- $_ := set $nats "user" "switchyard" -}}
{{- $_ := set $nats "password_env" "NATS_PASSWORD" -}}
{{- else -}}
{{- if .Values.nats.external.credsSecret -}}
{{- $_ := set $nats "creds_file" "/etc/switchyard/nats/nats.creds" -}}
{{- end -}}
{{- if .Values.nats.external.caSecret -}}
{{- $_ := set $nats "tls" (dict "ca_file" "/etc/switchyard/nats/ca.crt") -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "nats" $nats -}}
{{- $gateway := get $config "gateway" | default dict -}}
{{- if .Values.gateway.allowUnauthenticated -}}
{{- $_ := set $gateway "allow_unauthenticated" true -}}
{{- end -}}
{{- with .Values.gateway.allowedHosts -}}
{{- $_ := set $gateway "allowed_hosts" (concat (get $gateway "allowed_hosts" | default list) .) -}}
{{- end -}}
{{- if .Values.gateway.requireApiKey -}}
{{- $_ := set $gateway "require_api_key" true -}}
{{- end -}}
{{- with .Values.gateway.adminKeySha256 -}}
{{- $_ := set $gateway "admin_key_sha256" (concat (get $gateway "admin_key_sha256" | default list) . | uniq) -}}
{{- end -}}
{{- if $gateway -}}
{{- $_ := set $config "gateway" $gateway -}}
{{- end -}}
{{- toYaml $config -}}
{{- end }}

{{/*
"true" when the gateway keeps its quota counters in the bundled Redis (the config as rendered):
Redis then admits the gateway too.
*/}}
{{- define "switchyard.quotasInBundledRedis" -}}
{{- $config := include "switchyard.config" . | fromYaml -}}
{{- if and .Values.redis.enabled (eq (dig "quotas" "backend" "" $config) "redis") (eq (dig "quotas" "redis_url" "" $config) (include "switchyard.redisUrl" .)) -}}true{{- end -}}
{{- end }}

{{/*
"true" when the services speak mutual TLS to each other (mesh.tls.mode: required).
*/}}
{{- define "switchyard.meshTls" -}}
{{- if eq .Values.mesh.tls.mode "required" -}}true{{- end -}}
{{- end }}

{{/*
How the services authenticate to NATS: "certificates" (bundled NATS, mesh TLS: the mesh
certificate is the NATS identity), "passwords" (bundled NATS without mesh TLS), "external".
*/}}
{{- define "switchyard.natsAuth" -}}
{{- if not .Values.nats.enabled -}}external
{{- else if include "switchyard.meshTls" . -}}certificates
{{- else -}}passwords
{{- end -}}
{{- end }}

{{/* The Secret holding the bundled NATS's passwords (keys "switchyard" and "prices"). */}}
{{- define "switchyard.natsSecret" -}}
{{- .Values.nats.auth.existingSecret | default "switchyard-nats" -}}
{{- end }}

{{/*
The price bucket and the health subject, as the services' config says (the NATS permissions
follow them).
*/}}
{{- define "switchyard.priceBucket" -}}
{{- dig "nats" "price_bucket" "switchyard-prices" .Values.config -}}
{{- end }}
{{- define "switchyard.healthSubject" -}}
{{- dig "nats" "health_subject" "switchyard.health" .Values.config -}}
{{- end }}

{{/*
The usage records' JetStream stream, subject prefix and the ledger's durable consumer, as the
services' config says (libs/config: ledger.stream, subject_prefix, consumer).
*/}}
{{- define "switchyard.usageStream" -}}
{{- dig "ledger" "stream" "SWITCHYARD_USAGE" .Values.config -}}
{{- end }}
{{- define "switchyard.usageSubjectPrefix" -}}
{{- dig "ledger" "subject_prefix" "switchyard.usage" .Values.config -}}
{{- end }}
{{- define "switchyard.usageConsumer" -}}
{{- dig "ledger" "consumer" "ledger" .Values.config -}}
{{- end }}

{{/*
Fails the render when the gateway would be open: no tenant has an API key and
gateway.allowUnauthenticated is not true. (The gateway itself refuses to start then.)
*/}}
{{- define "switchyard.checkExposure" -}}
{{- $keys := 0 -}}
{{- range (.Values.config.tenants | default list) -}}
{{- $keys = add $keys (len (.api_key_sha256 | default list)) -}}
{{- end -}}
{{- $required := or .Values.gateway.requireApiKey (dig "gateway" "require_api_key" false .Values.config) -}}
{{- if and (eq (int $keys) 0) (not $required) (not .Values.gateway.allowUnauthenticated) -}}
{{- fail "no tenant has an API key: set config.tenants[].api_key_sha256 (the SHA-256 of each key: printf %s \"$KEY\" | sha256sum) or gateway.requireApiKey=true (keys created at run time with switchyard keys create), or set gateway.allowUnauthenticated=true to run the gateway open on purpose (anyone who reaches Envoy can then spend on your providers)" -}}
{{- end -}}
{{- end }}

{{/*
One component as the templates see it: components.<name> merged over componentDefaults, its own
keys winning (YAML; read with fromYaml). Call with (dict "name" <name> "root" $).
*/}}
{{- define "switchyard.component" -}}
{{- $component := index .root.Values.components .name -}}
{{- $c := mergeOverwrite (deepCopy .root.Values.componentDefaults) (deepCopy $component) -}}
{{- /* mergeOverwrite never overrides with an empty value (false, 0, "", []): apply the component's
     own keys again, two levels deep, so that `enabled: false` or `headless: false` are honoured. */ -}}
{{- range $key, $value := $component -}}
{{- if and (kindIs "map" $value) (kindIs "map" (index $c $key)) -}}
{{- range $k, $v := $value }}{{ $_ := set (index $c $key) $k $v }}{{ end -}}
{{- else -}}
{{- $_ := set $c $key $value -}}
{{- end -}}
{{- end -}}
{{- /* The ledger's database (ledger.database): the URL from its Secret as the variable the config
     names (ledger.database_url_env); or PGlite, whose single writer means one pod, never two at
     once (Recreate), with its folder on the claim. */ -}}
{{- if eq .name "ledger" -}}
{{- $db := .root.Values.ledger.database -}}
{{- if eq (include "switchyard.ledgerDatabase" .root) "postgres" -}}
{{- $var := dig "ledger" "database_url_env" "DATABASE_URL" .root.Values.config -}}
{{- $url := dict "name" $var "valueFrom" (dict "secretKeyRef" (dict "name" $db.external.existingSecret "key" $db.external.key)) -}}
{{- $_ := set $c "env" (append ($c.env | default list) $url) -}}
{{- else -}}
{{- $_ := set $c "replicas" 1 -}}
{{- $_ := set $c.autoscaling "enabled" false -}}
{{- $_ := set $c "strategy" (dict "type" "Recreate") -}}
{{- $_ := set $c "volumes" (append ($c.volumes | default list) (dict "name" "ledger-data" "persistentVolumeClaim" (dict "claimName" (include "switchyard.ledgerClaim" .root)))) -}}
{{- $_ := set $c "volumeMounts" (append ($c.volumeMounts | default list) (dict "name" "ledger-data" "mountPath" (dir (include "switchyard.ledgerDataDir" .root)))) -}}
{{- end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end }}

{{/*
The bundled NATS server's nats.conf: JetStream on /data, and who may do what. Identities are the
mesh certificates (TLS verify_and_map: user = the certificate's URI SAN) or, without mesh TLS,
passwords from the environment ($SWITCHYARD_PASSWORD, $PRICES_PASSWORD; Secret switchyard-nats).
Every permission is an allow-list; what is not listed is denied.
  - provider: publish health.
  - gateway, policy: hear health; read the price bucket (a KV watch is an ordered push consumer:
    JetStream API requests for the bucket's stream, flow-control replies, deliveries to _INBOX).
    STREAM.CREATE only for that stream: the first to start creates the bucket (same settings).
  - gateway: also publish usage records (<prefix>.<tenant>, acknowledged by JetStream on _INBOX)
    and create or update their stream (libs/bus ensureUsageStream: whoever starts first).
  - ledger: the usage stream's JetStream API for its durable pull consumer only (create, info,
    fetch the next batch, ack); the stream too. Nothing about prices or health.
  - prices (the operator's `switchyard prices publish`): read and write the price bucket.
*/}}
{{- define "switchyard.natsConf" -}}
{{- $bucket := include "switchyard.priceBucket" . -}}
{{- $health := include "switchyard.healthSubject" . -}}
{{- $stream := printf "KV_%s" $bucket -}}
{{- $readPub := list "$JS.API.INFO" (printf "$JS.API.STREAM.INFO.%s" $stream) (printf "$JS.API.STREAM.CREATE.%s" $stream) (printf "$JS.API.CONSUMER.CREATE.%s" $stream) (printf "$JS.API.CONSUMER.CREATE.%s.>" $stream) (printf "$JS.API.CONSUMER.INFO.%s.*" $stream) (printf "$JS.FC.%s.>" $stream) -}}
{{- $watch := dict "publish" (dict "allow" $readPub) "subscribe" (dict "allow" (list "_INBOX.>" (printf "%s.>" $health))) -}}
{{- $publishHealth := dict "publish" (dict "allow" (list (printf "%s.>" $health))) "subscribe" (dict "deny" (list ">")) -}}
{{- $writePub := concat $readPub (list (printf "$KV.%s.>" $bucket) (printf "$JS.API.DIRECT.GET.%s.>" $stream)) -}}
{{- $prices := dict "publish" (dict "allow" $writePub) "subscribe" (dict "allow" (list "_INBOX.>")) -}}
{{- $usage := include "switchyard.usageStream" . -}}
{{- $usagePrefix := include "switchyard.usageSubjectPrefix" . -}}
{{- $consumer := include "switchyard.usageConsumer" . -}}
{{- $usageStreamApi := list (printf "$JS.API.STREAM.INFO.%s" $usage) (printf "$JS.API.STREAM.CREATE.%s" $usage) (printf "$JS.API.STREAM.UPDATE.%s" $usage) -}}
{{- $publishUsage := append $usageStreamApi (printf "%s.>" $usagePrefix) -}}
{{- $consumerApi := list (printf "$JS.API.CONSUMER.INFO.%s.%s" $usage $consumer) (printf "$JS.API.CONSUMER.CREATE.%s.%s" $usage $consumer) (printf "$JS.API.CONSUMER.CREATE.%s.%s.>" $usage $consumer) (printf "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s" $usage $consumer) (printf "$JS.API.CONSUMER.MSG.NEXT.%s.%s" $usage $consumer) (printf "$JS.ACK.%s.%s.>" $usage $consumer) -}}
{{- $consumeUsage := concat (list "$JS.API.INFO") $usageStreamApi $consumerApi -}}
{{- $gateway := dict "publish" (dict "allow" (concat $readPub $publishUsage)) "subscribe" (get $watch "subscribe") -}}
{{- $ledger := dict "publish" (dict "allow" $consumeUsage) "subscribe" (dict "allow" (list "_INBOX.>")) -}}
{{- $byName := dict "provider" $publishHealth "gateway" $gateway "policy" $watch "ledger" $ledger -}}
{{- $users := list -}}
{{- if eq (include "switchyard.natsAuth" .) "certificates" -}}
{{- range $name, $_ := .Values.components -}}
{{- $c := include "switchyard.component" (dict "name" $name "root" $) | fromYaml -}}
{{- if and $c.enabled $c.switchyard $c.nats -}}
{{- $perms := get $byName $name | default $watch -}}
{{- $users = append $users (dict "user" (printf "spiffe://switchyard/%s" $name) "permissions" $perms) -}}
{{- end -}}
{{- end -}}
{{- $users = append $users (dict "user" "spiffe://switchyard/prices" "permissions" $prices) -}}
{{- else -}}
{{- /* One password for every service: the union of what they need (never writing prices). */ -}}
{{- $services := dict "publish" (dict "allow" (concat $readPub (list (printf "%s.>" $health)) $publishUsage $consumerApi)) "subscribe" (get $watch "subscribe") -}}
{{- $users = list (dict "user" "switchyard" "password" "$SWITCHYARD_PASSWORD" "permissions" $services) (dict "user" "prices" "password" "$PRICES_PASSWORD" "permissions" $prices) -}}
{{- end -}}
# Generated by the Switchyard chart (templates/_helpers.tpl, "switchyard.natsConf").
port: 4222
http_port: 8222
server_name: nats
jetstream {
  store_dir: /data
}
{{- if eq (include "switchyard.natsAuth" .) "certificates" }}
tls {
  cert_file: /etc/nats/tls/tls.crt
  key_file: /etc/nats/tls/tls.key
  ca_file: /etc/nats/tls/ca.crt
  # Clients must present a mesh certificate; its URI SAN is the user.
  verify_and_map: true
  timeout: 2
}
{{- end }}
authorization {
  users: [
    {{- range $users }}
    {
      user: {{ .user | quote }}
      {{- with .password }}
      password: {{ . }}
      {{- end }}
      permissions: {
        {{- range $verb, $rules := .permissions }}
        {{ $verb }}: {
          {{- range $kind, $subjects := $rules }}
          {{ $kind }}: [{{ range $i, $s := $subjects }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end }}]
          {{- end }}
        }
        {{- end }}
      }
    }
    {{- end }}
  ]
}
{{- end }}
