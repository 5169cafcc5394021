"""GET /healthz, /readyz and /metrics (Prometheus text)."""

import re

from helpers import http_get, make_event, post_event

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(alertd):
    """{(name, frozenset(labels)): value} and the raw text."""
    st, text, hdrs = http_get(alertd.http, "/metrics")
    assert st == 200, text
    assert hdrs.get("content-type", "").startswith("text/plain"), hdrs
    assert isinstance(text, str)
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a Prometheus sample line: %r" % line
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out, text


def value(samples, name, **labels):
    want = set(labels.items())
    hits = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    assert len(hits) <= 1, (name, labels, hits)
    return hits[0] if hits else 0.0


def test_healthz(alertd):
    st, body, hdrs = http_get(alertd.http, "/healthz")
    assert st == 200
    assert body == {"status": "ok"}


def test_readyz(alertd):
    st, body, _ = http_get(alertd.http, "/readyz")
    assert st == 200
    assert body == {"status": "ready", "redis": True, "postgres": True,
                    "spool": {"usable": True, "rows": 0, "bytes": 0}}


def test_metrics_count_events_by_type_and_outcome(alertd):
    s0, _ = metrics(alertd)
    assert value(s0, "alertd_events_total", type="panic", outcome="new") == 0
    ev = make_event(type="panic")
    assert post_event(alertd.http, ev)[0] == 202
    assert post_event(alertd.http, ev)[0] == 202            # duplicate
    assert post_event(alertd.http, make_event(
        type="panic", source=ev["source"]))[0] == 202       # merged
    assert post_event(alertd.http, make_event(type="fault"))[0] == 202
    s, text = metrics(alertd)
    assert value(s, "alertd_events_total", type="panic", outcome="new") == 1
    assert value(s, "alertd_events_total", type="panic",
                 outcome="duplicate") == 1
    assert value(s, "alertd_events_total", type="panic",
                 outcome="merged") == 1
    assert value(s, "alertd_events_total", type="fault", outcome="new") == 1
    assert "# TYPE alertd_events_total counter" in text


def test_metrics_count_errors_by_code(alertd):
    ev = make_event()
    st, _, _ = post_event(alertd.http, ev, signature=None)
    assert st == 401
    st, _, _ = post_event(alertd.http, make_event(type="bogus"))
    assert st == 400
    st, _, _ = post_event(alertd.http, make_event(type="bogus"))
    assert st == 400
    s, text = metrics(alertd)
    assert value(s, "alertd_errors_total", code="signature_missing") == 1
    assert value(s, "alertd_errors_total", code="invalid_enum") == 2
    assert "# TYPE alertd_errors_total counter" in text
    assert value(s, "alertd_events_total", type="panic", outcome="new") == 0


def histogram(samples, text, name):
    """The count of histogram NAME, after checking its shape."""
    assert "# TYPE %s histogram" % name in text
    count = value(samples, name + "_count")
    buckets = sorted(
        ((float(dict(ls)["le"].replace("+Inf", "inf")), v)
         for (n, ls), v in samples.items() if n == name + "_bucket"),
        key=lambda b: b[0])
    assert len(buckets) >= 3, buckets
    assert buckets[-1][0] == float("inf") and buckets[-1][1] == count
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are not cumulative"
    if count:
        assert value(samples, name + "_sum") > 0
    return count


def test_metrics_ingest_histogram(alertd):
    for _ in range(3):
        assert post_event(alertd.http, make_event())[0] == 202
    s, text = metrics(alertd)
    assert histogram(s, text, "alertd_ingest_seconds") == 3


def test_metrics_stage_histograms_count_redis_calls_and_audit_batches(alertd):
    s0, text = metrics(alertd)
    d0 = histogram(s0, text, "alertd_decide_seconds")
    a0 = histogram(s0, text, "alertd_audit_batch_seconds")
    # One at a time: each event is its own decide call and its own batch.
    for _ in range(3):
        assert post_event(alertd.http, make_event())[0] == 202
    s, text = metrics(alertd)
    assert histogram(s, text, "alertd_decide_seconds") >= d0 + 3
    assert histogram(s, text, "alertd_audit_batch_seconds") >= a0 + 3
    # A refused event reaches neither Redis nor PostgreSQL.
    assert post_event(alertd.http, make_event(type="bogus"))[0] == 400
    s2, text = metrics(alertd)
    assert histogram(s2, text, "alertd_decide_seconds") == \
        value(s, "alertd_decide_seconds_count")
    assert histogram(s2, text, "alertd_audit_batch_seconds") == \
        value(s, "alertd_audit_batch_seconds_count")


def test_unknown_path_is_404_json(alertd):
    st, body, _ = http_get(alertd.http, "/v1/nothing-here")
    assert st == 404
    assert isinstance(body, dict) and body.get("error") == "not_found", body
