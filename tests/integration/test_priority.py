"""Issue 3 priority and dedup rules (docs/prioritisation.md).

Most rules are pinned on daemon/lua/decide.lua called directly with the
rules argument (the 18th), with now_ms passed in: no sleeping. The daemon
tests check that alertd builds that argument from the config: the night
window in its time zone with an injected clock (ALERTD_FAKE_NOW_MS), zone
and kind modifiers, merge classes, and aging driven by the janitor.
"""

import datetime
import json
import pathlib
import time
import uuid

import pytest

from helpers import http_get, make_event, post_event, wait_until

SCRIPT_PATH = (pathlib.Path(__file__).resolve().parents[2] / "daemon" / "lua"
               / "decide.lua")
T0 = 1763762043120  # 2025-11-21T21:54:03.120Z
BASE = {"panic": 100, "silent_alarm": 100, "call_request": 70,
        "callback_request": 60, "fault": 30, "heartbeat": 10, "test": 5}
CLASS = {"panic": "panic+silent_alarm", "silent_alarm": "panic+silent_alarm",
         "call_request": "call_request+callback_request",
         "callback_request": "call_request+callback_request",
         "fault": "fault", "heartbeat": "heartbeat", "test": "test"}
KINDS = ("bus", "ferry", "stop", "park", "support_line", "other")


def rules(**kw):
    """The rules argument as decide.c builds it, with everything neutral
    unless set."""
    r = {"kind_mod": {k: 0 for k in KINDS}, "zone_mod": {},
         "night_kinds": {"bus": True, "stop": True, "park": True},
         "supervision": {k: 0 for k in KINDS}, "night": 0,
         "night_boost": 20, "repeat_step": 0, "repeat_cap": 0,
         "aging_step": 0, "aging_interval_ms": 60000, "aging_cap": 0,
         "flood_window_ms": 10000, "flood_soft": 1000, "flood_hard": 10000,
         "unknown": "accept", "device_offline": 20}
    r.update(kw)
    return r


def iso(ms):
    dt = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


class Script:
    def __init__(self, r, prefix):
        self.r = r
        self.prefix = prefix
        self.text = SCRIPT_PATH.read_text()

    def decide(self, source_id, etype="panic", now_ms=T0, kind="bus",
               zone="", R=None, event_id=None):
        reply = self.r.eval(
            self.text, 0, "decide", self.prefix,
            event_id or "e-" + uuid.uuid4().hex[:12], source_id, kind, zone,
            "", etype, CLASS[etype], str(BASE[etype]), str(now_ms),
            iso(now_ms), "86400", "0", "", "", "10000",
            json.dumps(R if R is not None else rules()))
        if reply[0] == "refused":
            return {"refused": reply[1], "retry_after_ms": int(reply[2])}
        out = dict(zip(("outcome", "original_outcome", "incident_id",
                        "priority", "accept_seq", "opened", "version",
                        "first_seen_ms", "snapshot", "change_id"), reply))
        for k in ("incident_id", "priority", "version"):
            out[k] = int(out[k])
        out["snap"] = json.loads(out["snapshot"]) if out["snapshot"] else None
        out["extra"] = reply[10:]
        return out

    def age(self, now_ms, R):
        return self.r.eval(self.text, 0, "age", self.prefix, str(now_ms),
                           json.dumps(R), "1000", "10000")

    def queue(self):
        return json.loads(self.r.eval(self.text, 0, "queue", self.prefix,
                                      "0"))


@pytest.fixture
def s(redis_server):
    return Script(redis_server.client(), "tp%s:" % uuid.uuid4().hex[:8])


def src(tag="bus"):
    return "%s-%s" % (tag, uuid.uuid4().hex[:8])


# -- base, kind, zone, night --------------------------------------------------

def test_base_order_per_type(s):
    prios = {t: s.decide(src(), t)["priority"]
             for t in ("panic", "silent_alarm", "call_request",
                       "callback_request", "fault", "test")}
    assert prios == {"panic": 100, "silent_alarm": 100, "call_request": 70,
                     "callback_request": 60, "fault": 30, "test": 5}
    q = s.queue()
    assert [i["priority"] for i in q] == [100, 100, 70, 60, 30, 5]


