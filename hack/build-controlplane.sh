#!/usr/bin/env bash
# Builds the real control plane (kube-apiserver, etcd, kubectl) from the Go
# module proxy into bin/. Each binary is rebuilt only when bin/ lacks it or a
# stamp file records a different version, so repeated make targets cost nothing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
mkdir -p "$bin"

stamp_ok() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }

kube_ldflags() {
	local pkg=k8s.io/component-base/version
	local minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
	echo "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor" \
		"-X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
		"-X $pkg.gitCommit=module-proxy-build" \
		"-X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
}

for cmd in kube-apiserver kubectl; do
	if ! stamp_ok "$cmd" "$KUBE_VERSION"; then
		echo "building $cmd $KUBE_VERSION (first build takes a few minutes)..." >&2
		(cd "$root/hack/tools/kube" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd")
		echo "$KUBE_VERSION" > "$bin/.$cmd.version"
	fi
done

if ! stamp_ok etcd "$ETCD_VERSION"; then
	echo "building etcd $ETCD_VERSION..." >&2
	(cd "$root/hack/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
	echo "$ETCD_VERSION" > "$bin/.etcd.version"
fi
