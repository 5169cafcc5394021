#!/bin/bash
# `make fuzz [FUZZ_SECONDS=N]`: each fuzz target of tests/fuzz/ under
# libFuzzer (clang, ASan, UBSan) for N seconds (default 300), starting from
# its kept corpus: tests/fuzz/corpus/ for fuzz_ingest (what devices send),
# tests/fuzz/corpus-config/ for fuzz_config (alertd.ini). New interesting
# inputs are written to build/fuzz/corpus-<target>/; an input that breaks a
# check or crashes is written to build/fuzz/crash-* and the run fails. Keep
# such an input (and the fix) by copying it into the target's kept corpus
# as found-<what>: `make test` replays it. To keep what a run found that
# reaches new code (the files named by their SHA-1 came so):
#   build/fuzz/fuzz_ingest -merge=1 -use_counters=0 tests/fuzz/corpus \
#       build/fuzz/corpus-ingest
# (-use_counters=0: one input per new edge, not per new hit count)
set -eu
cd "$(dirname "$0")/.."
secs="${1:-300}"
B=build/fuzz

if ! command -v clang >/dev/null; then
	echo "fuzz.sh: installing clang" >&2
	apt-get install -y --no-install-recommends clang
fi
scripts/deps.sh
make -s -j"$(nproc)" CC=clang SAN=1 FUZZ=1 B="$B" \
	"$B/fuzz_ingest" "$B/fuzz_config"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for t in ingest config; do
	kept=tests/fuzz/corpus
	[ "$t" = config ] && kept=tests/fuzz/corpus-config
	mkdir -p "$B/corpus-$t"
	echo "fuzz.sh: fuzz_$t for $secs s"
	# -max_len: an HTTP event body may be 64 KiB, but everything a
	# reader checks fits in far less; longer inputs only slow the search.
	"$B/fuzz_$t" -max_total_time="$secs" -max_len=4096 -timeout=10 \
		-rss_limit_mb=2048 -artifact_prefix="$B/" -print_final_stats=1 \
		"$B/corpus-$t" "$kept"
done
