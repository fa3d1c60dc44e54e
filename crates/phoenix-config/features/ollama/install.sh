# ollama: Ollama's release archive unpacked into /usr/local, the service `ollama` (`ollama serve`
# as the user ollama, OLLAMA_HOST in /etc/default/ollama), and the models it should have.
require_os

bin=/usr/local/bin/ollama
envfile=/etc/default/ollama
home=/usr/share/ollama
port=${PHX_OLLAMA_HOST##*:}
case "$port" in
'' | *[!0-9]*) die "ollama_host is \"$PHX_OLLAMA_HOST\": give host:port, e.g. 0.0.0.0:11434" ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
apt_install ca-certificates curl

# Installed from this source (and of the version asked for, when one is)?
source_state=$(state_file source)
current=no
if [ -x "$bin" ] && [ "$(cat "$source_state" 2>/dev/null)" = "$PHX_OLLAMA_SOURCE" ]; then
    current=yes
    if [ -n "$PHX_OLLAMA_VERSION" ]; then
        "$bin" --version 2>/dev/null | grep -Eq "(^|[ v])$(printf '%s' "$PHX_OLLAMA_VERSION" | sed 's/[.]/\\./g')\$" || current=no
    fi
fi
if [ "$current" = yes ]; then
    say "ollama from $PHX_OLLAMA_SOURCE installed"
else
    case "$PHX_OLLAMA_SOURCE" in
    *.zst)
        archive=$work/ollama.tar.zst
        command -v zstd >/dev/null 2>&1 || apt_install zstd
        ;;
    *) archive=$work/ollama.tgz ;;
    esac
    fetch "$PHX_OLLAMA_SOURCE" "$archive"
    if { systemd_running || [ -x /etc/init.d/ollama ]; } && service_do ollama status >/dev/null 2>&1; then
        service_do ollama stop >/dev/null || true
    fi
    # The libraries of an older version do not stay beside the new ones.
    rm -rf /usr/local/lib/ollama
    case "$archive" in
    *.zst) tar --zstd -xf "$archive" -C /usr/local ;;
    *) tar -xzf "$archive" -C /usr/local ;;
    esac || die "cannot unpack $PHX_OLLAMA_SOURCE into /usr/local"
    [ -x "$bin" ] || die "$PHX_OLLAMA_SOURCE holds no bin/ollama"
    if [ -n "$PHX_OLLAMA_VERSION" ] && ! "$bin" --version 2>/dev/null | grep -q "$PHX_OLLAMA_VERSION"; then
        die "$PHX_OLLAMA_SOURCE holds $("$bin" --version 2>/dev/null | tail -n 1), not ollama_version $PHX_OLLAMA_VERSION"
    fi
    printf '%s\n' "$PHX_OLLAMA_SOURCE" >"$source_state"
    did "installed ollama from $PHX_OLLAMA_SOURCE"
    upgraded=1
fi

gpu_user ollama "$home"

cat >"$work/env" <<EOF
# Written by Phoenix (feature ollama, ollama_host).
OLLAMA_HOST=$PHX_OLLAMA_HOST
EOF
put_file "$envfile" 644 <"$work/env"
env_changed=$wrote
define_service ollama "Ollama" ollama "$home" "$envfile" "$bin" serve
enable_service ollama
restart=0
if [ "$service_changed" = 1 ] || [ "$env_changed" = 1 ] || [ "${upgraded:-0}" = 1 ]; then restart=1; fi
url="http://127.0.0.1:$port/api/version"
bring_up ollama "$restart" "$url" "$PHX_OLLAMA_START_TIMEOUT" "ollama does not answer on $url (its log is above)"

# The models: pulled through the running server when `ollama list` lacks them ("name" is
# "name:latest" there).
eval "set -- $PHX_OLLAMA_MODELS"
if [ "$#" -gt 0 ]; then
    OLLAMA_HOST=127.0.0.1:$port "$bin" list >"$work/list" 2>&1 || {
        cat "$work/list" >&2
        die "ollama list failed"
    }
    for m in "$@"; do
        case "$m" in *:*) full=$m ;; *) full=$m:latest ;; esac
        if awk 'NR > 1 { print $1 }' "$work/list" | grep -qxF "$full"; then
            continue
        fi
        say "pulling $m"
        OLLAMA_HOST=127.0.0.1:$port "$bin" pull "$m" >"$work/pull" 2>&1 || {
            tail -n 5 "$work/pull" >&2
            die "ollama pull $m failed"
        }
        did "pulled $m"
    done
fi
finish
