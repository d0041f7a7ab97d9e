#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every check: ruff, import-linter contracts, the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "== ruff"; ruff check .
echo "== import contracts"; lint-imports
echo "== mypy"; mypy common dicom_node inference hl7_fhir workers infernode
echo "== tests"; exec pytest -q -p no:cacheprovider "$@"
