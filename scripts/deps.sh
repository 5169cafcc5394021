#!/bin/sh
# Installs the Debian packages alertd needs to build, test and run, if any
# is missing. A fast no-op when everything is present. Uses sudo when not
# root. Debian 12 (bookworm).
set -eu

PKGS="build-essential pkg-config libevent-dev libhiredis-dev libprotobuf-c-dev
protobuf-c-compiler libpq-dev libsystemd-dev libinih-dev libjansson-dev
libssl-dev zlib1g-dev libjemalloc-dev libhttp-parser-dev redis-server postgresql python3-pytest python3-psycopg2
python3-redis python3-protobuf protobuf-compiler curl openssl kannel"

missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	if [ "$st" != "installed" ]; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

echo "deps: installing:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "deps: not root and no sudo; install as root:$missing" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# The packages' own services (the system redis-server and PostgreSQL
# cluster) are never used by alertd's scripts; they may or may not start.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	--no-install-recommends $missing >&2
echo "deps: done" >&2
