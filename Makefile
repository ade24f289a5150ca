# quota-operator. `make test` sets up everything it needs on a fresh machine:
# pinned tools, the Kubernetes binaries for envtest and the one-node cluster
# (built from the Go module proxy, cached outside the repo), redis-server,
# containerd, runc and the CNI plugins (apt-get).

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# Pinned tool versions.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION    ?= v2.15.0
KUSTOMIZE_VERSION        ?= v5.8.2
K8S_VERSION              ?= 1.37.2
ETCD_VERSION             ?= 3.6.6
COREDNS_VERSION          ?= 1.15.0
export K8S_VERSION ETCD_VERSION COREDNS_VERSION

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/quota-operator
LOCALBIN  ?= $(CACHE_DIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT  ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
KUSTOMIZE      ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)

# Two cores: two test packages at a time, each starting its own servers.
GO_TEST_FLAGS ?= -race -count=1 -p 2 -timeout 20m
BENCH_FLAGS   ?= -run '^$$' -bench . -benchmem -benchtime 2000x
# Enough decisions per case for a p99 from 64 callers.
LIMITER_BENCH_FLAGS ?= -run '^$$' -bench . -benchtime 20000x

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Try it

STORE         ?= memory://
DEMO_DURATION ?=

.PHONY: demo
demo: ## A local API server, the manager and a sidecar on STORE (default memory://), the samples, traffic and a summary. Ctrl-C stops it; DEMO_DURATION=0s stops after the summary.
	@if [ ! -x "$(CACHE_DIR)/k8s-v$(K8S_VERSION)/kube-apiserver" ]; then \
		echo "First run: building kube-apiserver, etcd and kubectl $(K8S_VERSION) from the Go module proxy."; \
		echo "This takes about 5 minutes once; they are cached in $(CACHE_DIR). Ctrl-C stops it."; fi
	@assets="$$(bash hack/k8s-binaries.sh)"; \
	echo "Building bin/quota-operator and bin/demo"; \
	$(MAKE) --no-print-directory build >/dev/null; \
	go build -o bin/demo ./hack/demo; \
	KUBEBUILDER_ASSETS="$$assets" bin/demo --binary bin/quota-operator --store '$(STORE)' --duration '$(DEMO_DURATION)'

##@ Development

