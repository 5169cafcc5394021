#!/usr/bin/env bash
# PostgreSQL's cost of alertd's audit rows under variants of the schema or
# of the database, side by side in one throwaway cluster: the question
# "what does this index / this locale / this migration cost per row?".
#
#   scripts/pg_schema_ab.sh [-r ROUNDS] [-w ROWS] [-s SECONDS] VARIANT...
#
# VARIANT is NAME[,locale=L][,migrations=DIR][,sql=STATEMENTS]: a database
# made with locale L (default C; the machine must have it: locale -a),
# migrated by `alertctl migrate` from DIR (default config/migrations), then
# changed by STATEMENTS (e.g. "DROP INDEX events_source_received_idx").
# Each round runs `loadgen pg-limit` (bench/lg_pg.c: alertd's own batch
# statement and rows, the mix of tcp-max, closed loop, ROWS rows a batch,
# default 512, for SECONDS, default 8) against every variant in turn,
# after a CHECKPOINT, and prints one line each: rows/s, the batch p99 and
# the backend's CPU per row. Alternating rounds, because this machine's
# speed drifts from hour to hour (docs/BENCHMARKS.md, 37.).
#
# Needs the release build (make build/loadgen). Everything runs on
# loopback on a free port under a temporary folder, removed at the end.
# docs/BENCHMARKS.md, 42., was measured with it.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
ROWS=512
SECS=8
while getopts "r:w:s:" o; do
	case "$o" in
	r) ROUNDS=$OPTARG ;;
	w) ROWS=$OPTARG ;;
	s) SECS=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '5,16p' "$0" >&2; exit 2; }

B=${BENCH_BUILD:-build}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
for f in "$B/loadgen" "$B/alertctl" "$PG_BIN/initdb"; do
	[ -x "$f" ] || { echo "pg_schema_ab: no $f (make build/loadgen)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/alertd-pgab.XXXXXX)
STARTED=0
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}
cleanup() {
	[ "$STARTED" = 1 ] &&
		as_pg "$PG_BIN/pg_ctl" -D "$W/pg" -m immediate -w stop >/dev/null 2>&1
	rm -rf "$W"
}
trap cleanup EXIT INT TERM HUP

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/pg"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$W" "$W/pg"
as_pg "$PG_BIN/initdb" -D "$W/pg" --auth=trust -U postgres -E UTF8 \
	--locale=C >"$W/initdb.log" 2>&1 || { cat "$W/initdb.log" >&2; exit 1; }
# As scripts/bench.sh starts it (synchronous_commit=on, no WAL zero-fill).
as_pg "$PG_BIN/pg_ctl" -D "$W/pg" -l "$W/pg/server.log" -w -t 60 \
	-o "-p $PORT -c listen_addresses=127.0.0.1 -k $W/pg -c fsync=on -c synchronous_commit=on -c wal_init_zero=off" \
	start >/dev/null
STARTED=1
psql_pg() {
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" \
		-U postgres -tA "$@"
}
psql_pg -d postgres -c "CREATE ROLE alertd LOGIN"

NAMES=()
for v in "$@"; do
	name=${v%%,*}
	locale=C mig=config/migrations sql=""
	rest=${v#"$name"}
	while [ -n "$rest" ]; do
		rest=${rest#,}
		case "$rest" in
		locale=*) item=${rest%%,*}; locale=${item#locale=} ;;
		migrations=*) item=${rest%%,*}; mig=${item#migrations=} ;;
		sql=*) item=$rest; sql=${rest#sql=} ;;  # the rest, commas and all
		*) echo "pg_schema_ab: cannot read '$rest' of $v" >&2; exit 2 ;;
		esac
		rest=${rest#"$item"}
	done
	[[ "$name" =~ ^[a-z0-9_]+$ ]] || { echo "pg_schema_ab: name '$name': a-z0-9_ only" >&2; exit 2; }
	psql_pg -d postgres -c "CREATE DATABASE ab_$name OWNER alertd TEMPLATE template0 LC_COLLATE '$locale' LC_CTYPE '$locale'"
	printf '[postgres]\nconninfo = host=127.0.0.1 port=%s dbname=ab_%s user=alertd\n[device_secrets]\n* = unused\n' \
		"$PORT" "$name" >"$W/$name.ini"
	"$B/alertctl" -c "$W/$name.ini" migrate --dir "$mig" >"$W/migrate-$name.log" 2>&1 ||
		{ cat "$W/migrate-$name.log" >&2; exit 1; }
	[ -n "$sql" ] && psql_pg -d "ab_$name" -c "$sql"
	echo "variant $name: locale $locale, migrations $mig$( [ -n "$sql" ] && printf ', then: %s' "$sql")"
	NAMES+=("$name")
done

for r in $(seq 1 "$ROUNDS"); do
	for name in "${NAMES[@]}"; do
		psql_pg -d "ab_$name" -c CHECKPOINT
		sync
		line=$("$B/loadgen" pg-limit \
			--pg "host=127.0.0.1 port=$PORT user=alertd dbname=ab_$name" \
			--name "$name" --window "$ROWS" --rate 0 --duration "$SECS" \
			--sources 10000 --panic-pct 1.7 --dup-pct 2 2>>"$W/loadgen.log" |
			grep '^LIMIT' || true)
		rate=$(grep -oE ' rate=[0-9.]+' <<<"$line" | cut -d= -f2)
		p99=$(grep -oE ' p99_ms=[0-9.]+' <<<"$line" | cut -d= -f2)
		cpu=$(grep -oE 'backend_cpu_us_per_row=[0-9.]+' <<<"$line" | cut -d= -f2)
		printf 'round %s %-12s rows/s %8s  batch p99 %7s ms  backend %6s us/row\n' \
			"$r" "$name" "${rate:-?}" "${p99:-?}" "${cpu:-?}"
	done
done
