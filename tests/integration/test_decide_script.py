"""daemon/lua/decide.lua run directly against a real Redis (no daemon).

The script is called the way decide.c calls it: EVAL <script> 0 <mode>
<prefix> ...  Every test uses its own key prefix, and passes now_ms itself
(no sleeping: time is an argument of the script).
"""

import datetime
import json
import pathlib
import uuid

import pytest
import redis

SCRIPT_PATH = (pathlib.Path(__file__).resolve().parents[2] / "daemon" / "lua"
               / "decide.lua")
T0 = 1763762043120  # 2025-11-21T21:54:03.120Z
OUT = ("outcome", "original_outcome", "incident_id", "priority",
       "accept_seq", "opened", "version", "first_seen_ms", "snapshot",
       "change_id")
CLASS = {"panic": "alarm", "silent_alarm": "alarm", "call_request": "call",
         "callback_request": "call", "fault": "fault",
         "heartbeat": "heartbeat", "test": "test"}
BASE = {"panic": 100, "silent_alarm": 110, "call_request": 80,
        "callback_request": 70, "fault": 40, "heartbeat": 20, "test": 5}


def iso(ms):
    dt = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


class Script:
    def __init__(self, r, prefix):
        self.r = r
        self.prefix = prefix
        self.text = SCRIPT_PATH.read_text()

    def decide(self, event_id, source_id, etype="panic", now_ms=T0,
               kind="bus", zone="", label="", base=None, location=None,
               ttl=86400, maxlen=10000):
        lat, lon = location if location else ("", "")
        reply = self.r.eval(
            self.text, 0, "decide", self.prefix, event_id, source_id, kind,
            zone, label, etype, CLASS[etype],
            str(BASE[etype] if base is None else base), str(now_ms),
            iso(now_ms), str(ttl), "1" if location else "0", str(lat),
            str(lon), str(maxlen))
        assert isinstance(reply, list) and len(reply) == len(OUT)
        res = dict(zip(OUT, reply))
        for k in ("incident_id", "priority", "accept_seq", "opened",
                  "version", "first_seen_ms"):
            assert isinstance(res[k], str) and res[k].isdigit(), (k, res)
            res[k] = int(res[k])
        res["snap"] = json.loads(res["snapshot"]) if res["snapshot"] else None
        return res

    def queue(self, limit=0):
        out = self.r.eval(self.text, 0, "queue", self.prefix, str(limit))
        assert isinstance(out, str)
        return json.loads(out)

    def get(self, incident_id):
        out = self.r.eval(self.text, 0, "get", self.prefix, str(incident_id))
        return None if out is None else json.loads(out)

    def changes(self):
        return self.r.xrange(self.prefix + "changes")


@pytest.fixture
def s(redis_server):
    return Script(redis_server.client(), "t%s:" % uuid.uuid4().hex[:8])


def uid(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:10])


def test_new_incident_snapshot_fields_and_types(s):
    src = uid("bus")
    res = s.decide(uid("e"), src, "panic", zone="Karsiyaka",
                   label="ESHOT 1436, line 90", location=(38.4555, 27.1199))
    assert res["outcome"] == "new" and res["original_outcome"] == "new"
    assert res["opened"] == 1 and res["version"] == 1
    assert res["priority"] == 100 and res["first_seen_ms"] == T0
    snap = res["snap"]
    assert list(snap) == ["id", "state", "priority", "type", "source",
                          "count", "first_seen", "last_seen", "location",
                          "escalation_level", "acked_by", "version"]
    assert snap == {
        "id": res["incident_id"], "state": "new", "priority": 100,
        "type": "panic",
        "source": {"id": src, "kind": "bus", "zone": "Karsiyaka",
                   "label": "ESHOT 1436, line 90"},
        "count": 1, "first_seen": iso(T0), "last_seen": iso(T0),
        "location": {"lat": 38.4555, "lon": 27.1199},
        "escalation_level": 0, "acked_by": None, "version": 1}
    # Integers are JSON integers ("id":12, never 12.0).
    for key in ("id", "priority", "count", "escalation_level", "version"):
        assert type(snap[key]) is int, key
        assert '"%s":%d' % (key, snap[key]) in res["snapshot"]
    assert res["change_id"]
    assert s.get(res["incident_id"]) == snap


