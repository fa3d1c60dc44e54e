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
cargo test --workspace --locked
