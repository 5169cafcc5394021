"""The spool: while PostgreSQL is unreachable, accepted events are appended
to a local fsync'd file and answered 202; the file survives kill -9 and a
torn tail, is replayed in order into PostgreSQL when it returns (exactly
once per event), and is bounded (over the bound: 503, never a silent
drop)."""

import json
import re
import signal
import struct
import threading
import time
import uuid
import zlib

import pytest

from helpers import (TcpClient, http_get, make_event, post_event,
                     wait_until)


def _ready(d):
    st, body, _ = http_get(d.http, "/readyz", timeout=5)
    return st, body


def _metric(d, name):
    st, text, _ = http_get(d.http, "/metrics", timeout=5)
    assert st == 200
    m = re.search(r"^%s ([0-9.e+-]+)$" % re.escape(name), text, re.M)
    assert m, "%s not in /metrics" % name
    return float(m.group(1))


def _counts(conn, event_ids):
    with conn.cursor() as cur:
        cur.execute("SELECT event_id, count(*) FROM events "
                    "WHERE event_id = ANY(%s) GROUP BY event_id",
                    (list(event_ids),))
        return dict(cur.fetchall())


class Sender(threading.Thread):
    """Posts events until stopped; remembers every event_id answered 202
    (and where it was sent). Connection errors (the daemon killed) and
    503s are retried later with the same event, as a device would."""

    def __init__(self, daemon_ref):
        super().__init__(daemon=True)
        self.ref = daemon_ref
        self.accepted = {}
        self.other = {}
        self.stop_flag = threading.Event()
        self.sources = [make_event()["source"] for _ in range(5)]

    def run(self):
        i = 0
        pending = None
        while not self.stop_flag.is_set():
            ev = pending or make_event(source=self.sources[i % 5])
            i += 1
            try:
                st, body, _ = post_event(self.ref[0].http, ev, timeout=10)
            except OSError:
                pending = ev
                time.sleep(0.05)
                continue
            if st == 202:
                self.accepted[ev["event_id"]] = body
                pending = None
            else:
                self.other[st] = self.other.get(st, 0) + 1
                pending = ev
                time.sleep(0.05)

    def wait_more(self, n, timeout=30):
        target = len(self.accepted) + n
        wait_until(lambda: len(self.accepted) >= target, timeout,
                   what="%d more accepted events" % n)

    def stop(self):
        self.stop_flag.set()
        self.join(30)


@pytest.mark.kill_after(300)
def test_outage_with_kill9_loses_nothing(alertd_factory, pg_server,
                                         test_env):
    cfg = test_env.config()
    ref = [alertd_factory(config=cfg)]
    sender = Sender(ref)
    sender.start()
    try:
        sender.wait_more(20)
        pg_server.stop("immediate")
        try:
            sender.wait_more(30)
            st, body = _ready(ref[0])
            assert st == 200, body
            assert body["postgres"] is False and body["redis"] is True
            assert body["spool"]["usable"] is True
            assert body["spool"]["rows"] > 0 and body["spool"]["bytes"] > 0
            assert _metric(ref[0], "alertd_spool_rows") > 0

            ref[0].expected_exit = -signal.SIGKILL
            ref[0].proc.kill()
            ref[0].wait(10)
            spool = test_env.spool_dir / "audit.spool"
            assert spool.stat().st_size > 0

            # Back without PostgreSQL: ready on the spool alone.
            ref[0] = alertd_factory(config=cfg, wait_ready=False)
            ref[0].wait_ready(postgres=False)
            sender.wait_more(20)
            assert _ready(ref[0])[1]["postgres"] is False
        finally:
            pg_server.start()
        sender.wait_more(20)
    finally:
        sender.stop()
    d = ref[0]
    wait_until(lambda: _ready(d)[1]["spool"]["rows"] == 0, 60,
               what="the spool replayed and emptied")
    assert spool.stat().st_size == 0
    accepted = sender.accepted
    assert len(accepted) >= 90
    counts = _counts(d.db(), accepted)
    missing = [e for e in accepted if e not in counts]
    dup = {e: n for e, n in counts.items() if n != 1}
    assert not missing, "answered 202 but not in PostgreSQL: %s" % missing[:5]
    assert not dup, "more than one row: %s" % dup
    with d.db().cursor() as cur:
        cur.execute("SELECT e.incident_id FROM events e "
                    "WHERE e.event_id = ANY(%s)", (list(accepted),))
        incidents = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT count(*) FROM incident_transitions "
                    "WHERE incident_id = ANY(%s) AND to_state = 'new'",
                    (list(incidents),))
        assert cur.fetchone()[0] == len(incidents)
    assert "replayed" in d.log()
    # ... in one consistent hash chain (migration 002).
    r = d.ctl("audit", "verify")
    assert r.returncode == 0 and "ok, " in r.stdout, r.stdout