.PHONY: fmt
fmt: ## Format the Go code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: fmt-check
fmt-check: ## Fail when a Go file is not gofmt-formatted.
	@out=$$(gofmt -s -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## Run go vet (also on the one-node cluster test, behind its build tag).
	go vet ./...
	go vet -tags cluster ./test/cluster/

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (pinned), the one-node cluster test included.
	$(GOLANGCI_LINT) run --build-tags cluster ./...

.PHONY: generate
generate: controller-gen ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: manifests
manifests: controller-gen ## Generate CRDs, RBAC and webhook manifests, and the Helm chart's parts made from them.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases
	@$(MAKE) --no-print-directory chart

.PHONY: chart
chart: kustomize ## Generate charts/quota-operator's crds/ and templates from config/ (hack/chartgen).
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for part in base redis redis-ha prometheus grafana gateway; do $(KUSTOMIZE) build config/$$part > "$$tmp/$$part.yaml" || exit 1; done; \
	$(KUSTOMIZE) build config/overlays/cert-manager > "$$tmp/cert-manager.yaml" || exit 1; \
	go run ./hack/chartgen --base "$$tmp/base.yaml" --redis "$$tmp/redis.yaml" --redis-ha "$$tmp/redis-ha.yaml" --prometheus "$$tmp/prometheus.yaml" \
		--grafana "$$tmp/grafana.yaml" --gateway "$$tmp/gateway.yaml" --cert-manager "$$tmp/cert-manager.yaml" --out charts/quota-operator

.PHONY: verify
verify: generate manifests fmt-check vet ## Fail when generated code or manifests are stale.
	@if [ -n "$$(git status --porcelain -- api config charts)" ]; then \
		echo "Generated files are stale; run 'make generate manifests' and commit:"; \
		git status --porcelain -- api config charts; git diff --stat -- api config charts; exit 1; fi

.PHONY: test
test: test-unit test-fuzz test-node ## Everything: checks, every test against real Redis and a real API server, each fuzz target briefly, then the one-node cluster test (root).

.PHONY: test-fuzz
test-fuzz: ## Every fuzz target for a fixed budget (CI_FUZZTIME: 10000 inputs each; a count, since a duration races the fuzz coordinator's deadline, golang/go#75804).
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(CI_FUZZTIME)

.PHONY: test-unit
test-unit: verify lint envtest redis-server ## Checks, then every test against real Redis and a real API server (no root needed).
	KUBEBUILDER_ASSETS="$$(bash hack/k8s-binaries.sh)" go test $(GO_TEST_FLAGS) ./...

.PHONY: test-node
test-node: ## cluster-up, test-cluster, test-upgrade, cluster-down (also when a test fails).
	@$(MAKE) --no-print-directory cluster-up
	@status=0; $(MAKE) --no-print-directory test-cluster test-upgrade || status=$$?; \
	$(MAKE) --no-print-directory cluster-down; exit $$status

.PHONY: bench
bench: redis-server ## Run the benchmarks (store operations; limiter and sidecar decisions/s, p50/p99, commands per decision, ratios to redis-benchmark), then bench-compare.
	go test $(BENCH_FLAGS) ./internal/store/...
	go test $(LIMITER_BENCH_FLAGS) ./internal/limiter/ ./internal/sidecar/
	$(MAKE) bench-compare

# RATELIMIT_BIN: a build of envoyproxy/ratelimit, to measure the anchor in
# the same run (docs/performance.md says how to build one).
.PHONY: bench-compare
bench-compare: redis-server ## Measure the sidecar process against the floor, a bare proxy and RATELIMIT_BIN in one run (print the targets' ratios), the config fan-out to FANOUT_SIDECARS processes, and one sidecar's footprint (memory, connections, idle Redis CPU) per program.
	go test -run '^$$' -bench 'Compare|FanOut|RedisPerDecision|Footprint' -benchtime 1x -timeout 30m ./test/bench/

FUZZTIME ?= 30s
CI_FUZZTIME ?= 10000x

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 30s) each.
	@git grep -l '^func Fuzz' -- '*_test.go' | while read -r f; do \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
			echo "go test -run '^$$' -fuzz '^$$target\$$' -fuzztime $(FUZZTIME) ./$$(dirname "$$f")/"; \
			go test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) ./$$(dirname "$$f")/ || exit 1; \
		done; \
	done

##@ Build

.PHONY: build
build: ## Build bin/quota-operator, the sidecar alone bin/quota-sidecar, and the kubectl plugin bin/kubectl-quota (put it on PATH: `kubectl quota`).
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o bin/quota-operator ./cmd/quota-operator
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/quota-sidecar ./cmd/quota-sidecar
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o bin/kubectl-quota ./cmd/kubectl-quota

IMG     ?= quotaops.local/quota-operator:$(VERSION)
KUBECTL ?= kubectl
DEPLOY  ?= default

.PHONY: image
image: build ## Write bin/images/quota-operator.tar, the image IMG, from bin/quota-operator and bin/quota-sidecar (what the webhook injects): no Docker, no base image, non-root 65532.
	@mkdir -p bin/images
	go run ./hack/image --tag $(IMG) --out bin/images/quota-operator.tar \
		--file bin/quota-operator=/quota-operator --file bin/quota-sidecar=/quota-sidecar --entrypoint /quota-operator --user 65532:65532

PLATFORMS ?= amd64,arm64

.PHONY: image-multiarch
image-multiarch: ## Write bin/images/quota-operator-multiarch.tar: IMG for each of PLATFORMS (amd64,arm64), one index, as an OCI layout; no Docker.
	@for arch in $$(echo $(PLATFORMS) | tr , ' '); do \
		echo "go build linux/$$arch"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch go build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)" \
			-o bin/linux_$$arch/quota-operator ./cmd/quota-operator || exit 1; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
			-o bin/linux_$$arch/quota-sidecar ./cmd/quota-sidecar || exit 1; \
	done
	@mkdir -p bin/images
	go run ./hack/image --tag $(IMG) --out bin/images/quota-operator-multiarch.tar --arch $(PLATFORMS) \
		--file 'bin/linux_{arch}/quota-operator=/quota-operator' --file 'bin/linux_{arch}/quota-sidecar=/quota-sidecar' --entrypoint /quota-operator --user 65532:65532

