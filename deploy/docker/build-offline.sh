#!/bin/sh
# Builds the InferNode image where no image registry is reachable (docs/DEPLOY.md, "Building the
# image without a registry"): the base is Debian bookworm made with debootstrap and imported
# (python3, venv), the Python packages come from a local folder of wheels served on loopback.
#
#   deploy/docker/build-offline.sh WHEELHOUSE [TAG]
#
# WHEELHOUSE holds the wheels of every dependency, torch's CPU or CUDA wheel among them, e.g.
#   pip download --dest WHEELHOUSE -r requirements.txt setuptools wheel async-timeout
#   pip download --dest WHEELHOUSE --no-deps blast-ct==2.1.0
# Needs root (debootstrap), a Debian mirror for debootstrap (DEBIAN_MIRROR), docker with
# BuildKit. Run from anywhere; the build context is the repository.
set -eu
wheelhouse=$(cd "$1" && pwd)
tag=${2:-infernode:0.1.0-cpu}
base=${BASE_IMAGE:-infernode-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

if ! docker image inspect "$base" >/dev/null 2>&1; then
  echo "build-offline: making $base with debootstrap"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log"
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | docker import --change 'CMD ["python3"]' - "$base"
  rm -rf "$work/rootfs"
fi

# A PEP 503 index: one folder per normalised project name, linking its files.
python3 - "$wheelhouse" "$work/simple" <<'PY'
import re, sys
from pathlib import Path
source, simple = Path(sys.argv[1]), Path(sys.argv[2])
for f in source.iterdir():
    if f.suffix == ".whl":
        project = f.name.split("-")[0]
    else:
        match = re.match(r"(.+?)-\d", f.name)
        if match is None:
            continue
        project = match.group(1)
    folder = simple / re.sub(r"[-_.]+", "-", project).lower()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f.name).symlink_to(f)
PY
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/simple" >"$work/http.log" 2>&1 &
server=$!
sleep 1

DOCKER_BUILDKIT=1 docker build --network host -f "$repo/deploy/docker/Dockerfile" \
  --build-arg PYTHON_IMAGE="$base" \
  --build-arg TORCH_INDEX_URL="http://127.0.0.1:$port/" \
  --build-arg PIP_INDEX_URL="http://127.0.0.1:$port/" \
  -t "$tag" "$repo"
echo "build-offline: built $tag"
