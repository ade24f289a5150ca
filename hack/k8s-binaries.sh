#!/usr/bin/env bash
# Builds Kubernetes binaries from the Go module proxy and caches them outside
# the repo. setup-envtest and release downloads cannot be used: this machine
# reaches no host but the module proxy (and Debian's and npm's registries).
#
#   k8s-binaries.sh          kube-apiserver, etcd, kubectl (what envtest needs)
#   k8s-binaries.sh node     those, plus kube-controller-manager,
#                            kube-scheduler, kubelet, kube-proxy and CoreDNS
#                            (what hack/cluster.sh runs)
#
# Prints the directory holding the binaries on its last line (stdout);
# progress goes to stderr. Safe to run concurrently: a lock serialises
# builders.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.6}"
COREDNS_VERSION="${COREDNS_VERSION:-1.15.0}"
STAGING_VERSION="v0.${K8S_VERSION#1.}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/quota-operator"
BIN_DIR="${CACHE_ROOT}/k8s-v${K8S_VERSION}"

K8S_COMMANDS=(kube-apiserver kubectl)
WANT=(etcd kube-apiserver kubectl)
case "${1:-envtest}" in
  envtest) ;;
  node)
    K8S_COMMANDS+=(kube-controller-manager kube-scheduler kubelet kube-proxy)
    WANT+=(kube-controller-manager kube-scheduler kubelet kube-proxy "coredns-v${COREDNS_VERSION}")
    ;;
  *) echo "usage: $0 [envtest|node]" >&2; exit 2 ;;
esac

log() { echo "k8s-binaries: $*" >&2; }

missing() {
  local b
  for b in "$@"; do [[ -x "${BIN_DIR}/${b}" ]] || echo "${b}"; done
}

if [[ -z "$(missing "${WANT[@]}")" ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

mkdir -p "${CACHE_ROOT}"
exec 9>"${CACHE_ROOT}/.build.lock"
log "waiting for the build lock ${CACHE_ROOT}/.build.lock"
flock 9
if [[ -z "$(missing "${WANT[@]}")" ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
mkdir -p "${BIN_DIR}"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

# scratch_module DIR MODULE@VERSION PACKAGE...: a throwaway module in DIR that
# requires MODULE and imports each PACKAGE, so `go build PACKAGE` resolves.
scratch_module() {
  local dir="$1" require="$2"
  shift 2
  mkdir -p "${dir}"
  cd "${dir}"
  go mod init "quotaops.dev/scratch-$(basename "${dir}")" >/dev/null 2>&1
  go mod edit -require="${require}"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "%s"\n' "$@"
    printf ')\n'
  } > tools.go
}

build_kubernetes() {
  local cmds=("$@")
  log "building ${cmds[*]} v${K8S_VERSION} from the Go module proxy (first time: about 5 minutes on 2 cores, 4 more for the node's)"
  scratch_module "${work}/k8s" "k8s.io/kubernetes@v${K8S_VERSION}" "${cmds[@]/#/k8s.io/kubernetes/cmd/}"
  # k8s.io/kubernetes points its staging repos at ./staging; pin each to the
  # published module of the same release instead.
  local gomod staging repo cmd
  gomod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  staging="$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "${gomod}")"
  if [[ -z "${staging}" ]]; then
    log "found no staging replacements in ${gomod}"
    exit 1
  fi
  for repo in ${staging}; do
    go mod edit -replace="${repo}=${repo}@${STAGING_VERSION}"
  done
  go mod tidy >&2
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/client-go/pkg/version.gitVersion=v${K8S_VERSION}"
  for cmd in "${cmds[@]}"; do
    go build -trimpath -ldflags "${ldflags}" -o "${BIN_DIR}/${cmd}" "k8s.io/kubernetes/cmd/${cmd}"
  done
}

build_etcd() {
  log "building etcd v${ETCD_VERSION} from the Go module proxy"
  scratch_module "${work}/etcd" "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" go.etcd.io/etcd/server/v3
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "${BIN_DIR}/etcd" go.etcd.io/etcd/server/v3
}

build_coredns() {
  log "building CoreDNS v${COREDNS_VERSION} from the Go module proxy"
  scratch_module "${work}/coredns" "github.com/coredns/coredns@v${COREDNS_VERSION}" github.com/coredns/coredns
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "${BIN_DIR}/coredns-v${COREDNS_VERSION}" github.com/coredns/coredns
}

todo=" $(missing "${WANT[@]}" | tr '\n' ' ')"
[[ "${todo}" != *" etcd "* ]] || build_etcd
k8s=()
for cmd in "${K8S_COMMANDS[@]}"; do
  [[ "${todo}" != *" ${cmd} "* ]] || k8s+=("${cmd}")
done
[[ ${#k8s[@]} -eq 0 ]] || build_kubernetes "${k8s[@]}"
[[ "${todo}" != *" coredns-"* ]] || build_coredns
log "binaries ready in ${BIN_DIR}"
echo "${BIN_DIR}"
