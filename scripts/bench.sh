#!/bin/bash
# `make bench` / `make bench-smoke`: alertd under load (docs/BENCHMARKS.md).
#
#   scripts/bench.sh           the full run (minutes): throughput, latency,
#                              burst, Prometheus Alertmanager side by side,
#                              the machine's limits; rewrites the generated
#                              part of docs/BENCHMARKS.md
#   scripts/bench.sh --smoke   a few seconds of tiny rates: proves the tool
#                              works (every event sent is answered); `make
#                              test` runs it as one test
#
# Starts its own Redis and PostgreSQL (fsync=on, synchronous_commit=on) on
# free loopback ports under a temporary folder, like the integration tests,
# and stops everything it started on exit, even on failure. Never fails on
# speed. BENCH_BUILD picks the build folder (default build/, the release
# build, made here); BENCH_KEEP=1 keeps the temporary folder.
# BENCH_DIRTY_BYTES=N (as root) sets the kernel's vm.dirty_background_bytes
# to N for the run and restores the previous writeback settings at exit:
# the setting docs/operations.md recommends for the audit host (64 MiB:
# 67108864), off by default so that the table compares with earlier ones
# (docs/BENCHMARKS.md, "The 1k/s stalls").
# BENCH_PG_WALDIR=DIR and BENCH_TMPDIR=DIR put PostgreSQL's WAL, or the
# whole temporary folder, in DIR (e.g. /dev/shm: diagnostics, see below).
# BENCH_SLOWLOG_US=N logs every Redis command slower than N us and writes
# each run's slow commands to slowlog-RUN.txt in the temporary folder
# (with BENCH_KEEP=1; optimisation 31 used 5000).
# BENCH_GAUGES=1 samples alertd's queue gauges every 20 ms for the whole
# bench (scripts/sample_gauges.py; gauges.txt in the temporary folder).
# Both with BENCH_KEEP=1.
# BENCH_INI_EXTRA: lines appended to alertd's configuration (a diagnostic,
# e.g. $'[priority]\naging_step = 0' to run without aging).
# BENCH_PROBE=1 runs `loadgen cpu-probe` in a session of its own for the
# whole bench: probe.txt in the temporary folder gets, once a second, how
# long a fixed piece of work took by the clock and by its CPU time: was a
# slow stretch the cores being taken, or the virtual CPU running slowly
# for everyone (scripts/probe_slow.py; docs/BENCHMARKS.md, 40). runs.txt
# there has each run's start (realtime) to line them up with.
# BENCH_REDIS_LATENCY_MS=N turns on Redis's latency monitor at N ms and
# writes, per run, every event it recorded (its kind, e.g. command or
# expire-cycle, the time and the ms) to latency-RUN.txt in the temporary
# folder (with BENCH_KEEP=1): what Redis itself was doing in a stall.
# BENCH_SSE=0 runs the rate runs without the load generator's console
# stream (a diagnostic: their console latency is then not measured).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
B="${BENCH_BUILD:-build}"
PG_BIN=/usr/lib/postgresql/15/bin
SECRET=bench-device-secret

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if [ -z "${BENCH_BUILD:-}" ]; then
	make -s -j"$(nproc)" "$B/alertd" "$B/alertctl" "$B/loadgen" >&2 ||
		die "build failed"
fi
for f in alertd alertctl loadgen; do
	[ -x "$B/$f" ] || die "$B/$f is missing"
done

# BENCH_TMPDIR=DIR (default /tmp) holds the temporary folder: the
# databases, the spool, the logs. On /dev/shm it takes the disk out of the
# whole path, a diagnostic like BENCH_PG_WALDIR (docs/BENCHMARKS.md, 39.).
W=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/alertd-bench.XXXXXX") ||
	die "mktemp failed"
chmod 755 "$W"
RES="$W/results.txt"
: >"$RES"

# --- cleanup: every process started here, by its id ----------------------

ALERTD_PID=""
AM_PID=""
ECHO_PID=""
FLOOD_PID=""
BG_LG_PID=""   # a load generator running across a restart
REDIS_PID=""
PROBE_PID=""
GAUGES_PID=""
PG_STARTED=0
PG_WALDIR=""   # BENCH_PG_WALDIR's folder, removed with $W

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

stop_pid() { # pid [signal]
	local pid=$1
	[ -n "$pid" ] || return 0
	kill "-${2:-TERM}" "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	set +e
	stop_pid "$FLOOD_PID"
	# run_lg in a subshell: its child is timeout(1), which passes the
	# signal on to the load generator.
	[ -n "$BG_LG_PID" ] && pkill -TERM -P "$BG_LG_PID" 2>/dev/null
	stop_pid "$BG_LG_PID"
	stop_pid "$ALERTD_PID"
	stop_pid "$AM_PID"
	stop_pid "$ECHO_PID"
	stop_pid "$REDIS_PID"
	stop_pid "$PROBE_PID"
	stop_pid "$GAUGES_PID"
	if [ "$PG_STARTED" = 1 ]; then
		as_pg "$PG_BIN/pg_ctl" -D "$W/pg" -m immediate -w -t 60 stop \
			>/dev/null 2>&1
	fi
	if [ -n "$DIRTY_SAVED" ]; then
		# Writing the ratio clears the bytes and the other way round.
		set -- $DIRTY_SAVED
		if [ "$1" != 0 ]; then
			sysctl -q vm.dirty_background_bytes="$1"
		else
			sysctl -q vm.dirty_background_ratio="$2"
		fi
	fi
	if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
		say "kept $W${PG_WALDIR:+ and $PG_WALDIR}"
	else
		rm -rf "$W"
		[ -n "$PG_WALDIR" ] && rm -rf "$PG_WALDIR"
	fi
	exit "$rc"
}
DIRTY_SAVED=""
trap cleanup EXIT
if [ -n "${BENCH_DIRTY_BYTES:-}" ]; then
	DIRTY_SAVED="$(sysctl -n vm.dirty_background_bytes) $(sysctl -n vm.dirty_background_ratio)"
	sysctl -q vm.dirty_background_bytes="$BENCH_DIRTY_BYTES" ||
		die "cannot set vm.dirty_background_bytes (root?)"
