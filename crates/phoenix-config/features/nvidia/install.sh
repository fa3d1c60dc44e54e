# nvidia: the NVIDIA user-space driver of the version of the host's kernel module (the container
# shares the host's kernel, so the .run installer runs without its kernel module), then the
# NVIDIA Container Toolkit, then a check with nvidia-smi.
require_os

# The version in a driver version file: "NVRM version: NVIDIA UNIX [Open ]Kernel Module [for
# x86_64]  550.54.14  ..." (/proc/driver/nvidia/version), or a bare version (/sys/module/nvidia/version).
version_in() {
    [ -r "$1" ] || return 0
    awk '/Kernel Module/ { found = 0; for (i = 1; i <= NF; i++) { if ($i == "Module") found = 1; else if (found && $i ~ /^[0-9]+\.[0-9]+(\.[0-9]+)*$/) { print $i; exit } } }
         NR == 1 && NF == 1 && $1 ~ /^[0-9]+\.[0-9]+(\.[0-9]+)*$/ { print $1; exit }' "$1"
}

# The version of the installed user-space driver (its libnvidia-ml.so.<version>); empty when none.
installed_version() {
    for f in /usr/lib/*-linux-gnu/libnvidia-ml.so.* /usr/lib64/libnvidia-ml.so.* /usr/lib/libnvidia-ml.so.*; do
        [ -e "$f" ] || continue
        v=${f##*/libnvidia-ml.so.}
        case "$v" in *.*) echo "$v" && return 0 ;; esac
    done
}

version_file=$PHX_NVIDIA_VERSION_FILE
host=$(version_in "$version_file")
if [ -z "$host" ] && [ "$version_file" != /sys/module/nvidia/version ]; then
    host=$(version_in /sys/module/nvidia/version)
    [ -z "$host" ] || version_file=/sys/module/nvidia/version
fi
want=$PHX_NVIDIA_DRIVER_VERSION
if [ -z "$want" ] && [ -z "$host" ]; then
    die "no driver version: nvidia_driver_version is not set and neither $PHX_NVIDIA_VERSION_FILE nor /sys/module/nvidia/version gives the host's (is the NVIDIA driver loaded on the host, and the GPU assigned to this container?)"
fi
if [ -n "$want" ] && [ -n "$host" ] && [ "$want" != "$host" ]; then
    die "nvidia_driver_version is $want, but the host's kernel module is $host ($version_file): the container's libraries must match the host's kernel module; set nvidia_driver_version to $host, or leave it out"
fi
[ -n "$want" ] || want=$host
printf '%s\n' "$want" | grep -Eqx '[0-9]+\.[0-9]+(\.[0-9]+)*' || die "\"$want\" is not a driver version (e.g. 550.54.14)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

current=$(installed_version)
if [ "$current" = "$want" ]; then
    say "user-space driver $want installed"
else
    runfile=$(printf '%s' "$PHX_NVIDIA_RUNFILE" | sed "s/{version}/$want/g")
    fetch "$runfile" "$work/nvidia.run"
    if [ -n "$current" ] && command -v nvidia-installer >/dev/null 2>&1; then
        say "removing the user-space driver $current"
        nvidia-installer --uninstall --silent >"$work/uninstall.log" 2>&1 || say "nvidia-installer --uninstall failed ($(tail -n 1 "$work/uninstall.log")); installing over it"
    fi
    say "installing the user-space driver $want"
    eval "set -- $PHX_NVIDIA_RUNFILE_ARGS"
    if ! sh "$work/nvidia.run" --silent --no-questions --ui=none --no-kernel-module --no-kernel-module-source \
        --no-nouveau-check --no-nvidia-modprobe --no-x-check --tmpdir="$work" "$@" >"$work/install.log" 2>&1; then
        tail -n 20 "$work/install.log" >&2
        [ ! -r /var/log/nvidia-installer.log ] || tail -n 20 /var/log/nvidia-installer.log >&2
        die "the NVIDIA installer ($runfile) failed"
    fi
    [ "$(installed_version)" = "$want" ] || die "after the installer, the user-space driver is \"$(installed_version)\", not $want ($runfile holds another version?)"
    if [ -n "$current" ]; then did "replaced the user-space driver $current by $want"; else did "installed the user-space driver $want"; fi
fi

if [ "$PHX_NVIDIA_CONTAINER_TOOLKIT" = true ]; then
    keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
    key_state=$(state_file toolkit-key-url)
    if [ -n "$PHX_NVIDIA_TOOLKIT_KEY_URL" ]; then
        if [ ! -s "$keyring" ] || [ "$(cat "$key_state" 2>/dev/null)" != "$PHX_NVIDIA_TOOLKIT_KEY_URL" ]; then
            command -v gpg >/dev/null 2>&1 || apt_install gnupg
            fetch "$PHX_NVIDIA_TOOLKIT_KEY_URL" "$work/key"
            gpg --dearmor <"$work/key" >"$work/key.gpg" 2>/dev/null || cp "$work/key" "$work/key.gpg"
            put_file "$keyring" 644 <"$work/key.gpg"
            printf '%s\n' "$PHX_NVIDIA_TOOLKIT_KEY_URL" >"$key_state"
        fi
    fi
    put_file /etc/apt/sources.list.d/nvidia-container-toolkit.list 644 <<EOF
# Written by Phoenix (feature nvidia, nvidia_toolkit_apt_source).
$PHX_NVIDIA_TOOLKIT_APT_SOURCE
EOF
    # A new source: the lists must be read again before installing from it.
    [ "$wrote" = 0 ] || phx_apt_updated=0
    apt_install nvidia-container-toolkit

    if command -v docker >/dev/null 2>&1; then
        daemon=/etc/docker/daemon.json
        before=$(cat "$daemon" 2>/dev/null || true)
        nvidia-ctk runtime configure --runtime=docker >"$work/ctk.log" 2>&1 || {
            cat "$work/ctk.log" >&2
            die "nvidia-ctk runtime configure --runtime=docker failed"
        }
        if [ "$(cat "$daemon" 2>/dev/null || true)" != "$before" ]; then
            did "configured Docker's nvidia runtime"
            service_do docker restart >/dev/null || die "docker did not restart"
        fi
    fi

    # An unprivileged container cannot change the devices cgroup: the runtime must not try.
    config=/etc/nvidia-container-runtime/config.toml
    if ! grep -Eq '^[[:space:]]*0[[:space:]]+0[[:space:]]+4294967295' /proc/self/uid_map && [ -f "$config" ]; then
        if grep -Eq '^[#[:space:]]*no-cgroups[[:space:]]*=' "$config"; then
            sed -E 's/^[#[:space:]]*no-cgroups[[:space:]]*=.*/no-cgroups = true/' "$config" >"$work/config.toml"
        else
            sed '/^\[nvidia-container-cli\]/a no-cgroups = true' "$config" >"$work/config.toml"
        fi
        put_file "$config" 644 <"$work/config.toml"
    fi
fi

if [ "$PHX_NVIDIA_CHECK" = true ]; then
    if ! nvidia-smi -L >"$work/smi.log" 2>&1; then
        cat "$work/smi.log" >&2
        die "nvidia-smi failed: are the GPU's devices (/dev/nvidia*) passed to this container (gpu_assignment)?"
    fi
    say "nvidia-smi: $(head -n 1 "$work/smi.log")"
fi

finish
