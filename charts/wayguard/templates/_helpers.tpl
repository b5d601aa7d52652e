{{/*
The chart name (nameOverride wins).
*/}}
{{- define "wayguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of every namespaced object: fullnameOverride, else the release name when it already
contains the chart name (`helm install wayguard` gives a Service "wayguard", the host that
`wayguard bootstrap` assumes), else "<release>-<chart>".
*/}}
{{- define "wayguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Cluster-scoped objects (ClusterRole, ClusterRoleBinding) carry the namespace so that two releases
in different namespaces do not collide.
*/}}
{{- define "wayguard.clusterName" -}}
{{- printf "%s-%s" (include "wayguard.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wayguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wayguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wayguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wayguard.labels" -}}
helm.sh/chart: {{ include "wayguard.chart" . }}
{{ include "wayguard.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | quote }}
app.kubernetes.io/component: control-plane
app.kubernetes.io/part-of: wayguard
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "wayguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wayguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The lease that elects the replica writing status (fixed name, looked up in the release namespace).
*/}}
{{- define "wayguard.leaseName" -}}
wayguard-leader
{{- end -}}

{{- define "wayguard.tokenExchangeIssuer" -}}
{{- if .Values.tokenExchange.issuer -}}
{{- .Values.tokenExchange.issuer -}}
{{- else -}}
{{- printf "%s.%s.svc.cluster.local:%d" (include "wayguard.fullname" .) .Release.Namespace (int .Values.ports.sts) -}}
{{- end -}}
{{- end -}}

{{/*
One token-exchange validator, rendered field by field: remoteConfig only for remote validators.
Fails the render when an enabled STS has a remote validator without a URL (also enforced by
values.schema.json, which --skip-schema-validation bypasses).
*/}}
{{- define "wayguard.validator" -}}
{{- $name := index . 0 -}}
{{- $v := index . 1 -}}
validatorType: {{ $v.validatorType | quote }}
{{- if eq $v.validatorType "remote" }}
{{- $url := "" -}}
{{- if $v.remoteConfig -}}{{- $url = $v.remoteConfig.url | default "" -}}{{- end -}}
{{- if not $url -}}{{- fail (printf "tokenExchange.%s.remoteConfig.url is required when validatorType is remote" $name) -}}{{- end }}
remoteConfig:
  url: {{ $url | quote }}
{{- end -}}
{{- end -}}

{{/*
The file the STS reads: the tokenExchange values block, with the issuer default filled in.
*/}}
{{- define "wayguard.tokenExchangeConfig" -}}
enabled: true
issuer: {{ include "wayguard.tokenExchangeIssuer" . | quote }}
tokenExpiration: {{ .Values.tokenExchange.tokenExpiration | quote }}
subjectValidator:
  {{- include "wayguard.validator" (list "subjectValidator" .Values.tokenExchange.subjectValidator) | nindent 2 }}
actorValidator:
  {{- include "wayguard.validator" (list "actorValidator" .Values.tokenExchange.actorValidator) | nindent 2 }}
apiValidator:
  {{- include "wayguard.validator" (list "apiValidator" .Values.tokenExchange.apiValidator) | nindent 2 }}
elicitation:
  secretName: {{ .Values.tokenExchange.elicitation.secretName | default "" | quote }}
{{- end -}}
