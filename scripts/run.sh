#!/bin/bash
# `make run`: the development stack on this machine.
#
# Installs what is missing, builds the release binaries, starts a throwaway
# Redis (127.0.0.1:16379) and PostgreSQL 15 (127.0.0.1:15432) with their data
# under .run/, applies the migrations, creates an admin operator token in
# .run/operator-token, prints the URLs and runs alertd with
# config/alertd.dev.ini in the foreground. Ctrl-C stops all three. Running it
# again reuses .run/ (servers left over by a crashed run are stopped first).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN="$ROOT/.run"
CONFIG="config/alertd.dev.ini"
REDIS_PORT=16379
PG_PORT=15432
HTTP_URL="http://127.0.0.1:8080"
TCP_ADDR="127.0.0.1:7400"
PG_BIN=/usr/lib/postgresql/15/bin
UID_NOW=$(id -u)

say() { printf 'run: %s\n' "$*" >&2 || true; }
die() { say "$*"; exit 1; }

# Commands that PostgreSQL must run as its own user when we are root.
as_pg() {
	if [ "$UID_NOW" -eq 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# pid alive and its command line contains $2?
pid_is() {
	local pid=$1 what=$2
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$what"
}

port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

scripts/deps.sh
say "building (release, build/)"
make -j"$(nproc)" >&2

mkdir -p "$RUN" "$RUN/redis"

# ---------------------------------------------------------------------------
# Leftovers of a previous run that did not stop cleanly.

stop_pid_file() { # pidfile name-in-cmdline [message]
	local pid
	[ -f "$1" ] || return 0
	pid=$(head -n 1 "$1" 2>/dev/null || true)
	if pid_is "$pid" "$2"; then
		say "${3:-stopping $2 left over from a previous run} (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			pid_is "$pid" "$2" || break
			sleep 0.1
		done
		pid_is "$pid" "$2" && kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$1"
}

stop_pid_file "$RUN/alertd.pid" alertd
stop_pid_file "$RUN/redis/redis.pid" redis-server

# ---------------------------------------------------------------------------
# PostgreSQL data dir: .run/pg, or /tmp/alertd-dev-<uid>/pg (symlinked from
# .run/pg) when the postgres user cannot reach the project folder.

if [ -L "$RUN/pg" ]; then
	PGDATA=$(readlink "$RUN/pg")
	mkdir -p "$PGDATA"
	[ "$UID_NOW" -eq 0 ] && chown postgres:postgres "$PGDATA" "$(dirname "$PGDATA")"
else
	mkdir -p "$RUN/pg"
	PGDATA="$RUN/pg"
	if [ "$UID_NOW" -eq 0 ]; then
		chown -R postgres:postgres "$PGDATA"
		if ! runuser -u postgres -- test -w "$PGDATA" 2>/dev/null; then
			alt="/tmp/alertd-dev-$UID_NOW/pg"
			say "the postgres user cannot reach $RUN; PostgreSQL data goes to $alt (.run/pg links to it)"
			rmdir "$PGDATA" 2>/dev/null || rm -rf "$PGDATA"
			mkdir -p "$alt"
			chmod 755 "$(dirname "$alt")"
			chown postgres:postgres "$alt"
			ln -s "$alt" "$RUN/pg"
			PGDATA="$alt"
		fi
	fi
fi
chmod 700 "$PGDATA"
PGLOG="$PGDATA/server.log"

if [ -f "$PGDATA/postmaster.pid" ]; then
	pid=$(head -n 1 "$PGDATA/postmaster.pid")
	if pid_is "$pid" postgres; then
		say "stopping PostgreSQL left over from a previous run (pid $pid)"
		as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >&2 ||
			kill -QUIT "$pid" 2>/dev/null || true
	fi
fi

for p in $REDIS_PORT $PG_PORT 8080 7400; do
	if port_busy "$p"; then
		die "127.0.0.1:$p is in use by another program; stop it first"
	fi
done

# ---------------------------------------------------------------------------
# Stop everything on exit (Ctrl-C, SIGTERM, an error, alertd exiting).

ALERTD_PID=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	# Keep cleaning up even if the terminal or a pipe reading our output
	# is gone.
	trap '' PIPE
	set +e
	if [ -n "$ALERTD_PID" ] && kill -0 "$ALERTD_PID" 2>/dev/null; then
		say "stopping alertd (drains accepted events first)"
		kill -TERM "$ALERTD_PID" 2>/dev/null || true
		for _ in $(seq 1 400); do
			kill -0 "$ALERTD_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$ALERTD_PID" 2>/dev/null || true
	fi
	rm -f "$RUN/alertd.pid"
	if [ -f "$RUN/redis/redis.pid" ]; then
		stop_pid_file "$RUN/redis/redis.pid" redis-server "stopping Redis"
	fi
	if [ -f "$PGDATA/postmaster.pid" ]; then
		say "stopping PostgreSQL"
		as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop \
			>/dev/null 2>&1 || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------------------
# Redis.

say "starting Redis on 127.0.0.1:$REDIS_PORT (data in .run/redis)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
	--appendonly no --dir "$RUN/redis" --daemonize yes \
	--pidfile "$RUN/redis/redis.pid" --logfile "$RUN/redis/redis.log"
for _ in $(seq 1 100); do
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
	sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null ||
	die "Redis did not start; see $RUN/redis/redis.log"

# ---------------------------------------------------------------------------
# PostgreSQL.

if [ ! -f "$PGDATA/PG_VERSION" ]; then
	say "initialising PostgreSQL in $PGDATA"
	as_pg "$PG_BIN/initdb" -D "$PGDATA" --auth=trust -U postgres -E UTF8 \
		--locale=C >/dev/null
fi
say "starting PostgreSQL on 127.0.0.1:$PG_PORT (log $PGLOG)"
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 60 \
	-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" \
	start >/dev/null || die "PostgreSQL did not start; see $PGLOG"

psql_pg() {
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
		-U postgres -d postgres -tA "$@"
}
if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname = 'alertd'")" != 1 ]; then
	psql_pg -c "CREATE ROLE alertd LOGIN"
fi
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = 'alertd'")" != 1 ]; then
	psql_pg -c "CREATE DATABASE alertd OWNER alertd"
