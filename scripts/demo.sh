#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the node on embedded defaults with sample studies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/infernode demo "$@"