@pytest.mark.kill_after(240)
def test_torn_tail_is_cut_and_good_rows_replayed(alertd_factory, pg_server,
                                                 test_env):
    cfg = test_env.config()
    d = alertd_factory(config=cfg)
    pg_server.stop("immediate")
    try:
        evs = [make_event() for _ in range(5)]
        for ev in evs:
            st, body, _ = post_event(d.http, ev, timeout=15)
            assert st == 202, body
        d.expected_exit = -signal.SIGKILL
        d.proc.kill()
        d.wait(10)
        spool = test_env.spool_dir / "audit.spool"
        good = spool.stat().st_size
        # A torn record: a header announcing 500 bytes, 10 of them written.
        with open(spool, "ab") as f:
            f.write(b"\x00\x00\x01\xf4\x12\x34\x56\x78" + b"x" * 10)
        d2 = alertd_factory(config=cfg, wait_ready=False)
        d2.wait_ready(postgres=False)
        d2.wait_log("torn or corrupt tail")
        assert spool.stat().st_size == good
        assert _ready(d2)[1]["spool"]["rows"] == 5
    finally:
        pg_server.start()
    wait_until(lambda: _ready(d2)[1]["spool"]["rows"] == 0, 60,
               what="the spool replayed")
    counts = _counts(d2.db(), [e["event_id"] for e in evs])
    assert counts == {e["event_id"]: 1 for e in evs}


@pytest.mark.kill_after(240)
def test_spool_full_answers_503(alertd_factory, pg_server):
    d = alertd_factory(spool__max_bytes=65536)
    pg_server.stop("immediate")
    accepted, refused = [], None
    try:
        for _ in range(400):
            ev = make_event(attrs={"pad": "p" * 200})
            st, body, hdrs = post_event(d.http, ev, timeout=15)
            if st == 202:
                accepted.append(ev["event_id"])
                continue
            refused = (st, body, hdrs)
            break
        assert refused is not None, "the spool never filled"
        st, body, hdrs = refused
        assert st == 503 and body["error"] == "unavailable", refused
        assert int(hdrs["retry-after"]) >= 1
        assert 20 < len(accepted) < 400
        st, body = _ready(d)
        assert body["spool"]["bytes"] <= 65536
    finally:
        pg_server.start()
    wait_until(lambda: _ready(d)[1]["spool"]["rows"] == 0, 60,
               what="the spool replayed")
    counts = _counts(d.db(), accepted)
    assert len(counts) == len(accepted) and set(counts.values()) == {1}