# make release VERSION=vX.Y.Z REGISTRY=host/path writes DIST (default
# dist/): install.yaml and crds.yaml with the image pinned, the packaged
# chart, the image as a multi-architecture OCI layout, the kubectl plugin
# for each platform with a krew manifest, an SBOM and SHA256SUMS. One commit
# and VERSION give byte-identical files (docs/versioning.md).
DIST                   ?= dist
CYCLONEDX_GOMOD_VERSION ?= v1.10.0
PLUGIN_PLATFORMS       ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

.PHONY: release
release: kustomize ## Write DIST (dist/): a release of VERSION (vX.Y.Z) with its image at REGISTRY/quota-operator:VERSION, reproducibly (PLATFORMS, PLUGIN_PLATFORMS: fewer platforms).
	@echo "$(VERSION)" | grep -Eq '^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$$' || { echo "release: VERSION=$(VERSION) is not vX.Y.Z or vX.Y.Z-pre.release"; exit 1; }
	@test -n "$(REGISTRY)" || { echo "release: give REGISTRY=host/path, where the image is pushed"; exit 1; }
	rm -rf "$(DIST)" && mkdir -p "$(DIST)"
	$(MAKE) --no-print-directory build-installer IMG=$(REGISTRY)/quota-operator:$(VERSION) INSTALLER="$(DIST)/install.yaml" REDIS_IMG=
	$(KUSTOMIZE) build config/crd > "$(DIST)/crds.yaml"
	$(MAKE) --no-print-directory image-multiarch IMG=$(REGISTRY)/quota-operator:$(VERSION)
	cp bin/images/quota-operator-multiarch.tar "$(DIST)/quota-operator-$(VERSION).oci.tar"
	@for p in $(PLUGIN_PLATFORMS); do \
		echo "go build kubectl-quota $$p"; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} go build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)" \
			-o bin/release/$${p%/*}-$${p#*/}/kubectl-quota ./cmd/kubectl-quota || exit 1; \
	done
	go run github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$(CYCLONEDX_GOMOD_VERSION) mod -json -noserial -notimestamp \
		-output "$(DIST)/quota-operator-$(VERSION).sbom.cdx.json"
	go run ./hack/release --version $(VERSION) --registry $(REGISTRY) --dist "$(DIST)" --chart charts/quota-operator --plugins bin/release \
		--platforms "$(PLUGIN_PLATFORMS)"
	@echo "$(DIST): release $(VERSION) of $(REGISTRY)/quota-operator"

.PHONY: docker-build
docker-build: ## Build the image IMG with Docker (one image: operator and sidecar).
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMG) .

##@ One-node cluster (this machine, as root)

CLUSTER_DIR ?= /var/lib/quota-operator-cluster
export CLUSTER_DIR
TESTAPP_IMG ?= quotaops.local/testapp:$(VERSION)

.PHONY: cluster-up
cluster-up: ## Start a one-node cluster here (kubelet, containerd, runc, CNI, CoreDNS); writes $(CLUSTER_DIR)/admin.kubeconfig.
	bash hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the one-node cluster and remove every trace of it.
	bash hack/cluster.sh down

.PHONY: cluster-load
cluster-load: image ## Import IMG and the test app's image into the node.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/testapp ./test/cluster/testapp
	go run ./hack/image --tag $(TESTAPP_IMG) --out bin/images/testapp.tar \
		--file bin/testapp=/testapp --entrypoint /testapp --user 65532:65532
	bash hack/cluster.sh load bin/images/quota-operator.tar
	bash hack/cluster.sh load bin/images/testapp.tar

# What test/cluster reads: the cluster, its kubectl and the imported images.
CLUSTER_TEST_ENV = QUOTA_CLUSTER_KUBECONFIG=$(CLUSTER_DIR)/admin.kubeconfig QUOTA_KUBECTL="$$(cat $(CLUSTER_DIR)/bin-dir)/kubectl" \
	QUOTA_IMG=$(IMG) QUOTA_REDIS_IMG="$$(cat $(CLUSTER_DIR)/images/redis.ref)" QUOTA_TESTAPP_IMG=$(TESTAPP_IMG)