def test_kind_and_zone_modifiers_add_up(s):
    R = rules(kind_mod={**rules()["kind_mod"], "ferry": 15, "other": -10},
              zone_mod={"Karsiyaka": 7})
    assert s.decide(src(), kind="ferry", R=R)["priority"] == 115
    assert s.decide(src(), kind="ferry", zone="Karsiyaka",
                    R=R)["priority"] == 122
    assert s.decide(src(), kind="other", zone="Konak",
                    R=R)["priority"] == 90
    # A modified fault stays below an unmodified call request.
    assert s.decide(src(), "fault", kind="ferry", R=R)["priority"] == 45


def test_night_flag_raises_only_night_kinds(s):
    night = rules(night=1)
    assert s.decide(src(), kind="bus", R=night)["priority"] == 120
    assert s.decide(src(), kind="stop", R=night)["priority"] == 120
    assert s.decide(src(), kind="park", R=night)["priority"] == 120
    assert s.decide(src(), kind="ferry", R=night)["priority"] == 100
    assert s.decide(src(), kind="support_line", R=night)["priority"] == 100
    assert s.decide(src(), kind="bus", R=rules(night=0))["priority"] == 100


def test_night_boost_kept_by_a_daytime_merge(s):
    b = src()
    a = s.decide(b, R=rules(night=1))
    m = s.decide(b, now_ms=T0 + 1000, R=rules(night=0))
    assert m["incident_id"] == a["incident_id"]
    assert m["priority"] == 120


# -- repeat boost -------------------------------------------------------------

def test_repeat_boost_is_capped(s):
    R = rules(repeat_step=5, repeat_cap=20)
    b = src()
    prios = [s.decide(b, now_ms=T0 + i, R=R)["priority"] for i in range(8)]
    assert prios == [100, 105, 110, 115, 120, 120, 120, 120]


def test_repeat_boost_of_one_source_does_not_pass_a_higher_class(s):
    R = rules(repeat_step=5, repeat_cap=20)
    other = s.decide(src(), "panic", R=R)
    b = src()
    for i in range(10):
        s.decide(b, "call_request", now_ms=T0 + i, R=R)
    q = s.queue()
    assert q[0]["id"] == other["incident_id"]
    assert q[1]["priority"] == 90 and q[1]["count"] == 10


# -- aging --------------------------------------------------------------------

def test_aging_reorders_the_queue_with_no_new_event(s):
    R = rules(aging_step=10, aging_interval_ms=1000, aging_cap=50)
    old = s.decide(src(), "fault", now_ms=T0, R=R)        # 30
    new = s.decide(src(), "call_request", now_ms=T0 + 5000, R=R)  # 70
    assert [i["id"] for i in s.queue()] == [new["incident_id"],
                                            old["incident_id"]]
    changed = s.age(T0 + 5000, R)        # no event: the janitor's call
    assert changed[0] == str(old["incident_id"])
    q = s.queue()
    assert [i["id"] for i in q] == [old["incident_id"], new["incident_id"]]
    assert q[0]["priority"] == 80        # 30 + capped 50
    # Later the newer one ages too and, both capped, the base order is back.
    s.age(T0 + 20000, R)
    q = s.queue()
    assert [(i["id"], i["priority"]) for i in q] == [
        (new["incident_id"], 120), (old["incident_id"], 80)]
    # Capped: nothing is due any more.
    assert s.age(T0 + 60000, R) == []
    assert s.r.zcard(s.prefix + "aging") == 0


def test_aging_stops_when_acknowledged(s):
    R = rules(aging_step=10, aging_interval_ms=1000, aging_cap=50)
    a = s.decide(src(), "fault", now_ms=T0, R=R)
    s.r.hset(s.prefix + "inc:%d" % a["incident_id"], "state", "acknowledged")
    assert s.age(T0 + 3000, R) == []
    assert s.queue()[0]["priority"] == 30


