#!/bin/bash
# Sets up the NGINX gateway.
set -euo pipefail
echo "gateway"
