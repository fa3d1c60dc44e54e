#!/bin/bash
# Runs inside the gateway container: installs NGINX. Phoenix generates the site configuration
# from the guests' services, checks it with `nginx -t` and reloads NGINX when it changes.
set -euo pipefail
if ! command -v nginx >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx
fi
mkdir -p /var/www/healthz && echo ok > /var/www/healthz/index.html
systemctl enable --now nginx
