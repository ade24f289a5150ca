{{/* The operator's image, which is also the injected sidecar's. */}}
{{- define "quota-operator.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* The store the manager uses: the bundled Redis, or store.url. */}}
{{- define "quota-operator.storeURL" -}}
{{- if .Values.redis.enabled -}}
redis://quota-operator-redis.{{ .Release.Namespace }}.svc:6379/0
{{- else -}}
{{ .Values.store.url }}
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
