#!/usr/bin/env bash
# Installs the Debian packages given that are not installed yet (as root); does nothing, and
# needs no network, when all are there.
#   apt-need.sh PACKAGE...
set -euo pipefail
need=()
for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi
