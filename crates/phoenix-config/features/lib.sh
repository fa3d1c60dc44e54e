#!/bin/sh
# A built-in Phoenix feature: these shared functions (features/lib.sh), then the feature's own
# install.sh. Phoenix runs it inside the guest as
#   run --phoenix-contract 1 --params <dir>/params.json
# and writes the feature's parameters beside params.json as params.env, one shell assignment per
# parameter: PHX_<NAME>='value' (arrays of strings as shell-quoted words for `eval "set -- $X"`,
# objects as JSON), plus PHX_FEATURE, PHX_GUEST_ID and PHX_GUEST_NAME.
#
# Every step probes first and changes only what differs, so a second run changes nothing and
# says so ("<feature>: nothing to change"). Supported: Debian 12/13, Ubuntu 22.04/24.04.
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022

if [ "${1:-}" != "--phoenix-contract" ] || [ "${2:-}" != "1" ] || [ "${3:-}" != "--params" ] || [ -z "${4:-}" ]; then
    echo "unsupported calling convention: $*" >&2
    exit 64
fi
PHX_DIR=$(dirname "$4")
if [ ! -r "$PHX_DIR/params.env" ]; then
    echo "no params.env beside $4: run this script with Phoenix" >&2
    exit 64
fi
# shellcheck disable=SC1091
. "$PHX_DIR/params.env"
PHX_STATE=/var/lib/phoenix/features/$PHX_FEATURE
phx_changed=0
phx_apt_updated=0

# say MESSAGE: a line of progress.
say() { printf '%s: %s\n' "$PHX_FEATURE" "$*"; }
# did MESSAGE: a change was made.
did() {
    phx_changed=1
    printf '%s: changed: %s\n' "$PHX_FEATURE" "$*"
}
# die MESSAGE: stop with an error.
die() {
    printf '%s: error: %s\n' "$PHX_FEATURE" "$*" >&2
    exit 1
}
# finish: the last line, saying whether anything changed.
finish() {
    if [ "$phx_changed" = 0 ]; then say "nothing to change"; else say "done"; fi
}

# require_os: Debian 12/13 or Ubuntu 22.04/24.04, or a clear error. Sets OS_ID, OS_VERSION and
# OS_CODENAME.
require_os() {
    [ -r /etc/os-release ] || die "cannot tell the guest's OS (no /etc/os-release); built-in features support Debian 12/13 and Ubuntu 22.04/24.04"
    OS_ID=$(. /etc/os-release && echo "${ID:-}")
    OS_VERSION=$(. /etc/os-release && echo "${VERSION_ID:-}")
    OS_CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    case "$OS_ID:$OS_VERSION" in
    debian:12 | debian:13 | ubuntu:22.04 | ubuntu:24.04) ;;
    *)
        die "$(. /etc/os-release && echo "${PRETTY_NAME:-$(echo "$OS_ID $OS_VERSION" | sed 's/ *$//')}") is not supported: built-in features support Debian 12/13 and Ubuntu 22.04/24.04 (give your own feature in features/$PHX_FEATURE/ to override this one)"
        ;;
    esac
}

# arch: the Debian architecture (amd64, arm64, ...).
arch() { dpkg --print-architecture; }

# installed PACKAGE: whether a package is installed.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# apt_update: `apt-get update`, once per run.
apt_update() {
    if [ "$phx_apt_updated" = 0 ]; then
        say "apt-get update"
        apt-get update -q >/dev/null || die "apt-get update failed (the guest's apt sources, or base_setup's apt_proxy)"
        phx_apt_updated=1
    fi
}

# apt_install PACKAGE...: installs those not installed yet.
apt_install() {
    missing=""
    for p in "$@"; do
        installed "$p" || missing="$missing $p"
    done
    [ -n "$missing" ] || return 0
    apt_update
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null || die "apt-get install$missing failed"
    did "installed$missing"
}

# put_file PATH MODE: writes standard input to PATH with MODE when the content or mode differs
# (through a temporary file and a rename). Sets wrote=1 when it changed the file, wrote=0 when not.
# Give it a here-document, never a pipe: a pipe runs it in a subshell, and what it did is lost.
put_file() {
    wrote=0
    mkdir -p "$(dirname "$1")"
    tmp="$1.phoenix-new"
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1" && [ "$(stat -c %a "$1")" = "$(stat -c %a "$tmp")" ]; then
        rm -f "$tmp"
        return 0
    fi
    mv -f "$tmp" "$1"
    wrote=1
    did "wrote $1"
}

# remove_file PATH: removes a file when it exists. Sets removed=1 when it removed it, 0 when not.
remove_file() {
    removed=0
    [ -e "$1" ] || [ -L "$1" ] || return 0
    rm -f "$1"
    removed=1
    did "removed $1"
}