fi
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # url seconds
	local n=$(( $2 * 10 ))
	for _ in $(seq 1 "$n"); do
		[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true)" = 200 ] && return 0
		sleep 0.1
	done
	return 1
}

# --- Redis and PostgreSQL -------------------------------------------------

if [ "${BENCH_PROBE:-0}" = 1 ]; then
	setsid "$B/loadgen" cpu-probe --duration 86400 >>"$W/probe.txt" \
		2>>"$W/loadgen.log" &
	PROBE_PID=$!
fi

# Redis and alertd each in a session of its own, as PostgreSQL's
# processes are (each calls setsid) and as systemd runs each service: the
# kernel shares the cores among sessions (autogroups) before it shares
# them among their processes, and until optimisation 39 alertd, Redis and
# the load generator shared one session's share while every PostgreSQL
# backend had its own (docs/BENCHMARKS.md, 39.). BENCH_SETSID=0: the old
# way, one session for all three.
SESS=(setsid)
[ "${BENCH_SETSID:-1}" = 0 ] && SESS=()
REDIS_PORT=$(free_port)
mkdir -p "$W/redis"
${SESS[@]} redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
	--appendonly no --dir "$W/redis" --logfile "$W/redis/redis.log" &
REDIS_PID=$!
for _ in $(seq 1 100); do
	redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
	sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || die "Redis did not start"
if [ -n "${BENCH_SLOWLOG_US:-}" ]; then
	redis-cli -p "$REDIS_PORT" config set slowlog-log-slower-than \
		"$BENCH_SLOWLOG_US" >/dev/null &&
		redis-cli -p "$REDIS_PORT" config set slowlog-max-len 100000 \
			>/dev/null || die "cannot set Redis's slowlog"
fi
if [ -n "${BENCH_REDIS_LATENCY_MS:-}" ]; then
	redis-cli -p "$REDIS_PORT" config set latency-monitor-threshold \
		"$BENCH_REDIS_LATENCY_MS" >/dev/null ||
		die "cannot set Redis's latency monitor"
fi

