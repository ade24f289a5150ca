#!/usr/bin/env bash
# A one-node Kubernetes cluster from real parts, on this machine, as root:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy built from the Go module proxy (hack/k8s-binaries.sh node);
# containerd, runc and the CNI plugins from Debian's packages; CoreDNS built
# from the module proxy. No registry is reachable, so every image (pause,
# CoreDNS, Redis and the project's own) is built here and imported into
# containerd.
#
#   hack/cluster.sh up       start it (idempotent), wait for the node to be
#                            Ready and DNS to answer; prints the kubeconfig
#   hack/cluster.sh load T   import the image tarball T into the node
#   hack/cluster.sh down     stop everything and remove every trace
#
# State, logs and the kubeconfig live in CLUSTER_DIR
# (default /var/lib/quota-operator-cluster); logs in CLUSTER_DIR/logs.
set -euo pipefail

CLUSTER_DIR="${CLUSTER_DIR:-/var/lib/quota-operator-cluster}"
NODE_NAME="${NODE_NAME:-quota-node}"
SERVICE_CIDR="10.96.0.0/16"
KUBERNETES_SVC_IP="10.96.0.1"
DNS_SVC_IP="10.96.0.10"
POD_CIDR="10.88.0.0/16"
ETCD_PORT=23790
APISERVER_PORT=6443
COREDNS_VERSION="${COREDNS_VERSION:-1.15.0}"
HACK_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT_DIR="$(dirname "${HACK_DIR}")"

PKI="${CLUSTER_DIR}/pki"
LOGS="${CLUSTER_DIR}/logs"
RUN="${CLUSTER_DIR}/run"
CONTAINERD_SOCK="${RUN}/containerd.sock"
KUBECONFIG_ADMIN="${CLUSTER_DIR}/admin.kubeconfig"

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- packages

