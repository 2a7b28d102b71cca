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
The switchyard.yaml the services load: `config` with the cache pointed at Redis when there is one.
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
{{- toYaml $config -}}
{{- end }}
