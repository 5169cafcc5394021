"""GET /v1/stream: operator consoles get every new or changed incident as
`event: incident` with its snapshot, and a reconnect with Last-Event-ID
gets exactly the changes it missed."""

import pytest

from helpers import SseClient, http_get, make_event, post_event, uid


def _post(alertd, ev):
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    return body


def _incident_event(sse, timeout=10):
    ev = sse.next_event(timeout)
    assert ev["event"] == "incident", ev
    assert ev["id"], "every change carries an id: %r" % ev
    assert isinstance(ev["json"], dict), ev
    return ev


def test_console_sees_new_and_merged(alertd, operator_token):
    with SseClient(alertd.http, operator_token) as sse:
        assert sse.status == 200, sse.body
        assert sse.headers.get("content-type", "").startswith(
            "text/event-stream")
        ev1 = make_event(type="panic", zone="Bornova")
        b1 = _post(alertd, ev1)
        e = _incident_event(sse)
        snap = e["json"]
        assert snap["id"] == b1["incident_id"]
        assert snap["state"] == "new"
        assert snap["count"] == 1
        assert snap["priority"] == 100
        assert snap["type"] == "panic"
        assert snap["source"]["id"] == ev1["source"]["id"]
        assert snap["source"]["zone"] == "Bornova"
        v1 = snap["version"]

        ev2 = make_event(type="panic", source=ev1["source"],
                         location={"lat": 38.46, "lon": 27.21})
        b2 = _post(alertd, ev2)
        assert b2["outcome"] == "merged"
        e2 = _incident_event(sse)
        assert e2["json"]["id"] == b1["incident_id"]
        assert e2["json"]["count"] == 2
        assert e2["json"]["version"] > v1
        assert e2["json"]["location"] == {"lat": 38.46, "lon": 27.21}
        assert e2["id"] != e["id"]

        # A duplicate changes nothing: no event.
        b3 = _post(alertd, ev2)
        assert b3["outcome"] == "duplicate"
        assert sse.no_event_within(1.0), sse.unexpected

        # Another source: a new incident.
        ev4 = make_event(type="fault")
        b4 = _post(alertd, ev4)
        e4 = _incident_event(sse)
        assert e4["json"]["id"] == b4["incident_id"] != b1["incident_id"]
        assert e4["json"]["count"] == 1


def test_two_consoles_both_see_the_change(alertd, operator_token):
    with SseClient(alertd.http, operator_token) as a, \
            SseClient(alertd.http, operator_token) as b:
        assert a.status == 200 and b.status == 200
        body = _post(alertd, make_event())
        assert _incident_event(a)["json"]["id"] == body["incident_id"]
        assert _incident_event(b)["json"]["id"] == body["incident_id"]


def test_reconnect_with_last_event_id_gets_only_missed(alertd,
                                                       operator_token):
    src = make_event()["source"]
    with SseClient(alertd.http, operator_token) as sse:
        b1 = _post(alertd, make_event(source=src))
        first = _incident_event(sse)
        assert first["json"]["id"] == b1["incident_id"]
        last_id = first["id"]

    # While disconnected: a merge and a new incident.
    b2 = _post(alertd, make_event(source=src))
    assert b2["outcome"] == "merged"
    b3 = _post(alertd, make_event(type="call_request"))
    assert b3["outcome"] == "new"

    with SseClient(alertd.http, operator_token,
                   last_event_id=last_id) as sse:
        assert sse.status == 200, sse.body
        m1 = _incident_event(sse)
        m2 = _incident_event(sse)
        assert (m1["json"]["id"], m1["json"]["count"]) == (
            b1["incident_id"], 2)
        assert (m2["json"]["id"], m2["json"]["count"]) == (
            b3["incident_id"], 1)
        assert last_id not in (m1["id"], m2["id"])
        # Nothing else was missed ...
        assert sse.no_event_within(1.0), sse.unexpected
        # ... and live changes follow.
        _post(alertd, make_event(source=src))
        live = _incident_event(sse)
        assert (live["json"]["id"], live["json"]["count"]) == (
            b1["incident_id"], 3)


def _queue_ids(sse, n):
    """The n incident ids of a snapshot, checking they share one id and
    end with `: snapshot end`."""
    evs = [_incident_event(sse) for _ in range(n)]
    assert len({e["id"] for e in evs}) == 1, evs
    return [e["json"]["id"] for e in evs]


