#!/usr/bin/python3
"""The cpu-probe's seconds beside a bench run's slow Ack windows.

    probe_slow.py BENCH_DIR [RUN ...]

BENCH_DIR is a temporary folder kept by `BENCH_KEEP=1 BENCH_PROBE=1
scripts/bench.sh` (docs/BENCHMARKS.md, 40). For each run (default: every
run that has SLOW lines) prints the run's slow 100 ms windows (loadgen
--slow-ms) with the probe's line for the second each falls in, then the
same figures over the run's seconds without a slow window:

    RUN tcp-10k-4
      at_s=0.6 max_ms=30.8 | probe n=452 wall_max_us=421.8 cpu_p50_us=27.7
        cpu_max_us=43.4 preempted=2
      ...
      seconds without a slow window: wall_max_us median X, cpu_p50_us ...

A slow window whose second shows the probe's CPU time per piece of work
at its usual value was not the virtual CPU running slowly; many
`preempted` samples mean the cores were taken.
"""
import glob
import os
import re
import statistics
import sys

KV = re.compile(r'(\w+)=(\S+)')


def fields(line):
    return {k: v for k, v in KV.findall(line)}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    probes, starts = [], {}
    with open(os.path.join(folder, "probe.txt"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("PROBE"):
                kv = fields(line)
                probes.append((float(kv["at"]), kv))
    with open(os.path.join(folder, "runs.txt"), encoding="utf-8") as f:
        for line in f:
            kv = fields(line)
            starts[kv["name"]] = float(kv["at"])
    slow, send_s = {}, {}
    for path in glob.glob(os.path.join(folder, "lg-*.out")):
        name = os.path.basename(path)[3:-4]
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
        slow[name] = [fields(l) for l in lines if l.startswith("SLOW")]
        for line in lines:
            if line.startswith("RESULT"):
                send_s[name] = float(fields(line).get("send_s", 0))
    runs = sys.argv[2:] or sorted(n for n in slow if slow[n])

    def probe_at(t):
        best = None
        for at, kv in probes:
            if at <= t:
                best = kv
        return best

    for name in runs:
        if name not in starts:
            print(f"RUN {name}: no start in runs.txt")
            continue
        t0 = starts[name]
        print(f"RUN {name}")
        hit = set()
        for w in slow.get(name, []):
            p = probe_at(t0 + float(w["at_s"]))
            if p is None:
                continue
            hit.add(p["at"])
            print(f"  at_s={w['at_s']} max_ms={w['max_ms']} | probe "
                  f"n={p['n']} wall_max_us={p['wall_max_us']} "
                  f"cpu_p50_us={p['cpu_p50_us']} "
                  f"cpu_max_us={p['cpu_max_us']} "
                  f"preempted={p['preempted']}")
        quiet = [kv for at, kv in probes
                 if t0 <= at <= t0 + send_s.get(name, 0) - 1
                 and kv["at"] not in hit]
        if quiet:
            def med(key):
                return statistics.median(float(kv[key]) for kv in quiet)
            print(f"  {len(quiet)} seconds without a slow window, medians: "
                  f"wall_max_us={med('wall_max_us'):.1f} "
                  f"cpu_p50_us={med('cpu_p50_us'):.1f} "
                  f"cpu_max_us={med('cpu_max_us'):.1f} "
                  f"preempted={med('preempted'):.0f}")


if __name__ == "__main__":
    main()
