#!/usr/bin/env bash
# Prepares this machine (as root) for the tests that use real components: LXC with the bridge
# phxtest0 for the end-to-end tests, and an OpenSSH server binary for the node-channel tests
# (the tests start their own sshd on loopback; the system's sshd is not started), and the checkers
# host setup runs on the files it writes (visudo, testparm, apparmor_parser), and for the
# gateway's end-to-end test debootstrap (its Debian template, built once per machine and kept
# under /var/cache/phoenix-tests), openssl (its test CA) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/lxc-host.sh phxtest0 10.79.0.1/24
bash scripts/apt-need.sh openssh-server openssh-client
bash scripts/apt-need.sh sudo samba-common-bin apparmor
bash scripts/apt-need.sh debootstrap openssl curl
mkdir -p /run/sshd