def test_resume_after_trimmed_changes_starts_over(alertd, operator_token):
    """A console that was away longer than the change stream remembers
    (its cap trimmed the changes after its Last-Event-ID) must not resume
    from what is left: an incident opened in the trimmed part would never
    reach it. It gets `event: reset` and the open queue again."""
    with SseClient(alertd.http, operator_token) as sse:
        b1 = _post(alertd, make_event())
        last_id = _incident_event(sse)["id"]
    b2 = _post(alertd, make_event(type="call_request"))
    b3 = _post(alertd, make_event(type="fault"))
    # The cap trims the oldest entries: b1's change and b2's go.
    r = alertd.redis()
    key = alertd.prefix + "changes"
    assert r.xtrim(key, maxlen=1, approximate=False) >= 2
    with SseClient(alertd.http, operator_token,
                   last_event_id=last_id) as sse:
        assert sse.status == 200, sse.body
        reset = sse.next_event(10)
        assert reset["event"] == "reset", reset
        assert reset["json"] == {"reason": "changes_lost"}
        got = _queue_ids(sse, 3)
        assert sorted(got) == sorted([b1["incident_id"], b2["incident_id"],
                                      b3["incident_id"]])
        assert sse.no_event_within(0.5), sse.unexpected
        assert "snapshot end" in sse.comments
        # ... and live changes follow.
        b4 = _post(alertd, make_event())
        assert _incident_event(sse)["json"]["id"] == b4["incident_id"]
    alertd.wait_log("are no longer kept")

    # An id this stream never had, or no id at all: the same.
    for bad in ("1-0", "not-an-id"):
        with SseClient(alertd.http, operator_token,
                       last_event_id=bad) as sse:
            assert sse.next_event(10)["event"] == "reset"
            assert len(_queue_ids(sse, 4)) == 4


def test_stream_needs_a_token(alertd):
    with SseClient(alertd.http, None) as sse:
        assert sse.status == 401
        assert isinstance(sse.body, dict), sse.body
        assert sse.body["error"] == "unauthorized"
    with SseClient(alertd.http, "nope-" + uid()) as sse:
        assert sse.status == 401
        assert sse.body["error"] == "unauthorized"


def test_console_sees_the_changes_of_another_instance(alertd_factory,
                                                      test_env,
                                                      operator_token):
    """Several instances share one Redis and any of them takes any event
    (DESIGN.md): a console connected to instance A must get the panic
    that instance B took, and B's operator actions, from the change
    stream; not only what A itself decided."""
    a = alertd_factory()
    b = alertd_factory(spool={"path": str(test_env.tmp / "spool-b")})
    with SseClient(a.http, operator_token) as sse:
        assert sse.status == 200, sse.body
        assert sse.no_event_within(0.3)       # the (empty) queue is sent
        body = _post(b, make_event(type="panic"))
        e = _incident_event(sse, timeout=5)
        assert e["json"]["id"] == body["incident_id"]
        assert e["json"]["state"] == "new"
        # Its own events still arrive, in stream order after B's.
        mine = _post(a, make_event(type="fault"))
        e2 = _incident_event(sse, timeout=5)
        assert e2["json"]["id"] == mine["incident_id"]
        assert _id(e2["id"]) > _id(e["id"])


def _id(change_id):
    return tuple(int(x) for x in change_id.split("-"))


def _kill_follower_and_trim(alertd):
    """Cuts every connection blocked in XREAD (the consoles' live feed)
    and, in the same round trip, so before any reconnect, adds an entry
    and trims the stream to it: what the follower had not read is gone."""
    r = alertd.redis()
    ids = [c["id"] for c in r.client_list() if c.get("cmd") == "xread"]
    assert ids, r.client_list()
    key = alertd.prefix + "changes"
    p = r.pipeline(transaction=False)
    for i in ids:
        p.execute_command("CLIENT", "KILL", "ID", i)
    p.xadd(key, {"incident": "0", "snapshot": "{}"})
    p.xtrim(key, maxlen=1, approximate=False)
    p.execute()