fi

say "applying migrations"
build/alertctl -c "$CONFIG" migrate >&2

name="dev-admin-$(date +%Y%m%d-%H%M%S)"
out=$(build/alertctl -c "$CONFIG" operator add "$name" --role admin)
token=$(printf '%s\n' "$out" | grep -oE '[A-Za-z0-9_-]{40,}' | tail -n 1 || true)
[ -n "$token" ] || die "no token in the output of alertctl operator add: $out"
(umask 077 && printf '%s\n' "$token" >"$RUN/operator-token")
chmod 600 "$RUN/operator-token"

# ---------------------------------------------------------------------------
# alertd in the foreground (in the background of this script, so that the
# trap can stop it and then the servers). It runs in its own session: Ctrl-C
# reaches only this script, which then sends alertd a single SIGTERM (a
# second one would make alertd exit without draining).

say "starting alertd -c $CONFIG"
setsid build/alertd -c "$CONFIG" &
ALERTD_PID=$!
echo "$ALERTD_PID" >"$RUN/alertd.pid"

for _ in $(seq 1 300); do
	kill -0 "$ALERTD_PID" 2>/dev/null || break
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$HTTP_URL/readyz" || true)" = 200 ] && break
	sleep 0.1
done

cat >&2 <<EOF

alertd is running (pid $ALERTD_PID). Ctrl-C stops alertd, Redis and PostgreSQL.

  HTTP API      $HTTP_URL   (/healthz /readyz /metrics /v1/...)
  TCP devices   $TCP_ADDR
  Redis         127.0.0.1:$REDIS_PORT
  PostgreSQL    host=127.0.0.1 port=$PG_PORT dbname=alertd user=alertd
  operator      $name (admin); token in .run/operator-token
  logs          this terminal; $RUN/redis/redis.log, $PGLOG

Send a signed event (from $ROOT):

  body='{"event_id":"demo-'"\$(date +%s)"'","source":{"id":"bus-1436","kind":"bus","zone":"Karsiyaka","label":"ESHOT 1436, line 90"},"type":"panic"}'
  curl -sS -H "Content-Type: application/json" -H "X-Alertd-Signature: \$(printf %s "\$body" | scripts/sign.sh)" -d "\$body" $HTTP_URL/v1/events

Watch the console stream, or the queue:

  curl -N -H "Authorization: Bearer \$(cat .run/operator-token)" $HTTP_URL/v1/stream
  curl -sS -H "Authorization: Bearer \$(cat .run/operator-token)" $HTTP_URL/v1/incidents

EOF

set +e
wait "$ALERTD_PID"
rc=$?
set -e
ALERTD_PID=""
say "alertd exited with status $rc"
exit "$rc"
