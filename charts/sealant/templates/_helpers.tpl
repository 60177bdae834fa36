{{/* The chart name (nameOverride wins). */}}
{{- define "sealant.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The name of every object: `<release>-controller` when the release name contains the chart name (so
`sealant-controller` for release `sealant`, the Service name the CLI looks for), else `<release>-<chart>-controller`.
*/}}
{{- define "sealant.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "sealant.name" . -}}
{{- if contains $name .Release.Name -}}
{{- printf "%s-controller" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s-controller" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sealant.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sealant.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sealant.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "sealant.labels" -}}
helm.sh/chart: {{ include "sealant.chart" . }}
{{ include "sealant.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The --controllers list of the enabled controllers; fails when none is. */}}
{{- define "sealant.controllers" -}}
{{- $c := list -}}
{{- if .Values.controllers.sealedSecrets.enabled }}{{ $c = append $c "sealedsecrets" }}{{ end -}}
{{- if .Values.controllers.externalSecrets.enabled }}{{ $c = append $c "externalsecrets" }}{{ end -}}
{{- if .Values.controllers.gitSync.enabled }}{{ $c = append $c "gitsyncs" }}{{ end -}}
{{- if not $c }}{{ fail "enable at least one of controllers.sealedSecrets, controllers.externalSecrets, controllers.gitSync" }}{{ end -}}
{{- join "," $c -}}
{{- end -}}

{{- define "sealant.leaseName" -}}
{{- default (include "sealant.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "sealant.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The ServiceAccount subject of the bindings. */}}
{{- define "sealant.subject" -}}
- kind: ServiceAccount
  name: {{ include "sealant.fullname" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}
