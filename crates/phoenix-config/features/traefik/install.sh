# traefik: the binary as /usr/local/bin/traefik (installed when `traefik version` does not report
# the wanted version), allowed to bind ports below 1024, its configuration under /etc/traefik
# (JSON, which YAML reads as it is), and the service, restarted when any of it changed.
require_os
version=$PHX_TRAEFIK_VERSION
[ -n "$version" ] || die "traefik_version is empty"
bin=/usr/local/bin/traefik
restart=0

if ! "$bin" version 2>/dev/null | grep -qF "${version#v}"; then
    source=$(printf '%s' "$PHX_TRAEFIK_SOURCE" | sed "s|{version}|$version|g; s|{arch}|$(arch)|g")
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    fetch "$source" "$work/traefik.tar.gz"
    mkdir "$work/x"
    tar -xzf "$work/traefik.tar.gz" -C "$work/x" || die "$source is not a readable .tar.gz"
    found=$(find "$work/x" -type f -name traefik | head -n 1)
    [ -n "$found" ] || die "$source holds no file named traefik"
    install -m 755 "$found" "$bin"
    got=$("$bin" version 2>&1) || die "traefik does not run after installing $source: $got"
    printf '%s' "$got" | grep -qF "${version#v}" || die "$source installed a traefik that reports \"$got\", not version $version (traefik_version)"
    did "installed traefik $version"
    restart=1
fi
# Ports 80 and 443 without root.
apt_install libcap2-bin
if ! getcap "$bin" 2>/dev/null | grep -q cap_net_bind_service; then
    if setcap cap_net_bind_service=+ep "$bin" 2>/dev/null; then
        did "allowed traefik to bind ports below 1024"
    else
        say "warning: cannot set cap_net_bind_service on $bin; as user traefik it can bind ports from 1024 only"
    fi
fi

if ! id traefik >/dev/null 2>&1; then
    useradd --system --home-dir /etc/traefik --no-create-home --shell /usr/sbin/nologin traefik
    did "created the user traefik"
fi

static=$PHX_TRAEFIK_STATIC_CONFIG
[ -n "$static" ] || static='{}'
# A top-level `providers` key, in JSON as Phoenix writes it (compact).
case "$static" in
*'"providers":'*) ;;
'{}') static='{"providers":{"file":{"directory":"/etc/traefik/dynamic","watch":true}}}' ;;
*) static="{\"providers\":{\"file\":{\"directory\":\"/etc/traefik/dynamic\",\"watch\":true}},${static#\{}" ;;
esac
put_file /etc/traefik/traefik.yml 644 <<YAML
$static
YAML
[ "$wrote" = 0 ] || restart=1
mkdir -p /etc/traefik/dynamic
case "$PHX_TRAEFIK_DYNAMIC_CONFIG" in
'' | '{}') remove_file /etc/traefik/dynamic/phoenix.yml ;;
*)
    put_file /etc/traefik/dynamic/phoenix.yml 644 <<YAML
$PHX_TRAEFIK_DYNAMIC_CONFIG
YAML
    ;;
esac

define_service traefik "Traefik Proxy (Phoenix)" traefik /etc/traefik /etc/default/traefik "$bin" --configfile=/etc/traefik/traefik.yml
[ "$service_changed" = 0 ] || restart=1
enable_service traefik
if [ "$restart" = 1 ] && service_do traefik status >/dev/null 2>&1; then
    service_do traefik restart >/dev/null || die "traefik did not restart"
    did "restarted traefik"
else
    ensure_running traefik
fi
if [ -n "$PHX_TRAEFIK_PING_URL" ]; then
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
    wait_http "$PHX_TRAEFIK_PING_URL" 30 || die "traefik does not answer at $PHX_TRAEFIK_PING_URL (traefik_ping_url) after 30 s; see /var/log/traefik.log or journalctl -u traefik"
fi
finish
