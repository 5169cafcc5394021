#!/usr/bin/python3
"""alertd's queue gauges, sampled every 20 ms (a bench diagnostic).

    sample_gauges.py PORT OUT

Scrapes http://127.0.0.1:PORT/metrics every 20 ms until killed and
appends one line per scrape to OUT:

    EPOCH_S in_flight queued_normal queued_urgent audit_pending_rows

(docs/operations.md, "Metrics": events received and not answered yet,
those waiting for a pipeline slot, and the audit rows not yet committed).
A histogram says how long calls took; these say where the events waited
at each moment: in_flight rising while audit_pending_rows stays low means
they waited before the audit, for their Redis decision. scripts/bench.sh
runs it with BENCH_GAUGES=1 (gauges.txt in the temporary folder, kept with
BENCH_KEEP=1; docs/BENCHMARKS.md, 40). A scrape that fails (alertd
restarting) is skipped.
"""
import re
import sys
import time
import urllib.request

GAUGES = ("alertd_events_in_flight", "alertd_pipeline_queued_normal",
          "alertd_pipeline_queued_urgent", "alertd_audit_pending_rows")
SAMPLE = re.compile(r"^(\w+) (\S+)$", re.M)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    url = f"http://127.0.0.1:{sys.argv[1]}/metrics"
    with open(sys.argv[2], "a", encoding="utf-8") as out:
        while True:
            t = time.time()
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.1)
                continue
            values = dict(SAMPLE.findall(body))
            out.write("%.3f %s\n" % (t, " ".join(
                values.get(g, "-") for g in GAUGES)))
            out.flush()
            time.sleep(max(0.0, 0.02 - (time.time() - t)))


if __name__ == "__main__":
    main()
