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
manifests: ## Generate the CRDs and the RBAC role from markers (first the lifecycle's CEL rules, by hack/celgen).
	go run ./hack/celgen
	$(CONTROLLER_GEN) rbac:roleName=ops-operator-manager crd:allowDangerousTypes=true paths="./api/...;./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: ## Generate deepcopy code (controller-gen) and the client-go clients in pkg/client (hack/update-codegen.sh).
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
	hack/update-codegen.sh

.PHONY: verify
GENERATED := api/v1alpha1/zz_generated.deepcopy.go pkg/client config/crd/bases config/rbac/role.yaml docs/metrics.md dist/chart
# CELGEN_FILE is hand-written except the CEL rules tagged "// +celgen:",
# which hack/celgen writes from pkg/lifecycle's table. It is not in GENERATED,
# where any uncommitted edit of it would fail verify: instead, verify checks
# only those rules as committed (HEAD) against the table, so a hand edit of a
# generated rule, or a table change without make manifests, fails like a
# stale CRD does.
CELGEN_FILE := api/v1alpha1/operation_types.go

.PHONY: metrics-doc
metrics-doc: ## Write docs/metrics.md from the registered collectors.
	go run ./hack/metricsdoc > docs/metrics.md

verify: manifests generate metrics-doc chart fmt-check ## Regenerate everything and fail if the committed files differ.
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
		echo "generated files are out of date; run 'make manifests generate' and commit:"; \
		git status --porcelain -- $(GENERATED); git --no-pager diff -- $(GENERATED) | head -50; exit 1; fi
	@git show HEAD:$(CELGEN_FILE) | go run ./hack/celgen -check - || { \
		echo "the CEL rules hack/celgen writes in the committed $(CELGEN_FILE) are out of date; run 'make manifests' and commit"; exit 1; }

.PHONY: fmt
fmt: ## Rewrite every Go file with gofmt.
	gofmt -w $$(git ls-files '*.go')

.PHONY: fmt-check
fmt-check: ## Fail when gofmt would change a Go file.
	@files=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$files" ]; then echo "gofmt would change these files; run 'make fmt':"; echo "$$files"; exit 1; fi

# The pure packages and unit tests: no control plane, seconds.
UNIT_PACKAGES := ./api/... ./pkg/lifecycle/... ./pkg/admission/... ./pkg/retention/... ./pkg/health/... ./pkg/opsclient/... ./controllers/... ./internal/plugin/... ./hack/celgen/...

.PHONY: test-unit
test-unit: ## Run the unit tests of the pure packages only (no control plane).
	go test -count=1 $(UNIT_PACKAGES)

.PHONY: vet
vet: ## go vet, the bench's own module included.
	go vet ./...
	cd hack/bench && go vet ./...

.PHONY: lint
# hack/bench and hack/image are their own modules, which ./... does not
# reach: each is linted from its folder with the same config. Its path rules
# match paths relative to .golangci.yml's folder (hack/bench/...), so
# kubeapilinter, scoped to ^api/, reports nothing there.
lint: ## Run golangci-lint (.golangci.yml; built into bin/ from hack/tools/lint) on the operator, hack/bench and hack/image.
	hack/build-lint.sh
	$(BIN)/golangci-lint run ./...
	cd hack/bench && $(BIN)/golangci-lint run --config $(CURDIR)/.golangci.yml ./...
	cd hack/image && $(BIN)/golangci-lint run --config $(CURDIR)/.golangci.yml ./...

.PHONY: controlplane
controlplane: ## Build kube-apiserver, kube-controller-manager, etcd and kubectl into bin/ (skipped when present).
	KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/build-controlplane.sh

.PHONY: helm
helm: ## Build the helm CLI (hack/tools/helm) into bin/helm (skipped when present); the tests render dist/chart with it.
	hack/build-helm.sh

.PHONY: test
test: verify vet lint controlplane helm test-image ## Run every test: lint, unit, fuzz seeds, and the envtest suite.
	cd hack/bench && go test $(TEST_FLAGS) ./...
	go test $(TEST_FLAGS) ./...

.PHONY: test-image
test-image: ## Build the image into a temp dir and check it: config, files, --help, push to an in-process registry (hack/image).
	cd hack/image && go vet ./... && go test $(TEST_FLAGS) ./...

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

IMG ?= ghcr.io/meerkat-ops/ops-operator:dev

.PHONY: build-installer
build-installer: controlplane ## Render config/default with IMG into one dist/install.yaml (kubectl apply --server-side -f dist/install.yaml).
	hack/build-installer.sh $(IMG) dist/install.yaml

.PHONY: chart
chart: ## Copy the CRDs, the admission policy and the ClusterRoles from config/ into the Helm chart (dist/chart).
	hack/sync-chart.sh

# make image: no container engine; hack/image (its own Go module) packs the
# static manager for IMAGE_PLATFORMS with go-containerregistry. Version label:
# IMG's tag when it names a release (v1.2.3), else git describe; created:
# SOURCE_DATE_EPOCH, else the HEAD commit's time, so rebuilds are identical.
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: image
image: ## Build the manager image for IMAGE_PLATFORMS into dist/image (OCI layout) and dist/image.tar, without Docker.
	cd hack/image && go run . build -root $(CURDIR) -out $(CURDIR)/dist/image -tar $(CURDIR)/dist/image.tar \
		-image $(IMG) -platforms $(IMAGE_PLATFORMS)

.PHONY: image-push
image-push: image ## Push the image index to IMG=registry/repo:tag (credentials from docker/podman login).
	cd hack/image && go run . push -layout $(CURDIR)/dist/image -image $(IMG)

.PHONY: deploy
deploy: ## Deploy CRDs, policy, roles and the manager with kustomize (needs an image; see config/manager).
	kubectl apply -k config/default

.PHONY: bench
bench: controlplane build ## Run the lifecycle benchmark (see docs/benchmarks.md); hack/bench is its own module.
	cd hack/bench && go build -o $(BIN)/bench .
	$(BIN)/bench --bin $(BIN) $(BENCH_ARGS)

.PHONY: help
help:
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