def test_location_zone_label_null_when_absent(s):
    res = s.decide(uid("e"), uid("stop"), "fault", kind="stop")
    snap = res["snap"]
    assert snap["location"] is None
    assert snap["source"]["zone"] is None and snap["source"]["label"] is None
    assert '"location":null' in res["snapshot"]


def test_merge_keeps_latest_location_and_counts(s):
    src = uid("bus")
    a = s.decide(uid("e"), src, "panic", zone="Konak",
                 location=(38.1, 27.1))
    b = s.decide(uid("e"), src, "panic", now_ms=T0 + 5884)
    c = s.decide(uid("e"), src, "panic", now_ms=T0 + 9000,
                 location=(38.123456789012, 27.987654321098))
    assert b["outcome"] == "merged" and c["outcome"] == "merged"
    assert a["incident_id"] == b["incident_id"] == c["incident_id"]
    assert b["opened"] == 0 and c["version"] == 3
    snap = c["snap"]
    assert snap["count"] == 3
    assert snap["first_seen"] == iso(T0) and snap["last_seen"] == iso(T0 + 9000)
    assert snap["source"]["zone"] == "Konak"          # kept: not re-sent
    assert snap["location"] == {"lat": 38.123456789012,
                                "lon": 27.987654321098}
    assert b["snap"]["location"] == {"lat": 38.1, "lon": 27.1}
    assert c["first_seen_ms"] == T0
    assert c["accept_seq"] > b["accept_seq"] > a["accept_seq"]


def test_duplicate_returns_original_and_changes_nothing(s):
    src = uid("bus")
    eid = uid("e")
    first = s.decide(eid, src, "panic")
    second = s.decide(uid("e"), src, "silent_alarm", now_ms=T0 + 1000)
    before = s.get(first["incident_id"])
    n_changes = len(s.changes())
    seq = s.r.get(s.prefix + "seq:accept")

    dup = s.decide(eid, src, "silent_alarm", now_ms=T0 + 2000,
                   location=(1.0, 2.0))
    assert dup["outcome"] == "duplicate"
    assert dup["original_outcome"] == "new"
    assert dup["incident_id"] == first["incident_id"]
    assert dup["priority"] == 100                     # the first delivery's
    assert dup["accept_seq"] == first["accept_seq"]
    assert dup["opened"] == 1 and dup["version"] == 1
    assert dup["first_seen_ms"] == T0
    assert dup["snapshot"] == "" and dup["change_id"] == ""
    after = s.get(first["incident_id"])
    assert after == before
    assert after["count"] == 2 and after["version"] == second["version"] == 2
    assert len(s.changes()) == n_changes
    assert s.r.get(s.prefix + "seq:accept") == seq



def test_duplicate_of_merged_event(s):
    src = uid("bus")
    s.decide(uid("e"), src, "panic")
    eid = uid("e")
    m = s.decide(eid, src, "panic", now_ms=T0 + 10)
    d = s.decide(eid, src, "panic", now_ms=T0 + 20)
    assert d["outcome"] == "duplicate" and d["original_outcome"] == "merged"
    assert d["opened"] == 0 and d["version"] == m["version"] == 2


def test_idempotency_key_has_ttl(s):
    eid, src = uid("e"), uid("bus")
    s.decide(eid, src, "panic", ttl=321)
    ttl = s.r.ttl(s.prefix + "evt:" + src + "/" + eid)
    assert 0 < ttl <= 321


