#!/bin/sh
# Runs inside each web container: writes its own page and starts serving it.
set -eu
name=$(hostname)
mkdir -p /srv/www /srv/shared
echo "hello from ${name}" > /srv/www/index.html
echo "${name} was here" > "/srv/shared/${name}.txt"
# Started at boot too; serve-web does nothing when the server already runs.
setsid /usr/local/bin/serve-web </dev/null >/dev/null 2>&1 &
