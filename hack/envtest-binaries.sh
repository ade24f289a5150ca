#!/usr/bin/env bash
# Builds the control-plane binaries envtest needs (kube-apiserver, etcd) plus a
# matching kubectl from the Go module proxy and caches them outside the repo.
# setup-envtest cannot be used: it downloads from hosts this machine cannot reach.
#
# Prints the directory holding the binaries on its last line (stdout); progress
# goes to stderr. Safe to run concurrently: a lock serialises builders.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.6}"
STAGING_VERSION="v0.${K8S_VERSION#1.}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/quota-operator"
BIN_DIR="${CACHE_ROOT}/k8s-v${K8S_VERSION}"

log() { echo "envtest-binaries: $*" >&2; }

have_all() {
  [[ -x "${BIN_DIR}/kube-apiserver" && -x "${BIN_DIR}/etcd" && -x "${BIN_DIR}/kubectl" ]]
}

if have_all; then
  echo "${BIN_DIR}"
  exit 0
fi

mkdir -p "${CACHE_ROOT}"
exec 9>"${CACHE_ROOT}/.build.lock"
log "waiting for the build lock ${CACHE_ROOT}/.build.lock"
flock 9
if have_all; then
  echo "${BIN_DIR}"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
mkdir -p "${BIN_DIR}"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

build_kubernetes() {
  local mod="${work}/k8s"
  mkdir -p "${mod}"
  cd "${mod}"
  log "building kube-apiserver and kubectl v${K8S_VERSION} from the Go module proxy (first time: about 5 minutes on 2 cores)"
  go mod init quotaops.dev/envtest-k8s >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@v${K8S_VERSION}"
  # k8s.io/kubernetes points its staging repos at ./staging; pin each to the
  # published module of the same release instead.
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  local staging
  staging="$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "${gomod}")"
  if [[ -z "${staging}" ]]; then
    log "found no staging replacements in ${gomod}"
    exit 1
  fi
  local repo
  for repo in ${staging}; do
    go mod edit -replace="${repo}=${repo}@${STAGING_VERSION}"
  done
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/client-go/pkg/version.gitVersion=v${K8S_VERSION}" \
    -o "${BIN_DIR}/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/client-go/pkg/version.gitVersion=v${K8S_VERSION}" \
    -o "${BIN_DIR}/kubectl" k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local mod="${work}/etcd"
  mkdir -p "${mod}"
  cd "${mod}"
  log "building etcd v${ETCD_VERSION} from the Go module proxy"
  go mod init quotaops.dev/envtest-etcd >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "${BIN_DIR}/etcd" go.etcd.io/etcd/server/v3
}

[[ -x "${BIN_DIR}/etcd" ]] || build_etcd
[[ -x "${BIN_DIR}/kube-apiserver" && -x "${BIN_DIR}/kubectl" ]] || build_kubernetes
log "binaries ready in ${BIN_DIR}"
echo "${BIN_DIR}"
