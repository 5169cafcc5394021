#!/bin/bash
# `make test`: the sanitizer build, the unit tests and the integration tests
# against real Redis and PostgreSQL (started by the tests on free loopback
# ports and stopped even on failure). The last line of output is the total,
# exactly "N passed, N failed"; the exit status is non-zero if any test
# failed or a stage could not run.
set -u
cd "$(dirname "$0")/.." || exit 1

# TEST_BUILD lets several checkouts or sessions test side by side.
B="${TEST_BUILD:-build/asan}"
PY=/usr/bin/python3
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export ALERTD_BUILD="$B"
# conftest.py lists here every process it starts, so that whatever a killed
# run leaves behind can be stopped below by its id.
export ALERTD_TEST_PIDS="$PWD/$B/test-pids"

passed=0
failed=0
broken=""   # stages that could not run

total() {
	echo "$passed passed, $failed failed"
	if [ "$failed" -ne 0 ] || [ -n "$broken" ]; then
		exit 1
	fi
	exit 0
}

stage_broken() {
	echo "test.sh: $1" >&2
	broken="$broken $1"
	failed=$((failed + 1))
}

kill_leftovers() {
	[ -f "$ALERTD_TEST_PIDS" ] || return 0
	local pid cmd
	while read -r pid; do
		[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || continue
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
		case "$cmd" in
		*redis-server* | *postgres* | *alertd*)
			echo "test.sh: stopping leftover $pid: $cmd" >&2
			kill -KILL "$pid" 2>/dev/null || true ;;
		esac
	done <"$ALERTD_TEST_PIDS"
	rm -f "$ALERTD_TEST_PIDS"
}

if ! scripts/deps.sh; then
	stage_broken "deps.sh failed"
	total
fi

echo "== build ($B)"
if ! make -j"$(nproc)" SAN=1 B="$B" "$B/alertd" "$B/alertctl" "$B/unit"; then
	stage_broken "the sanitizer build failed"
	total
fi

echo "== unit tests"
unit_log="$B/unit.log"
timeout -k 10 300 "$B/unit" 2>&1 | tee "$unit_log"
unit_rc=${PIPESTATUS[0]}
line=$(grep -E '^unit: [0-9]+ passed, [0-9]+ failed' "$unit_log" | tail -n 1)
if [ -n "$line" ]; then
	up=$(echo "$line" | sed -E 's/^unit: ([0-9]+) passed.*/\1/')
	uf=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
	passed=$((passed + up))
	failed=$((failed + uf))
	if [ "$unit_rc" -ne 0 ] && [ "$uf" -eq 0 ]; then
		# e.g. a LeakSanitizer report at exit after all tests passed
		stage_broken "unit exited $unit_rc after its tests passed"
	fi
else
	stage_broken "unit printed no summary line (exit $unit_rc)"
fi

echo "== bench-smoke"
# The load generator against the sanitizer build, tiny rates: one test,
# passed if every event it sent was answered, across a SIGTERM and a new
# alertd too (never a speed check).
if make -s -j"$(nproc)" SAN=1 B="$B" "$B/loadgen" &&
	BENCH_BUILD="$B" timeout -k 10 120 scripts/bench.sh --smoke; then
	passed=$((passed + 1))
else
	echo "test.sh: bench-smoke failed" >&2
	failed=$((failed + 1))
fi

echo "== release build, bench-smoke"
# What `make run` and an install ship: -O2, no sanitizer, linked with
# jemalloc (Makefile: MALLOC). Built in its own folder so that a developer's
# build/ is left alone; the same smoke, so that the shipped allocator and
# optimisation level answer every event too.
RB="${TEST_RELEASE_BUILD:-build/test-release}"
if make -s -j"$(nproc)" B="$RB" "$RB/alertd" "$RB/alertctl" "$RB/loadgen" &&
	BENCH_BUILD="$RB" timeout -k 10 120 scripts/bench.sh --smoke; then
	passed=$((passed + 1))
else
	echo "test.sh: release bench-smoke failed" >&2
	failed=$((failed + 1))
fi

echo "== integration tests"
xml="$B/pytest.xml"
rm -f "$xml" "$ALERTD_TEST_PIDS"
timeout -k 60 1200 "$PY" -m pytest tests/integration -p no:cacheprovider \
	--junitxml="$xml" -v -rfE --tb=short
py_rc=$?
kill_leftovers
if [ "$py_rc" -eq 124 ] || [ "$py_rc" -eq 137 ]; then
	stage_broken "the integration tests hit the 1200 s timeout"
fi
if [ -f "$xml" ]; then
	# One count per test: failed if any phase (setup, call, teardown)
	# failed or errored.
	counts=$("$PY" - "$xml" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET
p = f = 0
for tc in ET.parse(sys.argv[1]).iter("testcase"):
    tags = {c.tag for c in tc}
    if "failure" in tags or "error" in tags:
        f += 1
    elif "skipped" not in tags:
        p += 1
print(p, f)
PYEOF
	) || counts=""
	if [ -n "$counts" ]; then
		set -- $counts
		passed=$((passed + $1))
		failed=$((failed + $2))
		if [ "$py_rc" -eq 5 ]; then
			stage_broken "pytest collected no tests"
		elif [ "$py_rc" -ne 0 ] && [ "$2" -eq 0 ]; then
			stage_broken "pytest exited $py_rc"
		fi
	else
		stage_broken "cannot read $xml"
	fi
else
	stage_broken "pytest wrote no report (exit $py_rc)"
fi

total