PG_PORT=$(free_port)
mkdir -p "$W/pg"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$W/pg"
# BENCH_PG_WALDIR=DIR puts PostgreSQL's WAL in DIR/alertd-bench-wal.PID
# (initdb -X), e.g. on /dev/shm: a diagnostic of how much of the commit
# tail is the disk's (docs/BENCHMARKS.md, 39.), never a table's method:
# a WAL in memory is not durable.
WAL_ARGS=()
if [ -n "${BENCH_PG_WALDIR:-}" ]; then
	PG_WALDIR="$BENCH_PG_WALDIR/alertd-bench-wal.$$"
	mkdir -p "$PG_WALDIR" || die "cannot create $PG_WALDIR"
	[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PG_WALDIR"
	WAL_ARGS=(-X "$PG_WALDIR")
	say "PostgreSQL's WAL in $PG_WALDIR (a diagnostic, not a table)"
fi
# BENCH_PG_LOCALE=L makes the cluster (and so alertd's databases) with
# locale L instead of C, as `createdb` on a server installed under L
# does: e.g. en_US.UTF-8, which the machine must have (`apt-get install
# locales`, the line in /etc/locale.gen, `locale-gen`). A diagnostic of
# what the database's locale costs (docs/BENCHMARKS.md, 42.).
PG_LOCALE=${BENCH_PG_LOCALE:-C}
if [ "$PG_LOCALE" != C ] &&
	! locale -a 2>/dev/null | tr 'A-Z' 'a-z' | sed 's/utf-8/utf8/' |
	grep -qx "$(printf '%s' "$PG_LOCALE" | tr 'A-Z' 'a-z' | sed 's/utf-8/utf8/')"; then
	die "BENCH_PG_LOCALE=$PG_LOCALE: no such locale here (locale -a; locale-gen)"
fi
as_pg "$PG_BIN/initdb" -D "$W/pg" "${WAL_ARGS[@]}" --auth=trust -U postgres \
	-E UTF8 --locale="$PG_LOCALE" >"$W/initdb.log" 2>&1 ||
	die "initdb failed ($W/initdb.log)"
PG_STARTED=1
# wal_init_zero=off: a fresh cluster creates, zero-fills and fsyncs every
# new 16 MB WAL segment inside some commit; at 10k events/s that stalled
# the audit commit for ~80 ms every 1.4 s. A server that has run for a
# while recycles old segments at its checkpoints instead and writes no
# zeros, so the bench skips them too (docs/BENCHMARKS.md, optimisation 9;
# docs/operations.md for production). BENCH_PG_OPTS replaces it.
PG_OPTS=${BENCH_PG_OPTS-"-c wal_init_zero=off"}
as_pg "$PG_BIN/pg_ctl" -D "$W/pg" -l "$W/pg/server.log" -w -t 60 \
	-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $W/pg -c fsync=on -c synchronous_commit=on -c max_connections=100 $PG_OPTS" \
	start >/dev/null || die "PostgreSQL did not start"
psql_pg() {
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
		-U postgres -tA "$@"
}

# The PostgreSQL limit (bench/lg_pg.c): alertd's own audit batches, sent
# alone to the database alertd_limits, with the mix of tcp-max (1.7 % of
# events open an incident and carry its transition, 2 % are redeliveries,
# looked up only). One LIMIT line into the results, rate=0 if it printed
# none, and loadgen's exit status (rc).
PG_CONNINFO="host=127.0.0.1 port=$PG_PORT user=alertd dbname=alertd_limits"
# loadgen reports its backend's CPU per row; the server's other processes
# (WAL writer, checkpointer, background writer) are added as
# helpers_cpu_us_per_row: the CPU PostgreSQL as a whole spends on a row.
pg_limit() { # NAME ROWS-PER-BATCH RATE(rows/s, 0 closed loop) SECONDS
	local out rc=0 h0 h1 rows
	h0=$(tree_ticks "$(head -n 1 "$W/pg/postmaster.pid")")
	out=$("$B/loadgen" pg-limit --pg "$PG_CONNINFO" --name "$1" \
		--window "$2" --rate "$3" --duration "$4" --sources 10000 \
		--panic-pct 1.7 --dup-pct 2 2>>"$W/loadgen.log") || rc=$?
	h1=$(tree_ticks "$(head -n 1 "$W/pg/postmaster.pid")")
	rows=$(grep -oE ' rows=[0-9]+' <<<"$out" | cut -d= -f2)
	[ -n "$out" ] && out="$out helpers_cpu_us_per_row=$(awk -v a="$h0" \
		-v b="$h1" -v n="${rows:-0}" -v t="$CLK_TCK" \
		'BEGIN { printf "%.1f", (n > 0 ? (b - a) * 1e6 / t / n : -1) }')"
	out="${out:-LIMIT name=$1 rate=0} rc=$rc"
	printf '%s\n' "$out" >>"$RES"
	say "$out"
}
psql_pg -d postgres -c "CREATE ROLE alertd LOGIN" &&
	psql_pg -d postgres -c "CREATE DATABASE alertd OWNER alertd" ||
	die "cannot create the database"

# --- alertd ---------------------------------------------------------------

HTTP_PORT=$(free_port)
TCP_PORT=$(free_port)
CFG="$W/alertd.ini"
cat >"$CFG" <<EOF
; written by scripts/bench.sh
[server]
http_listen = 127.0.0.1:$HTTP_PORT
tcp_listen = 127.0.0.1:$TCP_PORT
${BENCH_PIPELINE_MAX:+pipeline_max_inflight = $BENCH_PIPELINE_MAX}
log_level = warn

[redis]
host = 127.0.0.1
port = $REDIS_PORT
prefix = bench:

[postgres]
conninfo = host=127.0.0.1 port=$PG_PORT dbname=alertd user=alertd
${BENCH_PG_BATCH:+batch_max = $BENCH_PG_BATCH}

[spool]
path = $W/spool

[device_secrets]
* = $SECRET
EOF
[ -n "${BENCH_INI_EXTRA:-}" ] && printf '\n%s\n' "$BENCH_INI_EXTRA" >>"$CFG"
mkdir -p "$W/spool"
# A build folder may carry the schema of its own revision (a baseline for
# scripts/bench_ab.sh made before a migration): BUILD/migrations.
MIG_ARGS=()
[ -d "$B/migrations" ] && MIG_ARGS=(--dir "$B/migrations")
"$B/alertctl" -c "$CFG" migrate "${MIG_ARGS[@]}" >"$W/migrate.log" 2>&1 ||
	die "migrate failed ($W/migrate.log)"
# BENCH_FLEET=1: register the fleet first, as a city does
# (docs/prioritisation.md): every source the load generator uses goes
# into the registry, and each heartbeat then pays in Redis what a
# registered one costs (last-seen, supervision due time, device_offline
# check); without it the registry is empty and the script fails open.
# Supervision every 15 min outlasts the whole bench, so the pauses
# between runs open no device_offline incidents. No label: a registered
# label would replace the event's, which carries the send time the
# console latency is measured with. Not the default: the registry's
# extra Redis work brings tcp-10k close to what this machine sustains,
# so its row would not compare with earlier tables (BENCHMARKS.md,
# optimisation 20 and "Found, not changed").
if [ "${BENCH_FLEET:-0}" = 1 ]; then
	{
		echo "id,kind,zone,label,secret_group,supervision_s"
		awk 'BEGIN { for (i = 0; i < 10000; i++)
			printf "bus-%d,bus,Konak,,,900\n", i }'
		echo "flood-0,bus,Konak,,,900"
	} >"$W/fleet.csv"
	"$B/alertctl" -c "$CFG" sources import "$W/fleet.csv" \
		>"$W/fleet.log" 2>&1 || die "sources import failed ($W/fleet.log)"
fi
psql_pg -d postgres -c "CREATE DATABASE alertd_limits TEMPLATE alertd OWNER alertd" ||
	die "cannot create alertd_limits"
TOKEN=$("$B/alertctl" -c "$CFG" operator add bench-console --role operator 2>/dev/null |
	grep -oE '[A-Za-z0-9_-]{40,}' | tail -n 1)
[ -n "$TOKEN" ] || die "no operator token"

# BENCH_WRAP: a command to run alertd under (e.g. valgrind --tool=callgrind).
start_alertd() {
	${SESS[@]} ${BENCH_WRAP:-} "$B/alertd" -c "$CFG" >>"$W/alertd.log" 2>&1 &
	ALERTD_PID=$!
	wait_http "http://127.0.0.1:$HTTP_PORT/readyz" 30 ||
		die "alertd not ready ($W/alertd.log)"
}

stop_alertd() {
	stop_pid "$ALERTD_PID"
	wait "$ALERTD_PID" 2>/dev/null
	ALERTD_PID=""
}

scrape_metrics() { # file
	curl -s -m 5 -o "$1" "http://127.0.0.1:$HTTP_PORT/metrics"
}

CLK_TCK=$(getconf CLK_TCK)
# (0 without a pid: "/proc//stat" would be the machine's /proc/stat)
cpu_ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# ns the process's main thread was runnable but waited for a core
runq_ns() { [ -n "$1" ] && cut -d' ' -f2 "/proc/$1/schedstat" 2>/dev/null || echo 0; }
# "busy total" jiffies of all cores (busy: not idle, not iowait)
machine_jiffies() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i;
	print t - $5 - $6, t; exit}' /proc/stat; }
