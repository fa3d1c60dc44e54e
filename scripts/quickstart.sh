#!/usr/bin/env bash
# The quickstart: builds Phoenix and runs it on the example stack for the local LXC backend
# (examples/quickstart: a template cloned into three web containers and an aggregator that
# depends on them).
#
# Today this validates the example and draws its dependency graph; creating the containers comes
# with the local LXC backend.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

cargo build --release --locked --bin phoenix
phoenix=target/release/phoenix

echo "== phoenix validate -c examples/quickstart"
"$phoenix" validate -c examples/quickstart
echo
echo "== phoenix graph -c examples/quickstart   (arrows point to what a guest needs first)"
"$phoenix" graph -c examples/quickstart
echo
echo "Next: try a mistake. Copy examples/quickstart, change an IP to one outside 10.77.0.0/24"
echo "or misspell a key, and run: $phoenix validate -c <your copy>"
