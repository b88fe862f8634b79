#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy into bin/helm (the module in
# hack/tools/helm pins it, so helm stays out of the operator's go.mod). It is
# rebuilt only when bin/helm is missing or its stamp file records another
# version, so repeated make targets cost nothing. `make test` needs it: the
# envtest suite renders dist/chart with it (test/envtest/install_test.go).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CONTROLPLANE_BIN:-$root/bin}
mod=$root/hack/tools/helm
# The version is the one hack/tools/helm/go.mod requires.
HELM_VERSION=$(cd "$mod" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
mkdir -p "$bin"

if [ -x "$bin/helm" ] && [ "$(cat "$bin/.helm.version" 2>/dev/null)" = "$HELM_VERSION" ]; then
	exit 0
fi

echo "building helm $HELM_VERSION..." >&2
rm -f "$bin/.helm.version"
# The Kubernetes version helm assumes when rendering offline (helm template's
# .Capabilities.KubeVersion) is that of its client-go, as in helm's own build.
kube=$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/client-go)
kminor=${kube#v0.}; kminor=${kminor%%.*}
kmajor=1
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$kmajor -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor"
ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$kmajor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kminor"
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/helm.tmp" helm.sh/helm/v3/cmd/helm)
mv -f "$bin/helm.tmp" "$bin/helm"
echo "$HELM_VERSION" > "$bin/.helm.version"
