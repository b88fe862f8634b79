#!/usr/bin/env bash
# Generates the client-go style clients of api/v1alpha1 into pkg/client, with
# k8s.io/code-generator's and k8s.io/kube-openapi's generators at the versions
# go.mod pins (its `tool` lines; `go tool` builds them from the Go module
# cache and caches the binaries):
#
#   pkg/client/openapi                     openapi-gen: the types' OpenAPI definitions
#   pkg/client/applyconfiguration          applyconfiguration-gen, with the
#                                          structured-merge schema taken from those
#                                          definitions (cmd/models-schema)
#   pkg/client/clientset/versioned         client-gen: typed clients, Apply included
#   pkg/client/listers                     lister-gen
#   pkg/client/informers/externalversions  informer-gen
#
# Deepcopy stays with controller-gen (`make generate` runs both). Every output
# folder is emptied first, so a type or verb that goes away leaves no file
# behind, and `make verify` sees the difference.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${ROOT}"

MODULE="github.com/meerkat-ops/ops-operator"
API_PKG="${MODULE}/api/v1alpha1"
OUT="pkg/client"
OUT_PKG="${MODULE}/${OUT}"
HEADER="hack/boilerplate.go.txt"
V="${KUBE_VERBOSE:-0}"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

echo "openapi-gen"
rm -f "${OUT}/openapi/zz_generated.openapi.go"
# The apimachinery packages are inputs for the types ours refer to
# (ObjectMeta, Condition, MicroTime, Duration). API rule violations (list
# types and the like, which the CRD's markers already cover) are reported to
# a scratch file instead of failing the run.
go tool openapi-gen -v "${V}" \
	--go-header-file "${HEADER}" \
	--output-dir "${OUT}/openapi" \
	--output-pkg "${OUT_PKG}/openapi" \
	--output-file zz_generated.openapi.go \
	--report-filename "${tmp}/api-violations.list" \
	k8s.io/apimachinery/pkg/apis/meta/v1 \
	k8s.io/apimachinery/pkg/runtime \
	k8s.io/apimachinery/pkg/version \
	"${API_PKG}"

echo "models-schema"
go run ./"${OUT}"/openapi/cmd/models-schema >"${tmp}/openapi-schema.json"

echo "applyconfiguration-gen"
rm -rf "${OUT}/applyconfiguration"
go tool applyconfiguration-gen -v "${V}" \
	--go-header-file "${HEADER}" \
	--output-dir "${OUT}/applyconfiguration" \
	--output-pkg "${OUT_PKG}/applyconfiguration" \
	--openapi-schema "${tmp}/openapi-schema.json" \
	"${API_PKG}"

echo "client-gen"
rm -rf "${OUT}/clientset"
go tool client-gen -v "${V}" \
	--go-header-file "${HEADER}" \
	--output-dir "${OUT}/clientset" \
	--output-pkg "${OUT_PKG}/clientset" \
	--clientset-name versioned \
	--input-base "${MODULE}" \
	--input api/v1alpha1 \
	--apply-configuration-package "${OUT_PKG}/applyconfiguration"

echo "lister-gen"
rm -rf "${OUT}/listers"
go tool lister-gen -v "${V}" \
	--go-header-file "${HEADER}" \
	--output-dir "${OUT}/listers" \
	--output-pkg "${OUT_PKG}/listers" \
	"${API_PKG}"

echo "informer-gen"
rm -rf "${OUT}/informers"
go tool informer-gen -v "${V}" \
	--go-header-file "${HEADER}" \
	--output-dir "${OUT}/informers" \
	--output-pkg "${OUT_PKG}/informers" \
	--versioned-clientset-package "${OUT_PKG}/clientset/versioned" \
	--listers-package "${OUT_PKG}/listers" \
	"${API_PKG}"
