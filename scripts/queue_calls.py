#!/usr/bin/python3
"""How long a console's snapshot and an aging pass hold Redis with many
open incidents (docs/BENCHMARKS.md, optimisation 31).

Usage: scripts/queue_calls.py [decide.lua] (default daemon/lua/decide.lua)

Starts a throwaway redis-server on a free loopback port and opens 2,000 /
5,000 / 15,000 incidents through decide.lua's decide mode (panics and
faults from distinct sources, aging on). Then, best of 5:
  - the open queue as a console gets it on connect: one stream_snapshot
    call (a decide.lua from before optimisation 31), or stream_ids and
    snapshots calls of 100 as daemon/qsnap.c makes them;
  - an aging pass with every incident due (an hour on): age calls of
    1,000 (alertd before optimisation 31) and of 32 (after) until none is
    left; the aged incidents are put back between rounds.
For each: the number of calls and the longest one. Redis runs one script
at a time, so the longest call is how long every event's decision waits
behind it."""
import json
import os
import sys
import time

from scratch_redis import scratch_redis

T0 = 1795287599000
HOUR = 3600000
RULES = {"kind_mod": {}, "zone_mod": {}, "night_kinds": {},
         "supervision": {}, "night": 0, "night_boost": 0, "repeat_step": 0,
         "repeat_cap": 0, "aging_step": 1, "aging_interval_ms": HOUR,
         "aging_cap": 1, "flood_window_ms": 10000, "flood_soft": 1000,
         "flood_hard": 10000, "unknown": "accept", "device_offline": 20}



def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + \
        ".%03dZ" % (ms % 1000)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def snapshot_pass(r, sha, P, paged):
    """(calls, longest seconds, incidents) of one console snapshot."""
    if not paged:
        out, dt = timed(lambda: r.evalsha(sha, 0, "stream_snapshot", P))
        return 1, dt, len(json.loads(out)["queue"])
    out, worst = timed(lambda: r.evalsha(sha, 0, "stream_ids", P))
    ids = json.loads(out)["ids"]
    calls, got = 1, 0
    for i in range(0, len(ids), 100):
        csv = ",".join(str(x) for x in ids[i:i + 100])
        page, dt = timed(lambda: r.evalsha(sha, 0, "snapshots", P, csv))
        calls, worst = calls + 1, max(worst, dt)
        got += len(json.loads(page))
    return calls, worst, got


def aging_pass(r, sha, P, limit, rules):
    """(calls, longest seconds, aged) of aging everything due."""
    calls, worst, aged = 0, 0.0, 0
    while True:
        out, dt = timed(lambda: r.evalsha(sha, 0, "age", P,
                                          str(T0 + 2 * HOUR - 1), rules,
                                          str(limit), "100000"))
        calls, worst = calls + 1, max(worst, dt)
        aged += len(out) // 3
        if not out:
            return calls, worst, aged


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    lua = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(here, "..", "daemon", "lua", "decide.lua")
    text = open(lua).read()
    paged = "stream_ids" in text
    with scratch_redis("queue-calls-") as r:
        sha = r.script_load(text)
        rules = json.dumps(RULES)
        P = "bench:"
        for n in (2000, 5000, 15000):
            r.flushall()
            p = r.pipeline(transaction=False)
            for i in range(n):
                t = ("panic", "fault")[i % 2]
                p.evalsha(sha, 0, "decide", P, "e-%d" % i, "src-%d" % i,
                          "bus", "Konak", "", t, t, ("100", "30")[i % 2],
                          str(T0 + i), iso(T0 + i), "86400", "0", "", "",
                          "100000", rules)
            p.execute()
            aging = r.zrange(P + "aging", 0, -1, withscores=True)
            best = {}
            for _ in range(5):
                runs = [("snapshot", snapshot_pass(r, sha, P, paged))]
                for limit in (1000, 32):
                    r.zadd(P + "aging", dict(aging))
                    for iid, _ in aging:
                        r.hset(P + "inc:" + iid, mapping={"aging": "0",
                                                         "priority": "0"})
                    runs.append(("age by %d" % limit,
                                 aging_pass(r, sha, P, limit, rules)))
                for name, res in runs:
                    if name not in best or res[1] < best[name][1]:
                        best[name] = res
            for name, (calls, worst, count) in best.items():
                print("%6d open incidents, %-11s %4d call(s) for %5d, "
                      "longest %.2f ms" % (n, name + ":", calls, count,
                                           worst * 1000))


if __name__ == "__main__":
    main()
