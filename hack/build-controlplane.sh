#!/usr/bin/env bash
# Builds the real control plane (kube-apiserver, kube-controller-manager,
# etcd, kubectl) from the Go module proxy into bin/. Each binary is rebuilt
# only when bin/ lacks it or a stamp file records a different version, so
# repeated make targets cost nothing.
#
# kubectl is not compiled when a supported one is already on PATH: kubectl's
# version skew policy supports a client within one minor version of the API
# server (v1.36 to v1.38 for v1.37), so such a kubectl is linked into bin/
# instead (the tests and `make run`'s PATH hint use bin/kubectl). Any other
# kubectl on PATH (older, newer, or none) means bin/kubectl is built.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CONTROLPLANE_BIN:-$root/bin}
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

build_kube() {
	echo "building $1 $KUBE_VERSION (first build takes a few minutes)..." >&2
	rm -f "$bin/.$1.version"
	(cd "$root/hack/tools/kube" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$bin/$1.tmp" "k8s.io/kubernetes/cmd/$1")
	mv -f "$bin/$1.tmp" "$bin/$1"
	echo "$KUBE_VERSION" > "$bin/.$1.version"
}

# kubectl_version prints the gitVersion (vMAJOR.MINOR.PATCH...) of kubectl $1.
kubectl_version() {
	"$1" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\(v[0-9][^"]*\)".*/\1/p' | head -1
}

# kubectl_supported succeeds when kubectl version $1 is within one minor of
# KUBE_VERSION (same major).
kubectl_supported() {
	local want=${KUBE_VERSION#v} got=${1#v}
	[[ $got =~ ^([0-9]+)\.([0-9]+)\. ]] || return 1
	local gmaj=${BASH_REMATCH[1]} gmin=${BASH_REMATCH[2]}
	[[ $want =~ ^([0-9]+)\.([0-9]+)\. ]] || return 1
	local wmaj=${BASH_REMATCH[1]} wmin=${BASH_REMATCH[2]}
	[ "$gmaj" = "$wmaj" ] && [ $((gmin - wmin)) -le 1 ] && [ $((wmin - gmin)) -le 1 ]
}

# path_kubectl prints the first kubectl on PATH, outside bin/, whose version is
# supported, as "path version"; nothing when there is none.
path_kubectl() {
	local dir k v real seen=:
	local IFS=:
	for dir in $PATH; do
		k="$dir/kubectl"
		[ -n "$dir" ] && [ -x "$k" ] && [ ! -d "$k" ] || continue
		[ "$(cd "$dir" 2>/dev/null && pwd -P)" = "$(cd "$bin" && pwd -P)" ] && continue
		real=$(readlink -f "$k")
		[[ $seen == *":$real:"* ]] && continue
		seen="$seen$real:"
		v=$(kubectl_version "$k")
		if kubectl_supported "$v"; then
			echo "$real $v"
			return 0
		fi
		echo "kubectl $v at $k is not within one minor version of $KUBE_VERSION; not using it" >&2
	done
}

for cmd in kube-apiserver kube-controller-manager; do
	stamp_ok "$cmd" "$KUBE_VERSION" || build_kube "$cmd"
done

# bin/kubectl is either built ($KUBE_VERSION in the stamp) or a link to a
# supported kubectl found on PATH ("path <file> <version>"); a link is checked
# again each time, in case that kubectl changed.
kubectl_stamp=$(cat "$bin/.kubectl.version" 2>/dev/null || true)
if [ -x "$bin/kubectl" ] && [ "$kubectl_stamp" = "$KUBE_VERSION" ]; then
	:
elif [ -x "$bin/kubectl" ] && [ -L "$bin/kubectl" ] && [[ $kubectl_stamp == "path "* ]] &&
	kubectl_supported "$(kubectl_version "$bin/kubectl")"; then
	:
else
	found=$(path_kubectl)
	if [ -n "$found" ]; then
		rm -f "$bin/kubectl" "$bin/.kubectl.version"
		ln -s "${found% *}" "$bin/kubectl"
		echo "path $found" > "$bin/.kubectl.version"
		echo "using kubectl ${found#* } from ${found% *} (within one minor of $KUBE_VERSION), linked as bin/kubectl instead of building it" >&2
	else
		rm -f "$bin/kubectl"
		build_kube kubectl
	fi
fi

if ! stamp_ok etcd "$ETCD_VERSION"; then
	echo "building etcd $ETCD_VERSION..." >&2
	(cd "$root/hack/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
	echo "$ETCD_VERSION" > "$bin/.etcd.version"
fi
