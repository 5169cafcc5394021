"""Redis or PostgreSQL unreachable: the sender gets a retryable error (HTTP
503 + Retry-After, TCP Nack with retry), never a success for an event that
is not durable; alertd keeps running and recovers by itself."""

import hashlib
import pathlib

import pytest

from helpers import (TcpClient, http_get, make_event, post_event,
                     wait_until)

RECOVERY_S = 45


def _row_incident(alertd, event_id):
    with alertd.db().cursor() as cur:
        cur.execute("SELECT incident_id FROM events WHERE event_id = %s",
                    (event_id,))
        rows = cur.fetchall()
    return [r[0] for r in rows]


def _assert_unavailable(st, body, hdrs):
    assert st == 503, (st, body)
    assert body["error"] == "unavailable", body
    assert body.get("detail")
    ra = hdrs.get("retry-after")
    assert ra is not None and ra.strip().isdigit() and int(ra) >= 1, hdrs


def _ready(alertd):
    st, body, _ = http_get(alertd.http, "/readyz", timeout=5)
    return st, body


def _recover(alertd, ev):
    """Retries the same event until 202 (the retry is always safe)."""
    last = {}

    def try_once():
        st, body, _ = post_event(alertd.http, ev, timeout=15)
        last["r"] = (st, body)
        if st == 202:
            return body
        assert st == 503, (st, body)    # never anything else meanwhile
        return None

    return wait_until(try_once, RECOVERY_S, interval=0.5,
                      what="alertd to accept events again (last %r)" % last)


def _tcp_nack_unavailable(alertd, ev):
    with TcpClient(*alertd.tcp, timeout=20) as c:
        c.send_event(ev)
        f = c.read_frame()
    assert f is not None and f.WhichOneof("msg") == "nack", f
    assert f.nack.code == "unavailable"
    assert f.nack.retry is True
    assert f.nack.retry_after_ms > 0
    assert f.nack.event_id in ("", ev["event_id"])


@pytest.mark.kill_after(240)
def test_redis_down_then_back(alertd, redis_server):
    first = make_event()
    st, before, _ = post_event(alertd.http, first)
    assert st == 202, before

    redis_server.stop()
    try:
        down = [make_event() for _ in range(3)]
        for ev in down:
            _assert_unavailable(*post_event(alertd.http, ev, timeout=15))
        wait_until(lambda: _ready(alertd)[0] == 503, 10,
                   what="/readyz 503 while Redis is down")
        st, body = _ready(alertd)
        assert body["redis"] is False, body
        _tcp_nack_unavailable(alertd, make_event())
        assert alertd.alive()
        for ev in down:
            assert _row_incident(alertd, ev["event_id"]) == []
    finally:
        redis_server.start()

    # Back by itself: the refused events, retried, are accepted and durable.
    for ev in down:
        body = _recover(alertd, ev)
        assert body["outcome"] in ("new", "merged"), body
        assert _row_incident(alertd, ev["event_id"]) == [body["incident_id"]]
    wait_until(lambda: _ready(alertd)[0] == 200, 10, what="/readyz 200")
    # Redis kept its data: the incident from before the outage is still
    # open, and a new event of its source merges into it.
    st, merged, _ = post_event(alertd.http, make_event(
        source=first["source"]))
    assert st == 202, merged
    assert merged["outcome"] == "merged", merged
    assert merged["incident_id"] == before["incident_id"]


@pytest.mark.kill_after(240)
def test_postgres_down_then_back(alertd_factory, pg_server):
    # Without a spool (test_spool.py covers the spool): refused, not lost.
    alertd = alertd_factory(spool__path="")
    st, body, _ = post_event(alertd.http, make_event())
    assert st == 202, body

    pg_server.stop("fast")
    try:
        down = [make_event() for _ in range(3)]
        for ev in down:
            _assert_unavailable(*post_event(alertd.http, ev, timeout=20))
        wait_until(lambda: _ready(alertd)[0] == 503, 10,
                   what="/readyz 503 while PostgreSQL is down")
        st, body = _ready(alertd)
        assert body["postgres"] is False, body
        _tcp_nack_unavailable(alertd, make_event())
        # Still never a success while PostgreSQL is down.
        _assert_unavailable(*post_event(alertd.http, down[0], timeout=20))
        assert alertd.alive()
    finally:
        pg_server.start()

    for ev in down:
        body = _recover(alertd, ev)
        # decided in Redis before PostgreSQL failed: a retry may be a
        # duplicate of that decision, answered now that its row is durable
        assert body["outcome"] in ("new", "merged", "duplicate"), body
        assert _row_incident(alertd, ev["event_id"]) == [body["incident_id"]]
    wait_until(lambda: _ready(alertd)[0] == 200, 10, what="/readyz 200")
    fresh = make_event()
    st, body, _ = post_event(alertd.http, fresh)
    assert st == 202 and body["outcome"] == "new", body
    assert _row_incident(alertd, fresh["event_id"]) == [body["incident_id"]]


@pytest.mark.kill_after(240)
def test_postgres_immediate_stop(alertd_factory, pg_server):
    """A crash-like stop (no clean disconnect) is handled the same way."""
    alertd = alertd_factory(spool__path="")
    pg_server.stop("immediate")
    try:
        ev = make_event()
        _assert_unavailable(*post_event(alertd.http, ev, timeout=20))
    finally:
        pg_server.start()
    body = _recover(alertd, ev)
    assert _row_incident(alertd, ev["event_id"]) == [body["incident_id"]]


