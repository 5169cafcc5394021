"""The device TCP protocol: length-prefixed protobuf frames, pipelined,
answered by Ack/Nack (possibly out of order, matched on event_id) once the
event is durable; bad frames close only their own connection."""

import struct
import subprocess
import time

from helpers import (TcpClient, http_get, make_event, mutate, pb, pb_event,
                     uid)


def _rows(db, event_ids):
    with db.cursor() as cur:
        cur.execute("SELECT event_id, incident_id, outcome FROM events"
                    " WHERE event_id = ANY(%s)", (list(event_ids),))
        return {r[0]: (r[1], r[2]) for r in cur.fetchall()}


def _ack(frame):
    assert frame.WhichOneof("msg") == "ack", frame
    return frame.ack


def test_pipelined_frames_all_acked_and_durable(alertd):
    m = pb()
    db = alertd.db()
    sources = [make_event()["source"] for _ in range(10)]
    events = [make_event(source=sources[i % 10],
                         type="panic" if i % 2 else "silent_alarm")
              for i in range(50)]
    with TcpClient(*alertd.tcp) as c:
        payload = b"".join(
            struct.pack(">I", len(f)) + f
            for f in (TcpClient.signed_frame(ev) for ev in events))
        c.send_raw(payload)          # all 50 before reading anything
        acks = {}
        for _ in range(50):
            a = _ack(c.read_frame(timeout=30))
            row = _rows(db, [a.event_id])   # durable when the Ack arrives
            assert a.event_id in row, "Ack before commit: %s" % a.event_id
            assert row[a.event_id][0] == a.incident_id
            assert a.event_id not in acks, "two answers for " + a.event_id
            acks[a.event_id] = a
    assert set(acks) == {ev["event_id"] for ev in events}
    # Per source: one incident, one NEW and four MERGED.
    for src in sources:
        mine = [acks[ev["event_id"]] for ev in events
                if ev["source"]["id"] == src["id"]]
        assert len({a.incident_id for a in mine}) == 1
        outcomes = sorted(a.outcome for a in mine)
        assert outcomes == [m.NEW] + [m.MERGED] * 4, outcomes
        assert all(a.priority == 100 for a in mine)
    assert len({a.incident_id for a in acks.values()}) == 10
    assert len(_rows(db, acks)) == 50


def test_duplicate_over_tcp(alertd):
    m = pb()
    ev = make_event()
    with TcpClient(*alertd.tcp) as c:
        c.send_event(ev)
        a1 = _ack(c.read_frame())
        c.send_event(ev)
        a2 = _ack(c.read_frame())
    assert a1.outcome == m.NEW
    assert a2.outcome == m.DUPLICATE
    assert a2.incident_id == a1.incident_id
    assert a2.event_id == ev["event_id"]


def test_bad_signature_gets_nack_and_connection_stays(alertd):
    db = alertd.db()
    bad = make_event()
    old = make_event()
    good = make_event()
    with TcpClient(*alertd.tcp) as c:
        c.send_event(bad, secret="wrong-secret")
        f = c.read_frame()
        assert f.WhichOneof("msg") == "nack", f
        assert f.nack.code == "signature_invalid"
        assert f.nack.retry is False
        # named, so that a device matching pipelined answers knows which
        assert f.nack.event_id == bad["event_id"]
        c.send_event(old, t=int(time.time()) - 3600)
        f = c.read_frame()
        assert f.WhichOneof("msg") == "nack", f
        assert f.nack.code == "timestamp_out_of_window"
        assert f.nack.retry is False
        assert f.nack.event_id == old["event_id"]
        c.send_event(good)
        a = _ack(c.read_frame())
        assert a.event_id == good["event_id"]
    rows = _rows(db, [bad["event_id"], old["event_id"], good["event_id"]])
    assert set(rows) == {good["event_id"]}


