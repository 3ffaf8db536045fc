#!/usr/bin/env bash
# Make sure a mosquitto binary exists. Tests start their own broker on a free
# port, so a system service that the Debian package may start on 1883 is harmless.
set -euo pipefail

if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_mosquitto: installing mosquitto with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
    if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
        exit 0
    fi
    echo "ensure_mosquitto: apt-get ran but no mosquitto binary was found" >&2
    exit 1
fi

echo "ensure_mosquitto: mosquitto is missing; install it with: sudo apt-get install mosquitto" >&2
exit 1