def test_missed_live_changes_cut_the_consoles(alertd_factory, make_config,
                                              operator_token):
    """If the live feed lost its connection and the stream was trimmed
    past what it had read, some changes never reached the consoles: each
    one is cut (SSE) or told resync_required (TCP console), and resumes
    through its own replay, which sends the open queue again."""
    from conftest import free_port
    from test_presence import _subscribe
    cfg = make_config(
        server__console_tcp_listen="127.0.0.1:%d" % free_port())
    alertd = alertd_factory(config=cfg)
    first = _post(alertd, make_event(type="panic"))
    with SseClient(alertd.http, operator_token) as sse, \
            _subscribe(alertd, cfg, operator_token) as tcp:
        last = _incident_event(sse)["id"]     # the queue: one incident
        assert tcp.read_frame(10).WhichOneof("msg") == "incident"
        _kill_follower_and_trim(alertd)
        with pytest.raises(EOFError):
            sse.next_event(10)
        f = tcp.read_frame(10)
        assert f.WhichOneof("msg") == "error", f
        assert f.error.code == "resync_required", f
        alertd.wait_log("were trimmed while the change stream was not read")
    # The console resumes with its Last-Event-ID: reset and the queue.
    with SseClient(alertd.http, operator_token, last_event_id=last) as sse:
        assert sse.next_event(10)["event"] == "reset"
        assert _queue_ids(sse, 1) == [first["incident_id"]]
        # ... and the live feed runs again.
        b = _post(alertd, make_event())
        assert _incident_event(sse, timeout=5)["json"]["id"] == \
            b["incident_id"]


def test_live_feed_that_falls_behind_the_trimmed_stream_cuts_the_consoles(
        alertd, operator_token):
    """The live feed stays connected but falls more than the stream's
    length behind (a wave of changes, as when thousands of incidents age
    at once): the entries trimmed before it read them never reached the
    consoles, so each one is cut and resumes through its replay, as after
    a reconnect, instead of going on without them."""
    first = _post(alertd, make_event(type="panic"))
    key = alertd.prefix + "changes"
    with SseClient(alertd.http, operator_token) as sse:
        _incident_event(sse)                   # the queue: one incident
        assert sse.no_event_within(0.3), sse.unexpected
        # One round trip: the first script wakes the feed's XREAD with one
        # entry; the second, which Redis runs before the feed can ask
        # again, adds 20 more and trims the stream to the last of them.
        # The feed's next read starts after an entry that is gone.
        r = alertd.redis()
        p = r.pipeline(transaction=False)
        p.eval("return redis.call('XADD', KEYS[1], '*', 'incident', '0',"
               " 'snapshot', '{}')", 1, key)
        p.eval("for i = 1, 20 do redis.call('XADD', KEYS[1], '*',"
               " 'incident', '0', 'snapshot', '{}') end"
               " return redis.call('XTRIM', KEYS[1], 'MAXLEN', 1)", 1, key)
        p.execute()
        got = []
        with pytest.raises(EOFError):
            while True:
                got.append(sse.next_event(10))
        # the woken read's one entry at most, never the 20th after a gap
        assert len(got) <= 1, got
        alertd.wait_log("was trimmed past")
        alertd.wait_log("were trimmed while the change stream was not read")
    with SseClient(alertd.http, operator_token) as sse:
        assert _queue_ids(sse, 1) == [first["incident_id"]]
        b = _post(alertd, make_event())
        assert _incident_event(sse, timeout=5)["json"]["id"] == \
            b["incident_id"]


def test_snapshot_of_a_long_queue_comes_whole_and_in_order(alertd,
                                                          operator_token):
    """The open queue is read from Redis in pages of 100 (daemon/qsnap.c)
    so that a console connecting never holds every decision behind one
    long script call. The console still gets every open incident once, in
    queue order, under the id of the newest change, then live changes."""
    types = ("fault", "panic", "call_request")
    opened = [_post(alertd, make_event(type=types[i % 3]))
              for i in range(450)]
    r = alertd.redis()
    want = [int(x) for x in r.zrevrange(alertd.prefix + "queue", 0, -1)]
    assert sorted(want) == sorted(b["incident_id"] for b in opened)
    # GET /v1/incidents reads it the same way.
    st, listed, _ = http_get(alertd.http, "/v1/incidents",
                             token=operator_token)
    assert st == 200, listed
    assert [i["id"] for i in listed] == want
    with SseClient(alertd.http, operator_token) as sse:
        assert sse.status == 200, sse.body
        got = _queue_ids(sse, 450)
        assert got == want
        assert sse.no_event_within(0.5), sse.unexpected
        assert "snapshot end" in sse.comments
        b = _post(alertd, make_event())
        assert _incident_event(sse)["json"]["id"] == b["incident_id"]
