#!/bin/bash
# Serves the configured model with vLLM.
set -euo pipefail
echo "serving"
