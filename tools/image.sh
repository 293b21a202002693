#!/usr/bin/env bash
# `make image`: the image of every role (Dockerfile), on a machine without a registry too.
#
# - Docker comes from Debian's docker.io; dockerd is started when it is not running.
# - BASE (default python:3.11-slim-bookworm) is used when present or pullable; otherwise a base
#   is built from Debian's packages (debootstrap --variant=minbase bookworm with python3,
#   python3-venv and ca-certificates, then `docker import`), once, as LOCAL_BASE.
# - The Python packages come from a wheelhouse made here with `pip download --require-hashes`
#   from requirements.lock (PyPI's files, checked against the lock), plus the project's wheel:
#   the build itself needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-mdstudio:latest}"
BASE="${BASE:-python:3.11-slim-bookworm}"
LOCAL_BASE="${LOCAL_BASE:-mdstudio-base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PIP="${PIP:-.venv/bin/pip}"
CONTEXT=build/image
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

log() { echo "image: $*" >&2; }

start_docker() {
  command -v docker >/dev/null || { log "docker is missing: apt-get install docker.io"; exit 1; }
  docker info >/dev/null 2>&1 && return
  log "starting dockerd"
  $SUDO sh -c 'nohup dockerd >/var/log/mdstudio-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  log "dockerd did not start (see /var/log/mdstudio-dockerd.log)"; exit 1
}

# The base to build on: BASE if it is here or can be pulled, else LOCAL_BASE from debootstrap.
resolve_base() {
  if docker image inspect "$BASE" >/dev/null 2>&1 || timeout 120 docker pull -q "$BASE" >/dev/null 2>&1; then
    echo "$BASE"; return
  fi
  if ! docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; exit 1; }
    log "$BASE cannot be pulled: building $LOCAL_BASE from Debian's packages (debootstrap)"
    local root
    root="$(mktemp -d)"
    $SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$root" "$DEBIAN_MIRROR" >&2
    $SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    $SUDO tar -C "$root" -c . | docker import \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'ENV LANG=C.UTF-8' -m "debootstrap bookworm minbase + python3" - "$LOCAL_BASE" >/dev/null
    $SUDO rm -rf "$root"
  fi
  echo "$LOCAL_BASE"
}

# requirements.lock's files from PyPI (once per lock) and the project's wheel (every time).
wheelhouse() {
  mkdir -p "$CONTEXT/wheelhouse"
  if ! cmp -s requirements.lock "$CONTEXT/requirements.lock"; then
    log "wheelhouse: downloading requirements.lock"
    rm -rf "$CONTEXT/wheelhouse"/*
    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$PIP" download --quiet --disable-pip-version-check \
      --require-hashes --only-binary=:all: --index-url https://pypi.org/simple \
      -r requirements.lock -d "$CONTEXT/wheelhouse"
    cp requirements.lock "$CONTEXT/requirements.lock"
  fi
  rm -rf "$CONTEXT/project"
  "$PIP" wheel --quiet --disable-pip-version-check --no-deps -w "$CONTEXT/project" . >&2
}

start_docker
base="$(resolve_base)"
wheelhouse
cp Dockerfile "$CONTEXT/Dockerfile"
log "building $IMAGE on $base"
DOCKER_BUILDKIT=0 docker build --quiet --build-arg BASE="$base" -t "$IMAGE" "$CONTEXT" >/dev/null
log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