# ticks of a process and of its children (the postmaster and every
# PostgreSQL process; a child that exits meanwhile takes its ticks along)
tree_ticks() {
	local t=0 p
	for p in "$1" $(pgrep -P "$1"); do
		t=$((t + $(cpu_ticks "$p")))
	done
	echo "$t"
}
# "PostgreSQL-ticks Redis-ticks"
server_ticks() {
	echo "$(tree_ticks "$(head -n 1 "$W/pg/postmaster.pid" 2>/dev/null)") $(cpu_ticks "$REDIS_PID")"
}
now_ns() { date +%s%N; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Redis's latency monitor since its last reset: "EVENT EPOCH_S MS" lines.
redis_latency() {
	local ev
	for ev in $(redis-cli -p "$REDIS_PORT" --no-raw latency latest |
		awk '/^ *[0-9]+\) 1\) "/ { gsub(/"/, "", $3); print $3 }'); do
		redis-cli -p "$REDIS_PORT" --raw latency history "$ev" |
			paste - - | awk -v e="$ev" '{ print e, $1, $2 }'
	done
}

# Every measured run starts from the same state, as the limits of
# PostgreSQL below do: a CHECKPOINT, and the kernel's dirty pages written
# (sync). Without it a run paid for the writeback of the runs before it:
# the first tcp-10k after tcp-max and http-max had an Ack p99 of 184-217
# ms, 6.8-8.7 ms from a clean state (docs/BENCHMARKS.md, 34.).
# BENCH_CLEAN=0 measures without it.
clean_state() {
	[ "$SMOKE" = 1 ] || [ "${BENCH_CLEAN:-1}" = 0 ] && return 0
	psql_pg -d alertd -c CHECKPOINT >/dev/null 2>&1 || true
	sync
	# No run starts inside the flood windows of the one before: a
	# source over flood_soft in the last 10 s window of http-max stays
	# marked flooding into the next window (docs/prioritisation.md), and
	# its first merges of a 1k/s run were quiet, so a console saw them
	# only when aging or escalation published the incident again, 35 s
	# later (docs/BENCHMARKS.md, 43.).
	redis-cli -p "$REDIS_PORT" --scan --pattern 'bench:rate:*' 2>/dev/null |
		xargs -r -n 500 redis-cli -p "$REDIS_PORT" DEL >/dev/null 2>&1 || true
}

# run_lg NAME PID-to-measure loadgen-args...: one measured run. Appends
# the loadgen's RESULT line, with the peak RSS (VmHWM, reset before the
# run) and the CPU time per 1,000 answered events of PID, to $RES.
run_lg() {
	local name=$1 pid=$2 c0 c1 line acked cpu rc slow q0 q1 t0 t1 m0 m1 stages=""
	shift 2
	[ -z "${RUN_NO_CLEAN:-}" ] && clean_state
	[ -n "$pid" ] && echo 5 >"/proc/$pid/clear_refs" 2>/dev/null
	# alertd's stage histograms (Redis decide calls, audit batches)
	# before and after: where its answer time went during this run.
	[ "$pid" = "$ALERTD_PID" ] && scrape_metrics "$W/metrics-$name.0"
	[ -n "${BENCH_SLOWLOG_US:-}" ] &&
		redis-cli -p "$REDIS_PORT" slowlog reset >/dev/null
	[ -n "${BENCH_REDIS_LATENCY_MS:-}" ] &&
		redis-cli -p "$REDIS_PORT" latency reset >/dev/null
	c0=$(cpu_ticks "$pid")
	q0=$(runq_ns "$pid")
	# Where the cores went besides the measured process: PostgreSQL (the
	# postmaster and its children) and Redis, per answered event.
	s0=$(server_ticks)
	m0=$(machine_jiffies)
	t0=$(now_ns)
	# The machine may be shared: the load before the run goes with it.
	load1=$(cut -d' ' -f1 /proc/loadavg)
	say "$name: loadgen $*"
	# When each run started (realtime), for BENCH_PROBE and BENCH_GAUGES.
	printf 'RUN name=%s at=%s\n' "$name" "$(date +%s.%N)" >>"$W/runs.txt"
	timeout -k 10 900 ${BENCH_LG_WRAP:-} "$B/loadgen" "$@" --name "$name" \
		>"$W/lg-$name.out" 2>>"$W/loadgen.log"
	rc=$?
	line=$(grep '^RESULT' "$W/lg-$name.out" | tail -n 1)
	[ -n "$line" ] || line="RESULT name=$name sent=0 acked=0"
	c1=$(cpu_ticks "$pid")
	q1=$(runq_ns "$pid")
	s1=$(server_ticks)
	m1=$(machine_jiffies)
	t1=$(now_ns)
	acked=$(printf '%s\n' "$line" | grep -oE ' acked=[0-9]+' | cut -d= -f2)
	cpu=$(awk -v a="${acked:-0}" -v d="$((c1 - c0))" -v t="$CLK_TCK" \
		'BEGIN { printf "%.2f", (a > 0 ? d * 1000 / t / a * 1000 : 0) }')
	# --slow-ms: how many 100 ms windows had an answer slower than that
	# (the windows themselves stay in lg-NAME.out with BENCH_KEEP=1).
	slow=$(grep -c '^SLOW' "$W/lg-$name.out")
	# How saturated the machine was: both cores' busy share over the run,
	# and the share of the run the measured process spent runnable but
	# waiting for a core (its scheduling delay, which every answer of a
	# one-threaded daemon pays).
	servers=$(awk -v a="$s0" -v b="$s1" -v n="${acked:-0}" -v t="$CLK_TCK" \
		'BEGIN { split(a, x, " "); split(b, y, " "); if (n <= 0) exit;
		printf "pg_us_per_ev=%.2f redis_us_per_ev=%.2f",
			(y[1] - x[1]) * 1e6 / t / n, (y[2] - x[2]) * 1e6 / t / n }')
	busy=$(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x, " "); split(b, y, " ");
		d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }')
	runq=$(awk -v q0="$q0" -v q1="$q1" -v t0="$t0" -v t1="$t1" \
		'BEGIN { printf "%.1f", (t1 > t0 ? 100 * (q1 - q0) / (t1 - t0) : 0) }')
	[ -n "${BENCH_SLOWLOG_US:-}" ] &&
		redis-cli -p "$REDIS_PORT" slowlog get 100000 >"$W/slowlog-$name.txt"
	[ -n "${BENCH_REDIS_LATENCY_MS:-}" ] && redis_latency >"$W/latency-$name.txt"
	if [ "$pid" = "$ALERTD_PID" ] && scrape_metrics "$W/metrics-$name.1"; then
		stages=$(python3 "$ROOT/scripts/metrics_stages.py" \
			"$W/metrics-$name.0" "$W/metrics-$name.1" 2>>"$W/loadgen.log")
	fi
	line="$line ${stages:+$stages }${servers:+$servers }rss_hwm_kb=$(hwm_kb "$pid") cpu_ms_per_1k=$cpu load1=$load1 slow_windows=$slow machine_busy_pct=$busy runq_wait_pct=$runq rc=$rc"
	printf '%s\n' "$line" >>"$RES"
	say "$line"
	return "$rc"
}

