#!/usr/bin/env bash
# Checks the nvidia feature (and, with --model, vllm) on a machine with an NVIDIA GPU, its
# driver loaded, and LXC (as root): one unprivileged Debian container with the GPU assigned,
# made by `phoenix apply` with the local LXC backend, then `nvidia-smi` inside it (and the model's
# /v1/models from the host).
#
#   scripts/gpu-check.sh [--gpu N] [--model MODEL] [--nat] [--keep] [--phoenix PATH]
#
#   --gpu N          the host GPU to assign (default 0)
#   --model MODEL    also install vLLM with pip and serve MODEL (a small Hugging Face model such
#                    as Qwen/Qwen2.5-0.5B-Instruct); needs --nat (PyPI and the model are downloaded)
#   --nat            give the container outbound access: IPv4 forwarding and a masquerade rule in
#                    its own nftables table (removed at the end); without it the container has no
#                    network beyond the host, and the toolkit (from NVIDIA's repository) is skipped
#   --keep           leave the container (and the configuration directory) for a look inside
#   --phoenix PATH   the phoenix binary (default: built with cargo, release)
#
# The driver's .run installer of the host's version is downloaded on the host (into
# /var/cache/phoenix-gpu-check) and bind-mounted read-only into the container.
set -euo pipefail
cd "$(dirname "$0")/.."

gpu=0 model="" nat=no keep=no phoenix=""
while [ "$#" -gt 0 ]; do
    case "$1" in
    --gpu) gpu=${2:?}; shift 2 ;;
    --model) model=${2:?}; shift 2 ;;
    --nat) nat=yes; shift ;;
    --keep) keep=yes; shift ;;
    --phoenix) phoenix=${2:?}; shift 2 ;;
    *) echo "gpu-check: unknown option $1 (see the head of $0)" >&2; exit 64 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "gpu-check: run as root" >&2; exit 1; }
[ -z "$model" ] || [ "$nat" = yes ] || { echo "gpu-check: --model needs --nat (vLLM and the model are downloaded)" >&2; exit 64; }
[ -c "/dev/nvidia$gpu" ] || { echo "gpu-check: /dev/nvidia$gpu does not exist (is the NVIDIA driver loaded? run nvidia-smi once)" >&2; exit 1; }
version=$(awk '/Kernel Module/ { f = 0; for (i = 1; i <= NF; i++) { if ($i == "Module") f = 1; else if (f && $i ~ /^[0-9]+\.[0-9]+(\.[0-9]+)*$/) { print $i; exit } } }' /proc/driver/nvidia/version)
[ -n "$version" ] || { echo "gpu-check: no driver version in /proc/driver/nvidia/version" >&2; exit 1; }
echo "== host driver $version, GPU $gpu"

bridge=phxgpu0 subnet=10.81.0 id=1290
bash scripts/lxc-host.sh "$bridge" "$subnet.1/24"
if [ -z "$phoenix" ]; then
    cargo build --release --locked --bin phoenix
    phoenix=$PWD/target/release/phoenix
fi

cache=/var/cache/phoenix-gpu-check
mkdir -p "$cache/runfiles"
runfile=NVIDIA-Linux-x86_64-$version.run
if [ ! -s "$cache/runfiles/$runfile" ]; then
    echo "== downloading $runfile"
    curl -fSL -o "$cache/runfiles/$runfile.part" "https://us.download.nvidia.com/XFree86/Linux-x86_64/$version/$runfile"
    mv "$cache/runfiles/$runfile.part" "$cache/runfiles/$runfile"
fi
chmod -R a+rX "$cache"
template=$cache/debian-bookworm-gpu_amd64.tar.zst
"$phoenix" template debian "$template" --include curl,ca-certificates

work=$(mktemp -d /var/tmp/phoenix-gpu-check.XXXXXX)
chmod 755 "$work"
cleanup() {
    if [ "$keep" = no ]; then
        "$phoenix" -c "$work/config" destroy --yes --force >/dev/null 2>&1 || true
        rm -rf "$work"
    else
        echo "== kept: $phoenix -c $work/config destroy --yes   removes the container"
    fi
    [ "$nat" = no ] || nft delete table ip phoenix_gpu_check 2>/dev/null || true
}
trap cleanup EXIT
if [ "$nat" = yes ]; then
    sysctl -qw net.ipv4.ip_forward=1
    nft -f - <<EOF
table ip phoenix_gpu_check {
    chain postrouting {
        type nat hook postrouting priority srcnat;
        ip saddr $subnet.0/24 ip daddr != $subnet.0/24 masquerade
    }
}
EOF
fi

mkdir -p "$work/config"
cat >"$work/config/phoenix_hypervisor_config.json" <<EOF
{"backend": {"type": "lxc", "lxc_path": "$work/lxc",
             "bridges": {"vmbr0": {"host_bridge": "$bridge", "address": "$subnet.1/24"}},
             "storage": {"local": "$work/storage"}}}
EOF
features='"base_setup", "nvidia"'
vllm=""
if [ -n "$model" ]; then
    features="$features, \"vllm\""
    vllm=", \"vllm_model\": \"$model\", \"vllm_gpu_memory_utilization\": 0.8, \"vllm_max_model_len\": 2048"
fi
toolkit=$([ "$nat" = yes ] && echo true || echo false)
cat >"$work/config/phoenix_lxc_configs.json" <<EOF
{"lxc_configs": {"$id": {
  "name": "gpu-check", "memory_mb": 16384, "cores": 4, "storage_pool": "local", "storage_size_gb": 40,
  "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "$subnet.90/24", "gw": "$subnet.1", "nameservers": ["1.1.1.1", "8.8.8.8"]},
  "unprivileged": true, "template": "$template", "gpu_assignment": "$gpu",
  "features": [$features],
  "mount_points": [{"host_path": "$cache/runfiles", "container_path": "/mnt/nvidia", "read_only": true}],
  "feature_settings": {"nvidia": {"nvidia_runfile": "/mnt/nvidia/NVIDIA-Linux-x86_64-{version}.run",
                                  "nvidia_container_toolkit": $toolkit}}
  $vllm}}}
EOF

echo "== phoenix apply"
"$phoenix" -c "$work/config" validate
"$phoenix" -c "$work/config" apply
echo "== nvidia-smi in the container"
lxc-attach -n "$id" -P "$work/lxc" -- nvidia-smi
if [ -n "$model" ]; then
    echo "== vLLM's models"
    curl -fsS "http://$subnet.90:8000/v1/models"
    echo
fi
echo "== gpu-check: passed"
