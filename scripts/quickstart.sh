#!/usr/bin/env bash
# The quickstart, as root on a fresh Debian or Ubuntu machine: builds Phoenix, and brings up the
# example stack of examples/quickstart on real LXC containers — a template customized and
# snapshotted, three web containers cloned from it, each serving its own page, and an aggregator
# that waits for them and serves what it fetched from them. Running it again changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
bash scripts/lxc-host.sh phxbr0 10.77.0.1/24

cargo build --release --locked --bin phoenix
phoenix=target/release/phoenix
config=examples/quickstart
template=/var/lib/phoenix/storage/local/template/cache/phoenix-busybox_amd64.tar.gz

if [ ! -f "$template" ]; then
    echo "== building the offline busybox template"
    "$phoenix" template busybox "$template"
fi
echo "== phoenix validate"
"$phoenix" -c "$config" validate
echo "== phoenix apply"
"$phoenix" -c "$config" apply
echo
"$phoenix" -c "$config" status
echo
echo "The web containers answer on their own addresses:"
for ip in 10.77.0.101 10.77.0.102 10.77.0.103 10.77.0.110; do
    printf '  http://%s/ -> ' "$ip"
    curl -fsS "http://$ip/" | tr '\n' ' '
    echo
done
echo
echo "Run this script again: the plan is empty and nothing changes."
echo "Change a value in $config (memory_mb of 902, say) and run: $phoenix -c $config plan"
echo "Remove everything: $phoenix -c $config destroy --yes"
