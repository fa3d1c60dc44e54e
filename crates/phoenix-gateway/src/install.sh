#!/bin/sh
# Installs Phoenix's NGINX gateway configuration inside the gateway guest (contract version 1).
#
#   run --phoenix-contract 1 --params DIR/params.json
#
# DIR holds phoenix-gateway.conf (the rendered configuration) and, when a service asks for TLS,
# tls.crt and tls.key. NGINX is installed when missing (nginx-light through apt on Debian and
# Ubuntu). The new file is written beside the live one, swapped in and checked with `nginx -t`
# before anything reloads: when the check fails, the previous files are put back, NGINX's words
# are printed, and NGINX goes on serving what it served. Only then is NGINX reloaded (or started).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022

dir=
while [ $# -gt 0 ]; do
    case "$1" in
        --params) dir=$(dirname "$2"); shift 2 ;;
        *) shift ;;
    esac
done
if [ -z "$dir" ] || [ ! -f "$dir/phoenix-gateway.conf" ]; then
    echo "phoenix gateway: no configuration staged (expected --params DIR/params.json beside phoenix-gateway.conf)" >&2
    exit 2
fi

live=/etc/nginx/conf.d/phoenix-gateway.conf
cert=/etc/phoenix/gateway/tls.crt
key=/etc/phoenix/gateway/tls.key
default_site=/etc/nginx/sites-enabled/default

if ! command -v nginx >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "phoenix gateway: installing NGINX"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q || { echo "phoenix gateway: apt-get update failed" >&2; exit 1; }
        apt-get install -y -q --no-install-recommends nginx-light \
            || apt-get install -y -q --no-install-recommends nginx \
            || { echo "phoenix gateway: installing nginx failed" >&2; exit 1; }
    else
        echo "phoenix gateway: nginx is not installed and this guest has no apt-get;" \
            "install NGINX in the gateway guest (Debian and Ubuntu get nginx-light installed)" >&2
        exit 1
    fi
fi

mkdir -p /etc/nginx/conf.d || exit 1

# Everything swapped in is first kept, to be put back if the check fails.
saved=
keep() { # keep FILE: remember FILE's current content (or its absence)
    if [ -e "$1" ] || [ -L "$1" ]; then
        cp -P -p "$1" "$1.phoenix-previous" || exit 1
        saved="$saved $1"
    else
        saved="$saved !$1"
    fi
}
put_back() {
    for f in $saved; do
        case "$f" in
            !*) rm -f "${f#!}" ;;
            *) mv -f "$f.phoenix-previous" "$f" ;;
        esac
    done
}
forget() {
    for f in $saved; do
        case "$f" in
            !*) ;;
            *) rm -f "$f.phoenix-previous" ;;
        esac
    done
}
swap_in() { # swap_in NEW LIVE MODE: write NEW beside LIVE, then rename it over LIVE
    cp "$1" "$2.phoenix-new" && chmod "$3" "$2.phoenix-new" && mv -f "$2.phoenix-new" "$2"
}

keep "$live"
swap_in "$dir/phoenix-gateway.conf" "$live" 0644 || { put_back; exit 1; }
if [ -f "$dir/tls.crt" ] && [ -f "$dir/tls.key" ]; then
    mkdir -p /etc/phoenix/gateway && chmod 0755 /etc/phoenix/gateway || { put_back; exit 1; }
    keep "$cert"
    keep "$key"
    swap_in "$dir/tls.crt" "$cert" 0644 && swap_in "$dir/tls.key" "$key" 0600 || { put_back; exit 1; }
fi
# The package's own default site claims the default server on port 80, as the gateway does.
# (Not kept as a copy beside it: sites-enabled/* is included whole.)
removed_default=
if [ -L "$default_site" ] && [ "$(readlink "$default_site")" = /etc/nginx/sites-available/default ]; then
    rm -f "$default_site" && removed_default=1
fi

if ! out=$(nginx -t 2>&1); then
    put_back
    [ -z "$removed_default" ] || ln -s /etc/nginx/sites-available/default "$default_site"
    echo "phoenix gateway: the new configuration was refused by nginx -t; the previous one is kept and still served" >&2
    echo "$out" >&2
    exit 1
fi
forget

running() {
    [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null
}
# The worker processes of the NGINX master: `nginx -s reload` only signals the master, which
# reads the new configuration and replaces its workers a moment later.
workers() {
    master=$(cat /run/nginx.pid 2>/dev/null)
    for p in /proc/[0-9]*; do
        [ "$(cut -d' ' -f4 "$p/stat" 2>/dev/null)" = "$master" ] && echo "${p#/proc/}"
    done
}
if running; then
    before=$(workers)
    nginx -s reload || exit 1
    # Done once workers serving the new configuration have replaced the old ones (5 s at most:
    # an old worker may linger while a client keeps its connection open).
    replaced() {
        now=" $(workers | tr '\n' ' ') "
        [ "$now" != "  " ] || return 1
        for p in $before; do
            case "$now" in *" $p "*) return 1 ;; esac
        done
    }
    i=0
    until replaced || [ "$i" -ge 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    echo "phoenix gateway: NGINX reloaded"
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl enable nginx >/dev/null 2>&1
    systemctl restart nginx || exit 1
    echo "phoenix gateway: NGINX started"
elif [ -x /etc/init.d/nginx ]; then
    /etc/init.d/nginx start || exit 1
    echo "phoenix gateway: NGINX started"
else
    nginx || exit 1
    echo "phoenix gateway: NGINX started"
fi
