#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: formatting, lints, then every test of the
# workspace (unit, property, corpus of broken configurations, command-line tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Real containers and a real sshd for the tests that need them (as root).
if [ "$(id -u)" = 0 ]; then
    bash scripts/test-host.sh
fi
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The opt-in suite against a real Proxmox host is never run here, but it must keep building.
cargo clippy -p phoenix-proxmox --features real-pve --all-targets --locked -- -D warnings
# So must the opt-in suite of host setup on a real Proxmox VE node.
cargo clippy -p phoenix-cli --features real-host --all-targets --locked -- -D warnings
# Every request the suite sends to a PVE test double is logged, then checked against the schema
# of the version it was sent to and against the other version's (doubles marked to expect
# refusals log nothing). An empty log fails too: it means the logging broke.
request_log="$(mktemp -d)"
trap 'rm -rf "$request_log"' EXIT
PHOENIX_PVE_REQUEST_LOG="$request_log" cargo test --workspace --locked
cargo run -q -p phoenix-pve-double --bin check-requests --locked -- "$request_log"
