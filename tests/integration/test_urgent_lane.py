"""The urgent lane: with a backlog of low-priority events waiting for the pipeline,
a panic read later (on another connection, or on the same connection
behind the backlog) is decided first. Only the order is asserted: the
panic's Ack and its console change come before the backlog's last ones,
whatever the speed of the machine."""

import struct
import threading

from helpers import SseClient, TcpClient, http_get, http_request, \
    make_event, post_event, uid, wait_until

BACKLOG = 2000


def _frames(events):
    return b"".join(struct.pack(">I", len(f)) + f
                    for f in (TcpClient.signed_frame(ev) for ev in events))


def _noise(n, type="fault"):
    # One source each: every fault opens an incident and so publishes a
    # change (heartbeats make none, and repeated ones may be quieted).
    return [make_event(type=type, source_id="noise-" + uid(), attrs=None)
            for _ in range(n)]


def _read_answers(client, n):
    """event_ids in the order their answers arrived (all Acks)."""
    order = []
    for _ in range(n):
        f = client.read_frame(timeout=120)
        assert f.WhichOneof("msg") == "ack", f
        order.append(f.ack.event_id)
    return order


def test_panic_overtakes_the_heartbeat_backlog(alertd_factory,
                                               operator_token):
    # A small pipeline so that the backlog waits in the queue; a
    # connection may have the whole backlog read and unanswered.
    alertd = alertd_factory(server={"pipeline_max_inflight": "4",
                                    "tcp_max_inflight": "8192"})
    backlog = _noise(BACKLOG)
    behind = make_event(type="panic", attrs=None)     # same connection
    other = make_event(type="silent_alarm", attrs=None)  # another one
    with SseClient(alertd.http, operator_token) as sse, \
            TcpClient(*alertd.tcp) as a, TcpClient(*alertd.tcp) as b:
        assert sse.status == 200, sse.body
        a.send_raw(_frames(backlog + [behind]))
        # The first Ack: the backlog is being worked on (and, with a
        # pipeline of 4, thousands are still queued behind).
        first = _read_answers(a, 1)
        b.send_raw(_frames([other]))
        order_b = _read_answers(b, 1)
        order_a = first + _read_answers(a, BACKLOG)
        # The console: every change, in the order published.
        seen = []
        want = {ev["source"]["id"] for ev in backlog + [behind, other]}
        while want:
            e = sse.next_event(timeout=120)
            if e["event"] != "incident":
                continue
            sid = e["json"]["source"]["id"]
            seen.append(sid)
            want.discard(sid)
        _, metrics, _ = http_get(alertd.http, "/metrics")

    ids_a = [ev["event_id"] for ev in backlog]
    assert sorted(order_a) == sorted(ids_a + [behind["event_id"]])
    assert order_b == [other["event_id"]]
    # Same connection: the panic sent after the backlog is answered
    # before the last of it.
    pos = order_a.index(behind["event_id"])
    assert pos < BACKLOG, "the panic was answered after the whole backlog"
    assert order_a[-1] in ids_a
    # On the console, both alarms come before the backlog's last change.
    backlog_sources = [ev["source"]["id"] for ev in backlog]
    last_hb = max(i for i, s in enumerate(seen) if s in set(backlog_sources))
    assert seen.index(behind["source"]["id"]) < last_hb
    assert seen.index(other["source"]["id"]) < last_hb
    # The queue gauges are exported (empty again by now).
    text = metrics if isinstance(metrics, str) else str(metrics)
    assert "alertd_pipeline_queued_urgent 0" in text
    assert "alertd_pipeline_queued_normal 0" in text


