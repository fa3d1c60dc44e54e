#!/bin/sh
# Runs once inside the template container: installs the tiny web server every clone uses, started
# at boot (the template's init runs /etc/boot.d/*), so that a restarted clone serves again.
set -eu
mkdir -p /usr/local/bin /srv/www /etc/boot.d
cat > /usr/local/bin/serve-web <<'SERVE'
#!/bin/sh
# Serves /srv/www on port 80, once: does nothing when the server already runs.
pid=$(cat /run/serve-web.pid 2>/dev/null || true)
if [ -n "$pid" ] && grep -q httpd "/proc/$pid/cmdline" 2>/dev/null; then
  exit 0
fi
echo $$ > /run/serve-web.pid
exec httpd -f -p 80 -h /srv/www
SERVE
chmod 755 /usr/local/bin/serve-web
ln -sf /usr/local/bin/serve-web /etc/boot.d/serve-web
