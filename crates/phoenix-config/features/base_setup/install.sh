# base_setup: apt proxy first (every download after it goes through it), then packages, locale,
# time zone and unattended upgrades.
require_os

proxy_conf=/etc/apt/apt.conf.d/01phoenix-proxy
if [ -n "$PHX_APT_PROXY" ]; then
    put_file "$proxy_conf" 644 <<CONF
// Written by Phoenix (feature base_setup, apt_proxy).
Acquire::http::Proxy "$PHX_APT_PROXY";
CONF
else
    remove_file "$proxy_conf"
fi

eval "set -- $PHX_PACKAGES $PHX_EXTRA_PACKAGES"
[ "$#" = 0 ] || apt_install "$@"

case "$PHX_LOCALE" in
C | C.UTF-8 | C.utf8 | POSIX) ;;
*)
    installed locales || apt_install locales
    # /etc/locale.gen lines look like "en_US.UTF-8 UTF-8".
    charset=${PHX_LOCALE#*.}
    [ "$charset" != "$PHX_LOCALE" ] || charset=ISO-8859-1
    if ! grep -qx "$PHX_LOCALE $charset" /etc/locale.gen 2>/dev/null; then
        echo "$PHX_LOCALE $charset" >>/etc/locale.gen
        did "added $PHX_LOCALE to /etc/locale.gen"
    fi
    if ! locale -a 2>/dev/null | grep -qix "$(echo "$PHX_LOCALE" | sed 's/UTF-8/utf8/')"; then
        locale-gen >/dev/null || die "locale-gen failed for $PHX_LOCALE"
        did "generated $PHX_LOCALE"
    fi
    ;;
esac
put_file /etc/default/locale 644 <<CONF
LANG=$PHX_LOCALE
CONF

zone=/usr/share/zoneinfo/$PHX_TIMEZONE
[ -f "$zone" ] || apt_install tzdata
[ -f "$zone" ] || die "unknown time zone \"$PHX_TIMEZONE\" (no $zone)"
if [ "$(readlink /etc/localtime 2>/dev/null)" != "$zone" ]; then
    ln -sfn "$zone" /etc/localtime
    did "set the time zone to $PHX_TIMEZONE"
fi
put_file /etc/timezone 644 <<CONF
$PHX_TIMEZONE
CONF

periodic=/etc/apt/apt.conf.d/20auto-upgrades
if [ "$PHX_UNATTENDED_UPGRADES" = true ]; then
    apt_install unattended-upgrades
    on=1
else
    on=0
fi
put_file "$periodic" 644 <<CONF
// Written by Phoenix (feature base_setup, unattended_upgrades).
APT::Periodic::Update-Package-Lists "$on";
APT::Periodic::Unattended-Upgrade "$on";
CONF

mkdir -p /var/lib/phoenix
finish
