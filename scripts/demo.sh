#!/bin/bash
# make demo: build the agent, make a throwaway node tree with openssl (a cluster CA, an etcd
# CA, leaves in every state), and show what the agent sees.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
AGENT=$PWD/target/release/kube-cert-agent
NODE=$PWD/demo-node
rm -rf "$NODE"
mkdir -p "$NODE"/etc/kubernetes/pki/etcd "$NODE"/var/lib/kubelet/pki "$NODE"/etc/kube-cert-agent
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
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

step "Cross-check one date with openssl"
openssl x509 -noout -serial -enddate -in "$PKI/apiserver.crt"
echo
echo "The tree stays in $NODE for you to explore; 'make clean' removes it."
