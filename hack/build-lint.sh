#!/usr/bin/env bash
# Builds golangci-lint with kube-api-linter (KAL) compiled in as the
# "kubeapilinter" module plugin from the Go module proxy into bin/golangci-lint:
# hack/tools/lint/cmd/golangci-lint-kal is golangci-lint's main plus the
# plugin's blank import, which is what `golangci-lint custom` would generate
# without its git clone. The module in hack/tools/lint pins both, so they stay
# out of the operator's go.mod. Rebuilt only when bin/golangci-lint is missing
# or its stamp file records other versions, so repeated make targets cost
# nothing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
mod=$root/hack/tools/lint
version=$(cd "$mod" && go list -m -f '{{.Path}}@{{.Version}}' \
	github.com/golangci/golangci-lint/v2 sigs.k8s.io/kube-api-linter | paste -sd ' ' -)
mkdir -p "$bin"
if [ -x "$bin/golangci-lint" ] && [ "$(cat "$bin/.golangci-lint.version" 2>/dev/null)" = "$version" ]; then
	exit 0
fi
echo "building golangci-lint with kube-api-linter ($version)..." >&2
rm -f "$bin/.golangci-lint.version"
# The main reads both versions from its build info (`golangci-lint version`).
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
	-o "$bin/golangci-lint.tmp" ./cmd/golangci-lint-kal)
mv -f "$bin/golangci-lint.tmp" "$bin/golangci-lint"
echo "$version" > "$bin/.golangci-lint.version"
