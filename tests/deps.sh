#!/bin/bash
# deps.sh — installs the Debian packages that building, testing and the demo
# need, and only those that are missing (CI starts from a clean machine; a
# machine that has everything is not touched). Shared by tests/run and
# deploy/demo.
set -euo pipefail

PACKAGES=(
    meson ninja-build pkg-config gcc clang libclang-rt-14-dev
    libuv1-dev libssl-dev libsqlite3-dev libpq-dev libxml2-dev libxmlsec1-dev xmlsec1
    node-llhttp libinih-dev libjson-c-dev libcmocka-dev libsystemd-dev
    python3 python3-pytest python3-cryptography
    dovecot-imapd nginx-light libnginx-mod-http-dav-ext libnginx-mod-mail
    curl openssl stunnel4 wrk haproxy docker-compose scdoc sqlite3 postgresql-15 litmus isync
    systemd
    dpkg-dev debhelper fakeroot lintian prometheus
)

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "deps: installing missing packages: ${missing[*]}" >&2
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO=(sudo)
    else
        echo "deps: not root and no sudo: install ${missing[*]} by hand" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
