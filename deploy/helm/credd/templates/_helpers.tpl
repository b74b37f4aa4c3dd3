{{/*
Shared helpers. Templates that render one component call these with
(dict "root" $ "component" "authd"); the component's values are then
index $.Values "authd".
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "credd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-credd" (or just the release name when it already holds the chart name), or fullnameOverride. */}}
{{- define "credd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's resource name: "<fullname>-authd". */}}
{{- define "credd.componentName" -}}
{{- printf "%s-%s" (include "credd.fullname" .root | trunc 52 | trimSuffix "-") .component }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "credd.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "credd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: credd
{{- end }}

{{/* Labels of a component's resources. */}}
{{- define "credd.labels" -}}
{{ include "credd.commonLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of a component's pods (immutable in a Deployment: never add to these). */}}
{{- define "credd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "credd.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The Secret holding the Redis URL, operator secret and allowlist. */}}
{{- define "credd.secretName" -}}
{{- if and .Values.secret.create .Values.secret.existingSecret }}
{{- fail "secret.existingSecret must be empty when secret.create is true (the chart creates <fullname>)" }}
{{- end }}
{{- default (include "credd.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/* The ServiceAccount name. */}}
{{- define "credd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "credd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "credd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Checks shared by both components, called from each Deployment so that a bad
combination fails the render with a clear message.
*/}}
{{- define "credd.validate" -}}
{{- $v := index .root.Values .component }}
{{- $pdb := $v.podDisruptionBudget }}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail (printf "%s.podDisruptionBudget: set minAvailable or maxUnavailable" .component) }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling: minReplicas is greater than maxReplicas" .component) }}
{{- end }}
{{- if and $v.autoscaling.enabled (not $v.autoscaling.targetCPUUtilizationPercentage) (not $v.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail (printf "%s.autoscaling: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" .component) }}
{{- end }}
{{- if and $v.service.headless (ne $v.service.type "ClusterIP") }}
{{- fail (printf "%s.service.headless needs service.type ClusterIP" .component) }}
{{- end }}
{{- if and .root.Values.metrics.port (eq (int .root.Values.metrics.port) (int $v.port)) }}
{{- fail (printf "metrics.port must differ from %s.port" .component) }}
{{- end }}
{{- if ge (add (int64 $v.drainDelayMs) (int64 $v.drainTimeoutMs)) (mul (int64 $v.terminationGracePeriodSeconds) 1000) }}
{{- fail (printf "%s.drainDelayMs + %s.drainTimeoutMs must be below %s.terminationGracePeriodSeconds (in ms), or the kubelet kills the pod mid-drain" .component .component .component) }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.secretName) }}
{{- fail (printf "%s.tls.secretName is required when %s.tls.enabled is true" .component .component) }}
{{- end }}
{{- if and $v.tls.enabled (or (eq (int $v.tls.healthPort) (int $v.port)) (and .root.Values.metrics.port (eq (int $v.tls.healthPort) (int .root.Values.metrics.port)))) }}
{{- fail (printf "%s.tls.healthPort must differ from %s.port and metrics.port" .component .component) }}
{{- end }}
{{- if and (dig "adminClientCa" "enabled" false $v.tls) (not $v.tls.enabled) }}
{{- fail (printf "%s.tls.adminClientCa.enabled needs %s.tls.enabled" .component .component) }}
{{- end }}
{{- end }}

{{/*
Drain and TLS environment of a component: <PREFIX>_DRAIN_DELAY_MS,
<PREFIX>_DRAIN_TIMEOUT_MS and, with
tls.enabled, the certificate files and the plaintext health-only listener
(the kubelet's gRPC probes cannot speak TLS).
*/}}
{{- define "credd.tlsEnv" -}}
{{- $v := index .root.Values .component }}
{{- $p := upper .component -}}
- name: {{ $p }}_DRAIN_DELAY_MS
  value: {{ $v.drainDelayMs | int64 | quote }}
- name: {{ $p }}_DRAIN_TIMEOUT_MS
  value: {{ $v.drainTimeoutMs | int64 | quote }}
{{- if $v.tls.enabled }}
- name: {{ $p }}_TLS_CERT_FILE
  value: /etc/credd/tls/tls.crt
- name: {{ $p }}_TLS_KEY_FILE
  value: /etc/credd/tls/tls.key
- name: {{ $p }}_HEALTH_LISTEN
  value: {{ printf "0.0.0.0:%d" ($v.tls.healthPort | int64) | quote }}
{{- if dig "adminClientCa" "enabled" false $v.tls }}
- name: {{ $p }}_ADMIN_CLIENT_CA_FILE
  value: /etc/credd/client-ca/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* The port the probes use: the plaintext health-only port when TLS is on. */}}
{{- define "credd.probePort" -}}
{{- $v := index .root.Values .component }}
{{- if $v.tls.enabled }}{{ $v.tls.healthPort | int64 }}{{ else }}{{ $v.port | int64 }}{{ end }}
{{- end }}

{{/* The health container port, with TLS on. */}}
{{- define "credd.tlsPorts" -}}
{{- $v := index .root.Values .component }}
{{- if $v.tls.enabled -}}
- name: health
  containerPort: {{ $v.tls.healthPort | int64 }}
  protocol: TCP
{{- end }}
{{- end }}

{{/* Read-only mounts of the TLS files, with TLS on. */}}
{{- define "credd.tlsMounts" -}}
{{- $v := index .root.Values .component }}
{{- if $v.tls.enabled -}}
- name: tls
  mountPath: /etc/credd/tls
  readOnly: true
{{- if dig "adminClientCa" "enabled" false $v.tls }}
- name: client-ca
  mountPath: /etc/credd/client-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* The TLS Secret volumes, with TLS on. */}}
{{- define "credd.tlsVolumes" -}}
{{- $v := index .root.Values .component }}
{{- if $v.tls.enabled -}}
- name: tls
  secret:
    secretName: {{ $v.tls.secretName }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- if dig "adminClientCa" "enabled" false $v.tls }}
- name: client-ca
  secret:
    secretName: {{ default $v.tls.secretName $v.tls.adminClientCa.secretName }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/*
Environment shared by both containers: RUST_LOG, the pod identity and, with
otel.enabled, the standard OTEL_* variables.
*/}}
{{- define "credd.commonEnv" -}}
{{- $v := index .root.Values .component }}
{{- $otel := .root.Values.otel -}}
- name: RUST_LOG
  value: {{ $v.logLevel | quote }}
{{- with .root.Values.metrics.port }}
# Prometheus GET /metrics on the "metrics" port.
- name: {{ upper $.component }}_METRICS_LISTEN
  value: {{ printf "0.0.0.0:%d" (. | int64) | quote }}
{{- end }}
{{- if $otel.enabled }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_SERVICE_NAME
  value: {{ .component | quote }}
{{- with $otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $otel.sampler | quote }}
{{- with $otel.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- $attrs := list "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" "k8s.pod.name=$(K8S_POD_NAME)" }}
{{- range $k, $val := $otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k $val) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
{{- end }}

{{/* A native gRPC probe on the component's port (grpc.health.v1, overall status). */}}
{{- define "credd.grpcProbe" -}}
grpc:
  port: {{ .port | int64 }}
  {{- with .service }}
  service: {{ . | quote }}
  {{- end }}
initialDelaySeconds: {{ .probe.initialDelaySeconds | int64 }}
periodSeconds: {{ .probe.periodSeconds | int64 }}
timeoutSeconds: {{ .probe.timeoutSeconds | int64 }}
failureThreshold: {{ .probe.failureThreshold | int64 }}
{{- end }}

{{/* Pod scheduling fields shared by both Deployments. */}}
{{- define "credd.scheduling" -}}
{{- $v := index .root.Values .component }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $v.topologySpreadConstraints | nindent 2 }}
{{- else if $v.topologySpread.enabled }}
topologySpreadConstraints:
{{- range $v.topologySpread.topologyKeys }}
  - maxSkew: {{ $v.topologySpread.maxSkew | int64 }}
    topologyKey: {{ . | quote }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "credd.selectorLabels" $ | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}

{{/* An int-or-string value (PodDisruptionBudget): a count as an integer, a percentage quoted. */}}
{{- define "credd.intOrPercent" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ . | int64 }}{{ end }}
{{- end }}

{{/*
The Redis password from redis.existingSecret, as a file (*_REDIS_PASSWORD_FILE) and, with
redis.username, the ACL user: env, mount and volume of a component.
*/}}
{{- define "credd.redisAuthEnv" -}}
{{- $r := .root.Values.redis }}
{{- $p := upper .component }}
{{- if and $r.username (not $r.existingSecret) }}
{{- fail "redis.username needs redis.existingSecret (the password of that user)" }}
{{- end }}
{{- if $r.existingSecret -}}
- name: {{ $p }}_REDIS_PASSWORD_FILE
  value: /etc/credd/redis-auth/password
{{- with $r.username }}
- name: {{ $p }}_REDIS_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "credd.redisAuthMounts" -}}
{{- if .root.Values.redis.existingSecret -}}
- name: redis-auth
  mountPath: /etc/credd/redis-auth
  readOnly: true
{{- end }}
{{- end }}

{{- define "credd.redisAuthVolumes" -}}
{{- $r := .root.Values.redis }}
{{- if $r.existingSecret -}}
- name: redis-auth
  secret:
    secretName: {{ $r.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $r.passwordKey }}
        path: password
{{- end }}
{{- end }}