def _gauge(alertd, name):
    _, text, _ = http_get(alertd.http, "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def test_an_alarm_starts_and_is_written_ahead_of_a_full_pipeline(
        alertd_factory):
    """Alarms may take a sixteenth more of the pipeline's slots (at least
    one) than other events, and an alarm's audit row goes into the next
    batch ahead of the rows queued before it. A second session holds the
    chain head, so the first audit batch waits and every decided fault
    keeps its slot: with 4 slots, 4 faults start and the 5th waits; a
    panic sent after them is decided at once all the same, and once the
    head is free it is written before the three faults decided ahead of
    it."""
    alertd = alertd_factory(server={"pipeline_max_inflight": "4"})
    faults = _noise(5)
    panic = make_event(type="panic", attrs=None)
    r = alertd.redis()
    decided = lambda ev: r.exists(
        alertd.prefix + "evt:" + ev["source"]["id"] + "/" + ev["event_id"])
    locker = alertd.db()
    locker.autocommit = False   # the lock is held until the rollback
    with TcpClient(*alertd.tcp) as a, TcpClient(*alertd.tcp) as b:
        try:
            with locker.cursor() as cur:
                cur.execute("SELECT 1 FROM audit_chain_head FOR UPDATE")
            a.send_raw(_frames(faults))
            wait_until(lambda: _gauge(alertd,
                                      "alertd_pipeline_queued_normal") == 1,
                       5, what="the 5th fault queued")
            assert [bool(decided(ev)) for ev in faults] == \
                [True, True, True, True, False]
            b.send_raw(_frames([panic]))
            wait_until(lambda: decided(panic), 3,
                       what="the panic decided while the faults hold "
                            "the other slots")
            assert _gauge(alertd, "alertd_pipeline_queued_urgent") == 0
            assert _gauge(alertd, "alertd_pipeline_queued_normal") == 1
        finally:
            locker.rollback()
        assert _read_answers(b, 1) == [panic["event_id"]]
        assert sorted(_read_answers(a, 5)) == \
            sorted(ev["event_id"] for ev in faults)
    ids = [ev["event_id"] for ev in faults + [panic]]
    with alertd.db().cursor() as cur:
        cur.execute("SELECT event_id FROM events WHERE event_id = ANY(%s)"
                    " ORDER BY accept_seq", (ids,))
        by_seq = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT event_id FROM events WHERE event_id = ANY(%s)"
                    " ORDER BY chain_seq", (ids,))
        by_chain = [row[0] for row in cur.fetchall()]
    f = [ev["event_id"] for ev in faults]
    p = panic["event_id"]
    # Decided: four faults, the panic, the fault that waited for a slot.
    assert by_seq == [f[0], f[1], f[2], f[3], p, f[4]]
    # Written: the first batch (waiting for the head), then the panic
    # ahead of the three faults queued for the next batch before it.
    assert by_chain == [f[0], p, f[1], f[2], f[3], f[4]]


def test_an_operators_action_is_written_ahead_of_queued_rows(
        alertd_factory, add_operator_token):
    """An operator waits for the answer to an action: its transition row
    goes into the next audit batch ahead of the faults' rows queued before
    it. The chain head is held from a second session, as above, and a
    batch takes at most two rows, so the ack overtaking shows as a batch
    earlier than the last fault's."""
    alertd = alertd_factory(postgres={"batch_max": "2"})
    token = add_operator_token("operator", "op-" + uid(8))
    st, body, _ = post_event(alertd.http, make_event(type="panic",
                                                     attrs=None))
    assert st == 202, body
    iid = body["incident_id"]
    faults = _noise(3)
    r = alertd.redis()
    ikey = alertd.prefix + "inc:%d" % iid
    locker = alertd.db()
    locker.autocommit = False
    answer = {}

    def ack():
        answer["ack"] = http_request(
            alertd.http, "POST", "/v1/incidents/%d/ack" % iid, body=b"{}",
            token=token, headers={"Content-Type": "application/json"},
            timeout=30)

    with TcpClient(*alertd.tcp) as a:
        acker = threading.Thread(target=ack)
        try:
            with locker.cursor() as cur:
                cur.execute("SELECT 1 FROM audit_chain_head FOR UPDATE")
            a.send_raw(_frames(faults))
            wait_until(lambda: all(
                r.exists(alertd.prefix + "evt:" + ev["source"]["id"] +
                         "/" + ev["event_id"])
                for ev in faults), 5, what="the faults decided")
            acker.start()
            wait_until(lambda: r.hget(ikey, "state") == "acknowledged",
                       5, what="the ack decided while the head is held")
        finally:
            locker.rollback()
        acker.join(30)
        st, snap, _ = answer["ack"]
        assert st == 200, snap
        assert sorted(_read_answers(a, 3)) == \
            sorted(ev["event_id"] for ev in faults)
    with alertd.db().cursor() as cur:
        cur.execute("SELECT event_id, chain_seq FROM events"
                    " WHERE event_id = ANY(%s) ORDER BY accept_seq",
                    ([ev["event_id"] for ev in faults],))
        f = [row[1] for row in cur.fetchall()]
        cur.execute("SELECT chain_seq FROM incident_transitions"
                    " WHERE transition_id = %s", ("%d:2" % iid,))
        acked = cur.fetchone()[0]
    # The first fault was in flight; the next batch took the ack, ahead,
    # and the second fault (a batch links its rows in the order it took
    # them); the third fault came last. First in, first out would have
    # written the ack last.
    assert f[0] < acked < f[1] < f[2], (f, acked)


