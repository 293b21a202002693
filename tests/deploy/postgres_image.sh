#!/usr/bin/env bash
# The drills' PostgreSQL image, built once from Debian's packages (no registry here): a
# debootstrap bookworm with postgresql-15, imported as $1 (default mdstudio-drill-postgres:15).
# The drills start it with tests/deploy/postgres_entry.sh instead of postgres:15's entrypoint.
set -euo pipefail
TAG="${1:-mdstudio-drill-postgres:15}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
docker image inspect "$TAG" >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
root="$(mktemp -d)"
trap '$SUDO rm -rf "$root"' EXIT
$SUDO debootstrap --variant=minbase --include=postgresql-15 bookworm "$root" "$MIRROR" >/dev/null
$SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
$SUDO tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' -m "debootstrap bookworm minbase + postgresql-15" - "$TAG" >/dev/null