def test_age_writes_a_change_per_changed_incident(s):
    R = rules(aging_step=1, aging_interval_ms=1000, aging_cap=5)
    a = s.decide(src(), "fault", now_ms=T0, R=R)
    n0 = s.r.xlen(s.prefix + "changes")
    out = s.age(T0 + 2500, R)
    assert len(out) == 3 and out[0] == str(a["incident_id"])
    snap = json.loads(out[1])
    assert snap["priority"] == 32 and snap["version"] == 2
    assert s.r.xlen(s.prefix + "changes") == n0 + 1
    assert s.age(T0 + 2600, R) == []     # the same step: nothing changes


# -- merge classes, idempotency, reopen --------------------------------------

def test_merge_class_panic_and_silent_alarm(s):
    b = src()
    a = s.decide(b, "panic")
    m = s.decide(b, "silent_alarm", now_ms=T0 + 1)
    c = s.decide(b, "call_request", now_ms=T0 + 2)
    assert m["outcome"] == "merged" and m["incident_id"] == a["incident_id"]
    assert c["outcome"] == "new" and c["incident_id"] != a["incident_id"]


def test_idempotency_after_merge(s):
    b = src()
    s.decide(b, "panic")
    m = s.decide(b, "panic", now_ms=T0 + 1, event_id="same-id-1")
    again = s.decide(b, "panic", now_ms=T0 + 2, event_id="same-id-1")
    assert again["outcome"] == "duplicate"
    assert again["original_outcome"] == "merged"
    assert again["incident_id"] == m["incident_id"]
    snap = json.loads(s.r.eval(s.text, 0, "get", s.prefix,
                               str(m["incident_id"])))
    assert snap["count"] == 2            # the duplicate did not count


def test_reopen_after_resolve(s):
    """A resolved incident is never merged into, whether the resolver
    deleted the open key (as issue 5's resolve will) or not."""
    b = src()
    a = s.decide(b, "panic")
    s.r.hset(s.prefix + "inc:%d" % a["incident_id"], "state", "resolved")
    c = s.decide(b, "panic", now_ms=T0 + 1)
    assert c["outcome"] == "new" and c["incident_id"] != a["incident_id"]
    s.r.hset(s.prefix + "inc:%d" % c["incident_id"], "state", "resolved")
    s.r.delete(s.prefix + "open:%s:panic+silent_alarm" % b)
    d = s.decide(b, "silent_alarm", now_ms=T0 + 2)
    assert d["outcome"] == "new" and d["incident_id"] not in (
        a["incident_id"], c["incident_id"])


def test_unknown_source_refused_without_writes(s):
    known = src()
    s.r.hset(s.prefix + "src:" + known, mapping={"id": known, "kind": "bus"})
    s.r.sadd(s.prefix + "sources", known)
    before = sorted(s.r.keys(s.prefix + "*"))
    r = s.decide(src(), R=rules(unknown="reject"))
    assert r == {"refused": "unknown_source", "retry_after_ms": 0}
    assert sorted(s.r.keys(s.prefix + "*")) == before
    assert s.decide(known, R=rules(unknown="reject"))["outcome"] == "new"


def test_unknown_source_accepted_while_the_registry_is_missing(s):
    """Fail open: with no registry in Redis at all, nothing is refused."""
    r = s.decide(src(), R=rules(unknown="reject"))
    assert r["outcome"] == "new"


# -- the daemon builds the rules from its config ------------------------------

# 2026-11-21T18:59:59.000Z = 21:59:59 in Istanbul (UTC+3), 18:59:59 in UTC.
BEFORE_22_IST = 1795287599000


def _panic(alertd, **kw):
    st, body, _ = post_event(alertd.http, make_event(**kw))
    assert st == 202, body
    return body


