{{/* The operator's image, which is also the injected sidecar's. */}}
{{- define "quota-operator.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* The bundled Sentinels (redis.ha.enabled), host:port each, in the
namespace the container's POD_NAMESPACE names, as config/ writes them. */}}
{{- define "quota-operator.sentinels" -}}
{{- range $i := until 3 -}}
{{- if $i }},{{ end }}quota-operator-redis-sentinel-{{ $i }}.quota-operator-redis-sentinel.$(POD_NAMESPACE).svc:26379
{{- end -}}
{{- end -}}

{{/* The store the manager uses: the bundled Redis (through its Sentinels
with redis.ha.enabled), or store.url. */}}
{{- define "quota-operator.storeURL" -}}
{{- if and .Values.redis.enabled .Values.redis.ha.enabled -}}
redis+sentinel://{{ include "quota-operator.sentinels" . }}/quota/0
{{- else if .Values.redis.enabled -}}
redis://quota-operator-redis.$(POD_NAMESPACE).svc:6379/0
{{- else -}}
{{ .Values.store.url }}{{ include "quota-operator.storeTLSParams" (list . "/etc/quota-store-tls/ca.crt" "/etc/quota-store-tls-client") }}
{{- end -}}
{{- end -}}

{{/* Whether store.tls.ca names a CA to trust. */}}
{{- define "quota-operator.storeCA" -}}
{{- if and (not .Values.redis.enabled) (or .Values.store.tls.ca.secret .Values.store.tls.ca.configMap) }}true{{ end -}}
{{- end -}}

{{/* Whether store.tls.clientCert names a client certificate. */}}
{{- define "quota-operator.storeClientCert" -}}
{{- if and (not .Values.redis.enabled) .Values.store.tls.clientCert.secret }}true{{ end -}}
{{- end -}}

{{/* The URL options that name the store's CA file and the folder of the
client certificate (tls.crt, tls.key): (list . caFile certDir). */}}
{{- define "quota-operator.storeTLSParams" -}}
{{- $ := index . 0 -}}
{{- $params := list -}}
{{- if include "quota-operator.storeCA" $ -}}
{{- $params = append $params (printf "tls_ca_file=%s" (index . 1)) -}}
{{- end -}}
{{- if include "quota-operator.storeClientCert" $ -}}
{{- $params = append $params (printf "tls_cert_file=%s/tls.crt&tls_key_file=%s/tls.key" (index . 2) (index . 2)) -}}
{{- end -}}
{{- if $params -}}
{{ if contains "?" $.Values.store.url }}&{{ else }}?{{ end }}{{ join "&" $params }}
{{- end -}}
{{- end -}}

{{/* The manager's mounts of the store's CA, client certificate and
password. */}}
{{- define "quota-operator.storeMounts" -}}
{{- if include "quota-operator.storeCA" . }}
- name: store-tls-ca
  mountPath: /etc/quota-store-tls
  readOnly: true
{{- end }}
{{- if include "quota-operator.storeClientCert" . }}
- name: store-tls-client
  mountPath: /etc/quota-store-tls-client
  readOnly: true
{{- end }}
{{- if include "quota-operator.storePasswordFile" . }}
- name: store-password
  mountPath: /etc/quota-store-password
  readOnly: true
{{- end }}
{{- end -}}

{{/* The store's CA, from a Secret or a ConfigMap of the release's
namespace, and an external store's password Secret (store.passwordSecret),
which the kubelet waits for: the manager never generates it and needs no
RBAC on it, whatever its name. */}}
{{- define "quota-operator.storeVolumes" -}}
{{- if include "quota-operator.storePasswordFile" . }}
- name: store-password
  secret:
    secretName: {{ .Values.store.passwordSecret | quote }}
    items:
      - key: password
        path: password
{{- end }}
{{- if include "quota-operator.storeClientCert" . }}
- name: store-tls-client
  secret:
    secretName: {{ .Values.store.tls.clientCert.secret | quote }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
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
Sentinels as the discovery-only user whose password its Secret holds, or
with the copies of the CA and client certificate its Secret holds. */}}
{{- define "quota-operator.gatewayStoreURL" -}}
{{- if and .Values.redis.enabled .Values.redis.ha.enabled -}}
{{ include "quota-operator.storeURL" . }}?sentinel_username=quota-sentinel&sentinel_password_file=/etc/quota-store/sentinel-password
{{- else if or (include "quota-operator.storeCA" .) (include "quota-operator.storeClientCert" .) -}}
{{ .Values.store.url }}{{ include "quota-operator.storeTLSParams" (list . "/etc/quota-store/ca.crt" "/etc/quota-store") }}
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

{{/* The Secret holding the bundled Redis's password, which the manager
generates when missing. */}}
{{- define "quota-operator.storePasswordSecret" -}}
{{- if .Values.redis.enabled -}}
quota-operator-redis
{{- end -}}
{{- end -}}

{{/* Where the manager reads an external store's password
(store.passwordSecret, mounted). */}}
{{- define "quota-operator.storePasswordFile" -}}
{{- if and (not .Values.redis.enabled) .Values.store.passwordSecret -}}
/etc/quota-store-password/password
{{- end -}}
{{- end -}}