start_alertd
if [ "${BENCH_GAUGES:-0}" = 1 ]; then
	/usr/bin/python3 scripts/sample_gauges.py "$HTTP_PORT" "$W/gauges.txt" &
	GAUGES_PID=$!
fi

# --- smoke ------------------------------------------------------------------

if [ "$SMOKE" = 1 ]; then
	ok=1
	run_lg smoke-tcp "$ALERTD_PID" tcp --port "$TCP_PORT" --conns 4 \
		--sources 50 --rate 1000 --count 300 --secret "$SECRET" \
		--sse 1 --sse-port "$HTTP_PORT" --sse-token "$TOKEN" \
		--settle 3 --timeout 20 || ok=0
	run_lg smoke-http "$ALERTD_PID" http --port "$HTTP_PORT" --conns 4 \
		--sources 50 --rate 500 --count 100 --secret "$SECRET" \
		--timeout 20 || ok=0
	grep -q 'sent=300 acked=300 ' "$RES" || ok=0
	# The SSE subscriber saw the changes (the console latency needs it).
	grep 'name=smoke-tcp ' "$RES" | grep -q ' con_seen=[1-9]' || ok=0
	grep -q 'sent=100 acked=100 ' "$RES" || ok=0
	# Where the cores went (the servers' and the load generator's CPU
	# per event), and the report that turns all this into tables.
	grep 'name=smoke-http ' "$RES" | grep -q ' lg_cpu_ms=[0-9].* pg_us_per_ev=[0-9]' || ok=0
	echo "MACHINE nproc=$(nproc)" >>"$RES"
	python3 "$ROOT/scripts/bench_report.py" "$RES" "$W/report.md" &&
		grep -q '^| smoke-http | http | 4 | 500 | ' "$W/report.md" || ok=0
	# (>=: alertd's CPU for 100 events can be under one clock tick, 0.)
	python3 -c 'import sys; sys.path.insert(0, sys.argv[1])
import bench_report as b
runs, _, _, machine, _ = b.parse(sys.argv[2])
w = b.spent(runs["smoke-http"], b.cores_of(machine))
sys.exit(0 if w and w[4] > 0 and w[5] >= w[4] else 1)' "$ROOT/scripts" "$RES" || ok=0
	# The restart run's machinery (loadgen --reconnect, a SIGTERM under
	# load, a new alertd): every event answered across the restart.
	run_lg smoke-restart "" tcp --port "$TCP_PORT" --secret "$SECRET" \
		--conns 4 --sources 50 --rate 500 --count 1500 --reconnect \
		--timeout 30 >/dev/null 2>&1 &
	BG_LG_PID=$!
	sleep 1
	kill -TERM "$ALERTD_PID"
	wait "$ALERTD_PID" 2>/dev/null || ok=0
	ALERTD_PID=""
	start_alertd
	wait "$BG_LG_PID" || ok=0
	BG_LG_PID=""
	grep 'name=smoke-restart ' "$RES" | grep -q 'sent=1500 acked=1500 ' || ok=0
	grep 'name=smoke-restart ' "$RES" | grep -q ' reconnects=4 ' || ok=0
	# The PostgreSQL limit's client: alertd's batches, linked by alertd
	# (none fell back to the trigger), every row written.
	pg_limit smoke-pg 20 0 1
	grep 'name=smoke-pg ' "$RES" | grep -q ' trigger_linked=0 ' || ok=0
	grep 'name=smoke-pg ' "$RES" | grep -q ' rc=0$' || ok=0
	grep 'name=smoke-pg ' "$RES" | grep -q ' rows=[1-9]' || ok=0
	[ "$(psql_pg -d alertd_limits -c "SELECT count(*) > 0 FROM events
		WHERE row_hash IS NOT NULL AND canon IS NOT NULL")" = t ] || ok=0
	# The Redis limit's rules argument: alertd's, for this configuration.
	"$B/loadgen" rules --config "$CFG" | python3 -c '
import json, sys
r = json.load(sys.stdin)
sys.exit(0 if r["flood_soft"] > 0 and "kind_mod" in r else 1)' || ok=0
	if [ "$ok" = 1 ]; then
		echo "bench-smoke: ok"
		exit 0
	fi
	echo "bench-smoke: FAILED (loadgen log: $W/loadgen.log, alertd log: $W/alertd.log)"
	cat "$RES" >&2
	tail -n 20 "$W/loadgen.log" "$W/alertd.log" >&2
	exit 1
fi

# --- the full run -------------------------------------------------------------

# BENCH_ONLY="tcp-1k burst ..." runs only those parts (while tuning); the
# report is then not written.
want() {
	[ -z "${BENCH_ONLY:-}" ] && return 0
	case " $BENCH_ONLY " in *" $1 "*) return 0 ;; esac
	return 1
}

TCP_ARGS=(--port "$TCP_PORT" --secret "$SECRET")
SSE_ARGS=(--sse 1 --sse-port "$HTTP_PORT" --sse-token "$TOKEN")
[ "${BENCH_SSE:-1}" = 0 ] && SSE_ARGS=()
BURST_COUNT=${BENCH_BURST:-1000000}