def test_merge_class(s):
    src = uid("bus")
    panic = s.decide(uid("e"), src, "panic")
    silent = s.decide(uid("e"), src, "silent_alarm", now_ms=T0 + 1)
    fault = s.decide(uid("e"), src, "fault", now_ms=T0 + 2)
    call = s.decide(uid("e"), src, "call_request", now_ms=T0 + 3)
    callback = s.decide(uid("e"), src, "callback_request", now_ms=T0 + 4)
    other = s.decide(uid("e"), uid("bus"), "panic", now_ms=T0 + 5)
    assert silent["outcome"] == "merged"
    assert silent["incident_id"] == panic["incident_id"]
    assert fault["outcome"] == "new"
    assert fault["incident_id"] != panic["incident_id"]
    assert callback["incident_id"] == call["incident_id"] != fault["incident_id"]
    assert other["outcome"] == "new"
    assert len({panic["incident_id"], fault["incident_id"],
                call["incident_id"], other["incident_id"]}) == 4


def test_priority_is_max_and_type_of_highest_base(s):
    src = uid("bus")
    a = s.decide(uid("e"), src, "panic")               # 100
    b = s.decide(uid("e"), src, "silent_alarm", now_ms=T0 + 1)  # 110
    c = s.decide(uid("e"), src, "panic", now_ms=T0 + 2)          # 100
    assert a["priority"] == 100
    assert b["priority"] == 110 and b["snap"]["type"] == "silent_alarm"
    assert c["priority"] == 110 and c["snap"]["type"] == "silent_alarm"
    # Base priorities are clamped to 0..999.
    d = s.decide(uid("e"), uid("bus"), "panic", base=5000, now_ms=T0 + 3)
    assert d["priority"] == 999


def test_queue_order_priority_then_first_seen(s):
    low_old = s.decide(uid("e"), uid("park"), "fault", now_ms=T0)
    high_new = s.decide(uid("e"), uid("bus"), "panic", now_ms=T0 + 3000)
    high_old = s.decide(uid("e"), uid("bus"), "panic", now_ms=T0 + 1000)
    # One millisecond apart at the same priority still orders.
    high_older = s.decide(uid("e"), uid("bus"), "panic", now_ms=T0 + 999)
    mid = s.decide(uid("e"), uid("line"), "call_request", now_ms=T0 + 500,
                   kind="support_line")
    # A merge that raises the priority moves the incident up but keeps its
    # first_seen.
    raised_src = uid("ferry")
    raised = s.decide(uid("e"), raised_src, "panic", now_ms=T0 + 5000,
                      kind="ferry")
    s.decide(uid("e"), raised_src, "silent_alarm", now_ms=T0 + 6000,
             kind="ferry")
    q = s.queue()
    assert [x["id"] for x in q] == [
        raised["incident_id"], high_older["incident_id"],
        high_old["incident_id"], high_new["incident_id"],
        mid["incident_id"], low_old["incident_id"]]
    assert q[0]["priority"] == 110 and q[0]["first_seen"] == iso(T0 + 5000)
    assert [x["id"] for x in s.queue(limit=2)] == [
        raised["incident_id"], high_older["incident_id"]]


def test_queue_score_formula(s):
    res = s.decide(uid("e"), uid("bus"), "panic", now_ms=T0)
    score = s.r.zscore(s.prefix + "queue", str(res["incident_id"]))
    want = 100 * 10**12 + (10**12 - 1 - (T0 - 1700000000000))
    assert int(score) == want and score == float(want)


def test_queue_empty_is_json_array(s):
    assert s.queue() == []
    assert s.r.eval(s.text, 0, "queue", s.prefix, "10") == "[]"


def test_get_unknown_is_nil(s):
    assert s.get(424242) is None
    assert s.get("not-a-number") is None