# fetch SOURCE DEST: copies a file from a URL (http, https, ftp, file) or a path in the guest.
fetch() {
    case "$1" in
    http://* | https://* | ftp://*)
        command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
        say "downloading $1"
        curl -fsSL --retry 3 -o "$2.part" "$1" || die "cannot download $1"
        mv -f "$2.part" "$2"
        ;;
    file://*) cp "${1#file://}" "$2" || die "cannot read ${1#file://}" ;;
    /*) cp "$1" "$2" || die "cannot read $1" ;;
    *) die "\"$1\" is neither a URL nor an absolute path" ;;
    esac
}

# systemd_running: whether systemd is the guest's init.
systemd_running() { [ -d /run/systemd/system ]; }

# service NAME ACTION: start, stop, restart or status of a service under systemd or System V init.
service_do() {
    if systemd_running; then
        systemctl "$2" "$1"
    elif [ -x "/etc/init.d/$1" ]; then
        "/etc/init.d/$1" "$2"
    else
        die "no way to $2 $1: neither systemd nor /etc/init.d/$1"
    fi
}

# enable_service NAME: started at boot (systemd, or a System V start link).
enable_service() {
    if systemd_running; then
        systemctl is-enabled -q "$1" 2>/dev/null && return 0
        systemctl enable -q "$1"
        did "enabled $1 at boot"
    elif [ -x "/etc/init.d/$1" ]; then
        ls /etc/rc2.d/S*"$1" >/dev/null 2>&1 && return 0
        if command -v update-rc.d >/dev/null 2>&1; then
            update-rc.d "$1" defaults >/dev/null 2>&1
        else
            mkdir -p /etc/rc2.d && ln -sf "../init.d/$1" "/etc/rc2.d/S02$1"
        fi
        did "enabled $1 at boot"
    fi
}

# ensure_running NAME: started when it is not running.
ensure_running() {
    if service_do "$1" status >/dev/null 2>&1; then
        return 0
    fi
    service_do "$1" start >/dev/null || die "$1 did not start"
    did "started $1"
}

# define_service NAME DESCRIPTION USER WORKDIR ENVFILE COMMAND...: a long-running service, as a
# systemd unit (always written, for guests that boot systemd) and, on a guest without systemd, a
# System V script run by start-stop-daemon. Sets service_changed=1 when a definition changed.
define_service() {
    name=$1 description=$2 user=$3 workdir=$4 envfile=$5
    shift 5
    command=""
    for a in "$@"; do
        command="$command $(shell_quote "$a")"
    done
    command=${command# }
    put_file "/etc/systemd/system/$name.service" 644 <<EOF
# Written by Phoenix (feature $PHX_FEATURE); changed on the next apply.
[Unit]
Description=$description
After=network-online.target
Wants=network-online.target

[Service]
User=$user
WorkingDirectory=$workdir
EnvironmentFile=-$envfile
ExecStart=$command
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF
    service_changed=$wrote
    if systemd_running; then
        [ "$service_changed" = 0 ] || systemctl daemon-reload
    else
        put_file "/etc/init.d/$name" 755 <<EOF
#!/bin/sh
### BEGIN INIT INFO
# Provides:          $name
# Required-Start:    \$network \$remote_fs
# Required-Stop:     \$network \$remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: $description
### END INIT INFO
# Written by Phoenix (feature $PHX_FEATURE); changed on the next apply.
PIDFILE=/run/$name.pid
case "\$1" in
start)
    [ -r $envfile ] && set -a && . $envfile && set +a
    cd $workdir
    start-stop-daemon --start --quiet --background --make-pidfile --pidfile \$PIDFILE --chuid $user \\
        --output /var/log/$name.log --startas /bin/sh -- -c 'exec "\$@"' $name $command
    ;;
stop) start-stop-daemon --stop --quiet --retry 10 --pidfile \$PIDFILE --remove-pidfile ;;
restart) "\$0" stop; "\$0" start ;;
status) start-stop-daemon --status --pidfile \$PIDFILE ;;
*) echo "usage: \$0 start|stop|restart|status" >&2; exit 3 ;;
esac
EOF
        [ "$wrote" = 0 ] || service_changed=1
    fi
}

# shell_quote WORD: the word in single quotes, for a shell to read back.
shell_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

# wait_http URL SECONDS: waits until the URL answers with success.
wait_http() {
    waited=0
    until curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null; do
        waited=$((waited + 1))
        [ "$waited" -lt "$2" ] || return 1
        sleep 1
    done
}

# state_file NAME: a file of this feature's own state (what it wrote last), under PHX_STATE.
state_file() {
    mkdir -p "$PHX_STATE"
    echo "$PHX_STATE/$1"
}

# gpu_user NAME HOME: the system user NAME of a service on the GPU (its own group, HOME created,
# no login), in the groups video and render where the guest has them (GPUs are group-owned by one
# of them on some hosts).
gpu_user() {
    if ! id -u "$1" >/dev/null 2>&1; then
        useradd --system --user-group --home-dir "$2" --create-home --shell /usr/sbin/nologin "$1"
        did "created the user $1"
    fi
    for g in video render; do
        if getent group "$g" >/dev/null && ! id -nG "$1" | tr ' ' '\n' | grep -qx "$g"; then
            usermod -aG "$g" "$1"
            did "added $1 to the group $g"
        fi
    done
}

# bring_up NAME RESTART URL SECONDS MESSAGE: the service NAME (defined and enabled) running and
# answering: restarted when RESTART is 1 (its definition, environment or program changed) and it
# runs, started when it does not, then given SECONDS for URL to answer. When it does not answer,
# the last lines of its log (the journal, or /var/log/NAME.log) on standard error, then die MESSAGE.
bring_up() {
    if [ "$2" = 1 ] && service_do "$1" status >/dev/null 2>&1; then
        service_do "$1" restart >/dev/null || die "$1 did not restart"
        did "restarted $1"
    fi
    ensure_running "$1"
    if ! wait_http "$3" "$4"; then
        if systemd_running; then journalctl -u "$1" -n 30 --no-pager >&2 || true; else tail -n 30 "/var/log/$1.log" >&2 || true; fi
        die "$5"
    fi
}

# ----- the feature itself -----
