#!/usr/bin/env bash
# Installs the system packages the build and the tests need (Debian): OpenSSL headers and
# pkg-config for TLS to Redis, redis-server for the queue tests, the openssl command for the
# tests' throwaway TLS certificates, chromium for the test that renders the service's /docs page
# (about 80 MB to fetch, 25 s to install). Does nothing when they are
# already there. Packages named as arguments are installed too (e.g. `wrk` for bench-api).
set -euo pipefail

missing=()
for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
for pkg in libssl-dev pkg-config; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "installing ${missing[*]} from Debian's packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