def test_change_stream_one_entry_per_change(s):
    src = uid("bus")
    eid = uid("e")
    a = s.decide(eid, src, "panic")
    b = s.decide(uid("e"), src, "panic", now_ms=T0 + 1)
    s.decide(eid, src, "panic", now_ms=T0 + 2)              # duplicate
    c = s.decide(uid("e"), uid("bus"), "fault", now_ms=T0 + 3)
    entries = s.changes()
    assert [e[0] for e in entries] == [a["change_id"], b["change_id"],
                                       c["change_id"]]
    for (_, fields), res in zip(entries, (a, b, c)):
        assert fields["incident"] == str(res["incident_id"])
        assert fields["snapshot"] == res["snapshot"]
    # Exclusive range after a change id, as decide_changes_since reads it.
    after = s.r.xrange(s.prefix + "changes", "(" + a["change_id"], "+")
    assert [e[0] for e in after] == [b["change_id"], c["change_id"]]


def test_change_stream_is_capped(s):
    src = uid("bus")
    for i in range(300):
        s.decide(uid("e"), src, "heartbeat", now_ms=T0 + i, maxlen=100)
    n = s.r.xlen(s.prefix + "changes")
    assert 100 <= n < 300      # MAXLEN ~ trims whole nodes


def test_incident_ids_are_sequential_integers(s):
    ids = [s.decide(uid("e"), uid("bus"), "test", now_ms=T0 + i)["incident_id"]
           for i in range(3)]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]


def _decide_with_floor(s, floor):
    """decide with rules carrying seq_floor (what alertd knows was
    given): {"incident": N, "accept": M}."""
    reply = s.r.eval(s.text, 0, "decide", s.prefix, uid("e"), uid("src"),
                     "bus", "", "", "panic", "alarm", "100", str(T0),
                     iso(T0), "86400", "0", "", "", "10000",
                     json.dumps({"seq_floor": floor}))
    res = dict(zip(OUT, reply))
    return int(res["incident_id"]), int(res["accept_seq"])


def test_counters_never_go_back_below_the_floor(s):
    # No counters (Redis lost its data): they continue above the floor.
    assert _decide_with_floor(s, {"incident": 500, "accept": 900}) == \
        (501, 901)
    # Counters above the floor: one step, as always.
    assert _decide_with_floor(s, {"incident": 500, "accept": 900}) == \
        (502, 902)
    # A floor above the counters (ids another instance gave): above it.
    assert _decide_with_floor(s, {"incident": 700, "accept": 0}) == \
        (701, 903)
    # Without rules: the counters as they are.
    res = s.decide(uid("e"), uid("src"))
    assert (res["incident_id"], res["accept_seq"]) == (702, 904)
    assert s.r.get(s.prefix + "seq:incident") == "702"


def test_resolved_incident_is_not_merged_into(s):
    """After the open key is gone (resolve), the next event opens anew."""
    src = uid("bus")
    a = s.decide(uid("e"), src, "panic")
    s.r.delete(s.prefix + "open:%s:alarm" % src)
    b = s.decide(uid("e"), src, "panic", now_ms=T0 + 1)
    assert b["outcome"] == "new" and b["incident_id"] != a["incident_id"]


def test_bad_arguments_are_errors(s):
    with pytest.raises(redis.exceptions.ResponseError):
        s.r.eval(s.text, 0, "nope", s.prefix)
    with pytest.raises(redis.exceptions.ResponseError):
        s.r.eval(s.text, 0, "decide", s.prefix, "e1")
    with pytest.raises(redis.exceptions.ResponseError):
        s.r.eval(s.text, 0, "decide", s.prefix, uid("e"), uid("bus"), "bus",
                 "", "", "panic", "alarm", "100", "soon", iso(T0), "60",
                 "0", "", "", "100")
    # Nothing was written by the refused calls.
    assert s.r.keys(s.prefix + "*") == []