def test_drain_answers_queued_events(alertd_factory):
    """SIGTERM while thousands of events are queued: every one read is
    answered (queued jobs count as in flight for the drain)."""
    alertd = alertd_factory(server={"pipeline_max_inflight": "2",
                                    "tcp_max_inflight": "8192"})
    events = _noise(1000, type="heartbeat")
    with TcpClient(*alertd.tcp) as a:
        a.send_raw(_frames(events))
        _read_answers(a, 1)
        alertd.signal(15)
        answered = []
        while True:
            try:
                f = a.read_frame(timeout=60)
            except (EOFError, ConnectionError, OSError):
                break
            if f is None:
                break
            assert f.WhichOneof("msg") == "ack", f
            answered.append(f.ack.event_id)
    assert alertd.wait(60) == 0
    # Frames not read before the drain are never answered (the device
    # sends them again); everything read was answered, durably.
    ids = [ev["event_id"] for ev in events]
    with alertd.db().cursor() as cur:
        cur.execute("SELECT count(*) FROM events WHERE event_id = ANY(%s)",
                    (ids,))
        rows = cur.fetchone()[0]
    assert rows == 1 + len(answered)


def test_batch_linger_gathers_ordinary_rows_and_never_holds_an_alarm(
        alertd_factory):
    """[postgres] batch_linger_us: a batch of ordinary rows waits that
    long after the batch before was sent; an alarm's row goes at once.
    Bounds only on the linger itself (1 s): an ordinary answer cannot come
    sooner than the linger allows, an alarm's comes well before it."""
    import time
    alertd = alertd_factory(postgres={"batch_linger_us": "1000000"})
    first = make_event(type="fault", attrs=None)
    held = _noise(5, type="heartbeat")  # rows of their own only
    alarm = make_event(type="panic", attrs=None)
    with TcpClient(*alertd.tcp) as a:
        # Its batch is sent at once (none was sent in the last second,
        # or the one before it ends the wait).
        a.send_raw(_frames([first]))
        assert _read_answers(a, 1) == [first["event_id"]]
        # A batch was just sent: these wait for the rest of the second,
        # and share one batch.
        t0 = time.monotonic()
        a.send_raw(_frames(held))
        assert sorted(_read_answers(a, 5)) == \
            sorted(ev["event_id"] for ev in held)
        waited = time.monotonic() - t0
        assert waited >= 0.5, waited
        # A batch was just sent again: the alarm does not wait for it.
        t0 = time.monotonic()
        a.send_raw(_frames([alarm]))
        assert _read_answers(a, 1) == [alarm["event_id"]]
        alarm_waited = time.monotonic() - t0
        assert alarm_waited < 0.5, alarm_waited
    with alertd.db().cursor() as cur:
        cur.execute("SELECT event_id, chain_seq FROM events"
                    " WHERE event_id = ANY(%s)",
                    ([ev["event_id"] for ev in [first] + held + [alarm]],))
        seq = dict(cur.fetchall())
    assert len(seq) == 7, seq
    # One batch for the five (a batch's rows are consecutive in the
    # chain), after the first and before the alarm.
    five = sorted(seq[ev["event_id"]] for ev in held)
    assert five == list(range(five[0], five[0] + 5)), five
    assert seq[first["event_id"]] < five[0] and \
        five[-1] < seq[alarm["event_id"]], seq
