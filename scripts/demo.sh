#!/bin/bash
# make demo: build the agent, make a throwaway node tree with openssl (a cluster CA, an etcd
# CA, leaves in every state), and show what the agent sees.
set -euo pipefail
cd "$(dirname "$0")/.."
# CARGO and CARGO_TARGET_DIR as make and cargo take them; DEMO_NODE: where the tree goes.
${CARGO:-cargo} build --release --quiet --workspace --bins
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
AGENT=$TARGET_DIR/release/kube-cert-agent
STANDIN=$TARGET_DIR/release/standin-apiserver
NODE=${DEMO_NODE:-$PWD/demo-node}
rm -rf "$NODE"
mkdir -p "$NODE"/etc/kubernetes/pki/etcd "$NODE"/var/lib/kubelet/pki "$NODE"/etc/kube-cert-agent
WORK=$(mktemp -d)
STANDIN_PID=
RUN_PID=
cleanup() {
  [[ -n $RUN_PID ]] && kill "$RUN_PID" 2>/dev/null
  [[ -n $STANDIN_PID ]] && kill "$STANDIN_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
PKI=$NODE/etc/kubernetes/pki
q() { openssl "$@" 2>/dev/null; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "A node tree at $NODE (made with openssl)"
ca() { # dir name cn
  q genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$1/$2.key"
  q req -x509 -new -key "$1/$2.key" -subj "/CN=$3" -days 3650 -out "$1/$2.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature
}
ca "$PKI" ca kubernetes
ca "$PKI/etcd" ca etcd-ca
ca "$PKI" front-proxy-ca front-proxy-ca
printf '' > "$WORK/index.txt"; echo 1000 > "$WORK/serial"; mkdir -p "$WORK/new"
cat > "$WORK/ca.cnf" <<CNF
[ca]
default_ca=d
[d]
database=$WORK/index.txt
new_certs_dir=$WORK/new
serial=$WORK/serial
default_md=sha256
policy=p
unique_subject=no
[p]
commonName=supplied
organizationName=optional
CNF
leaf() { # dir name ca-prefix subject ext startdate enddate
  q genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$1/$2.key"
  q req -new -key "$1/$2.key" -subj "$4" -out "$WORK/$2.csr"
  printf '[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$5" > "$WORK/ext"
  q ca -batch -notext -preserveDN -config "$WORK/ca.cnf" -cert "$3.crt" -keyfile "$3.key" \
    -extfile "$WORK/ext" -extensions v3 -in "$WORK/$2.csr" -out "$1/$2.crt" -startdate "$6" -enddate "$7"
}
ts() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
NOW=$(ts now)
leaf "$PKI" apiserver "$PKI/ca" /CN=kube-apiserver \
  "extendedKeyUsage=serverAuth
subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1" "$NOW" "$(ts '+96 hours')"
leaf "$PKI" apiserver-kubelet-client "$PKI/ca" "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client" \
  "extendedKeyUsage=clientAuth" "$(ts '-90 hours')" "$(ts '+6 hours')"
leaf "$PKI" front-proxy-client "$PKI/front-proxy-ca" /CN=front-proxy-client \
  "extendedKeyUsage=clientAuth" "$(ts '-200 hours')" "$(ts '-104 hours')"
leaf "$PKI/etcd" server "$PKI/etcd/ca" /CN=etcd-server \
  "extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1" "$NOW" "$(ts '+96 hours')"
printf 'not a certificate' > "$PKI/stray.crt"
find "$NODE" -name '*.key' -exec chmod 600 {} +
( cd "$NODE" && find . -type f | sort | sed 's|^\./|  /|' )

step "kube-cert-agent --root $NODE check"
set +e
"$AGENT" --root "$NODE" check
code=$?
set -e
echo
echo "exit code $code  (0 all valid, 1 some within the warning window, 2 some expired/not yet valid/unreadable)"

step "The same as JSON (one object per certificate), apiserver only"
"$AGENT" --root "$NODE" check --output json "$PKI/apiserver.crt" | sed -n '1,40p' || true

step "A config declaring the control-plane certificates (etc/kube-cert-agent/config.yaml has the full kubeadm set)"
b64() { base64 -w0 < "$1"; }
leaf "$WORK" admin "$PKI/ca" "/O=kubeadm:cluster-admins/CN=kubernetes-admin" "extendedKeyUsage=clientAuth" "$NOW" "$(ts '+96 hours')"
cat > "$NODE/etc/kubernetes/admin.conf" <<KC
apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: $(b64 "$PKI/ca.crt")}
contexts:
- name: kubernetes-admin@kubernetes
  context: {cluster: kubernetes, user: kubernetes-admin}
current-context: kubernetes-admin@kubernetes
users:
- name: kubernetes-admin
  user: {client-certificate-data: $(b64 "$WORK/admin.crt"), client-key-data: $(b64 "$WORK/admin.key")}
KC
chmod 600 "$NODE/etc/kubernetes/admin.conf"
cat > "$NODE/etc/kube-cert-agent/config.yaml" <<CFG
apiVersion: kube-cert-agent.io/v1alpha1
kind: AgentConfiguration
certificates:
- name: apiserver
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
  cert: /etc/kubernetes/pki/apiserver.crt
  key: /etc/kubernetes/pki/apiserver.key
- name: apiserver-kubelet-client
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
  cert: /etc/kubernetes/pki/apiserver-kubelet-client.crt
  key: /etc/kubernetes/pki/apiserver-kubelet-client.key
- name: front-proxy-client
  ca: {cert: /etc/kubernetes/pki/front-proxy-ca.crt, key: /etc/kubernetes/pki/front-proxy-ca.key}
  cert: /etc/kubernetes/pki/front-proxy-client.crt
  key: /etc/kubernetes/pki/front-proxy-client.key
- name: etcd-server
  ca: {cert: /etc/kubernetes/pki/etcd/ca.crt, key: /etc/kubernetes/pki/etcd/ca.key}
  cert: /etc/kubernetes/pki/etcd/server.crt
  key: /etc/kubernetes/pki/etcd/server.key
kubeconfigs:
- name: admin.conf
  path: /etc/kubernetes/admin.conf
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
CFG
sed 's/^/  /' "$NODE/etc/kube-cert-agent/config.yaml"

step "kube-cert-agent rotate --dry-run   (what is due: expired, or past 80% +- 10% of its lifetime)"
"$AGENT" --root "$NODE" rotate --dry-run

step "kube-cert-agent rotate   (renews what is due; subject and SANs kept from the old certificate)"
"$AGENT" --root "$NODE" rotate

step "kube-cert-agent rotate --all   (forces every one: what SIGHUP will do)"
"$AGENT" --root "$NODE" rotate --all

step "On disk: one rename switches certificate and key together"
ls -la "$PKI" | grep -E 'apiserver|\.\.' | sed 's/^/  /'

step "Verified by openssl, independently"
for c in apiserver apiserver-kubelet-client; do openssl verify -CAfile "$PKI/ca.crt" "$PKI/$c.crt"; done
openssl verify -CAfile "$PKI/front-proxy-ca.crt" "$PKI/front-proxy-client.crt"
openssl verify -CAfile "$PKI/etcd/ca.crt" "$PKI/etcd/server.crt"
openssl x509 -noout -subject -ext subjectAltName -in "$PKI/apiserver.crt"
if command -v kubectl >/dev/null; then
  echo "kubectl reads the rewritten admin.conf: user $(kubectl config view --kubeconfig "$NODE/etc/kubernetes/admin.conf" -o jsonpath='{.users[0].name}')"
fi

step "kube-cert-agent check, after"
rm -f "$PKI/stray.crt"
set +e
"$AGENT" --root "$NODE" check
code=$?
set -e
echo
echo "exit code $code"

step "kube-cert-agent rollback apiserver   (the previous version, by one rename)"
"$AGENT" --root "$NODE" rollback apiserver

step "Kubelet TLS bootstrapping against the stand-in API server (standin/: certificates.k8s.io/v1 over HTTPS)"
mkdir -p "$WORK/api"
"$STANDIN" --dir "$WORK/api" > "$WORK/api/url" &
STANDIN_PID=$!
for _ in $(seq 100); do [[ -s $WORK/api/url ]] && break; sleep 0.05; done
echo "API server: $(cat "$WORK/api/url")   (kube-controller-manager's approver and signer included)"
cp "$WORK/api/bootstrap-kubeconfig" "$NODE/var/lib/kubelet/bootstrap-kubeconfig"
cat >> "$NODE/etc/kube-cert-agent/config.yaml" <<CFG
nodeName: demo-node
kubelet:
  serving: {addresses: [demo-node, 127.0.0.1]}
  csrTimeout: 30s
CFG
ADMIN=$WORK/api/admin.conf
echo "\$ kube-cert-agent rotate kubelet-client      # no certificate yet: log in with the bootstrap token"
"$AGENT" --root "$NODE" rotate kubelet-client
if command -v kubectl >/dev/null; then
  echo "\$ kubectl get csr"
  kubectl --kubeconfig "$ADMIN" get csr
fi

echo
echo "\$ kube-cert-agent rotate kubelet-serving     # serving CSRs need an approval"
"$AGENT" --root "$NODE" rotate kubelet-serving 2> "$WORK/serving.log" > "$WORK/serving.out" &
SERVING=$!
for _ in $(seq 200); do grep -q 'kubectl certificate approve' "$WORK/serving.log" 2>/dev/null && break; sleep 0.05; done
cat "$WORK/serving.log"
CSR=$(grep -o 'kubectl certificate approve csr-[a-z0-9]*' "$WORK/serving.log" | head -1 | awk '{print $4}')
if command -v kubectl >/dev/null && [[ -n $CSR ]]; then
  echo "\$ kubectl certificate approve $CSR"
  kubectl --kubeconfig "$ADMIN" certificate approve "$CSR"
fi
wait "$SERVING" || true
cat "$WORK/serving.out"

echo
echo "\$ kube-cert-agent rotate kubelet-client      # renewal: the node's own certificate, over mTLS"
"$AGENT" --root "$NODE" rotate kubelet-client
if command -v kubectl >/dev/null; then
  echo "\$ kubectl get csr"
  kubectl --kubeconfig "$ADMIN" get csr
fi
echo
echo "kubelet.conf written by the agent:"
sed 's/certificate-authority-data: .*/certificate-authority-data: .../; s/^/  /' "$NODE/etc/kubernetes/kubelet.conf"
ls -l "$NODE/var/lib/kubelet/pki" | sed 's/^/  /'

step "The daemon: kube-cert-agent run   (what kube-cert-agent.service starts)"
"$AGENT" --root "$NODE" run > "$WORK/run.log" 2>&1 &
RUN_PID=$!
for _ in $(seq 100); do "$AGENT" --root "$NODE" status > /dev/null 2>&1 && break; sleep 0.1; done
"$AGENT" --root "$NODE" status
serial() { openssl x509 -noout -serial -in "$PKI/apiserver.crt" | cut -d= -f2; }
BEFORE=$(serial)
echo
echo "\$ kill -HUP $RUN_PID      # what 'systemctl reload kube-cert-agent' does: rotate everything now"
kill -HUP "$RUN_PID"
sleep 0.5
"$AGENT" --root "$NODE" status | head -1
# The forced rotation includes the kubelet serving certificate: approve its CSR as an admin would.
for _ in $(seq 150); do
  grep -q 'kubelet-serving: rotated' "$WORK/run.log" && break
  if command -v kubectl > /dev/null; then
    for csr in $(kubectl --kubeconfig "$ADMIN" get csr --no-headers 2>/dev/null | awk '/Pending/ {print $1}'); do
      kubectl --kubeconfig "$ADMIN" certificate approve "$csr"
    done
  fi
  sleep 0.1
done
echo "apiserver serial: $BEFORE -> $(serial)"
"$AGENT" --root "$NODE" status
kill -TERM "$RUN_PID"; wait "$RUN_PID" || true; RUN_PID=
echo
echo "The daemon's log (to journald under systemd: journalctl -u kube-cert-agent):"
sed 's/^/  /' "$WORK/run.log" | tail -25
echo
echo "The tree stays in $NODE for you to explore; 'make clean' removes it."
