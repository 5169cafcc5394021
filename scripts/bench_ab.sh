#!/bin/bash
# bench_ab.sh: one bench scenario against several builds, alternating, with
# the CPU of every busy process sampled in the middle of each run.
#
#   scripts/bench_ab.sh SCENARIO BUILD_DIR... [-- ROUNDS]
#   e.g. scripts/bench_ab.sh tcp-10k build/base build -- 2
#
# Each BUILD_DIR holds alertd, alertctl and loadgen (make a baseline with
# `git worktree add /tmp/base REV && make -C /tmp/base build/alertd
# build/alertctl build/loadgen`, then copy the three into build/base; if
# the schema changed since, copy its config/migrations to build/base/
# migrations too, and bench.sh migrates that run's database with them).
# Per run it prints the processes over 2 % of a core (utime+stime from
# /proc over SAMPLE_S seconds, starting SAMPLE_AT seconds after the load
# generator of the run has started (bench.sh sets up the servers and
# cleans the state first, which takes a varying time); "wait": the
# share of that time it was runnable but waited for a core) and the
# scenario's RESULT fields. Runs on this machine differ by a lot from one
# to the next: alternate, repeat, and compare CPU rather than latency.
set -euo pipefail

cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
SC=$1
shift
BUILDS=()
ROUNDS=1
while [ $# -gt 0 ]; do
	if [ "$1" = "--" ]; then
		ROUNDS=${2:-1}
		break
	fi
	BUILDS+=("$1")
	shift
done
SAMPLE_AT=${SAMPLE_AT:-2}
SAMPLE_S=${SAMPLE_S:-6}

# pid comm cpu-ticks runqueue-wait-ns of every process (the wait: time
# its main thread was runnable but not running, from schedstat)
snap() {
	local p w
	for p in /proc/[0-9]*; do
		w=$(cut -d' ' -f2 "$p/schedstat" 2>/dev/null) || w=0
		awk -v p="${p#/proc/}" -v w="${w:-0}" '{c = $0;
			sub(/^[^)]*\) /, "", c); split(c, f, " ");
			print p, $2, f[12] + f[13], w}' \
			"$p/stat" 2>/dev/null || true
	done
}

hz=$(getconf CLK_TCK)
for ((r = 1; r <= ROUNDS; r++)); do
	for b in "${BUILDS[@]}"; do
		BENCH_BUILD=$b BENCH_ONLY="$SC" BENCH_10K_RUNS=1 bash scripts/bench.sh \
			>"build/bench-ab.log" 2>&1 &
		run=$!
		for ((i = 0; i < 600; i++)); do
			pgrep -x loadgen >/dev/null && break
			sleep 0.2
		done
		sleep "$SAMPLE_AT"
		snap >build/bench-ab.1
		sleep "$SAMPLE_S"
		snap >build/bench-ab.2
		wait "$run" || echo "bench_ab: $b: bench.sh failed" >&2
		cpu=$(awk -v d="$SAMPLE_S" -v hz="$hz" \
			'NR == FNR { a[$1] = $3; w[$1] = $4; next }
			 ($1 in a) { u = 100 * ($3 - a[$1]) / hz / d;
				     q = 100 * ($4 - w[$1]) / 1e9 / d;
				     if (u > 2) printf "%.1f %s %.1f\n", u, $2, q }' \
			build/bench-ab.1 build/bench-ab.2 | sort -rn |
			awk '{printf "%s=%s%%(wait %s%%) ", $2, $1, $3}')
		res=$(grep "^RESULT name=$SC " build/bench-results.txt | tail -n 1 |
			grep -oE "(throughput|ack_p50_ms|ack_p99_ms|ack_panic_p99_ms|con_p99_ms|cpu_ms_per_1k|slow_windows)=[^ ]*" |
			tr '\n' ' ')
		echo "$b round $r: $cpu| $res"
	done
done
rm -f build/bench-ab.1 build/bench-ab.2
