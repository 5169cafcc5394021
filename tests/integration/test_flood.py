"""Issue 3 flood control: a stuck button (one source, 50 events a second for
10 seconds) is merged and counted quietly, marked as flooding, refused with
429 / Nack(retry) over its hard limit, and never slows down the panics of
other sources (compared with a baseline measured in the same test)."""

import re
import signal
import threading
import time

import pytest

from helpers import (SseClient, TcpClient, http_get, make_event, post_event,
                     wait_until)

SOFT, HARD = 20, 100


def _p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def _other_panics(d, n, gap):
    """n single panics from n fresh sources: (latencies, answers)."""
    lat, answers = [], []
    for _ in range(n):
        t = time.monotonic()
        st, body, _ = post_event(d.http, make_event(kind="stop"))
        lat.append(time.monotonic() - t)
        answers.append((st, body))
        time.sleep(gap)
    return lat, answers


class Collector(threading.Thread):
    """Reads the console stream in the background."""

    def __init__(self, sse):
        super().__init__(daemon=True)
        self.sse = sse
        self.events = []
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                ev = self.sse.next_event(0.5)
            except TimeoutError:
                continue
            except (EOFError, OSError):
                return
            if ev.get("json"):
                self.events.append(ev["json"])


def _metric(d, name, code):
    st, text, _ = http_get(d.http, "/metrics")
    assert st == 200
    m = re.search(r'^%s\{code="%s"\} (\d+)' % (name, code), text, re.M)
    return int(m.group(1)) if m else 0


