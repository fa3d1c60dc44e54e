#!/bin/bash
# Runs inside the Qdrant container: starts Qdrant under Docker, with its data on the volume.
set -euo pipefail
if ! docker container inspect qdrant >/dev/null 2>&1; then
  docker run -d --name qdrant --restart unless-stopped \
    -p 6333:6333 -p 6334:6334 \
    -v /qdrant/storage:/qdrant/storage \
    qdrant/qdrant:v1.15.4
fi
