{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "berth.fullname" -}}
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

{{- define "berth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "berth.adminSecret" -}}
{{- default (printf "%s-admin" (include "berth.fullname" .)) .Values.existingAdminSecret }}
{{- end }}

{{- define "berth.s3Secret" -}}
{{- default (printf "%s-s3" (include "berth.fullname" .)) .Values.storage.s3.existingSecret }}
{{- end }}

{{- define "berth.scheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* The URL clients reach Berth at. */}}
{{- define "berth.externalURL" -}}
{{- if .Values.externalURL }}
{{- .Values.externalURL }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) $host }}
{{- end }}
{{- end }}

{{/* What the chart checks before rendering anything. */}}
{{- define "berth.validate" -}}
{{- if not (has .Values.mode (list "statefulset" "deployment")) }}
{{- fail "mode must be statefulset or deployment" }}
{{- end }}
{{- if and (eq .Values.mode "deployment") (ne .Values.storage.backend "s3") }}
{{- fail "mode=deployment keeps blobs in S3: set storage.backend=s3 and storage.s3.bucket" }}
{{- end }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount > 1 needs a metadata store the replicas share, which Berth does not have yet (scale-out); run one replica" }}
{{- end }}
{{- if and (eq .Values.storage.backend "s3") (not .Values.storage.s3.bucket) }}
{{- fail "storage.backend=s3 needs storage.s3.bucket" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and .Values.adminToken (not (hasPrefix "berth_admin_" .Values.adminToken)) }}
{{- fail "adminToken must start with berth_admin_" }}
{{- end }}
{{- end }}

{{/* The pod template shared by both modes. */}}
{{- define "berth.podTemplate" -}}
metadata:
  labels:
    {{- include "berth.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "berth.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: berth
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["serve", "--config", "/etc/berth/berth.toml"]
      ports:
        - name: registry
          containerPort: 5000
          protocol: TCP
      env:
        - name: BERTH_AUTH_ADMIN_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ include "berth.adminSecret" . }}
              key: admin-token
        {{- if eq .Values.storage.backend "s3" }}
        - name: BERTH_STORAGE_S3_ACCESS_KEY_ID
          valueFrom:
            secretKeyRef:
              name: {{ include "berth.s3Secret" . }}
              key: access-key-id
        - name: BERTH_STORAGE_S3_SECRET_ACCESS_KEY
          valueFrom:
            secretKeyRef:
              name: {{ include "berth.s3Secret" . }}
              key: secret-access-key
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      startupProbe:
        httpGet:
          path: /healthz
          port: registry
          scheme: {{ include "berth.scheme" . }}
        periodSeconds: 2
        failureThreshold: 150
      livenessProbe:
        httpGet:
          path: /healthz
          port: registry
          scheme: {{ include "berth.scheme" . }}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 6
      readinessProbe:
        httpGet:
          path: /readyz
          port: registry
          scheme: {{ include "berth.scheme" . }}
        periodSeconds: 5
        timeoutSeconds: 5
        failureThreshold: 3
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /var/lib/berth
        - name: config
          mountPath: /etc/berth
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/berth-tls
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "berth.fullname" . }}
    - name: tmp
      emptyDir: {}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.secretName }}
    {{- end }}
    {{- if not .Values.persistence.enabled }}
    - name: data
      emptyDir: {}
    {{- else if eq .Values.mode "deployment" }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ include "berth.fullname" . }}-data
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "berth.pvcSpec" -}}
accessModes:
  {{- toYaml .Values.persistence.accessModes | nindent 2 }}
{{- if .Values.persistence.storageClass }}
{{- if eq "-" .Values.persistence.storageClass }}
storageClassName: ""
{{- else }}
storageClassName: {{ .Values.persistence.storageClass | quote }}
{{- end }}
{{- end }}
resources:
  requests:
    storage: {{ .Values.persistence.size | quote }}
{{- end }}

{{/* A dict as TOML: its plain keys, then each sub-dict as a [table]
     (whole numbers stay integers: Helm reads every number as a float). */}}
{{- define "berth.tomlTable" -}}
{{- $p := .prefix }}
{{- range $k, $v := .dict }}
{{- if not (kindIs "map" $v) }}
{{ $k }} = {{ include "berth.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := .dict }}
{{- if kindIs "map" $v }}
{{- $name := ternary $k (printf "%s.%s" $p $k) (eq $p "") }}

[{{ $name }}]
{{- include "berth.tomlTable" (dict "dict" $v "prefix" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "berth.tomlValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}{{ int64 . }}
{{- else if kindIs "slice" . }}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "berth.tomlValue" $e }}{{ end }}]
{{- else }}{{ toJson . }}
{{- end }}
{{- end }}
