{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "confcom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object. */}}
{{- define "confcom.fullname" -}}
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

{{/* Name of one component's objects: "<fullname>-<component>". Call with (list . "webhook"). */}}
{{- define "confcom.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "confcom.fullname" $root | trunc 45 | trimSuffix "-") (index . 1) }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "confcom.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "confcom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: confcom
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component. Call with (list . "webhook"). */}}
{{- define "confcom.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "confcom.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component's objects. Call with (list . "webhook"). */}}
{{- define "confcom.componentLabels" -}}
{{ include "confcom.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The confcom image reference. */}}
{{- define "confcom.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The quote helper's image: the dcap variant unless simulating. */}}
{{- define "confcom.quoteHelperImage" -}}
{{- if or .Values.simulation.enabled (ne .Values.quoteHelper.backend "dcap") }}
{{- include "confcom.image" . }}
{{- else }}
{{- $repo := default .Values.image.repository .Values.quoteHelper.image.repository }}
{{- $tag := default (printf "%s-dcap" (default .Chart.AppVersion .Values.image.tag)) .Values.quoteHelper.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/* Environment shared by every confcom container. */}}
{{- define "confcom.commonEnv" -}}
- name: CONFCOM_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
- name: RUST_LOG
  value: {{ .Values.logging.level | quote }}
{{- end }}

{{/* Prometheus scrape annotations. Call with (dict "root" . "port" 9100 "scheme" "http"). */}}
{{- define "confcom.scrapeAnnotations" -}}
{{- if .root.Values.metrics.annotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
prometheus.io/scheme: {{ .scheme | default "http" }}
{{- end }}
{{- end }}

{{/*
Security context of a container that runs as a non-root user: PodSecurity "restricted".
*/}}
{{- define "confcom.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Security context of a node agent that must run as uid 0 (it writes into root-owned host
directories) but needs no capability: not privileged, no escalation, read-only root.
*/}}
{{- define "confcom.rootAgentSecurityContext" -}}
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod-level security context of the restricted components. */}}
{{- define "confcom.restrictedPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* In-cluster URL of the chart's PCCS (v4 API base): https:// when it serves TLS. */}}
{{- define "confcom.pccsUrl" -}}
{{- printf "%s://%s.%s.svc:%v/sgx/certification/v4/" (ternary "https" "http" .Values.pccs.tls.enabled) (include "confcom.componentName" (list . "pccs")) .Release.Namespace .Values.pccs.port }}
{{- end }}

{{/* Name of the PCCS's TLS Secret. */}}
{{- define "confcom.pccsTlsSecret" -}}
{{- default (printf "%s-tls" (include "confcom.componentName" (list . "pccs"))) .Values.pccs.tls.existingSecret }}
{{- end }}

{{/*
"true" when the attestation service fetches from the chart's PCCS over HTTPS with a
private-CA certificate, so it must trust the ca.crt of the PCCS's TLS Secret; else empty.
*/}}
{{- define "confcom.attestationTrustsPccsCA" -}}
{{- if and .Values.pccs.enabled .Values.pccs.tls.enabled .Values.pccs.tls.privateCA (not .Values.attestation.pccsUrl) (not .Values.simulation.enabled) -}}
true
{{- end }}
{{- end }}

{{/* Collateral source of the attestation service. */}}
{{- define "confcom.attestationPccsUrl" -}}
{{- if .Values.attestation.pccsUrl }}
{{- .Values.attestation.pccsUrl }}
{{- else if .Values.pccs.enabled }}
{{- include "confcom.pccsUrl" . }}
{{- else }}
{{- .Values.pccs.upstream }}
{{- end }}
{{- end }}

{{/* PCCS the quote helper's QCNL library uses. */}}
{{- define "confcom.quoteHelperPccsUrl" -}}
{{- if .Values.quoteHelper.pccsUrl }}
{{- .Values.quoteHelper.pccsUrl }}
{{- else if .Values.pccs.enabled }}
{{- include "confcom.pccsUrl" . }}
{{- else }}
{{- .Values.pccs.upstream }}
{{- end }}
{{- end }}

{{/*
Node affinity of the SGX DaemonSets: any node that carries one of the SGX labels or is an
SGX VM size (terms are ORed), or every Linux node in simulation / allNodes mode.
*/}}
{{- define "confcom.sgxNodeAffinity" -}}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
{{- if or .Values.simulation.enabled .Values.devicePlugin.nodeSelection.allNodes }}
      - matchExpressions:
          - key: kubernetes.io/os
            operator: In
            values:
              - linux
{{- else }}
{{- range .Values.devicePlugin.nodeSelection.labels }}
      - matchExpressions:
          - key: kubernetes.io/os
            operator: In
            values:
              - linux
          - key: {{ . }}
            operator: In
            values:
              - "true"
{{- end }}
{{- with .Values.devicePlugin.nodeSelection.instanceTypes }}
      - matchExpressions:
          - key: kubernetes.io/os
            operator: In
            values:
              - linux
          - key: node.kubernetes.io/instance-type
            operator: In
            values:
{{- range . }}
              - {{ . }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A serving certificate for one component, in the Secret `secretName` (kubernetes.io/tls:
tls.crt, tls.key, ca.crt). With certManager.enabled: a cert-manager Certificate (and a
self-signed Issuer unless certManager.issuerRef names one). Otherwise Helm generates a CA and
a certificate at install time and keeps them on upgrade (lookup finds the Secret; offline
renders always generate new ones). Call with (dict "root" . "component" "webhook" "name" NAME
"secretName" SECRET "dnsNames" LIST "certManager" CFG "certValidityDays" DAYS "out" DICT);
it renders the objects, each followed by `---`, and sets out.caBundle (base64 of ca.crt;
empty with cert-manager, whose cainjector fills it).
*/}}
{{- define "confcom.tlsCertificate" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $cm := .certManager }}
{{- $_ := set .out "caBundle" "" }}
{{- if $cm.enabled }}
{{- if not $cm.issuerRef }}
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: {{ $name }}-selfsigned
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "confcom.componentLabels" (list $root .component) | nindent 4 }}
spec:
  selfSigned: {}
---
{{- end }}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "confcom.componentLabels" (list $root .component) | nindent 4 }}
spec:
  secretName: {{ .secretName }}
  duration: {{ $cm.duration }}
  renewBefore: {{ $cm.renewBefore }}
  privateKey:
    algorithm: ECDSA
    size: 256
    rotationPolicy: Always
  dnsNames:
    {{- toYaml .dnsNames | nindent 4 }}
  issuerRef:
    {{- if $cm.issuerRef }}
    {{- toYaml $cm.issuerRef | nindent 4 }}
    {{- else }}
    name: {{ $name }}-selfsigned
    kind: Issuer
    group: cert-manager.io
    {{- end }}
---
{{- else }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace .secretName }}
{{- $caBundle := "" }}
{{- $crt := "" }}
{{- $key := "" }}
{{- if and $existing $existing.data (hasKey $existing.data "ca.crt") (hasKey $existing.data "tls.crt") (hasKey $existing.data "tls.key") }}
{{- $caBundle = index $existing.data "ca.crt" }}
{{- $crt = index $existing.data "tls.crt" }}
{{- $key = index $existing.data "tls.key" }}
{{- else }}
{{- $ca := genCA (printf "%s-ca" $name) (int .certValidityDays) }}
{{- $cert := genSignedCert (first .dnsNames) nil .dnsNames (int .certValidityDays) $ca }}
{{- $caBundle = $ca.Cert | b64enc }}
{{- $crt = $cert.Cert | b64enc }}
{{- $key = $cert.Key | b64enc }}
{{- end }}
{{- $_ := set .out "caBundle" $caBundle }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .secretName }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "confcom.componentLabels" (list $root .component) | nindent 4 }}
  annotations:
    # Key material generated by Helm: left out of the plain manifests (deploy/manifests).
    confcom.io/generated-secret: "true"
type: kubernetes.io/tls
data:
  ca.crt: {{ $caBundle }}
  tls.crt: {{ $crt }}
  tls.key: {{ $key }}
---
{{- end }}
{{- end }}
