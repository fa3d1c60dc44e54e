#!/bin/sh
# base_setup for the busybox template. Phoenix runs it as:
#   install.sh --phoenix-contract 1 --params <file>
set -eu
[ "${1:-}" = "--phoenix-contract" ] && [ "${2:-}" = "1" ] || { echo "unsupported calling convention: $*" >&2; exit 64; }
mkdir -p /var/lib/phoenix /srv
echo "Built by Phoenix on $(hostname)." > /etc/motd