@pytest.mark.kill_after(120)
def test_flood_does_not_delay_other_sources(alertd_factory, operator_token):
    d = alertd_factory(dedup={"flood_soft": SOFT, "flood_hard": HARD,
                              "flood_window_s": 10})
    # The token was made before the daemon started: wait until its
    # operator directory answers.
    wait_until(lambda: http_get(d.http, "/v1/incidents?state=open",
                                token=operator_token)[0] == 200, 15,
               what="the operator API")
    with SseClient(d.http, operator_token) as sse:
        assert sse.status == 200
        col = Collector(sse)
        col.start()

        base_lat, base_ans = _other_panics(d, 25, 0.05)

        stuck = make_event(kind="bus", zone="Konak")
        results = []
        lock = threading.Lock()

        def flood(offset):
            start = time.monotonic() + offset
            for i in range(250):                  # 2 threads x 25/s x 10 s
                delay = start + i * 0.04 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                st, body, hdrs = post_event(
                    d.http, make_event(source=stuck["source"]))
                with lock:
                    results.append((st, body, hdrs))

        threads = [threading.Thread(target=flood, args=(o,), daemon=True)
                   for o in (0.0, 0.02)]
        for t in threads:
            t.start()
        time.sleep(1.0)                           # the flood is on
        flood_lat, flood_ans = _other_panics(d, 40, 0.15)
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)

        # Every other panic: accepted, new, and on the stream.
        for st, body in base_ans + flood_ans:
            assert st == 202 and body["outcome"] == "new", body
        others = {b["incident_id"] for _, b in base_ans + flood_ans}
        wait_until(lambda: others <= {e["id"] for e in col.events}, 15,
                   what="every other panic on the console stream")

        p95_base, p95_flood = _p95(base_lat), _p95(flood_lat)
        print("\nflood: p95 of other panics %.1f ms without, %.1f ms with "
              "the flood (ratio %.2f)" % (p95_base * 1000, p95_flood * 1000,
                                          p95_flood / p95_base))
        assert p95_flood < 3 * p95_base + 0.020, (p95_base, p95_flood)

        # The stuck button: accepted up to the hard limit per window, then
        # 429 with Retry-After; never a 503.
        codes = [st for st, _, _ in results]
        assert len(codes) == 500
        assert set(codes) <= {202, 429}, set(codes)
        accepted = [b for st, b, _ in results if st == 202]
        refused = [(b, h) for st, b, h in results if st == 429]
        assert SOFT < len(accepted) <= 3 * HARD
        assert refused, "the hard limit was never reached"
        for body, hdrs in refused:
            assert body["error"] == "rate_limited"
            assert 1 <= int(hdrs["retry-after"]) <= 10
        inc = {b["incident_id"] for b in accepted}
        assert len(inc) == 1, "a stuck button is one incident"
        inc_id = inc.pop()

        st, q, _ = http_get(d.http, "/v1/incidents?state=open",
                            token=operator_token)
        assert st == 200
        snap = [i for i in q if i["id"] == inc_id][0]
        assert snap["count"] == len(accepted)
        assert snap["flooding"] is True
        # A flood raises only its own incident: it is below no other
        # source's panic because of the flood.
        assert all(i["priority"] == 100 for i in q if i["id"] in others)

        # Quiet merges: below the soft rate each press is published as
        # usual; over it only the mark and every SOFT-th press are, so the
        # consoles got a fraction of its changes, not one per press (a
        # 10 s flood touches two or three windows).
        col.stop = True
        col.join(5)
        published = [e for e in col.events if e["id"] == inc_id]
        print("flood: %d accepted, %d refused, %d published" % (
            len(accepted), len(refused), len(published)))
        windows = 3
        assert len(published) <= windows * (SOFT + HARD // SOFT + 1)
        assert len(published) <= len(accepted) // 2
        assert any(e.get("flooding") for e in published)

        assert _metric(d, "alertd_errors_total", "rate_limited") == \
            len(refused)


def test_hard_limit_nacks_with_retry_over_tcp(alertd_factory, pb):
    d = alertd_factory(dedup={"flood_soft": 1, "flood_hard": 3,
                              "flood_window_s": 60})
    ev = make_event(kind="ferry", source_id="ferry-x-1")
    with TcpClient(*d.tcp) as c:
        for _ in range(5):
            c.send_event(make_event(source=ev["source"]), secret="ferry-secret")
        frames = c.read_frames(5)
    acks = [f.ack for f in frames if f.HasField("ack")]
    nacks = [f.nack for f in frames if f.HasField("nack")]
    assert len(acks) == 3 and len(nacks) == 2
    for n in nacks:
        assert n.code == "rate_limited" and n.retry is True
    # Nothing was written for the refused events.
    st, q, _ = http_get(d.http, "/metrics")
    assert 'alertd_errors_total{code="rate_limited"} 2' in q


def test_flood_mark_clears_when_the_source_calms_down(redis_server):
    """Script level: the mark holds across one window edge (a flood that
    goes on is one flood), goes away on the first event after a whole
    calm window, and that change is published."""
    import json
    import uuid
    from test_priority import Script, rules, T0
    s = Script(redis_server.client(), "tf%s:" % uuid.uuid4().hex[:8])
    R = rules(flood_soft=2, flood_hard=5, flood_window_ms=1000)
    b = "bus-" + uuid.uuid4().hex[:8]
    out = [s.decide(b, now_ms=T0 - T0 % 1000 + i, R=R) for i in range(5)]
    assert [o["snap"].get("flooding", False) for o in out] == \
        [False, False, True, True, True]
    # Published: the first two, the one that set the mark, then every
    # soft-th; the rest are quiet (no change id).
    assert [o["change_id"] != "" for o in out] == [True, True, True, True,
                                                   False]
    assert out[4]["extra"] == ["quiet", "1"]
    over = s.decide(b, now_ms=T0 - T0 % 1000 + 5, R=R)
    assert over["refused"] == "rate_limited"
    assert 0 < over["retry_after_ms"] <= 1000
    # Next window, one event: the previous window was over the soft
    # limit, so the mark stays and the repeat stays quiet.
    edge = s.decide(b, now_ms=T0 - T0 % 1000 + 1000, R=R)
    assert edge["snap"]["flooding"] is True
    assert edge["change_id"] == "" and edge["extra"] == ["quiet", "1"]
    calm = s.decide(b, now_ms=T0 - T0 % 1000 + 2000, R=R)
    assert "flooding" not in calm["snap"] and calm["change_id"] != ""
    assert calm["snap"]["count"] == 7
    assert json.loads(s.r.eval(s.text, 0, "get", s.prefix,
                               str(calm["incident_id"])))["count"] == 7


def _rate_keys(d, source_id):
    r = d.redis()
    return {k: int(r.get(k)) for k in r.keys(d.prefix + "rate:" +
                                              source_id + ":*")}


def _away_from_window_edge(window_s, margin=0.3):
    """Sleeps until at least `margin` s after a window boundary (alertd's
    windows are wall-clock aligned), so a few events fit in one window."""
    while time.time() % window_s < margin or \
            time.time() % window_s > window_s - 1.5:
        time.sleep(0.05)


def _send_from(c, source, n):
    """n new events of one source on TCP client c: their n answers."""
    for _ in range(n):
        c.send_event(make_event(source=source))
    return c.read_frames(n)


def test_held_source_is_refused_without_asking_redis(alertd_factory, pb):
    """Past the hard limit alertd remembers the refusal until the window
    ends and answers the source's next events itself: Redis counts only
    the events it was asked about (here the first refusal), and another
    source is untouched."""
    d = alertd_factory(dedup={"flood_soft": 1, "flood_hard": 3,
                              "flood_window_s": 60})
    ev = make_event()
    _away_from_window_edge(60)
    with TcpClient(*d.tcp) as c:
        first = _send_from(c, ev["source"], 4)
        later = _send_from(c, ev["source"], 6)
        other = make_event()
        c.send_event(other)
        ok = c.read_frames(1)[0]
    assert sum(f.HasField("ack") for f in first) == 3
    refused = [f.nack for f in first + later if f.HasField("nack")]
    assert len(refused) == 7
    for n in refused:
        assert n.code == "rate_limited" and n.retry is True
        assert 0 < n.retry_after_ms <= 60000
    # 3 accepted + the one refusal Redis made; the 6 after it never
    # reached Redis.
    assert list(_rate_keys(d, ev["source"]["id"]).values()) == [4]
    assert ok.HasField("ack") and ok.ack.event_id == other["event_id"]


def test_hold_ends_with_the_flood_window(alertd_factory, pb):
    """The remembered refusal never outlasts the window Redis counted:
    the first event of the next window is accepted."""
    d = alertd_factory(dedup={"flood_soft": 1, "flood_hard": 2,
                              "flood_window_s": 2})
    ev = make_event()
    while time.time() % 2 > 0.5:
        time.sleep(0.02)
    with TcpClient(*d.tcp) as c:
        frames = _send_from(c, ev["source"], 3)
        assert [f.HasField("ack") for f in frames].count(True) == 2
        nack = [f.nack for f in frames if f.HasField("nack")][0]
        assert nack.code == "rate_limited"
        c.send_event(make_event(source=ev["source"]))
        assert c.read_frames(1)[0].nack.code == "rate_limited"
        # Retry-After is rounded up to a second on the wire; wait for
        # the next window and a little.
        time.sleep(2 - time.time() % 2 + 0.05)
        again = make_event(source=ev["source"])
        c.send_event(again)
        f = c.read_frames(1)[0]
    assert f.HasField("ack") and f.ack.event_id == again["event_id"]


def test_reload_releases_held_sources(alertd_factory, pb):
    """An operator who raises flood_hard for a source that is being
    refused (a crowded ferry's button pressed again and again) reloads the
    config: the source's next event is decided by Redis with the new
    limit at once, not refused by alertd's memory of the old one until
    the window ends."""
    d = alertd_factory(dedup={"flood_soft": 1, "flood_hard": 2,
                              "flood_window_s": 60})
    ev = make_event()
    _away_from_window_edge(60)
    with TcpClient(*d.tcp) as c:
        frames = _send_from(c, ev["source"], 3)
        # (a refusal is answered before the Acks, which wait for the commit)
        assert sorted(f.HasField("ack") for f in frames) == \
            [False, True, True]
        c.send_event(make_event(source=ev["source"]))
        assert c.read_frames(1)[0].nack.code == "rate_limited"  # held
        d.config.update(dedup={"flood_soft": 1, "flood_hard": 100,
                               "flood_window_s": 60})
        d.signal(signal.SIGHUP)
        d.wait_log("config: reloaded", 10)
        again = make_event(source=ev["source"])
        c.send_event(again)
        f = c.read_frames(1)[0]
    assert f.HasField("ack") and f.ack.event_id == again["event_id"], f
    # Redis was asked again: 3 counted before, the held one was not, and
    # the one after the reload.
    assert list(_rate_keys(d, ev["source"]["id"]).values()) == [4]


def test_connection_ignoring_retry_after_is_paused_not_dropped(
        alertd_factory, pb):
    """A connection whose answers are 64 rate_limited in a row is not read
    for a moment after each such run (the tarpit): every frame it sent is
    still answered, the connection stays usable, and the pauses are
    counted in /metrics."""
    d = alertd_factory(dedup={"flood_soft": 1, "flood_hard": 3,
                              "flood_window_s": 60})
    ev = make_event()
    _away_from_window_edge(60)
    with TcpClient(*d.tcp) as c:
        assert all(f.HasField("ack") for f in _send_from(c, ev["source"], 3))
        ids = []
        for _ in range(200):
            e = make_event(source=ev["source"])
            ids.append(e["event_id"])
            c.send_event(e)
        frames = c.read_frames(200)
        other = make_event()
        c.send_event(other)
        ok = c.read_frames(1)[0]
    assert sorted(f.nack.event_id for f in frames) == sorted(ids)
    assert all(f.nack.code == "rate_limited" for f in frames)
    assert ok.HasField("ack") and ok.ack.event_id == other["event_id"]
    st, text, _ = http_get(d.http, "/metrics")
    m = re.search(r"^alertd_tcp_pauses_total (\d+)$", text, re.M)
    # 200 refusals in a row: a pause after the 64th, 128th and 192nd.
    assert m and int(m.group(1)) == 3
    assert _metric(d, "alertd_errors_total", "rate_limited") == 200


def test_flood_never_quiets_a_raised_priority_or_type(redis_server):
    """Script level: while a source floods, a merge that raises the
    incident's priority (a repeated press) or its type (a callback request
    becoming a call request) is published like the mark itself; repeats
    that change neither stay quiet."""
    import uuid
    from test_priority import Script, rules, T0
    s = Script(redis_server.client(), "tr%s:" % uuid.uuid4().hex[:8])
    R = rules(flood_soft=2, flood_hard=20, flood_window_ms=1000,
              repeat_step=5, repeat_cap=20)
    t = T0 - T0 % 1000
    b = "bus-" + uuid.uuid4().hex[:8]
    out = [s.decide(b, now_ms=t + i, R=R) for i in range(7)]
    # Count 5 is the last press that raises the repeat boost (cap 20 at
    # 5 * (5 - 1)); without the rule it would be quiet (5 % 2 != 0).
    assert [o["priority"] for o in out] == [100, 105, 110, 115, 120, 120,
                                            120]
    assert [o["change_id"] != "" for o in out] == [True, True, True, True,
                                                   True, True, False]
    assert out[6]["extra"] == ["quiet", "1"]

    # No repeat boost here: only the type changes the priority.
    R = rules(flood_soft=2, flood_hard=20, flood_window_ms=1000)
    c = "stop-" + uuid.uuid4().hex[:8]
    cb = [s.decide(c, etype="callback_request", now_ms=t + i, R=R)
          for i in range(6)]
    assert [o["change_id"] != "" for o in cb] == [True, True, True, True,
                                                  False, True]
    # The 7th event of the window: quiet as a repeat, published as a raise.
    up = s.decide(c, etype="call_request", now_ms=t + 6, R=R)
    assert up["incident_id"] == cb[0]["incident_id"]
    assert up["snap"]["type"] == "call_request" and up["priority"] == 70
    assert up["change_id"] != "" and up["extra"] == []
    s.decide(c, etype="call_request", now_ms=t + 7, R=R)  # soft-th
    again = s.decide(c, etype="call_request", now_ms=t + 8, R=R)
    assert again["change_id"] == "" and again["extra"] == ["quiet", "1"]
