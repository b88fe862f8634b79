#!/usr/bin/env bash
# Builds golangci-lint from the Go module proxy into bin/golangci-lint (the
# module in hack/tools/lint pins it, so it stays out of the operator's
# go.mod). Rebuilt only when bin/golangci-lint is missing or its stamp file
# records another version, so repeated make targets cost nothing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
mod=$root/hack/tools/lint
version=$(cd "$mod" && go list -m -f '{{.Version}}' github.com/golangci/golangci-lint/v2)
mkdir -p "$bin"
if [ -x "$bin/golangci-lint" ] && [ "$(cat "$bin/.golangci-lint.version" 2>/dev/null)" = "$version" ]; then
	exit 0
fi
echo "building golangci-lint $version..." >&2
rm -f "$bin/.golangci-lint.version"
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" \
	-o "$bin/golangci-lint.tmp" github.com/golangci/golangci-lint/v2/cmd/golangci-lint)
mv -f "$bin/golangci-lint.tmp" "$bin/golangci-lint"
echo "$version" > "$bin/.golangci-lint.version"
