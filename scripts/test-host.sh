#!/usr/bin/env bash
# Prepares this machine (as root) for the tests that use real components: LXC with the bridge
# phxtest0 for the end-to-end tests, and an OpenSSH server binary for the node-channel tests
# (the tests start their own sshd on loopback; the system's sshd is not started), and the checkers
# host setup runs on the files it writes (visudo, testparm, apparmor_parser) and smbclient (the
# host setup end-to-end test lists a container's Samba shares with it), and for the
# gateway's end-to-end test debootstrap (its Debian template, built once per machine and kept
# under /var/cache/phoenix-tests), openssl (its test CA) and curl, and for the features'
# end-to-end tests apt-cacher-ng on 10.79.0.1:3142, the apt proxy the test containers install
# Debian packages through (it serves Debian's archive only; its cache stays between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/lxc-host.sh phxtest0 10.79.0.1/24
bash scripts/apt-need.sh openssh-server openssh-client
bash scripts/apt-need.sh sudo samba-common-bin apparmor smbclient
bash scripts/apt-need.sh debootstrap openssl curl
mkdir -p /run/sshd

# apt-cacher-ng, bound to the bridge only. The packaged default backend (ftp.debian.org) may not
# resolve where deb.debian.org does, so the backend is named; ForceManaged refuses anything but
# the Debian archive. Started with its System V script: the host need not run systemd.
bash scripts/apt-need.sh apt-cacher-ng
acng_conf=/etc/apt-cacher-ng/zz-phoenix-tests.conf
acng_want=$'# Written by scripts/test-host.sh: the apt proxy of the test containers.\nBindAddress: 10.79.0.1\nPort: 3142\nForceManaged: 1\n'
acng_backend=http://deb.debian.org/debian/
acng_restart=
if [ "$(cat "$acng_conf" 2>/dev/null)"$'\n' != "$acng_want" ]; then
    printf '%s' "$acng_want" >"$acng_conf"
    acng_restart=1
fi
if [ "$(cat /etc/apt-cacher-ng/backends_debian 2>/dev/null)" != "$acng_backend" ]; then
    echo "$acng_backend" >/etc/apt-cacher-ng/backends_debian
    acng_restart=1
fi
if [ -n "$acng_restart" ]; then
    /etc/init.d/apt-cacher-ng restart >/dev/null
elif ! /etc/init.d/apt-cacher-ng status >/dev/null 2>&1; then
    /etc/init.d/apt-cacher-ng start >/dev/null
fi
for _ in $(seq 50); do
    curl -s -o /dev/null --max-time 2 http://10.79.0.1:3142/ && break
    sleep 0.2
done
curl -s -o /dev/null --max-time 2 http://10.79.0.1:3142/ || {
    echo "test-host: apt-cacher-ng does not answer on 10.79.0.1:3142" >&2
    exit 1
}
