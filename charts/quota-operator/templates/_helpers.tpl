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
{{ .Values.store.url }}{{ include "quota-operator.storeCAParam" (list . "/etc/quota-store-tls/ca.crt") }}
{{- end -}}
{{- end -}}

{{/* Whether store.tls.ca names a CA to trust. */}}
{{- define "quota-operator.storeCA" -}}
{{- if and (not .Values.redis.enabled) (or .Values.store.tls.ca.secret .Values.store.tls.ca.configMap) }}true{{ end -}}
{{- end -}}

{{/* The URL option that names the store's CA file at the given path. */}}
{{- define "quota-operator.storeCAParam" -}}
{{- $ := index . 0 -}}
{{- if include "quota-operator.storeCA" $ -}}
{{ if contains "?" $.Values.store.url }}&{{ else }}?{{ end }}tls_ca_file={{ index . 1 }}
{{- end -}}
{{- end -}}

{{/* The manager's mount of the store's CA. */}}
{{- define "quota-operator.storeTLSMounts" -}}
{{- if include "quota-operator.storeCA" . }}
- name: store-tls-ca
  mountPath: /etc/quota-store-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The store's CA, from a Secret or a ConfigMap of the release's namespace. */}}
{{- define "quota-operator.storeTLSVolumes" -}}
{{- if include "quota-operator.storeCA" . }}
{{- with .Values.store.tls.ca }}
- name: store-tls-ca
{{- if .secret }}
  secret:
    secretName: {{ .secret | quote }}
{{- else }}
  configMap:
    name: {{ .configMap | quote }}
{{- end }}
    items:
      - key: {{ .key | quote }}
        path: ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{/* The gateway's store: the manager's, logging in to the bundled
Sentinels as the discovery-only user whose password its Secret holds. */}}
{{- define "quota-operator.gatewayStoreURL" -}}
{{- if and .Values.redis.enabled .Values.redis.ha.enabled -}}
{{ include "quota-operator.storeURL" . }}?sentinel_username=quota-sentinel&sentinel_password_file=/etc/quota-store/sentinel-password
{{- else if include "quota-operator.storeCA" . -}}
{{ .Values.store.url }}{{ include "quota-operator.storeCAParam" (list . "/etc/quota-store/ca.crt") }}
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