@pytest.mark.kill_after(240)
def test_group_fsync_one_per_burst(alertd, pg_server, pb):
    pg_server.stop("immediate")
    try:
        wait_until(lambda: _ready(alertd)[1]["postgres"] is False, 15,
                   what="PostgreSQL seen down")
        before = _metric(alertd, "alertd_spool_fsyncs")
        n = 60
        with TcpClient(*alertd.tcp, timeout=30) as c:
            for _ in range(n):
                c.send_event(make_event())
            frames = c.read_frames(n)
        assert all(f.WhichOneof("msg") == "ack" for f in frames), frames[:3]
        fsyncs = _metric(alertd, "alertd_spool_fsyncs") - before
        assert 1 <= fsyncs < n / 2, fsyncs
        assert _metric(alertd, "alertd_spool_rows") >= n
    finally:
        pg_server.start()
    wait_until(lambda: _ready(alertd)[1]["spool"]["rows"] == 0, 60,
               what="the spool replayed")


@pytest.mark.kill_after(240)
def test_sigterm_during_outage_drains_into_the_spool(alertd_factory,
                                                     pg_server, test_env):
    """A clean stop while PostgreSQL is down does not wait for it: the
    accepted rows are in the spool, and the next start replays them."""
    cfg = test_env.config()
    d = alertd_factory(config=cfg)
    pg_server.stop("immediate")
    try:
        evs = [make_event() for _ in range(5)]
        for ev in evs:
            st, body, _ = post_event(d.http, ev, timeout=15)
            assert st == 202, body
        t0 = time.monotonic()
        assert d.stop(timeout=30) == 0
        assert time.monotonic() - t0 < 10
        assert "rows not recorded" not in d.log()
    finally:
        pg_server.start()
    d2 = alertd_factory(config=cfg)
    wait_until(lambda: _ready(d2)[1]["spool"]["rows"] == 0, 60,
               what="the spool replayed")
    counts = _counts(d2.db(), [e["event_id"] for e in evs])
    assert counts == {e["event_id"]: 1 for e in evs}
    assert d2.ctl("audit", "verify").returncode == 0


def _spool_record(ev_json, tr_json=""):
    payload = (ev_json + "\n" + tr_json).encode()
    length = struct.pack(">I", len(payload))
    crc = zlib.crc32(length + payload) & 0xffffffff
    return length + struct.pack(">I", crc) + payload


@pytest.mark.kill_after(120)
def test_rows_spooled_in_either_payload_form_are_replayed(alertd_factory,
                                                          test_env):
    """Rows carry the event payload as a JSON value since optimisation 13;
    a spool written before (payload as an escaped string) must replay into
    the same jsonb."""
    cfg = test_env.config()
    payload = {"event_id": "", "source": {"id": "bus-old", "kind": "bus"},
               "type": "panic", "location": {"lat": 38.4555, "lon": 27.1}}
    rows = []
    for form in ("string", "value"):
        eid = "spool-%s-%s" % (form, uuid.uuid4().hex[:12])
        p = dict(payload, event_id=eid)
        row = {"accept_seq": 900000000 + len(rows), "event_id": eid,
               "source_id": "bus-old", "source_kind": "bus",
               "type": "panic", "outcome": "new", "incident_id": 0,
               "priority": 100, "received_at_ms": 1795000000000}
        text = json.dumps(row, separators=(",", ":"))
        pj = json.dumps(p, separators=(",", ":"))
        if form == "string":
            text = text[:-1] + ',"payload":' + json.dumps(pj) + "}"
        else:
            text = text[:-1] + ',"payload":' + pj + "}"
        rows.append((eid, p, text))
    test_env.spool_dir.mkdir(parents=True, exist_ok=True)
    with open(test_env.spool_dir / "audit.spool", "wb") as f:
        for _, _, text in rows:
            f.write(_spool_record(text))
    d = alertd_factory(config=cfg)
    wait_until(lambda: _ready(d)[1]["spool"]["rows"] == 0, 30,
               what="the spool replayed")
    with d.db().cursor() as cur:
        for eid, p, _ in rows:
            cur.execute("SELECT payload FROM events WHERE event_id = %s",
                        (eid,))
            got = cur.fetchall()
            assert got == [(p,)], (eid, got)


