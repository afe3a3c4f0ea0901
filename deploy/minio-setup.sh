#!/bin/sh
# Creates the bucket memvid-mcp writes sealed segments to (docker-compose.yml, minio-setup).
# Idempotent: an existing bucket is left as it is.
set -eu
mc alias set team http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing team/memvid-segments
# no versioning: a segment rewritten to erase deleted text must not survive as an old version