@pytest.mark.kill_after(240)
def test_redis_restart_that_lost_its_data(alertd, redis_server):
    """Redis comes back empty (no persistence, or a failover that lost
    writes). Events accepted afterwards must still get their rows: a 202
    always means a committed row, whatever Redis forgot."""
    accepted = []
    for _ in range(3):
        ev = make_event()
        st, body, _ = post_event(alertd.http, ev)
        assert st == 202, body
        accepted.append((ev, body))

    redis_server.stop(save=False)
    redis_server.start()

    for _ in range(3):
        ev = make_event()
        body = _recover(alertd, ev)
        assert body["outcome"] == "new", body
        assert _row_incident(alertd, ev["event_id"]) == \
            [body["incident_id"]], \
            "202 for %s but no row of it in PostgreSQL" % ev["event_id"]
        accepted.append((ev, body))
    for ev, body in accepted:
        assert _row_incident(alertd, ev["event_id"]) == [body["incident_id"]]


def test_script_cache_flushed_under_load(alertd, redis_server):
    """SCRIPT FLUSH (or a Redis that restarted with its data): the batched
    decide calls in flight get NOSCRIPT, are sent again with EVAL and the
    script is loaded again; no event fails because of it."""
    import threading
    first = make_event()
    st, body, _ = post_event(alertd.http, first)
    assert st == 202, body
    redis_server.client().script_flush()
    results = []

    def send():
        for _ in range(10):
            st, body, _ = post_event(alertd.http, make_event())
            results.append((st, body))

    ts = [threading.Thread(target=send) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert len(results) == 40
    assert all(st == 202 and b["outcome"] == "new" for st, b in results), \
        [r for r in results if r[0] != 202][:3]
    alertd.wait_log("not in the Redis script cache")
    # alertd loaded it again (the SHA-1 of the embedded file's bytes)
    sha = hashlib.sha1((pathlib.Path(__file__).resolve().parents[2] /
                        "daemon" / "lua" / "decide.lua").read_bytes()
                       ).hexdigest()
    wait_until(lambda: redis_server.client().script_exists(sha)[0], 10,
               what="decide.lua back in the script cache")


@pytest.mark.kill_after(120)
def test_audit_backend_killed_between_batches(alertd):
    """The audit batch is a prepared statement: a new connection (here:
    the backend terminated, PostgreSQL still up) prepares it again, and
    the events of before and after are all recorded once."""
    before = [make_event() for _ in range(3)]
    for ev in before:
        st, body, _ = post_event(alertd.http, ev)
        assert st == 202, body
    with alertd.db() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = "
                    "'client backend'")
        assert cur.fetchone()[0] >= 1
    after = [make_event() for _ in range(3)]
    for ev in after:
        body = _recover(alertd, ev)
        assert body["outcome"] in ("new", "duplicate"), body
    # An event answered while the connection was down may be durable in
    # the spool first: its row comes when the spool is replayed.
    wait_until(lambda: all(len(_row_incident(alertd, ev["event_id"])) == 1
                           for ev in before + after), RECOVERY_S,
               what="one row for every event")
    assert alertd.alive()


def _max_ids(alertd):
    """The highest incident id and accept_seq in the audit trail."""
    with alertd.db().cursor() as cur:
        cur.execute("SELECT coalesce(max(incident_id), 0),"
                    " coalesce(max(accept_seq), 0) FROM events")
        return cur.fetchone()


def _accept_seq(alertd, event_id):
    with alertd.db().cursor() as cur:
        cur.execute("SELECT accept_seq FROM events WHERE event_id = %s",
                    (event_id,))
        return [r[0] for r in cur.fetchall()]


def _forget_everything(alertd):
    """What Redis without persistence keeps of this test after a restart:
    nothing (the other tests' keys stay)."""
    keys = alertd.redis_keys()
    assert keys
    alertd.redis().delete(*keys)


def test_ids_continue_after_redis_lost_its_data(alertd):
    """Incident ids and accept_seq never start again at 1: a reused id
    would mix two incidents in the audit trail (and GET /v1/incidents/{id}
    would show another incident's history); a reused accept_seq could make
    a retried event's new row look stored already."""
    first = make_event()
    for ev in (first, make_event(), make_event(source=first["source"])):
        st, body, _ = post_event(alertd.http, ev)
        assert st == 202, body
    inc_max, acc_max = _max_ids(alertd)
    assert inc_max >= 2 and acc_max >= 3

    _forget_everything(alertd)
    # The same device retries its first event: a new decision now (Redis
    # forgot it), and a row of its own.
    body = _recover(alertd, first)
    assert body["outcome"] == "new", body
    assert body["incident_id"] > inc_max, (body, inc_max)
    seqs = _accept_seq(alertd, first["event_id"])
    assert len(seqs) == 2 and max(seqs) > acc_max, (seqs, acc_max)
    fresh = make_event()
    st, body2, _ = post_event(alertd.http, fresh)
    assert st == 202 and body2["incident_id"] > body["incident_id"], body2


def test_ids_continue_after_alertd_and_redis_both_restarted(alertd_factory):
    """A new alertd on an empty Redis (a machine restarted, Redis without
    persistence): the counters continue above what PostgreSQL holds."""
    a = alertd_factory()
    for _ in range(3):
        st, body, _ = post_event(a.http, make_event())
        assert st == 202, body
    a.stop()
    inc_max, acc_max = _max_ids(a)
    _forget_everything(a)

    b = alertd_factory()
    b.wait_log("seqfloor: incident ids continue above %d" % inc_max)
    ev = make_event()
    st, body, _ = post_event(b.http, ev)
    assert st == 202 and body["outcome"] == "new", body
    assert body["incident_id"] == inc_max + 1, (body, inc_max)
    assert _accept_seq(b, ev["event_id"]) == [acc_max + 1]