@pytest.mark.kill_after(120)
@pytest.mark.kill_after(180)
def test_a_spooled_duplicate_delivery_is_replayed_as_one(alertd, pg_server):
    """Devices send events again while PostgreSQL is down (answered
    duplicate): those rows are spooled too, and the spool keeps their
    parts, not that they are duplicate deliveries. The replay writes each
    event once, without a batch that PostgreSQL refuses for a repeated key
    (23505) and the isolation by halves that follows."""
    st, body, _ = post_event(alertd.http, make_event())
    assert st == 202, body                  # the chain's head is known
    evs = [make_event() for _ in range(5)]
    pg_server.stop("fast")
    try:
        for ev in evs:
            for want in ("new", "duplicate"):
                st, body, _ = post_event(alertd.http, ev, timeout=20)
                assert st == 202 and body["outcome"] == want, body
    finally:
        pg_server.start()
    wait_until(lambda: _ready(alertd)[1]["spool"]["rows"] == 0, 60,
               what="the spool replayed")
    assert "refused (23505" not in alertd.log(), alertd.log()[-3000:]
    counts = _counts(alertd.db(), [ev["event_id"] for ev in evs])
    assert counts == {ev["event_id"]: 1 for ev in evs}, counts
    r = alertd.ctl("audit", "verify")
    assert r.returncode == 0 and "ok, " in r.stdout, r.stdout + r.stderr


def test_spooled_rows_recorded_already_are_not_linked_twice(alertd_factory,
                                                            test_env):
    """A spool can hold rows that PostgreSQL has (the batch in flight at a
    stop committed after all). alertd links the chain itself (migration
    008): a replayed batch that meets such a row writes nothing, drops
    that row (it is recorded) and links the others again, so each row is
    stored once and the chain has no hole and no link to a missing row."""
    cfg = test_env.config()

    def row(eid, n, at_ms):
        ev = {"accept_seq": 910000000 + n, "event_id": eid,
              "source_id": "bus-replay", "source_kind": "bus",
              "type": "panic", "outcome": "new", "incident_id": 910000 + n,
              "priority": 100, "received_at_ms": at_ms,
              "payload": {"event_id": eid, "type": "panic",
                          "source": {"id": "bus-replay", "kind": "bus"}}}
        tr = {"transition_id": "%d:open" % (910000 + n),
              "incident_id": 910000 + n, "from_state": None,
              "to_state": "new", "actor": "alertd",
              "detail": json.dumps({"reason": "opened"}), "at_ms": at_ms}
        return (json.dumps(ev, separators=(",", ":")),
                json.dumps(tr, separators=(",", ":")))

    tag = uuid.uuid4().hex[:10]
    a = row("replay-a-" + tag, 1, 1795000000001)
    b = row("replay-b-" + tag, 2, 1795000000002)
    test_env.spool_dir.mkdir(parents=True, exist_ok=True)
    spool = test_env.spool_dir / "audit.spool"
    spool.write_bytes(_spool_record(*a))
    d = alertd_factory(config=cfg)
    wait_until(lambda: _ready(d)[1]["spool"]["rows"] == 0, 30,
               what="the spool replayed")
    assert d.stop() == 0
    # Row a again (recorded already), then the new row b, in one batch.
    spool.write_bytes(_spool_record(*a) + _spool_record(*b))
    d = alertd_factory(config=cfg)
    wait_until(lambda: _ready(d)[1]["spool"]["rows"] == 0, 30,
               what="the spool replayed")
    d.wait_log("were recorded already")
    conn = d.db()
    with conn.cursor() as cur:
        cur.execute("SELECT event_id, count(*) FROM events "
                    "WHERE source_id = 'bus-replay' GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == [("replay-a-" + tag, 1),
                                  ("replay-b-" + tag, 1)]
        cur.execute("SELECT count(*) FROM incident_transitions "
                    "WHERE incident_id IN (910001, 910002)")
        assert cur.fetchone()[0] == 2
    r = d.ctl("audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 4 rows (chain_seq 1..4)" in r.stdout, r.stdout
