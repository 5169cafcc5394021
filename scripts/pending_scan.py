#!/usr/bin/python3
"""How long one esc_pending call holds Redis with many pending levels.

Usage: scripts/pending_scan.py [decide.lua] (default daemon/lua/decide.lua)

Starts a throwaway redis-server on a free loopback port, fills
notify:pending with 1,000 / 5,000 / 20,000 levels of a live owner (none is
due, so every call reads and decodes without taking anything) and runs
esc_pending as alertd does: one pass of HSCAN slices (the longest call and
the number of calls), or, for a decide.lua from before the slices, the one
HGETALL call. Best of 5 passes."""
import json
import os
import sys
import time

from scratch_redis import scratch_redis


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    lua = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(here, "..", "daemon", "lua", "decide.lua")
    with scratch_redis("pending-scan-") as r:
        sha = r.script_load(open(lua).read())
        P, now = "bench:", int(time.time() * 1000)
        for n in (1000, 5000, 20000):
            r.flushall()
            p = r.pipeline()
            for i in range(1, n + 1):
                p.hset(P + "notify:pending", "%d:1" % i, json.dumps(
                    {"id": i, "level": 1, "lease": now + 600000,
                     "run": now, "version": 3, "at": now, "resumed": 0,
                     "owner": "A"}))
                p.hset(P + "inc:%d" % i,
                       mapping={"state": "new", "escalation_level": "1"})
            p.execute()
            r.set(P + "live:A", now, px=600000)
            r.set(P + "live:B", now - 10000, px=600000)
            best = None
            for _ in range(5):
                worst, calls, cursor = 0.0, 0, "0"
                while True:
                    t = time.perf_counter()
                    out = json.loads(r.evalsha(
                        sha, 0, "esc_pending", P, str(now), "60000", "100",
                        "B", cursor, "256"))
                    worst = max(worst, time.perf_counter() - t)
                    calls += 1
                    if not isinstance(out, dict) or out["cursor"] == "0":
                        break
                    cursor = out["cursor"]
                if best is None or worst < best[0]:
                    best = (worst, calls)
            print("%6d pending levels: %3d call(s), longest %.2f ms" %
                  (n, best[1], best[0] * 1000))


if __name__ == "__main__":
    main()
