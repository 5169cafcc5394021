#!/usr/bin/python3
"""decide_ab.py: decide.lua variants A/B on a scratch Redis.

    scripts/decide_ab.py OLD.lua NEW.lua [--fleet] [--rounds R]
    (env PANIC_EVERY=N: one panic per N events, default 100)

Starts redis-server on a free loopback port (pinned to CPU 1 with
taskset; run this script under `taskset -c 0`), loads every script, and
per round and script sends 3,000 pipelined decide_batch calls of 10
events (heartbeats of bus-0 ... bus-9999, a panic now and then) under a
fresh key prefix. Prints Redis's CPU (utime+stime from /proc) per event
for every round and the median. --fleet registers the 10,000 sources
first, like bench.sh's BENCH_FLEET=1. Not a test: a measuring tool for
docs/BENCHMARKS.md."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis

RULES = json.dumps({
    "kind_mod": {"bus": 0, "ferry": 5}, "zone_mod": {"Konak": 5},
    "night_kinds": {"park": True}, "supervision": {"bus": 900},
    "night": 0, "night_boost": 10, "repeat_step": 2, "repeat_cap": 20,
    "aging_step": 5, "aging_interval_ms": 60000, "aging_cap": 30,
    "flood_window_ms": 1000, "flood_soft": 20, "flood_hard": 100,
    "unknown": "reject"})
CALLS, PER_CALL, SOURCES = 3000, 10, 10000


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(r, pid, sha, prefix, fleet, panic_every):
    if fleet:
        pl = r.pipeline(transaction=False)
        pl.sadd(prefix + "sources", "bus-0")
        for s in range(SOURCES):
            pl.hset(prefix + "src:bus-%d" % s,
                    mapping={"kind": "bus", "zone": "Konak"})
        pl.execute()
    now = int(time.time() * 1000)
    c0 = cpu_s(pid)
    pl = r.pipeline(transaction=False)
    e = 0
    for c in range(CALLS):
        args = ["decide_batch", prefix, RULES, str(PER_CALL)]
        for _ in range(PER_CALL):
            panic = e % panic_every == 7
            args += ["ev-%s%d" % (prefix, e), "bus-%d" % (e % SOURCES),
                     "bus", "", "", "panic" if panic else "heartbeat",
                     "alarm" if panic else "supervision",
                     "90" if panic else "0", str(now + e // 10),
                     "2026-11-21T19:00:00.000Z", "86400", "0", "", "",
                     "100000"]
            e += 1
        pl.evalsha(sha, 0, *args)
        if c % 100 == 99:
            for reply in pl.execute():
                assert len(reply) == PER_CALL, reply
            pl = r.pipeline(transaction=False)
    pl.execute()
    return (cpu_s(pid) - c0) * 1e6 / (CALLS * PER_CALL)


def main():
    argv = sys.argv[1:]
    fleet = "--fleet" in argv
    rounds = 5
    if "--rounds" in argv:
        rounds = int(argv[argv.index("--rounds") + 1])
    paths = [a for i, a in enumerate(argv)
             if a.endswith(".lua") and argv[i - 1] != "--rounds"]
    if len(paths) < 1:
        sys.exit(__doc__)
    panic_every = int(os.environ.get("PANIC_EVERY", "100"))
    port, d = free_port(), tempfile.mkdtemp(prefix="decide-ab.")
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
           "--save", "", "--appendonly", "no", "--dir", d]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1"] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        shas = [r.script_load(open(p).read()) for p in paths]
        res = {p: [] for p in paths}
        k = 0
        for _ in range(rounds):
            for path, sha in zip(paths, shas):
                k += 1
                res[path].append(one_round(r, proc.pid, sha, "ab%d:" % k,
                                           fleet, panic_every))
        for path in paths:
            v = sorted(res[path])
            print("%s: Redis CPU us per event %s (median %.2f)" % (
                path, " ".join("%.2f" % x for x in res[path]),
                v[len(v) // 2]))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
