#!/usr/bin/python3
"""Where alertd's answer time went during one bench run.

    metrics_stages.py BEFORE AFTER

BEFORE and AFTER are two scrapes of alertd's /metrics. Prints, for the
run between them, the number of observations and the p50 / p99 in ms of
the stage histograms (docs/operations.md, "Metrics"), as key=value pairs
for the bench's RESULT line:

    ingest_events=N ingest_p50_ms=X ingest_p99_ms=X ingest_over25ms=N
    decide_calls=N decide_p50_ms=X decide_p99_ms=X decide_over25ms=N
    audit_batches=N audit_p50_ms=X audit_p99_ms=X audit_over25ms=N
    audit_trigger_linked=N

(_over25ms: the observations above the 25 ms bucket. A stall of a few
calls or batches is far below their p99, yet every event that arrives
during it waits: docs/BENCHMARKS.md, 39.)

(the last: the audit batches linked into the chain by the trigger instead
of by alertd, docs/audit.md; absent from a daemon without that metric).

A quantile is interpolated linearly inside its bucket, as Prometheus's
histogram_quantile() does; past the last finite bucket it is that bound.
"""
import re
import sys

SAMPLE = re.compile(r'^(\w+) (\S+)$')
BUCKET = re.compile(r'^(\w+)_bucket\{le="([^"]+)"\} (\S+)$')
STAGES = (("ingest", "events", "alertd_ingest_seconds"),
          ("decide", "calls", "alertd_decide_seconds"),
          ("audit", "batches", "alertd_audit_batch_seconds"))


def buckets(path):
    """{histogram name: {upper bound: cumulative count}}"""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = BUCKET.match(line.strip())
            if m:
                le = float("inf") if m.group(2) == "+Inf" else float(m.group(2))
                out.setdefault(m.group(1), {})[le] = float(m.group(3))
    return out


def sample(path, name):
    """The value of the unlabelled sample name, or None."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = SAMPLE.match(line.strip())
            if m and m.group(1) == name:
                return float(m.group(2))
    return None


def quantile(q, cum):
    """cum: sorted [(upper bound, cumulative count)] of one run."""
    total = cum[-1][1]
    if total <= 0:
        return 0.0
    rank = q * total
    lo_bound, lo_count = 0.0, 0.0
    for bound, count in cum:
        if count >= rank:
            if bound == float("inf"):
                return lo_bound
            width = count - lo_count
            frac = (rank - lo_count) / width if width > 0 else 1.0
            return lo_bound + (bound - lo_bound) * frac
        lo_bound, lo_count = bound, count
    return lo_bound


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: metrics_stages.py BEFORE AFTER")
    before, after = buckets(sys.argv[1]), buckets(sys.argv[2])
    fields = []
    for key, what, name in STAGES:
        b, a = before.get(name, {}), after.get(name, {})
        cum = sorted((le, a[le] - b.get(le, 0.0)) for le in a)
        n = cum[-1][1] if cum else 0
        fields.append("%s_%s=%d" % (key, what, n))
        for q in (50, 99):
            v = quantile(q / 100, cum) * 1000 if cum else 0.0
            fields.append("%s_p%d_ms=%.2f" % (key, q, v))
        under = dict(cum).get(0.025)
        if under is not None:
            fields.append("%s_over25ms=%d" % (key, n - under))
    name = "alertd_audit_trigger_linked_batches"
    b, a = sample(sys.argv[1], name), sample(sys.argv[2], name)
    if a is not None:
        fields.append("audit_trigger_linked=%d" % (a - (b or 0)))
    print(" ".join(fields))


if __name__ == "__main__":
    main()