.PHONY: test-cluster
test-cluster: cluster-load ## On the running one-node cluster: install config/default with IMG and test it end to end.
	$(CLUSTER_TEST_ENV) go test -tags cluster -count=1 -timeout 20m -v -run '^TestOperatorOnTheNode$$' ./test/cluster/

# UPGRADE_FROM: the release to upgrade from, a version or a commit (default:
# the newest release CHANGELOG.md has before this commit; hack/upgrade.sh).
UPGRADE_FROM ?=

.PHONY: test-upgrade
test-upgrade: cluster-load ## On the running one-node cluster: install the release UPGRADE_FROM (with Helm, then with its install.yaml), upgrade it to this commit's release under load, and test that no request failed, none passed over a limit and no usage was lost.
	@vars=$$(UPGRADE_FROM=$(UPGRADE_FROM) bash hack/upgrade.sh) && echo "$$vars" && \
	env $$vars $(CLUSTER_TEST_ENV) go test -tags cluster -count=1 -timeout 30m -v -run '^TestUpgrade$$' ./test/cluster/

##@ Deployment (the cluster of the current kubeconfig)

.PHONY: install
install: manifests ## Install the CRDs.
	$(KUBECTL) apply -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs, and with them every policy and quota.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: ## Deploy the operator with IMG (and REDIS_IMG, if set) from config/$(DEPLOY) (default: with Redis; or overlays/redis-ha, overlays/redis-less, overlays/cert-manager, overlays/gateway).
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(MAKE) --no-print-directory build-installer INSTALLER="$$tmp/install.yaml" >/dev/null && \
	$(KUBECTL) apply --server-side -f "$$tmp/install.yaml"

INSTALLER ?= dist/install.yaml

.PHONY: build-installer
build-installer: manifests kustomize ## Write dist/install.yaml: config/$(DEPLOY) with IMG (and REDIS_IMG) pinned, one file for kubectl apply -f.
	@mkdir -p "$$(dirname $(INSTALLER))"; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	printf 'resources:\n  - %s\n' "$$(realpath --relative-to="$$tmp" config/$(DEPLOY))" > "$$tmp/kustomization.yaml"; \
	(cd "$$tmp" && $(KUSTOMIZE) edit set image controller=$(IMG)); \
	if [ -n "$(REDIS_IMG)" ]; then (cd "$$tmp" && $(KUSTOMIZE) edit set image redis=$(REDIS_IMG)); fi; \
	$(KUSTOMIZE) build "$$tmp" > "$(INSTALLER)"
	@echo "$(INSTALLER): config/$(DEPLOY) with $(IMG)"

.PHONY: undeploy
undeploy: ## Remove what deploy created.
	$(KUBECTL) kustomize config/$(DEPLOY) | $(KUBECTL) delete --ignore-not-found -f -

##@ Dependencies

.PHONY: envtest
envtest: ## Build (once) and cache kube-apiserver, etcd and kubectl for envtest.
	bash hack/k8s-binaries.sh >/dev/null

.PHONY: redis-server
redis-server: ## Install redis-server and redis-cli with apt-get when missing.
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		echo "Installing redis-server with apt-get"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server redis-tools >/dev/null; \
	fi
	@redis-server --version

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen (pinned).
$(CONTROLLER_GEN):
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Install golangci-lint (pinned).
$(GOLANGCI_LINT):
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Install kustomize (pinned).
$(KUSTOMIZE):
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

# go-install-tool installs $(2)@$(3) as $(1), so each pinned version has its
# own file and a version bump reinstalls. A package path ending in a major
# version (.../kustomize/v5) builds a binary named for the element before.
define go-install-tool
@set -e; mkdir -p $(LOCALBIN); tmp=$$(mktemp -d); \
echo "Installing $(2)@$(3)"; \
GOBIN=$$tmp go install $(2)@$(3); \
bin=$$(basename $(2)); case $$bin in v[0-9]*) bin=$$(basename $$(dirname $(2)));; esac; \
mv $$tmp/$$bin $(1); rm -rf $$tmp
endef
