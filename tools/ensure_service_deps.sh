#!/usr/bin/env bash
# Make sure what the headend service's tests need exists: PostgreSQL's server binaries (the
# database tests start their own throw-away server, tools/pgtemp.py) and Chromium (PDF bills and
# the web page's tests in a real headless browser). Debian packages `postgresql` and `chromium`.
set -euo pipefail

have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1; }

missing=()
have_pg || missing+=(postgresql)
have_chromium || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_service_deps: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if have_pg && have_chromium; then
        exit 0
    fi
    echo "ensure_service_deps: apt-get ran but ${missing[*]} is still missing" >&2
    exit 1
fi

echo "ensure_service_deps: ${missing[*]} missing; install with: sudo apt-get install ${missing[*]}" >&2
exit 1