@pytest.mark.parametrize("fake_ms,tz,expect", [
    (BEFORE_22_IST - 30000, "Europe/Istanbul", 100),   # 21:59:29 local
    (BEFORE_22_IST + 1000, "Europe/Istanbul", 125),    # 22:00:00 local
    (BEFORE_22_IST + 1000, "UTC", 100),                # 19:00 in UTC
    (BEFORE_22_IST + 1000 + 8 * 3600000, "Europe/Istanbul", 100),  # 06:00
])
def test_night_window_in_the_configured_zone(alertd_factory, monkeypatch,
                                             fake_ms, tz, expect):
    monkeypatch.setenv("ALERTD_FAKE_NOW_MS", str(fake_ms))
    d = alertd_factory(priority={"night_boost": 25, "timezone": tz})
    assert _panic(d, kind="bus")["priority"] == expect
    # A ferry is not a night kind.
    assert _panic(d, kind="ferry")["priority"] == 100


def test_zone_kind_modifiers_and_merge_classes_from_config(alertd_factory):
    d = alertd_factory(priority={"kind_park": 12},
                       priority_zones={"Bornova": 9},
                       dedup={"merge_classes": "panic+silent_alarm+fault"})
    assert _panic(d, kind="park", zone="Bornova")["priority"] == 121
    ev = make_event(kind="stop", zone="Konak")
    st, a, _ = post_event(d.http, ev)
    assert st == 202 and a["priority"] == 100
    ev2 = make_event(source=ev["source"], type="fault")
    st, b, _ = post_event(d.http, ev2)
    assert st == 202 and b["outcome"] == "merged"
    assert b["incident_id"] == a["incident_id"]


def test_repeat_boost_in_the_daemon(alertd_factory):
    d = alertd_factory(priority={"repeat_step": 4, "repeat_cap": 8})
    ev = make_event(kind="ferry")
    prios = []
    for _ in range(4):
        st, body, _ = post_event(d.http, make_event(source=ev["source"]))
        assert st == 202
        prios.append(body["priority"])
    assert prios == [100, 104, 108, 108]


@pytest.mark.kill_after(60)
def test_aging_reorders_the_daemon_queue_without_events(alertd_factory,
                                                        operator_token):
    d = alertd_factory(priority={"aging_step": 20, "aging_interval_s": 1,
                                 "aging_cap": 60})

    def queue():
        st, body, _ = http_get(d.http, "/v1/incidents?state=open",
                               token=operator_token)
        assert st == 200
        return body

    fault = _panic(d, type="fault", kind="ferry")
    wait_until(lambda: queue()[0]["priority"] == 90, 15,
               what="the fault aged to its cap (30 + 60)")
    call = _panic(d, type="call_request", kind="support_line")
    q = queue()
    assert [i["id"] for i in q] == [fault["incident_id"], call["incident_id"]]
    # No event from here on: the janitor's aging puts the call first.
    wait_until(lambda: queue()[0]["id"] == call["incident_id"], 15,
               what="the call request aged past the capped fault")
    # Each step lands on the first janitor tick after its second: up to
    # two seconds after the step before was seen. Then the cap holds.
    want = [(call["incident_id"], 130), (fault["incident_id"], 90)]
    wait_until(lambda: [(i["id"], i["priority"]) for i in queue()] == want,
               10, what="the call request aged to its cap (70 + 60)")
    time.sleep(1.5)
    assert [(i["id"], i["priority"]) for i in queue()] == want


def test_aging_frozen_not_lost_when_acknowledged_and_merged(s):
    R = rules(aging_step=10, aging_interval_ms=1000, aging_cap=50)
    b = src()
    a = s.decide(b, "panic", now_ms=T0, R=R)
    s.age(T0 + 3000, R)
    assert s.queue()[0]["priority"] == 130
    s.r.hset(s.prefix + "inc:%d" % a["incident_id"], "state", "acknowledged")
    m = s.decide(b, "panic", now_ms=T0 + 9000, R=R)
    assert m["outcome"] == "merged" and m["priority"] == 130