want tcp-max && run_lg tcp-max "$ALERTD_PID" tcp "${TCP_ARGS[@]}" --conns 64 --window 64 \
	--sources 10000 --count 300000 --duration 60 --timeout 60
# HTTP devices send one request at a time on a connection, so the rate a
# closed loop reaches goes with the number of connections: the highest
# sustained rate is the best of a few (http-max with the first, then
# http-max-N; the summary takes the best).
if want http-max; then
	first=1
	for c in ${BENCH_HTTP_CONNS:-256 512 1024}; do
		name=http-max-$c
		[ "$first" = 1 ] && name=http-max
		first=0
		run_lg "$name" "$ALERTD_PID" http --port "$HTTP_PORT" --secret "$SECRET" \
			--conns "$c" --sources 10000 --count 150000 --duration 60 --timeout 60
	done
fi
# Only when named in BENCH_ONLY: HTTP at a fixed 8,000 events/s, below
# what every build reaches, so that alertd's CPU per HTTP event compares
# between builds without the closed loop's batch sizes moving with its
# rate (optimisation 35).
case " ${BENCH_ONLY:-} " in
*" http-8k "*)
	run_lg http-8k "$ALERTD_PID" http --port "$HTTP_PORT" --secret "$SECRET" \
		--conns 256 --sources 10000 --rate 8000 --count 120000 --timeout 60
	;;
esac
# The 1k/s runs last 45 s: heartbeats make no incident, so only about
# 2 % of the events reach the console, and a console p99 over 15 s (300
# changes, the third slowest) swung from 1.4 to 9.7 ms with one stall.
K1_COUNT=${BENCH_1K_COUNT:-45000}
# --slow-ms 10: the 100 ms windows with an answer over 10 ms (the stalls
# behind the 1k/s tail), in lg-tcp-1k.out with BENCH_KEEP=1.
want tcp-1k && run_lg tcp-1k "$ALERTD_PID" tcp "${TCP_ARGS[@]}" --conns 100 --window 256 \
	--sources 10000 --rate 1000 --count "$K1_COUNT" --slow-ms 10 "${SSE_ARGS[@]}"
# The 10k/s tail of one build differs up to tenfold from one run to the
# next on this machine (docs/BENCHMARKS.md), so tcp-10k runs
# BENCH_10K_RUNS times (3; tcp-10k, tcp-10k-2, ...) and the summary table
# shows the run with the median ack p99. Every run is in the runs table.
if want tcp-10k; then
	for ((i = 1; i <= ${BENCH_10K_RUNS:-3}; i++)); do
		name=tcp-10k
		[ "$i" -gt 1 ] && name=tcp-10k-$i
		run_lg "$name" "$ALERTD_PID" tcp "${TCP_ARGS[@]}" --slow-ms 20 \
			--conns 100 --window 256 --sources 10000 --rate 10000 \
			--count 150000 "${SSE_ARGS[@]}"
	done
fi
# The same rate sustained for 45 s: 15 s runs end before the kernel writes
# back their own pages (dirty_expire_centisecs, 30 s), this one does not
# (docs/BENCHMARKS.md, 34.).
want sustained-10k && run_lg sustained-10k "$ALERTD_PID" tcp "${TCP_ARGS[@]}" \
	--slow-ms 20 --conns 100 --window 256 --sources 10000 --rate 10000 \
	--count 450000 "${SSE_ARGS[@]}"

# One source floods (closed loop, one connection) while the others send at
# 1k/s: their ingest-to-console latency.
# Profiling runs, only when named in BENCH_ONLY: closed loop, small counts
# (alertd may run under BENCH_WRAP).
for m in tcp http; do
	case " ${BENCH_ONLY:-} " in *" profile-$m "*) ;; *) continue ;; esac
	p=$TCP_PORT
	[ "$m" = http ] && p=$HTTP_PORT
	run_lg "profile-$m" "$ALERTD_PID" "$m" --port "$p" --secret "$SECRET" \
		--conns 32 --window 32 --sources 10000 --count "${BENCH_PROFILE_COUNT:-20000}" \
		--duration 300 --timeout 120
done

if want tcp-1k-flood; then
# Its own source id: a bus-N of the other runs would carry the flood's
# window (and its refusals) into them. The clean state before the flood
# starts, not between its start and the measured run.
clean_state
"$B/loadgen" tcp "${TCP_ARGS[@]}" --conns 1 --window 256 --sources 1 \
	--source-prefix flood- \
	--count 0 --duration $((K1_COUNT / 1000 + 10)) \
	--timeout $((K1_COUNT / 1000 + 15)) --dup-pct 0 --panic-pct 0 \
	--fault-pct 0 --name flood >>"$W/flood.txt" 2>>"$W/loadgen.log" &
FLOOD_PID=$!
sleep 2
RUN_NO_CLEAN=1 run_lg tcp-1k-flood "$ALERTD_PID" tcp "${TCP_ARGS[@]}" --conns 100 \
	--window 256 --sources 10000 --rate 1000 --count "$K1_COUNT" "${SSE_ARGS[@]}"
wait "$FLOOD_PID"
FLOOD_PID=""
grep '^RESULT' "$W/flood.txt" | sed 's/$/ rss_hwm_kb=0 cpu_ms_per_1k=0 rc=0/' >>"$RES"
fi

# The earthquake: BURST_COUNT events from 10,000 sources as fast as they go.
if want burst; then
before=$(psql_pg -d alertd -c "SELECT count(*) FROM events")
# --panic-trace and --slow-ms 1: every panic's send time and Ack latency,
# and the slowest Ack of every 100 ms, kept in build/bench-burst-trace.txt
# whatever the outcome, so that a burst that did not put the panics first
# can be read afterwards (a stall every event waited in, or panics
# behind the backlog).
# Sources of its own (quake-N): the earthquake's panics open incidents of
# their own, as they would in a city, instead of merging into the panic
# incidents the runs before left open, whose repeat boost was spent long
# ago: a flooding source's repeat that raises nothing is quiet
# (docs/prioritisation.md), and three such panics were never on the
# consoles as presses of their own (docs/BENCHMARKS.md, 43.).
run_lg burst "$ALERTD_PID" tcp "${TCP_ARGS[@]}" --conns 200 --window 64 \
	--sources 10000 --source-prefix quake- \
	--count "$BURST_COUNT" --panic-pct 0.1 --dup-pct 1 \
	--duration 600 --timeout 120 --settle 30 --run-id burst \
	--panic-trace --slow-ms 1 \
	"${SSE_ARGS[@]}"
