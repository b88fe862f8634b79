{{/* The chart name, or nameOverride. */}}
{{- define "ops-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: fullnameOverride, else the release name when it already holds
the chart name, else release-chart. Names the Deployment, the metrics
Service, the leader election Role and the ClusterRoleBindings.
*/}}
{{- define "ops-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "ops-operator.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ops-operator.serviceAccountName" -}}
{{- default (include "ops-operator.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "ops-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) }}
{{- end }}

{{- define "ops-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ops-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ops-operator.labels" -}}
{{ include "ops-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The port of a bind address (":8443" -> 8443). */}}
{{- define "ops-operator.port" -}}
{{- last (splitList ":" (toString .)) }}
{{- end }}

{{- define "ops-operator.metricsEnabled" -}}
{{- if and .Values.manager.metrics.bindAddress (ne (toString .Values.manager.metrics.bindAddress) "0") }}true{{ end }}
{{- end }}
