{{/* The operator's image, which is also the injected sidecar's. */}}
{{- define "quota-operator.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* The bundled Sentinels (redis.ha.enabled), host:port each. */}}
{{- define "quota-operator.sentinels" -}}
{{- $ns := .Release.Namespace -}}
{{- range $i := until 3 -}}
{{- if $i }},{{ end }}quota-operator-redis-sentinel-{{ $i }}.quota-operator-redis-sentinel.{{ $ns }}.svc:26379
{{- end -}}
{{- end -}}

{{/* The store the manager uses: the bundled Redis (through its Sentinels
with redis.ha.enabled), or store.url. */}}
{{- define "quota-operator.storeURL" -}}
{{- if and .Values.redis.enabled .Values.redis.ha.enabled -}}
redis+sentinel://{{ include "quota-operator.sentinels" . }}/quota/0
{{- else if .Values.redis.enabled -}}
redis://quota-operator-redis.{{ .Release.Namespace }}.svc:6379/0
{{- else -}}
{{ .Values.store.url }}
{{- end -}}
{{- end -}}

{{/* The gateway's store: the manager's, logging in to the bundled
Sentinels as the discovery-only user whose password its Secret holds. */}}
{{- define "quota-operator.gatewayStoreURL" -}}
{{- if and .Values.redis.enabled .Values.redis.ha.enabled -}}
{{ include "quota-operator.storeURL" . }}?sentinel_username=quota-sentinel&sentinel_password_file=/etc/quota-store/sentinel-password
{{- else -}}
{{ include "quota-operator.storeURL" . }}
{{- end -}}
{{- end -}}

{{/* The Secret whose password the bundled Sentinels ask for. */}}
{{- define "quota-operator.storeSentinelPasswordSecret" -}}
{{- if and .Values.redis.enabled .Values.redis.ha.enabled -}}
quota-operator-redis
{{- end -}}
{{- end -}}

{{/* The Secret holding the store's password. */}}
{{- define "quota-operator.storePasswordSecret" -}}
{{- if .Values.redis.enabled -}}
quota-operator-redis
{{- else -}}
{{ .Values.store.passwordSecret }}
{{- end -}}
{{- end -}}