@pytest.mark.kill_after(90)
def test_night_flag_follows_the_clock_under_a_backlog(alertd_factory,
                                                      monkeypatch):
    """The night flag of a decide batch is computed for a time at most about
    a second older than its newest event, even when the decide queue never
    empties (a backlog spanning 22:00): an event of 22:00:01.5 gets the
    night boost although the queue has held events since 21:59:58."""
    import threading
    boundary = BEFORE_22_IST + 1000                   # 22:00:00 local
    monkeypatch.setenv("ALERTD_FAKE_NOW_MS", str(boundary - 15000))
    d = alertd_factory(priority={"night_boost": 25},
                       redis={"timeout_ms": "20000"})
    # Where the daemon's (fake) clock is, from the row of one event.
    ev0 = make_event(kind="ferry")
    t0 = time.time()
    st, body, _ = post_event(d.http, ev0)
    t1 = time.time()
    assert st == 202, body
    with d.db().cursor() as cur:
        cur.execute("SELECT (extract(epoch FROM received_at) * 1000)::bigint"
                    " FROM events WHERE event_id = %s", (ev0["event_id"],))
        offset = cur.fetchone()[0] - (t0 + t1) / 2 * 1000

    def sleep_until(fake_ms):
        left = (fake_ms - (time.time() * 1000 + offset)) / 1000
        assert left > 0, "the daemon's clock is past %d already" % fake_ms
        time.sleep(left)

    results = {}

    def send(name, ev):
        results[name] = post_event(d.http, ev, timeout=40)

    sleep_until(boundary - 2500)
    # Redis holds every command for 5 s: two decide batches in flight and
    # the queue behind them never empties across 22:00.
    d.redis().execute_command("CLIENT", "PAUSE", "5000")
    threads = []
    for name in ("b1", "b2", "queued"):
        th = threading.Thread(target=send, args=(name, make_event(kind="bus")))
        th.start()
        threads.append(th)
        time.sleep(0.2)
    sleep_until(boundary + 1500)                      # 22:00:01.5 local
    th = threading.Thread(target=send, args=("night", make_event(kind="bus")))
    th.start()
    threads.append(th)
    for th in threads:
        th.join(45)
    st, body, _ = results["night"]
    assert st == 202, body
    assert body["priority"] == 125, body


def _aging_changes(d):
    st, text, _ = http_get(d.http, "/metrics")
    assert st == 200
    for line in text.splitlines():
        if line.startswith("alertd_aging_changes "):
            return int(float(line.split()[1]))
    raise AssertionError("no alertd_aging_changes in /metrics")


@pytest.mark.kill_after(90)
def test_aging_backlog_goes_in_short_slices_within_one_tick(alertd_factory):
    """A busy minute's incidents fall due together. One script call for
    all of them held Redis, and every event's decision, for tens of ms;
    slices of 32 with no wait between them age them all at the tick
    they fell due (supervise.c), not one slice a second."""
    d = alertd_factory(priority={"aging_step": 1, "aging_interval_s": 3600,
                                 "aging_cap": 1})
    n = 250
    for _ in range(n):
        _panic(d, type="fault", kind="ferry")
    r = d.redis()
    ids = r.zrange(d.prefix + "aging", 0, -1)
    assert len(ids) == n and _aging_changes(d) == 0
    # Every incident an hour old, so due now: an hour after a busy minute.
    for i in ids:
        k = d.prefix + "inc:%s" % i
        r.hset(k, "first_seen_ms", int(r.hget(k, "first_seen_ms")) - 3600000)
    r.zadd(d.prefix + "aging", {i: 0 for i in ids})
    wait_until(lambda: _aging_changes(d) > 0, 5, interval=0.02,
               what="the first aging slice")
    t0 = time.monotonic()
    wait_until(lambda: _aging_changes(d) == n, 5, interval=0.02,
               what="every due incident aged")
    # Within the same tick: one slice a second would take two more.
    assert time.monotonic() - t0 < 0.9
    assert r.zcard(d.prefix + "aging") == 0          # capped: none left
    prios = {int(r.hget(d.prefix + "inc:%s" % i, "priority")) for i in ids}
    assert prios == {31}
