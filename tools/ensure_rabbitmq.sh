#!/usr/bin/env bash
# Make sure rabbitmq-server (with Erlang and its epmd) exists. tools/rabbitcluster.py starts its
# own nodes on free ports with a private epmd, so a system service that the Debian package may
# start on 5672 (epmd on 4369) is harmless.
set -euo pipefail

have() {
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1
}

if have && command -v epmd >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_rabbitmq: installing rabbitmq-server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
    if have && command -v epmd >/dev/null 2>&1; then
        exit 0
    fi
    echo "ensure_rabbitmq: apt-get ran but no rabbitmq-server or epmd was found" >&2
    exit 1
fi

echo "ensure_rabbitmq: rabbitmq-server is missing; install it with: sudo apt-get install rabbitmq-server" >&2
exit 1