def test_invalid_event_gets_nack_with_its_code(alertd):
    m = pb()
    db = alertd.db()
    ev = make_event(event_id="has space " + uid())
    no_type = make_event()
    with TcpClient(*alertd.tcp) as c:
        c.send_event(ev)
        f = c.read_frame()
        assert f.WhichOneof("msg") == "nack", f
        assert f.nack.code == "invalid_id"
        assert f.nack.retry is False
        e = TcpClient.signed_frame(no_type)
        fr = m.Frame()
        fr.ParseFromString(e)
        inner = m.Event()
        inner.ParseFromString(fr.event.event)
        inner.ClearField("type")
        c.send_event(inner)
        f = c.read_frame()
        assert f.WhichOneof("msg") == "nack", f
        assert f.nack.code in ("missing_field", "invalid_enum")
        # Signed garbage in place of the Event: malformed_protobuf, a Nack.
        c.send_event(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
        f = c.read_frame()
        assert f.WhichOneof("msg") == "nack", f
        assert f.nack.code == "malformed_protobuf"
        ok = make_event()
        c.send_event(ok)
        assert _ack(c.read_frame()).event_id == ok["event_id"]
    assert set(_rows(db, [ev["event_id"], no_type["event_id"],
                          ok["event_id"]])) == {ok["event_id"]}


def test_malformed_frame_closes_only_that_connection(alertd):
    with TcpClient(*alertd.tcp) as other, TcpClient(*alertd.tcp) as c:
        ev0 = make_event()
        other.send_event(ev0)
        assert _ack(other.read_frame()).event_id == ev0["event_id"]

        c.send_payload(b"\xff" * 23)     # valid length, not a Frame
        f = c.read_frame()
        assert f is not None and f.WhichOneof("msg") == "error", f
        assert f.error.code == "malformed_frame"
        assert c.is_closed(5.0), "connection left open after a bad frame"

        ev1 = make_event()
        other.send_event(ev1)
        assert _ack(other.read_frame()).event_id == ev1["event_id"]
    # and new connections are accepted
    with TcpClient(*alertd.tcp) as c2:
        ev2 = make_event()
        c2.send_event(ev2)
        assert _ack(c2.read_frame()).event_id == ev2["event_id"]


def test_frames_before_a_bad_one_are_answered_before_the_error(alertd):
    """Frames pipelined before a malformed one are decided and recorded;
    each gets its Ack before the Error frame, then the connection closes
    (DESIGN: every frame is answered with an Ack or a Nack)."""
    db = alertd.db()
    events = [make_event() for _ in range(5)]
    payload = b"".join(
        struct.pack(">I", len(f)) + f
        for f in (TcpClient.signed_frame(ev) for ev in events))
    payload += struct.pack(">I", 23) + b"\xff" * 23   # not a Frame
    with TcpClient(*alertd.tcp) as c:
        c.send_raw(payload)                  # all in one write
        frames = []
        while True:
            f = c.read_frame(timeout=30)
            assert f is not None, "closed after %d frames: %s" % (
                len(frames), frames)
            frames.append(f)
            if f.WhichOneof("msg") == "error":
                break
        assert frames[-1].error.code == "malformed_frame"
        acks = [_ack(f).event_id for f in frames[:-1]]
        assert sorted(acks) == sorted(ev["event_id"] for ev in events)
        assert c.is_closed(5.0), "connection left open after the error"
    assert len(_rows(db, acks)) == 5


def test_frame_without_event_is_malformed(alertd):
    m = pb()
    f = m.Frame()
    f.ack.event_id = "x"
    with TcpClient(*alertd.tcp) as c:
        c.send_payload(f.SerializeToString())
        r = c.read_frame()
        assert r is not None and r.WhichOneof("msg") == "error", r
        assert r.error.code == "malformed_frame"
        assert c.is_closed(5.0)


def test_oversized_length_prefix_closes_with_frame_too_large(alertd):
    with TcpClient(*alertd.tcp) as other, TcpClient(*alertd.tcp) as c:
        c.send_raw(struct.pack(">I", 64 * 1024 + 1))   # the header alone
        f = c.read_frame()
        assert f is not None and f.WhichOneof("msg") == "error", f
        assert f.error.code == "frame_too_large"
        assert c.is_closed(5.0)
        ev = make_event()
        other.send_event(ev)
        assert _ack(other.read_frame()).event_id == ev["event_id"]
    with TcpClient(*alertd.tcp) as c:
        c.send_raw(b"\xff\xff\xff\xff")
        f = c.read_frame()
        assert f is not None and f.error.code == "frame_too_large", f
        assert c.is_closed(5.0)


def test_frame_split_across_writes(alertd):
    """A frame may arrive a byte at a time."""
    ev = make_event()
    data = TcpClient.signed_frame(ev)
    data = struct.pack(">I", len(data)) + data
    with TcpClient(*alertd.tcp) as c:
        for i in range(0, len(data), 7):
            c.send_raw(data[i:i + 7])
            time.sleep(0.002)
        assert _ack(c.read_frame()).event_id == ev["event_id"]


def test_client_leaving_early_still_records(alertd):
    """A device that disconnects before its Ack: the event still completes
    (decided and recorded), and a retry is a duplicate of it."""
    m = pb()
    db = alertd.db()
    ev = make_event()
    c = TcpClient(*alertd.tcp)
    c.send_event(ev)
    c.close()
    from helpers import wait_until
    wait_until(lambda: ev["event_id"] in _rows(db, [ev["event_id"]]),
               10, what="the row of an event whose sender left")
    with TcpClient(*alertd.tcp) as c2:
        c2.send_event(ev)
        a = _ack(c2.read_frame())
    assert a.outcome == m.DUPLICATE


def test_events_wait_for_a_batch_in_flight_and_go_out_together(alertd):
    """At most two decide_batch calls are in flight (decide.c): events
    that arrive, one loop turn each, while Redis is busy with them are
    queued, an urgent one ahead of the others, and go out together when
    one is answered, instead of one
    script call per turn. Redis is held busy by a script that spins for
    0.8 s (sent with EVAL; alertd's calls are EVALSHA)."""
    import threading
    spin = ("local s = redis.call('TIME') repeat local n = "
            "redis.call('TIME') until (n[1] - s[1]) * 1000000 + "
            "(n[2] - s[2]) > 800000 return 1")
    r = alertd.redis()
    events = [make_event(type="fault") for _ in range(23)]
    events.append(make_event(type="panic"))     # queued last
    with TcpClient(*alertd.tcp) as c:
        c.send_event(events[0])                  # Redis sees it at once
        _ack(c.read_frame(timeout=10))
        r.config_resetstat()
        sleeper = threading.Thread(
            target=lambda: alertd.redis().eval(spin, 0))
        sleeper.start()
        time.sleep(0.1)                          # Redis is asleep now
        for ev in events[1:]:
            c.send_event(ev)
            time.sleep(0.01)                     # one loop turn each
        got = {_ack(c.read_frame(timeout=15)).event_id
               for _ in events[1:]}
        sleeper.join()
    assert got == {ev["event_id"] for ev in events[1:]}
    stats = r.info("commandstats")
    calls = stats.get("cmdstat_evalsha", {}).get("calls", 0)
    # 23 events: two batches sent before Redis answered, the rest queued
    # for the first answer (a periodic script call may add one or two).
    assert 2 <= calls <= 6, stats
    assert len(_rows(alertd.db(), got)) == 23
    # The panic came last but was decided first of the queued events
    # (events 1 and 2 were in flight): Redis numbered it before them.
    with alertd.db().cursor() as cur:
        cur.execute("SELECT event_id, accept_seq FROM events"
                    " WHERE event_id = ANY(%s)", (list(got),))
        seq = dict(cur.fetchall())
    panic = seq[events[-1]["event_id"]]
    queued = [seq[ev["event_id"]] for ev in events[3:-1]]
    assert panic < min(queued), (panic, queued)


def test_answers_to_a_device_that_reads_late_all_arrive(alertd):
    """A device that pipelines tens of thousands of frames and reads none
    of its answers for a while: more answers than the kernel's socket
    buffers hold (megabytes of Nacks for invalid events, with valid
    events among them). alertd writes what the socket takes, leaves the
    rest to the write event, stops reading the device while a megabyte of
    answers waits, and resumes as the device reads: every answer arrives,
    whole and in a readable stream, and the connection carries on."""
    import threading
    n, every = 60000, 1000
    bad = TcpClient.signed_frame(make_event(event_id="has space " + uid()))
    good = [make_event(type="heartbeat") for _ in range(n // every)]
    parts = []
    for i in range(n):
        f = TcpClient.signed_frame(good[i // every]) \
            if i % every == every - 1 else bad
        parts.append(struct.pack(">I", len(f)) + f)
    blob = b"".join(parts)
    # A small receive window, so that the answers back up in alertd.
    c = TcpClient(*alertd.tcp, timeout=30, rcvbuf=4096)
    sender = threading.Thread(target=c.send_raw, args=(blob,), daemon=True)
    try:
        sender.start()
        time.sleep(3)  # nothing read meanwhile
        frames = c.read_frames(n, timeout=60)
        sender.join(10)
        acks = sorted(_ack(f).event_id for f in frames
                      if f.WhichOneof("msg") == "ack")
        nacks = [f.nack.code for f in frames if f.WhichOneof("msg") == "nack"]
        assert acks == sorted(e["event_id"] for e in good)
        assert len(nacks) == n - len(good)
        assert set(nacks) == {"invalid_id"}
        more = make_event()
        c.send_event(more)
        assert _ack(c.read_frame()).event_id == more["event_id"]
    finally:
        c.close()


def _listen_backlog(port):
    """The accept queue length of the LISTEN socket on port (ss's Send-Q)."""
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                         capture_output=True, text=True, check=True).stdout
    lines = [l.split() for l in out.splitlines() if l.strip()]
    assert len(lines) == 1, out
    return int(lines[0][2])


def test_device_listeners_take_a_fleet_reconnecting_at_once(alertd):
    # libevent's default accept queue is 128: past it the kernel drops a
    # SYN and the device resends it only a second later, which delays
    # the panics of a fleet that reconnects together (after a restart).
    with open("/proc/sys/net/core/somaxconn") as f:
        want = min(1024, int(f.read()))
    http_port = int(alertd.http.rsplit(":", 1)[1])
    assert _listen_backlog(alertd.tcp[1]) == want
    assert _listen_backlog(http_port) == want


def _timeouts(alertd_factory):
    return alertd_factory(server__tcp_first_event_timeout_s="2",
                          server__tcp_frame_timeout_s="2")


def _timed_out(c, within):
    t0 = time.monotonic()
    f = c.read_frame(within + 5)
    assert f is not None and f.WhichOneof("msg") == "error", f
    assert f.error.code == "timeout", f
    assert c.read_frame(5) is None          # then closed
    return time.monotonic() - t0


def test_silent_connection_is_closed_after_the_first_event_timeout(
        alertd_factory):
    """Connections that never send a signed event cannot hold
    max_connections: not silent ones, not ones sending bad signatures."""
    alertd = _timeouts(alertd_factory)
    with TcpClient(*alertd.tcp) as c:
        assert 1.5 < _timed_out(c, 2) < 5
    st, text, _ = http_get(alertd.http, "/metrics")
    assert st == 200 and 'alertd_errors_total{code="timeout"} 1' in text, \
        text
    with TcpClient(*alertd.tcp) as c:
        t0 = time.monotonic()
        for _ in range(6):
            c.send_event(make_event(), secret="wrong-secret")
            f = c.read_frame(5)
            if f.WhichOneof("msg") == "error":
                break
            assert f.nack.code == "signature_invalid", f
            time.sleep(0.5)
        assert f.WhichOneof("msg") == "error" and \
            f.error.code == "timeout", f
        assert time.monotonic() - t0 < 5


def test_signed_device_may_stay_idle_but_not_trickle_a_frame(
        alertd_factory):
    alertd = _timeouts(alertd_factory)
    with TcpClient(*alertd.tcp) as c:
        ev = make_event()
        c.send_event(ev)
        assert _ack(c.read_frame()).event_id == ev["event_id"]
        time.sleep(3.5)                 # idle past both timeouts: fine
        ev2 = make_event()
        c.send_event(ev2)
        assert _ack(c.read_frame()).event_id == ev2["event_id"]
        # a frame a byte at a time, slower than the frame timeout
        frame = TcpClient.signed_frame(make_event())
        data = struct.pack(">I", len(frame)) + frame
        t0 = time.monotonic()
        try:
            for b in data[:8]:
                c.send_raw(bytes([b]))
                time.sleep(0.4)
        except OSError:
            pass
        f = c.read_frame(8)
        assert f is not None and f.WhichOneof("msg") == "error", f
        assert f.error.code == "timeout", f
        assert 1.5 < time.monotonic() - t0 < 6


def test_streaming_device_is_not_timed_out_by_the_frame_deadline(
        alertd_factory):
    """A connection that keeps sending, its input nearly always ending in
    part of the next frame, makes progress: each frame taken restarts the
    frame deadline, however long the stream lasts."""
    alertd = _timeouts(alertd_factory)
    evs = [make_event() for _ in range(60)]
    data = b""
    for ev in evs:
        f = TcpClient.signed_frame(ev)
        data += struct.pack(">I", len(f)) + f
    step = len(data) // 50 + 7          # chunks that cut frames anywhere
    with TcpClient(*alertd.tcp) as c:
        for i in range(0, len(data), step):
            c.send_raw(data[i:i + step])
            time.sleep(0.1)             # about 5 s in all, past 2 s
        frames = c.read_frames(len(evs), timeout=20)
    assert all(f.WhichOneof("msg") == "ack" for f in frames), \
        [f for f in frames if f.WhichOneof("msg") != "ack"][:1]
    assert {f.ack.event_id for f in frames} == {e["event_id"] for e in evs}


# Inserted into frames: varints that do not end, zeros, odd tags.
PB_SNIPPETS = [b"\xff", b"\xff" * 5, b"\xff" * 12, b"\x00", b"\x80",
               b"\x0a\xff\xff\xff\xff\x0f", b"\x2a\x00", b"\x12\x00"]


def test_mutated_frames_get_an_answer_or_close_and_lose_nothing(alertd):
    """Seeded mutations of device frames: of the Event inside a frame,
    signed again so that it reaches the decoder and the checks (each must
    get an Ack or a Nack on a connection that stays open), and of the
    Frame itself (an Ack, a Nack, or an Error and the close). The daemon
    keeps serving, and every Ack'd event is in PostgreSQL."""
    import os
    import random

    seed = int(os.environ.get("FUZZ_SEED", "20261123"))
    cases = int(os.environ.get("FUZZ_CASES", "400"))
    rng = random.Random(seed)
    acked, kinds = [], {}
    with TcpClient(*alertd.tcp) as c:
        for case in range(cases // 2):
            raw = pb_event(make_event(type=rng.choice(
                ["panic", "heartbeat", "fault"]))).SerializeToString()
            c.send_event(mutate(rng, raw, PB_SNIPPETS))
            f = c.read_frame()
            what = "seed %d case %d: %r" % (seed, case, f)
            assert f is not None and f.WhichOneof("msg") in ("ack", "nack"), \
                what
            kinds[f.WhichOneof("msg")] = kinds.get(f.WhichOneof("msg"), 0) + 1
            if f.WhichOneof("msg") == "ack":
                acked.append(f.ack.event_id)
            else:
                assert f.nack.code, what
    for case in range(cases // 2):
        frame = mutate(rng, TcpClient.signed_frame(make_event()),
                       PB_SNIPPETS)
        with TcpClient(*alertd.tcp) as c:
            c.send_payload(frame)
            f = c.read_frame(timeout=5.0)
            what = "seed %d frame case %d: %r -> %r" % (seed, case, frame, f)
            if f is None:           # closed without a word: never
                raise AssertionError(what)
            assert f.WhichOneof("msg") in ("ack", "nack", "error"), what
            if f.WhichOneof("msg") == "ack":
                acked.append(f.ack.event_id)
            elif f.WhichOneof("msg") == "error":
                assert c.is_closed(5.0), what
    assert "nack" in kinds and "ack" in kinds, kinds
    # A new connection still gets its Ack, and nothing Ack'd was lost.
    ok = make_event()
    with TcpClient(*alertd.tcp) as c:
        c.send_event(ok)
        assert _ack(c.read_frame()).event_id == ok["event_id"]
    assert len(_rows(alertd.db(), acked)) == len(set(acked)), acked