after=$(psql_pg -d alertd -c "SELECT count(*) FROM events")
echo "DB name=burst rows=$((after - before))" >>"$RES"
grep -E '^(PANIC|SLOW) ' "$W/lg-burst.out" >"$ROOT/build/bench-burst-trace.txt"
fi

# A restart under load: devices send 5,000 events/s; 8 s in, alertd gets
# SIGTERM (it answers what it has read, then closes), and a new alertd is
# started as soon as the old one has exited, as systemd's restart does.
# crash: the same with SIGKILL (what it had read and not answered is
# lost with it; the devices send it again). The devices (loadgen
# --reconnect) open their connections again every 100 ms and send their
# unanswered events again with the same event_id. Measured: the drain,
# the time from the signal until the new alertd is ready, the longest
# time without any Ack, and that nothing is lost (every event answered,
# one row per new or merged event).
for kind in restart crash; do
want "$kind" || continue
sig=TERM
[ "$kind" = crash ] && sig=KILL
before=$(psql_pg -d alertd -c "SELECT count(*) FROM events")
run_lg "$kind" "" tcp "${TCP_ARGS[@]}" --conns 100 --window 256 \
	--sources 10000 --rate 5000 --count 100000 --reconnect --timeout 60 \
	--run-id "$kind" &
BG_LG_PID=$!
sleep 8
t_term=$(now_ns)
kill "-$sig" "$ALERTD_PID"
wait "$ALERTD_PID" 2>/dev/null
drain_rc=$?
t_exit=$(now_ns)
ALERTD_PID=""
start_alertd
t_ready=$(now_ns)
wait "$BG_LG_PID"
BG_LG_PID=""
after=$(psql_pg -d alertd -c "SELECT count(*) FROM events")
echo "DB name=$kind rows=$((after - before)) exit_rc=$drain_rc drain_s=$(awk -v a="$t_term" -v b="$t_exit" 'BEGIN { printf "%.3f", (b - a) / 1e9 }') down_s=$(awk -v a="$t_term" -v b="$t_ready" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" >>"$RES"
done
stop_alertd

# --- the machine's limits -------------------------------------------------

if want limit-echo; then
ECHO_PORT=$(free_port)
"$B/loadgen" echo-server --port "$ECHO_PORT" 2>>"$W/loadgen.log" &
ECHO_PID=$!
sleep 0.3
run_lg limit-echo "$ECHO_PID" tcp --port "$ECHO_PORT" --echo --conns 64 \
	--window 64 --sources 10000 --count 1000000 --duration 60
# The latency floor of this machine at 1k/s: the same open-loop traffic
# answered by the echo server instead of alertd.
run_lg limit-echo-1k "$ECHO_PID" tcp --port "$ECHO_PORT" --echo \
	--conns 100 --window 256 --sources 10000 --rate 1000 --count 15000
# ... and at 10k/s, the rate of the ack-latency target.
run_lg limit-echo-10k "$ECHO_PID" tcp --port "$ECHO_PORT" --echo \
	--conns 100 --window 256 --sources 10000 --rate 10000 --count 150000
stop_pid "$ECHO_PID"
ECHO_PID=""
fi

if want limit-redis; then
# The rate column of redis-benchmark's --csv line, counted from the right:
# the command's text in the first column is not escaped and may hold
# commas (the rules JSON).
csv_rps() { awk -F'","' '{print $(NF - 6)}'; }
SHA=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "$(cat daemon/lua/decide.lua)")
# Every call opens a new incident (unique source): the costliest path.
rps=$(redis-benchmark -p "$REDIS_PORT" -n 300000 -c 4 -P 32 -r 100000000 --csv \
	EVALSHA "$SHA" 0 decide rb: "ev-__rand_int__" "bus-__rand_int__" bus \
	Konak "lg.rb.h.1" heartbeat heartbeat 10 1763700000000 \
	2026-11-21T10:00:00.000Z 86400 1 38.4555 27.1199 10000 2>/dev/null |
	tail -n 1 | csv_rps)
echo "LIMIT name=redis-decide rate=${rps:-0}" >>"$RES"
# The same script as alertd calls it under load: decide_batch, 64 events a
# call (tcp-max averages about 61), 10,000 sources as in the load, with the
# rules argument alertd sends for the bench's configuration (with rules, a
# heartbeat only updates supervision, as in alertd; without, the script
# would merge it into an incident). One panic and one fault a call (1.6 %
# each; tcp-max sends 1 % of each and 2 % duplicates). Its rate in
# events/s is the Redis limit of the TCP row.
RULES=$("$B/loadgen" rules --config "$CFG") || die "loadgen rules failed"
batch=()
for ((i = 0; i < 64; i++)); do
	case $i in
	0) t=(panic alarm 100) ;;
	1) t=(fault fault 30) ;;
	*) t=(heartbeat heartbeat 10) ;;
	esac
	batch+=("ev-__rand_int__-__rand_int__" "bus-__rand_int__" bus Konak
		"lg.rb.h.1" "${t[@]}" 1763700000000
		2026-11-21T10:00:00.000Z 86400 1 38.4555 27.1199 10000)
done
evalsha_failed() {
	redis-cli -p "$REDIS_PORT" INFO commandstats |
		grep -oE '^cmdstat_evalsha:.*failed_calls=[0-9]+' |
		grep -oE '[0-9]+$' || echo 0
}
f0=$(evalsha_failed)
r0=$(cpu_ticks "$REDIS_PID")
cps=$(redis-benchmark -p "$REDIS_PORT" -n 5000 -c 4 -P 4 -r 10000 --csv \
	EVALSHA "$SHA" 0 decide_batch rbb: "$RULES" 64 "${batch[@]}" 2>/dev/null |
	tail -n 1 | csv_rps)
