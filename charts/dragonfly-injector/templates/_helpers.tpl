{{/* The chart's name, or nameOverride. */}}
{{- define "dragonfly-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, at most 63 characters; fullnameOverride wins. */}}
{{- define "dragonfly-injector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "dragonfly-injector.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dragonfly-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dragonfly-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The CSI plugin's pods: a name of their own, so the webhook's Service and PodDisruptionBudget
never select them. */}}
{{- define "dragonfly-injector.csiSelectorLabels" -}}
app.kubernetes.io/name: {{ include "dragonfly-injector.name" . }}-csi
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: csi-plugin
{{- end -}}

{{- define "dragonfly-injector.labels" -}}
{{ include "dragonfly-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dragonfly
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dragonfly-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dragonfly-injector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag[@digest], the tag defaulting to the chart's appVersion. With
global.imageRegistry, the repository's own registry (a first part with a dot, a colon, or
"localhost") is replaced by it. */}}
{{- define "dragonfly-injector.imageRef" -}}
{{- $tag := default (printf "v%s" .root.Chart.AppVersion) .image.tag -}}
{{- $repository := include "dragonfly-injector.inRegistry" (dict "root" .root "repository" .image.repository) -}}
{{- if .image.digest -}}
{{- printf "%s:%s@%s" $repository $tag .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "dragonfly-injector.inRegistry" -}}
{{- $registry := ((.root.Values.global).imageRegistry) -}}
{{- if $registry -}}
{{- $parts := splitList "/" .repository -}}
{{- $first := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq "localhost" $first)) -}}
{{- $parts = rest $parts -}}
{{- end -}}
{{- printf "%s/%s" (trimSuffix "/" $registry) (join "/" $parts) -}}
{{- else -}}
{{- .repository -}}
{{- end -}}
{{- end -}}

{{/* The proxy port and socket path: Dragonfly's chart's, from global.dragonfly, when this chart
is its subchart; this chart's values otherwise. */}}
{{- define "dragonfly-injector.proxyPort" -}}
{{- default .Values.proxy.port (((.Values.global).dragonfly).proxyPort) -}}
{{- end -}}

{{- define "dragonfly-injector.socketPath" -}}
{{- default .Values.socket.path (((.Values.global).dragonfly).socketPath) -}}
{{- end -}}

{{- define "dragonfly-injector.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.secret.name is required with tls.mode=secret" .Values.tls.secret.name -}}
{{- else if eq .Values.tls.mode "managed" -}}
{{- /* Not the generate mode's name: switching modes on upgrade, Helm deletes that Secret. */ -}}
{{- printf "%s-managed-tls" (include "dragonfly-injector.fullname" .) -}}
{{- else -}}
{{- printf "%s-tls" (include "dragonfly-injector.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The names the serving certificate is for (JSON list): the Service's, or webhook.url's host. */}}
{{- define "dragonfly-injector.tlsNames" -}}
{{- $fullname := include "dragonfly-injector.fullname" . -}}
{{- $service := printf "%s.%s.svc" $fullname .Release.Namespace -}}
{{- $names := list $fullname (printf "%s.%s" $fullname .Release.Namespace) $service (printf "%s.cluster.local" $service) -}}
{{- with .Values.webhook.url -}}
{{- $names = list (urlParse .).hostname -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* Namespaces the API server never sends to the webhook: the configured ones and the release's. */}}
{{- define "dragonfly-injector.excludedNamespaces" -}}
{{- toJson (uniq (append .Values.excludeNamespaces .Release.Namespace)) -}}
{{- end -}}

{{/* socket.mode, or auto where the chart installs the CSI plugin, else hostPath. */}}
{{- define "dragonfly-injector.socketMode" -}}
{{- if .Values.socket.mode -}}
{{- if and (ne .Values.socket.mode "hostPath") (not .Values.csi.enabled) -}}
{{- fail (printf "socket.mode %s needs the CSI plugin: set csi.enabled=true" .Values.socket.mode) -}}
{{- end -}}
{{- .Values.socket.mode -}}
{{- else -}}
{{- ternary "auto" "hostPath" .Values.csi.enabled -}}
{{- end -}}
{{- end -}}

{{/* The namespace label that grants the socket: socket.namespaceLabel, else csi.namespaceLabel
where the CSI plugin is installed (it never grants the socket without a label). */}}
{{- define "dragonfly-injector.socketLabel" -}}
{{- if .Values.socket.namespaceLabel -}}
{{- .Values.socket.namespaceLabel -}}
{{- else if .Values.csi.enabled -}}
{{- required "csi.namespaceLabel: the CSI plugin grants the socket only to namespaces with a label" .Values.csi.namespaceLabel -}}
{{- end -}}
{{- end -}}

{{/* The host directory that holds dfdaemon's socket, which the CSI plugin publishes. */}}
{{- define "dragonfly-injector.socketDir" -}}
{{- dir (include "dragonfly-injector.socketPath" .) -}}
{{- end -}}

{{/* The webhook's config file, built from values (see the README's Configuration section). */}}
{{- define "dragonfly-injector.config" -}}
{{- $tools := dict
  "image" (include "dragonfly-injector.imageRef" (dict "root" . "image" .Values.tools.image))
  "pullPolicy" .Values.tools.pullPolicy
  "mountPath" .Values.tools.mountPath
  "resources" .Values.tools.resources
  "imagePullSecrets" .Values.tools.pullSecrets
  "pinning" .Values.tools.pinning
  "refreshInterval" .Values.tools.refreshInterval
  "architectures" .Values.tools.architectures
  "checkNodeArchitectures" .Values.tools.checkNodeArchitectures
  "path" .Values.tools.path
  "binaries" .Values.tools.binaries
  "linkDir" .Values.tools.linkDir -}}
{{- if .Values.tools.runAsUser -}}
{{- $_ := set $tools "runAsUser" (int .Values.tools.runAsUser) -}}
{{- end -}}
{{- $registry := dict "plainHttp" .Values.registry.plainHttp "timeout" .Values.registry.timeout -}}
{{- if .Values.registry.dockerConfigSecret -}}
{{- $_ := set $registry "dockerConfig" "/etc/dragonfly-injector/registry/.dockerconfigjson" -}}
{{- end -}}
{{- if .Values.registry.caBundle -}}
{{- $_ := set $registry "caBundle" "/etc/dragonfly-injector/config/registry-ca.pem" -}}
{{- end -}}
{{- $socket := dict "enabled" .Values.socket.enabled "path" (include "dragonfly-injector.socketPath" .) "mode" (include "dragonfly-injector.socketMode" .) -}}
{{- with include "dragonfly-injector.socketLabel" . -}}
{{- $_ := set $socket "namespaceLabel" . -}}
{{- end -}}
{{- if .Values.csi.enabled -}}
{{- $_ := set $socket "csiDriver" .Values.csi.driverName -}}
{{- end -}}
{{- $config := dict
  "proxy" (dict "port" (int (include "dragonfly-injector.proxyPort" .)) "hostFrom" .Values.proxy.hostFrom "envName" .Values.proxy.envName)
  "socket" $socket
  "tools" $tools
  "transferFromDfdaemon" .Values.transferFromDfdaemon
  "excludeNamespaces" .Values.excludeNamespaces
  "registry" $registry
  "limits" (dict "containers" (int .Values.limits.containers) "patchBytes" (int .Values.limits.patchBytes)) -}}
{{- toYaml $config -}}
{{- end -}}
