#!/bin/sh
# Runs inside the aggregator once web-1..3 are healthy: fetches their pages and serves the sum.
set -eu
mkdir -p /srv/www
: > /srv/www/index.html
for ip in 10.77.0.101 10.77.0.102 10.77.0.103; do
  wget -q -O - "http://${ip}/" >> /srv/www/index.html
done
# Started at boot too; serve-web does nothing when the server already runs.
setsid /usr/local/bin/serve-web </dev/null >/dev/null 2>&1 &
