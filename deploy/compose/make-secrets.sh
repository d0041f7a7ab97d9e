#!/bin/sh
# Writes .env (database, Redis, API and Grafana secrets) and secrets/api_token (the same API
# token, read by Prometheus to scrape /metrics), unless they exist. Random, 32 bytes each.
set -eu
cd "$(dirname "$0")"
umask 077
if [ -e .env ]; then
  echo ".env exists: left as it is"
  exit 0
fi
rand() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
token=$(rand)
mkdir -p secrets
printf '%s' "$token" > secrets/api_token
# The secret file is read by Prometheus, which runs as "nobody" in its image.
chmod 0644 secrets/api_token
cat > .env <<ENV
COMPOSE_PROJECT_NAME=infernode
INFERNODE_DB_PASSWORD=$(rand)
INFERNODE_REDIS_PASSWORD=$(rand)
GRAFANA_ADMIN_PASSWORD=$(rand)
INFERNODE_API_TOKEN=$token
ENV
echo "wrote .env and secrets/api_token"