r1=$(cpu_ticks "$REDIS_PID")
# a script error is answered fast too: count them during this benchmark,
# so that a limit made of errors shows (INFO commandstats)
failed=$(($(evalsha_failed) - f0))
# Redis's own CPU per event (5,000 calls of 64), from /proc
echo "LIMIT name=redis-decide-batch rate=$(awk -v c="${cps:-0}" 'BEGIN{printf "%.0f", c * 64}') calls=${cps:-0} cpu_us_per_event=$(awk -v a="$r0" -v b="$r1" -v t="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) * 1e6 / t / 320000 }') failed_calls=${failed:-0}" >>"$RES"
fi

if want limit-pg; then
# PostgreSQL alone with what alertd sends it: alertd's own batch statement,
# its rows made and linked into the chain by alertd's own code, the mix of
# tcp-max (1.7 % of events open an incident and carry its transition, 2 %
# are redeliveries, looked up only), one connection, one batch at a time,
# synchronous_commit=on (bench/lg_pg.c). It was pgbench inserting rows that
# the per-row chain trigger linked, which alertd's own rows have not gone
# through since optimisation 27 (docs/BENCHMARKS.md, 30).
for n in 100 512; do
	pg_limit "pg-batch-$n" "$n" 0 10
done
# The latency floor of a durable commit: PostgreSQL alone, open loop (from
# each batch's scheduled start, like loadgen's devices), committing the
# rows of 1k events/s one by one and of 10k events/s in 30-row batches
# (about the batches alertd makes at that rate). An Ack waits for at least
# one such commit. Each starts from a clean state (CHECKPOINT, sync): the
# batch runs above leave dirty pages whose writeback made the p99 seven
# times longer (docs/BENCHMARKS.md, 22.).
for spec in "1 1000" "30 10000"; do
	read -r rows rate <<<"$spec"
	psql_pg -d alertd_limits -c "CHECKPOINT" >/dev/null
	sync
	# warm-up, not measured: the first second of a new client stalls
	# once for up to 200 ms (plans, caches), which is not a floor
	"$B/loadgen" pg-limit --pg "$PG_CONNINFO" --name warm --window "$rows" \
		--rate "$rate" --duration 2 --sources 10000 --panic-pct 1.7 \
		--dup-pct 2 >/dev/null 2>>"$W/loadgen.log"
	pg_limit "pg-commit-$rows" "$rows" "$rate" 10
done
# The same 30-row commits for 45 s, like sustained-10k: the kernel writes
# back the first seconds' pages while it runs.
psql_pg -d alertd_limits -c "CHECKPOINT" >/dev/null
sync
pg_limit pg-sustained-30 30 10000 45
fi

# --- the peer: Prometheus Alertmanager --------------------------------------

AM_BIN=/usr/bin/prometheus-alertmanager
if want am && [ ! -x "$AM_BIN" ]; then
	say "installing prometheus-alertmanager (the peer)"
	if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO=sudo; fi
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends prometheus-alertmanager >&2 || true
fi
if ! want am; then
	AM_VERSION="not run"
elif [ -x "$AM_BIN" ]; then
	AM_PORT=$(free_port)
	SINK_PORT=$(free_port)
	mkdir -p "$W/am"
	cat >"$W/am/am.yml" <<EOF
route:
  receiver: sink
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 24h
receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.1:$SINK_PORT/hook
        send_resolved: false
EOF
	"$AM_BIN" --config.file="$W/am/am.yml" --storage.path="$W/am" \
		--web.listen-address="127.0.0.1:$AM_PORT" \
		--cluster.listen-address= >"$W/am/am.log" 2>&1 &
	AM_PID=$!
	if wait_http "http://127.0.0.1:$AM_PORT/-/ready" 30; then
		run_lg am-1k "$AM_PID" am --port "$AM_PORT" \
			--sink-port "$SINK_PORT" --conns 16 --sources 10000 \
			--rate 1000 --count 15000 --settle 20
		run_lg am-max "$AM_PID" am --port "$AM_PORT" \
			--sink-port "$SINK_PORT" --conns 64 --sources 10000 \
			--count 60000 --duration 60 --timeout 60 --settle 20
	else
		say "Alertmanager did not become ready ($W/am/am.log)"
	fi
	stop_pid "$AM_PID"
	AM_PID=""
	AM_VERSION=$("$AM_BIN" --version 2>&1 | head -n 1)
else
	say "no Alertmanager: the peer columns stay empty"
	AM_VERSION="not installed"
fi

# --- the report ---------------------------------------------------------------

{
	echo "MACHINE nproc=$(nproc)"
	echo "MACHINE cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "MACHINE mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "MACHINE kernel=$(uname -r)"
	echo "MACHINE writeback=dirty_background_bytes $(sysctl -n vm.dirty_background_bytes), dirty_background_ratio $(sysctl -n vm.dirty_background_ratio) %"
	echo "VERSION alertd=$(git rev-parse --short HEAD 2>/dev/null)"
	echo "VERSION redis=$(redis-server --version | grep -oE 'v=[0-9.]+' | cut -d= -f2)"
	echo "VERSION postgresql=$("$PG_BIN/postgres" --version | awk '{print $3}')"
	echo "VERSION libevent=$(pkg-config --modversion libevent)"
	echo "VERSION alertmanager=$AM_VERSION"
} >>"$RES"
cp "$RES" "$ROOT/build/bench-results.txt" 2>/dev/null
if [ -n "${BENCH_ONLY:-}" ]; then
	cat "$RES"
	exit 0
fi
python3 scripts/bench_report.py "$RES" docs/BENCHMARKS.md ||
	die "cannot write docs/BENCHMARKS.md"
say "results: build/bench-results.txt; table: docs/BENCHMARKS.md"
