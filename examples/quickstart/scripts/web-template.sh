#!/bin/sh
# Runs once inside the template container: installs the tiny web server every clone uses.
set -eu
mkdir -p /usr/local/bin /srv/www
cat > /usr/local/bin/serve-web <<'SERVE'
#!/bin/sh
exec httpd -f -p 80 -h /srv/www
SERVE
chmod 755 /usr/local/bin/serve-web
