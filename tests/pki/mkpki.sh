#!/bin/bash
# mkpki.sh DIR — a throw-away test PKI made with the openssl CLI: a server CA,
# a separate client CA with a CRL, client certificates in every state the
# gateway must judge (good, revoked, expired, foreign CA), a backend server
# certificate for TLS upstreams, and a SAML IdP signing pair. ECDSA P-256.
# Idempotent: everything is regenerated into DIR on each run.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "$out/.mkpki.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

export OPENSSL_CONF=/dev/null    # no distribution defaults leak in
DAYS=3650
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# ca NAME SUBJECT: a self-signed CA plus an `openssl ca` database beside it
# (the database is what lets us revoke, issue a CRL and set validity dates).
mkca() {
    local name=$1 subj=$2
    newkey "$name.key"
    openssl req -new -x509 -key "$name.key" -out "$name.pem" -days $DAYS \
        -subj "$subj" -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"
    cadb "$name"
}

# subca PARENT NAME SUBJECT: an intermediate CA issued by PARENT, with its
# own database (so it can issue and publish a CRL of its own).
subca() {
    local parent=$1 name=$2 subj=$3
    newkey "$name.key"
    openssl req -new -key "$name.key" -out "$name.csr" -subj "$subj"
    openssl ca -batch -notext -config "$parent.cnf" -extensions v3_subca \
        -in "$name.csr" -out "$name.pem" 2>/dev/null
    cadb "$name"
}

# cadb NAME: the `openssl ca` database and configuration of CA NAME.
cadb() {
    local name=$1
    mkdir -p "db-$name/new"
    : > "db-$name/index.txt"
    echo 1000 > "db-$name/serial"
    echo 1000 > "db-$name/crlnumber"
    cat > "$name.cnf" <<EOF
[ca]
default_ca = this_ca
[this_ca]
dir = $work/db-$name
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $work/$name.pem
private_key = $work/$name.key
default_md = sha256
default_days = $DAYS
default_crl_days = $DAYS
policy = any_policy
unique_subject = no
copy_extensions = copy
email_in_dn = no
[any_policy]
commonName = supplied
emailAddress = optional
organizationName = optional
[v3_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_subca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
}

# issue CA NAME EXT SAN [extra `openssl ca` args...]: subject CN=NAME, or
# $CN when set; no subjectAltName when SAN is empty.
issue() {
    local ca=$1 name=$2 ext=$3 san=$4
    shift 4
    local sanext=()
    [ -n "$san" ] && sanext=(-addext "subjectAltName=$san")
    newkey "$name.key"
    openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=${CN:-$name}" \
        "${sanext[@]}"
    openssl ca -batch -notext -config "$ca.cnf" -extensions "$ext" \
        -in "$name.csr" -out "$name.pem" "$@" 2>/dev/null
}

mkca ca "/O=cpmgate test/CN=cpmgate test server CA"
mkca clients-ca "/O=cpmgate test/CN=cpmgate test client CA"
mkca foreign-ca "/O=elsewhere/CN=foreign client CA"

issue ca server v3_server "DNS:localhost,IP:127.0.0.1,IP:::1"
issue ca upstream v3_server "DNS:localhost,DNS:backend.test,IP:127.0.0.1,IP:::1"
# The gateway's own client certificate toward a TLS backend or a remote peer.
issue ca gateway v3_server "DNS:gw.example.com,DNS:localhost"

# dave: valid and trusted, but registered for no principal in the tests.
for user in alice bob carol dave erin; do
    issue clients-ca "$user" v3_client "email:$user@example.com"
done
issue clients-ca revoked v3_client "email:revoked@example.com"
issue clients-ca expired v3_client "email:expired@example.com" \
    -startdate 20200101000000Z -enddate 20210101000000Z
# Same names as alice, but from a CA the gateway does not trust.
issue foreign-ca foreign v3_client "email:alice@example.com"

# Certificate names (SPEC section 2): the subject CN counts only when there
# is no subjectAltName; names that map to two principals identify no one.
CN=carol issue clients-ca carol-cn v3_client ""
CN=carol issue clients-ca dave-cn-carol v3_client "email:dave@example.com"
issue clients-ca alice-and-erin v3_client "email:alice@example.com,email:erin@example.com"

# Intermediate client CAs, each with its own (empty) CRL; clients-ca revokes
# revoked-sub-ca. A leaf's PEM holds the leaf and its intermediate, so the
# client sends the chain. chain.crl holds every client CRL (the root's and
# both intermediates').
subca clients-ca sub-ca "/O=cpmgate test/CN=cpmgate test client sub-CA"
subca clients-ca revoked-sub-ca "/O=cpmgate test/CN=cpmgate test revoked client sub-CA"
for sub in sub-ca revoked-sub-ca; do
    issue "$sub" "erin-via-$sub" v3_client "email:erin@example.com"
    cat "$sub.pem" >> "erin-via-$sub.pem"
    openssl ca -batch -config "$sub.cnf" -gencrl -out "$sub.crl" 2>/dev/null
done

openssl ca -batch -config clients-ca.cnf -revoke revoked.pem 2>/dev/null
openssl ca -batch -config clients-ca.cnf -revoke revoked-sub-ca.pem 2>/dev/null
openssl ca -batch -config clients-ca.cnf -gencrl -out clients.crl 2>/dev/null
cat clients.crl sub-ca.crl revoked-sub-ca.crl > chain.crl

# SAML identity provider: a self-signed signing certificate.
newkey idp.key
openssl req -new -x509 -key idp.key -out idp.pem -days $DAYS -sha256 \
    -subj "/O=cpmgate test/CN=idp.example.com"

# A CA file that trusts both client CAs is handy for negative tests.
cat ca.pem clients-ca.pem > all-ca.pem

for f in ca clients-ca foreign-ca server upstream gateway alice bob carol dave erin \
         revoked expired foreign idp carol-cn dave-cn-carol alice-and-erin \
         sub-ca revoked-sub-ca erin-via-sub-ca erin-via-revoked-sub-ca; do
    install -m 0644 "$f.pem" "$out/$f.pem"
    install -m 0600 "$f.key" "$out/$f.key"
done
install -m 0644 clients.crl chain.crl all-ca.pem "$out/"
echo "test PKI written to $out" >&2