install_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v openssl >/dev/null || missing+=(openssl)
  [[ ${#missing[@]} -eq 0 ]] && return
  log "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- certificates

# cert NAME CN [ORG] [SANS]: a key and a certificate signed by the cluster CA.
cert() {
  local name="$1" cn="$2" org="${3:-}" sans="${4:-}" subj="/CN=$2"
  [[ -n "${org}" ]] && subj="/O=${org}${subj}"
  local ext="${PKI}/${name}.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [[ -n "${sans}" ]] && echo "subjectAltName=${sans}"
  } > "${ext}"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "${subj}" \
    -keyout "${PKI}/${name}.key" -out "${PKI}/${name}.csr" 2>/dev/null
  openssl x509 -req -in "${PKI}/${name}.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" \
    -CAcreateserial -days 365 -extfile "${ext}" -out "${PKI}/${name}.crt" 2>/dev/null
}

make_pki() {
  [[ -f "${PKI}/done" ]] && return
  mkdir -p "${PKI}"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=quota-cluster-ca" -keyout "${PKI}/ca.key" -out "${PKI}/ca.crt" 2>/dev/null
  cert apiserver kube-apiserver "" \
    "IP:${KUBERNETES_SVC_IP},IP:127.0.0.1,IP:${NODE_IP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin admin system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  cert kube-proxy system:kube-proxy system:node-proxier
  cert kubelet "system:node:${NODE_NAME}" system:nodes
  cert kubelet-serving "${NODE_NAME}" "" "IP:${NODE_IP},IP:127.0.0.1,DNS:${NODE_NAME}"
  # The front proxy (aggregated APIs, such as metrics-server), as a real
  # cluster has it, with its own CA, as kubeadm's: no other client certificate may pass
  # for the API server when it forwards a user.
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=front-proxy-ca" -keyout "${PKI}/front-proxy-ca.key" -out "${PKI}/front-proxy-ca.crt" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
    > "${PKI}/front-proxy-client.ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=front-proxy-client" \
    -keyout "${PKI}/front-proxy-client.key" -out "${PKI}/front-proxy-client.csr" 2>/dev/null
  openssl x509 -req -in "${PKI}/front-proxy-client.csr" -CA "${PKI}/front-proxy-ca.crt" -CAkey "${PKI}/front-proxy-ca.key" \
    -CAcreateserial -days 365 -extfile "${PKI}/front-proxy-client.ext" -out "${PKI}/front-proxy-client.crt" 2>/dev/null
  openssl genrsa -out "${PKI}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub" 2>/dev/null
  touch "${PKI}/done"
}

# kubeconfig NAME: a kubeconfig for the certificate NAME.
kubeconfig() {
  local name="$1" file="${CLUSTER_DIR}/$1.kubeconfig"
  local kc=("${BIN}/kubectl" config --kubeconfig "${file}")
  "${kc[@]}" set-cluster local --server "https://${NODE_IP}:${APISERVER_PORT}" \
    --certificate-authority "${PKI}/ca.crt" --embed-certs >/dev/null
  "${kc[@]}" set-credentials "${name}" --client-certificate "${PKI}/${name}.crt" \
    --client-key "${PKI}/${name}.key" --embed-certs >/dev/null
  "${kc[@]}" set-context local --cluster local --user "${name}" >/dev/null
  "${kc[@]}" use-context local >/dev/null
}

# ---------------------------------------------------------------- processes

# start NAME CMD...: runs CMD in its own session, logging to LOGS/NAME.log.
start() {
  local name="$1"
  shift
  if running "${name}"; then return; fi
  setsid "$@" >"${LOGS}/${name}.log" 2>&1 < /dev/null &
  echo $! > "${RUN}/${name}.pid"
}

running() {
  local pid
  pid="$(cat "${RUN}/$1.pid" 2>/dev/null)" || return 1
  kill -0 "${pid}" 2>/dev/null
}

# wait_for WHAT SECONDS CMD...: retries CMD each half second.
wait_for() {
  local what="$1" deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "timed out waiting for ${what}; logs in ${LOGS}"
    fi
    sleep 0.5
  done
}

kubectl_admin() { "${BIN}/kubectl" --kubeconfig "${KUBECONFIG_ADMIN}" "$@"; }

# ---------------------------------------------------------------- node

host_setup() {
  echo 1 > /proc/sys/net/ipv4/ip_forward
  # Pod-to-Service traffic that a bridge carries must pass iptables, or
  # replies from a pod on the same bridge skip kube-proxy's NAT.
  echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
}

write_containerd_config() {
  mkdir -p "${CLUSTER_DIR}/containerd" "${CLUSTER_DIR}/cni/net.d"
  # Root here lacks CAP_SYS_RESOURCE, so no process may lower its
  # oom_score_adj. The kubelet asks for -998 for sandboxes (and -997 for
  # Guaranteed pods) and runc then fails with "can't get final child's PID
  # from pipe: EOF"; this wrapper raises a negative adjustment to 0.
  cat > "${RUN}/runc" <<'EOF'
#!/bin/sh
prev=""
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle="$arg" ;; esac
  case "$arg" in --bundle=*) bundle="${arg#--bundle=}" ;; esac
  prev="$arg"
done
if [ -n "${bundle:-}" ] && [ -f "$bundle/config.json" ]; then
  sed -i 's/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/' "$bundle/config.json"
fi
exec /usr/sbin/runc "$@"
EOF
  chmod +x "${RUN}/runc"
  cat > "${CLUSTER_DIR}/containerd/config.toml" <<EOF
version = 2
root = "${CLUSTER_DIR}/containerd/root"
state = "${RUN}/containerd"
[grpc]
  address = "${CONTAINERD_SOCK}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "quotaops.local/pause:dev"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "${RUN}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${CLUSTER_DIR}/cni/net.d"
EOF
  cat > "${CLUSTER_DIR}/cni/net.d/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "quota-cluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${POD_CIDR}"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "${CLUSTER_DIR}/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

write_kubelet_config() {
  cat > "${CLUSTER_DIR}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "${PKI}/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "${PKI}/kubelet-serving.crt"
tlsPrivateKeyFile: "${PKI}/kubelet-serving.key"
containerRuntimeEndpoint: "unix://${CONTAINERD_SOCK}"
# The machine has hybrid cgroup v1 and no systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: ["${DNS_SVC_IP}"]
clusterDomain: cluster.local
podLogsDir: "${CLUSTER_DIR}/pod-logs"
serializeImagePulls: false
# Images are imported, never pulled: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
EOF
  cat > "${CLUSTER_DIR}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: "${POD_CIDR}"
hostnameOverride: "${NODE_NAME}"
clientConnection: {kubeconfig: "${CLUSTER_DIR}/kube-proxy.kubeconfig"}
# Leave the host's conntrack table size alone.
conntrack: {maxPerCore: 0}
EOF
}

start_control_plane() {
  start etcd "${BIN}/etcd" --data-dir "${CLUSTER_DIR}/etcd" --name quota-node \
    --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "quota-node=http://127.0.0.1:$((ETCD_PORT + 1))" --unsafe-no-fsync
  start kube-apiserver "${BIN}/kube-apiserver" --etcd-servers "http://127.0.0.1:${ETCD_PORT}" \
    --advertise-address "${NODE_IP}" --secure-port "${APISERVER_PORT}" \
    --service-cluster-ip-range "${SERVICE_CIDR}" --allow-privileged=true \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --client-ca-file "${PKI}/ca.crt" --tls-cert-file "${PKI}/apiserver.crt" --tls-private-key-file "${PKI}/apiserver.key" \
    --kubelet-client-certificate "${PKI}/apiserver-kubelet-client.crt" --kubelet-client-key "${PKI}/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "${PKI}/ca.crt" --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "${PKI}/sa.pub" --service-account-signing-key-file "${PKI}/sa.key" \
    --requestheader-client-ca-file "${PKI}/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "${PKI}/front-proxy-client.crt" --proxy-client-key-file "${PKI}/front-proxy-client.key"
  wait_for "kube-apiserver" 90 kubectl_admin get --raw /readyz
  start kube-controller-manager "${BIN}/kube-controller-manager" \
    --kubeconfig "${CLUSTER_DIR}/controller-manager.kubeconfig" \
    --authentication-kubeconfig "${CLUSTER_DIR}/controller-manager.kubeconfig" \
    --authorization-kubeconfig "${CLUSTER_DIR}/controller-manager.kubeconfig" \
    --root-ca-file "${PKI}/ca.crt" --service-account-private-key-file "${PKI}/sa.key" \
    --use-service-account-credentials --leader-elect=false --allocate-node-cidrs=false \
    --cluster-signing-cert-file "${PKI}/ca.crt" --cluster-signing-key-file "${PKI}/ca.key"
  start kube-scheduler "${BIN}/kube-scheduler" --kubeconfig "${CLUSTER_DIR}/scheduler.kubeconfig" \
    --authentication-kubeconfig "${CLUSTER_DIR}/scheduler.kubeconfig" \
    --authorization-kubeconfig "${CLUSTER_DIR}/scheduler.kubeconfig" --leader-elect=false
}

start_node() {
  start containerd containerd --config "${CLUSTER_DIR}/containerd/config.toml"
  wait_for "containerd" 30 ctr --address "${CONTAINERD_SOCK}" version
  import_images
  start kubelet "${BIN}/kubelet" --config "${CLUSTER_DIR}/kubelet.yaml" \
    --kubeconfig "${CLUSTER_DIR}/kubelet.kubeconfig" --root-dir "${CLUSTER_DIR}/kubelet" \
    --hostname-override "${NODE_NAME}" --node-ip "${NODE_IP}"
  start kube-proxy "${BIN}/kube-proxy" --config "${CLUSTER_DIR}/kube-proxy.yaml"
}

# import_images builds the images the cluster itself runs and imports them.
import_images() {
  local images="${CLUSTER_DIR}/images" tool="${CLUSTER_DIR}/images/image"
  mkdir -p "${images}"
  (cd "${ROOT_DIR}" && CGO_ENABLED=0 go build -o "${tool}" ./hack/image &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${images}/pause" ./hack/pause)
  "${tool}" --tag quotaops.local/pause:dev --out "${images}/pause.tar" \
    --file "${images}/pause=/pause" --entrypoint /pause --user 65535:65535
  "${tool}" --tag "quotaops.local/coredns:v${COREDNS_VERSION}" --out "${images}/coredns.tar" \
    --file "${BIN}/coredns-v${COREDNS_VERSION}=/coredns" --entrypoint /coredns --user 65532:65532
  # Debian's redis-server and redis-cli and the libraries they link, for
  # the Redis overlay; its name is in images/redis.ref.
  local redis="quotaops.local/redis:$(redis_version)"
  "${tool}" --tag "${redis}" --out "${images}/redis.tar" --with-libs \
    --file "$(command -v redis-server)=/usr/local/bin/redis-server" \
    --file "$(command -v redis-cli)=/usr/local/bin/redis-cli" \
    --entrypoint /usr/local/bin/redis-server --user 999:999
  echo "${redis}" > "${images}/redis.ref"
  local t
  for t in "${images}"/*.tar; do load "${t}"; done
}

redis_version() { redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p'; }

load() { ctr --address "${CONTAINERD_SOCK}" -n k8s.io images import --no-unpack=false "$1" >&2; }

# make_volumes gives the node what a cluster's storage gives it: a default
# StorageClass, "local", and VOLUMES local PersistentVolumes (directories
# under CLUSTER_DIR/volumes) for it, as a static local-volume provisioner
# offers them. A claim binds one when its pod is scheduled
# (WaitForFirstConsumer); a released one is not reused (Retain), and down
# removes them all. Redis keeps its data on them, never on an emptyDir.
VOLUMES="${VOLUMES:-16}"
make_volumes() {
  local i dir
  {
    cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
EOF
    for i in $(seq 1 "${VOLUMES}"); do
      dir="${CLUSTER_DIR}/volumes/pv${i}"
      mkdir -p "${dir}"
      # The pods that use them run as their own users; fsGroup gives them
      # the group, and the mode lets any of them in.
      chmod 0777 "${dir}"
      cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-pv${i}
  labels: {quotaops.dev/volume: local}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  local: {path: "${dir}"}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: kubernetes.io/hostname, operator: In, values: ["${NODE_NAME}"]}
EOF
    done
  } | kubectl_admin apply -f - >&2
}

node_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1
}

up() {
  [[ "$(id -u)" == 0 ]] || die "run as root: it starts containerd and a kubelet"
  if [[ -d "${CLUSTER_DIR}" ]] && ! running kube-apiserver; then
    # Left by a machine or session that stopped without `down`: its
    # processes are gone, its mounts, rules and etcd data are not.
    log "found a stopped cluster in ${CLUSTER_DIR}; removing it first"
    down
  fi
  install_packages
  BIN="$(bash "${HACK_DIR}/k8s-binaries.sh" node | tail -1)"
  NODE_IP="${NODE_IP:-$(node_ip)}"
  [[ -n "${NODE_IP}" ]] || die "found no IPv4 address with a route; set NODE_IP"
  mkdir -p "${LOGS}" "${RUN}" "${CLUSTER_DIR}/pod-logs"
  echo "${BIN}" > "${CLUSTER_DIR}/bin-dir"
  host_setup
  make_pki
  local n
  for n in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "${n}"; done
  write_containerd_config
  write_kubelet_config
  start_control_plane
  start_node
  wait_for "node ${NODE_NAME} to be Ready" 120 kubectl_admin wait --for=condition=Ready "node/${NODE_NAME}" --timeout=2s
  sed "s|@COREDNS_IMAGE@|quotaops.local/coredns:v${COREDNS_VERSION}|; s|@DNS_SVC_IP@|${DNS_SVC_IP}|" \
    "${HACK_DIR}/cluster/coredns.yaml" | kubectl_admin apply -f - >&2
  wait_for "CoreDNS" 120 kubectl_admin -n kube-system rollout status deployment/coredns --timeout=2s
  make_volumes
  log "node ${NODE_NAME} is Ready; KUBECONFIG=${KUBECONFIG_ADMIN}"
  echo "${KUBECONFIG_ADMIN}"
}

# ---------------------------------------------------------------- down

stop() {
  local pid
  pid="$(cat "${RUN}/$1.pid" 2>/dev/null)" || return 0
  kill "${pid}" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.25; done
  kill -9 "${pid}" 2>/dev/null || true
  rm -f "${RUN}/$1.pid"
}

# kill_pods kills every process of every pod: the shims and containers
# outlive containerd.
kill_pods() {
  local cg
  for cg in /sys/fs/cgroup/*/kubepods; do
    [[ -d "${cg}" ]] || continue
    find "${cg}" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  pkill -9 -f "containerd-shim.*${CLUSTER_DIR}" 2>/dev/null || true
  sleep 0.5
  for cg in /sys/fs/cgroup/*/kubepods; do
    [[ -d "${cg}" ]] && find "${cg}" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

unmount_all() {
  local m
  # Deepest first.
  for m in $(awk -v d="${CLUSTER_DIR}" '$2 ~ "^"d || $2 ~ "^/run/netns/cni-" {print $2}' /proc/mounts | sort -r); do
    umount -l "${m}" 2>/dev/null || true
  done
  rm -f /run/netns/cni-* 2>/dev/null || true
}

clean_network() {
  local bin
  bin="$(cat "${CLUSTER_DIR}/bin-dir" 2>/dev/null || true)"
  [[ -x "${bin}/kube-proxy" ]] && "${bin}/kube-proxy" --cleanup >/dev/null 2>&1 || true
  local ipt table
  for ipt in iptables ip6tables; do
    for table in nat filter mangle; do
      "${ipt}-save" -t "${table}" 2>/dev/null | grep -v -e 'CNI-' -e 'KUBE-' | "${ipt}-restore" -T "${table}" 2>/dev/null || true
    done
  done
  ip link del cni0 2>/dev/null || true
}

down() {
  [[ -d "${CLUSTER_DIR}" ]] || { log "no cluster in ${CLUSTER_DIR}"; return 0; }
  local n
  for n in kube-proxy kubelet; do stop "${n}"; done
  kill_pods
  for n in containerd kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "${n}"; done
  unmount_all
  clean_network
  rm -rf "${CLUSTER_DIR}"
  log "stopped and removed ${CLUSTER_DIR}"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  load) [[ -n "${2:-}" ]] || die "usage: $0 load IMAGE.tar"; load "$2" ;;
  *) echo "usage: $0 up|down|load IMAGE.tar" >&2; exit 2 ;;
esac
