#!/usr/bin/env bash
# Prepares this machine for the local LXC backend (as root): the lxc tools, busybox-static for
# the offline template, curl, and a bridge with the host's address on it.
#   lxc-host.sh BRIDGE ADDRESS/PREFIX
set -euo pipefail
bridge=${1:?bridge name}
address=${2:?address/prefix}

bash "$(dirname "$0")/apt-need.sh" lxc uidmap busybox-static curl iproute2 xz-utils zstd
if [ ! -d "/sys/class/net/$bridge/bridge" ]; then
    echo "lxc-host: creating bridge $bridge ($address)" >&2
    ip link add "$bridge" type bridge
fi
# (Read the addresses first: `grep -q` in a pipe under pipefail can fail on SIGPIPE.)
addresses=$(ip -o addr show dev "$bridge")
case "$addresses" in
    *"inet $address "*) ;;
    *) ip addr add "$address" dev "$bridge" ;;
esac
ip link set "$bridge" up