def test_decide_batch_decides_in_order_and_isolates_bad_events(s):
    """decide_batch (what alertd sends, one call per loop turn): n events
    decided one after the other, as n decide calls would be; a bad event
    gets an error element and the others stand."""
    src = uid("bus")

    def fields(event_id, etype="panic", now_ms=T0, base=None):
        bad = not isinstance(now_ms, int)
        return [event_id, src, "bus", "", "", etype, CLASS[etype],
                str(BASE[etype] if base is None else base), str(now_ms),
                iso(T0) if bad else iso(now_ms), "86400", "0", "", "",
                "10000"]

    e1, e2, e3 = uid("e"), uid("e"), uid("e")
    args = (fields(e1) + fields(e2, now_ms="soon") +
            fields(e3, etype="fault", now_ms=T0 + 5) + fields(e1))
    reply = s.r.eval(s.text, 0, "decide_batch", s.prefix, "", "4", *args)
    assert isinstance(reply, list) and len(reply) == 4
    first = dict(zip(OUT, reply[0]))
    assert first["outcome"] == "new" and first["version"] == "1"
    assert isinstance(reply[1], redis.exceptions.ResponseError)
    assert "bad base, now_ms" in str(reply[1])
    third = dict(zip(OUT, reply[2]))
    # the same source, class fault: its own incident, decided after e1
    assert third["outcome"] == "new"
    assert int(third["accept_seq"]) == int(first["accept_seq"]) + 1
    fourth = dict(zip(OUT, reply[3]))
    # e1 again in the same call: a duplicate of the first element
    assert fourth["outcome"] == "duplicate"
    assert fourth["incident_id"] == first["incident_id"]
    assert fourth["accept_seq"] == first["accept_seq"]
    assert s.r.xlen(s.prefix + "changes") == 2
    # a wrong argument count is refused as a whole, before any write
    with pytest.raises(redis.exceptions.ResponseError, match="decide_batch"):
        s.r.eval(s.text, 0, "decide_batch", s.prefix, "", "2",
                 *fields(uid("e")))
    assert s.r.xlen(s.prefix + "changes") == 2


def test_pending_level_of_a_dead_owner_is_taken_up(s):
    """esc_pending takes up a level before its lease when its owner's live
    key is gone, but only once the caller's own key has lived longer than
    the TTL (after an outage every live owner refreshes first), never
    while the owner's key lives, and never a record without an owner."""
    call = lambda *a: s.r.eval(s.text, 0, *[str(x) for x in a])
    iid = s.decide(uid("e"), uid("bus"), "panic")["incident_id"]
    s.r.hset(s.prefix + "inc:%d" % iid, "escalation_level", "1")
    pend = s.prefix + "notify:pending"
    far = T0 + 3600000
    s.r.hset(pend, "%d:1" % iid, json.dumps(
        {"id": iid, "level": 1, "lease": far, "owner": "A"}))
    s.r.hset(pend, "%d:2" % iid, json.dumps(
        {"id": iid, "level": 1, "lease": far}))
    taken = lambda now: json.loads(call("esc_pending", s.prefix, now, 60000,
                                        100, "B"))["levels"]

    assert call("esc_alive", s.prefix, "B", 6000, T0) == "1"
    assert taken(T0 + 1000) == []            # B's own streak is 1 s old
    s.r.set(s.prefix + "live:A", T0, px=60000)
    assert call("esc_alive", s.prefix, "B", 6000, T0 + 7000) == "1"
    assert s.r.get(s.prefix + "live:B") == str(T0)   # the streak goes on
    assert taken(T0 + 7000) == []            # A lives
    s.r.delete(s.prefix + "live:A")
    got = taken(T0 + 7000)
    assert [(x["id"], x["level"]) for x in got] == [(iid, 1)], got
    rec = json.loads(s.r.hget(pend, "%d:1" % iid))
    assert rec["owner"] == "B" and rec["lease"] == T0 + 7000 + 60000
    assert taken(T0 + 7000) == []            # now B's, and B lives
    assert json.loads(s.r.hget(pend, "%d:2" % iid))["lease"] == far
    # B stops: esc_gone deletes its key at once, and C (whose streak is
    # long enough) takes B's level up without waiting for the TTL.
    s.r.set(s.prefix + "live:C", T0, px=60000)
    assert call("esc_gone", s.prefix, "B") == "1"
    assert s.r.exists(s.prefix + "live:B") == 0
    got = json.loads(call("esc_pending", s.prefix, T0 + 8000, 60000, 100,
                          "C"))["levels"]
    assert [(x["id"], x["level"]) for x in got] == [(iid, 1)], got
    with pytest.raises(redis.exceptions.ResponseError, match="esc_gone"):
        call("esc_gone", s.prefix, "")


