# Every target builds what it needs. The control plane (kube-apiserver,
# kube-controller-manager, etcd, kubectl) is compiled from the Go module proxy
# into bin/ once, then reused; a kubectl on PATH within one minor version of
# KUBE_VERSION is linked into bin/ instead of being compiled.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN        := $(CURDIR)/bin
CONTROLLER_GEN := go tool controller-gen
KUBE_VERSION := v1.37.2
ETCD_VERSION := v3.7.3
export KUBEBUILDER_ASSETS := $(BIN)
# Tests share two cores with the API server they drive.
TEST_FLAGS ?= -count=1 -timeout 40m

.PHONY: all
all: build

##@ Development

.PHONY: manifests
manifests: ## Generate the CRDs and the RBAC role from markers.
	$(CONTROLLER_GEN) rbac:roleName=ops-operator-manager crd:allowDangerousTypes=true paths="./api/...;./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: verify
GENERATED := api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml

verify: manifests generate ## Regenerate everything and fail if the committed files differ.
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
		echo "generated files are out of date; run 'make manifests generate' and commit:"; \
		git status --porcelain -- $(GENERATED); git --no-pager diff -- $(GENERATED) | head -50; exit 1; fi

.PHONY: fmt
fmt:
	go fmt ./...

.PHONY: vet
vet:
	go vet ./...

.PHONY: controlplane
controlplane: ## Build kube-apiserver, kube-controller-manager, etcd and kubectl into bin/ (skipped when present).
	KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/build-controlplane.sh

.PHONY: test
test: verify vet controlplane ## Run every test: unit, fuzz seeds, and the envtest suite.
	go test $(TEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## Fuzz the lifecycle state machine for a minute.
	go test ./pkg/lifecycle -run '^$$' -fuzz FuzzLifecycle -fuzztime 60s

##@ Build and run

.PHONY: build
build: ## Build the manager binary.
	go build -o $(BIN)/manager ./cmd/manager

.PHONY: run
# devcluster: etcd, kube-apiserver and kube-controller-manager (garbage
# collector, namespace controller, ...) on loopback, data in .local/; one per
# data folder (flock), and no process outlives it, even after kill -9.
run: controlplane ## Start a local control plane with the CRDs and run the manager on it.
	go build -o $(BIN)/devcluster ./cmd/devcluster
	exec $(BIN)/devcluster --bin $(BIN) --data .local

.PHONY: install
install: ## Install the CRDs and the admission policy into the cluster in KUBECONFIG.
	kubectl apply --server-side -f config/crd/bases
	kubectl apply --server-side -k config/policy

.PHONY: uninstall
uninstall:
	kubectl delete -k config/policy
	kubectl delete -f config/crd/bases

.PHONY: run-cluster
run-cluster: build ## Run the manager against the cluster in KUBECONFIG (after make install).
	$(BIN)/manager

.PHONY: deploy
deploy: ## Deploy CRDs, policy, roles and the manager with kustomize (needs an image; see config/manager).
	kubectl apply -k config/default

.PHONY: bench
bench: controlplane build ## Run the lifecycle benchmark (see docs/benchmarks.md).
	go run ./cmd/bench --bin $(BIN) $(BENCH_ARGS)

.PHONY: help
help:
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