def test_pending_levels_are_looked_at_one_slice_at_a_time(s):
    """esc_pending reads notify:pending with HSCAN, about `count` fields a
    call: a pass over 1,000 pending levels takes several calls, each
    handing back the cursor to go on from, and the one level among them
    whose lease ran out is taken up exactly once in the pass."""
    call = lambda *a: s.r.eval(s.text, 0, *[str(x) for x in a])
    pend = s.prefix + "notify:pending"
    far = T0 + 3600000
    due = None
    for n in range(1000):
        iid = s.decide(uid("e"), uid("bus"), "panic")["incident_id"]
        s.r.hset(s.prefix + "inc:%d" % iid, "escalation_level", "1")
        lease = far
        if n == 617:
            due, lease = iid, T0
        s.r.hset(pend, "%d:1" % iid, json.dumps(
            {"id": iid, "level": 1, "lease": lease, "owner": "A"}))
    s.r.set(s.prefix + "live:A", T0, px=60000)
    cursor, calls, got = "0", 0, []
    while True:
        r = json.loads(call("esc_pending", s.prefix, T0 + 1000, 60000, 100,
                            "B", cursor, 100))
        calls += 1
        got += [(x["id"], x["level"]) for x in r["levels"]]
        cursor = r["cursor"]
        if cursor == "0" or calls > 100:
            break
    assert cursor == "0"
    assert calls >= 5, calls
    assert got == [(due, 1)]
    with pytest.raises(redis.exceptions.ResponseError, match="cursor"):
        call("esc_pending", s.prefix, T0, 60000, 100, "B", "x1", 100)


def test_console_snapshot_ids_then_pages(s):
    """stream_ids and snapshots, the two steps of a console's snapshot
    (daemon/qsnap.c): the ids in queue order with the newest change's id,
    then the snapshots of the ids asked for, in that order; an id without
    an incident is left out, and a malformed list is refused."""
    a = s.decide("e1", "src-a", "fault")
    b = s.decide("e2", "src-b", "panic", now_ms=T0 + 1)
    head = json.loads(s.r.eval(s.text, 0, "stream_ids", s.prefix))
    assert head["ids"] == [b["incident_id"], a["incident_id"]]
    assert head["last_id"] == b["change_id"]
    ids = "%d,999999,%d" % (a["incident_id"], b["incident_id"])
    page = json.loads(s.r.eval(s.text, 0, "snapshots", s.prefix, ids))
    assert [json.loads(x)["id"] for x in page] == [a["incident_id"],
                                                  b["incident_id"]]
    assert json.loads(s.r.eval(s.text, 0, "snapshots", s.prefix, "")) == []
    # Resolved meanwhile (out of the queue): left out.
    s.r.zrem(s.prefix + "queue", a["incident_id"])
    page = json.loads(s.r.eval(s.text, 0, "snapshots", s.prefix, ids))
    assert [json.loads(x)["id"] for x in page] == [b["incident_id"]]
    for bad in ("1,x", "-1", ",".join(["1"] * 1001)):
        with pytest.raises(redis.exceptions.ResponseError):
            s.r.eval(s.text, 0, "snapshots", s.prefix, bad)
    empty = json.loads(s.r.eval(s.text, 0, "stream_ids", s.prefix + "x:"))
    assert empty == {"last_id": "0-0", "ids": []}
