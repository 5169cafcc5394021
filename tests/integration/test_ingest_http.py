"""POST /v1/events end to end: the 202 comes only once the event's row is
committed in PostgreSQL; idempotency, merging by source and type class,
protobuf bodies, per-source secrets."""

import json

from helpers import (FERRY_SECRET, http_get, make_event, pb_event,
                     post_event, uid)


def event_rows(db, event_id):
    with db.cursor() as cur:
        cur.execute("SELECT event_id, source_id, source_kind, type, outcome,"
                    " incident_id, priority, payload FROM events"
                    " WHERE event_id = %s", (event_id,))
        return cur.fetchall()


def count_events(db):
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM events")
        return cur.fetchone()[0]


def test_new_event_is_committed_when_202_arrives(alertd):
    db = alertd.db()
    ev = make_event(type="panic")
    st, body, hdrs = post_event(alertd.http, ev)
    rows = event_rows(db, ev["event_id"])   # right after the answer
    assert st == 202, body
    assert hdrs.get("content-type", "").startswith("application/json")
    assert body["outcome"] == "new"
    assert body["event_id"] == ev["event_id"]
    assert isinstance(body["incident_id"], int) and body["incident_id"] > 0
    assert body["priority"] == 100          # [priority] panic default
    assert len(rows) == 1, "the 202 came before the row was committed"
    (eid, sid, kind, typ, outcome, inc, prio, payload) = rows[0]
    assert (eid, sid, kind, typ, outcome) == (
        ev["event_id"], ev["source"]["id"], "bus", "panic", "new")
    assert inc == body["incident_id"]
    assert prio == body["priority"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    assert payload["event_id"] == ev["event_id"]
    assert payload["source"]["id"] == ev["source"]["id"]


def test_same_body_again_is_duplicate_and_adds_no_row(alertd):
    db = alertd.db()
    ev = make_event()
    st1, b1, _ = post_event(alertd.http, ev)
    assert st1 == 202 and b1["outcome"] == "new", b1
    n = count_events(db)
    st2, b2, _ = post_event(alertd.http, ev)
    assert st2 == 202, b2
    assert b2["outcome"] == "duplicate"
    assert b2["event_id"] == ev["event_id"]
    assert b2["incident_id"] == b1["incident_id"]
    assert b2["priority"] == b1["priority"]
    assert count_events(db) == n
    assert len(event_rows(db, ev["event_id"])) == 1


def test_same_event_id_with_other_content_is_duplicate(alertd):
    """Idempotency is on event_id: a retry whose body differs (a new
    occurred_at, say) changes nothing either."""
    db = alertd.db()
    ev = make_event()
    st1, b1, _ = post_event(alertd.http, ev)
    assert st1 == 202, b1
    ev2 = dict(ev, attrs={"route": "91"}, type="fault")
    st2, b2, _ = post_event(alertd.http, ev2)
    assert st2 == 202, b2
    assert b2["outcome"] == "duplicate"
    assert b2["incident_id"] == b1["incident_id"]
    assert len(event_rows(db, ev["event_id"])) == 1


def test_same_event_id_from_another_source_is_another_event(alertd):
    """A sender chooses its event ids: two devices counting from 1 both
    send "000123". The second is its own event (its own incident and
    audit row), never a duplicate that would swallow a panic."""
    db = alertd.db()
    eid = "000123-" + uid(8)
    a = make_event(event_id=eid)
    b = make_event(event_id=eid, type="panic")
    assert b["source"]["id"] != a["source"]["id"]
    st, ba, _ = post_event(alertd.http, a)
    assert st == 202 and ba["outcome"] == "new", ba
    st, bb, _ = post_event(alertd.http, b)
    assert st == 202 and bb["outcome"] == "new", bb
    assert bb["incident_id"] != ba["incident_id"]
    assert len(event_rows(db, eid)) == 2
    # Each source's retry is still its own duplicate.
    st, bb2, _ = post_event(alertd.http, b)
    assert st == 202 and bb2["outcome"] == "duplicate", bb2
    assert bb2["incident_id"] == bb["incident_id"]
    assert len(event_rows(db, eid)) == 2


def test_second_event_same_source_merges(alertd, operator_token):
    db = alertd.db()
    ev1 = make_event(type="panic")
    ev2 = make_event(type="panic", source=ev1["source"],
                     location={"lat": 38.5, "lon": 27.2})
    st1, b1, _ = post_event(alertd.http, ev1)
    st2, b2, _ = post_event(alertd.http, ev2)
    rows2 = event_rows(db, ev2["event_id"])
    assert st1 == 202 and b1["outcome"] == "new", b1
    assert st2 == 202, b2
    assert b2["outcome"] == "merged"
    assert b2["incident_id"] == b1["incident_id"]
    assert len(rows2) == 1 and rows2[0][4] == "merged"
    assert rows2[0][5] == b1["incident_id"]
    st, inc, _ = http_get(alertd.http, "/v1/incidents/%d" % b1["incident_id"],
                          token=operator_token)
    assert st == 200, inc
    assert inc["count"] == 2
    assert inc["location"] == {"lat": 38.5, "lon": 27.2}  # latest location
    assert inc["last_seen"] >= inc["first_seen"]


def test_panic_then_silent_alarm_same_source_merges(alertd):
    ev1 = make_event(type="panic")
    ev2 = make_event(type="silent_alarm", source=ev1["source"])
    st1, b1, _ = post_event(alertd.http, ev1)
    st2, b2, _ = post_event(alertd.http, ev2)
    assert st1 == 202 and b1["outcome"] == "new", b1
    assert st2 == 202 and b2["outcome"] == "merged", b2
    assert b2["incident_id"] == b1["incident_id"]


def test_fault_from_same_source_opens_another_incident(alertd):
    db = alertd.db()
    ev1 = make_event(type="panic")
    ev2 = make_event(type="fault", source=ev1["source"])
    st1, b1, _ = post_event(alertd.http, ev1)
    st2, b2, _ = post_event(alertd.http, ev2)
    assert st1 == 202 and b1["outcome"] == "new", b1
    assert st2 == 202 and b2["outcome"] == "new", b2
    assert b2["incident_id"] != b1["incident_id"]
    assert b2["priority"] == 30             # [priority] fault default
    assert event_rows(db, ev2["event_id"])[0][5] == b2["incident_id"]


def test_other_sources_do_not_merge(alertd):
    ev1 = make_event(type="panic")
    ev2 = make_event(type="panic")          # another source.id
    b1 = post_event(alertd.http, ev1)[1]
    b2 = post_event(alertd.http, ev2)[1]
    assert b1["outcome"] == "new" and b2["outcome"] == "new", (b1, b2)
    assert b1["incident_id"] != b2["incident_id"]


def test_protobuf_body(alertd):
    db = alertd.db()
    ev = make_event(type="call_request", kind="stop", source_id="stop-" + uid())
    st, body, _ = post_event(alertd.http, pb_event(ev))   # x-protobuf
    rows = event_rows(db, ev["event_id"])
    assert st == 202, body
    assert body["outcome"] == "new"
    assert body["event_id"] == ev["event_id"]
    assert body["priority"] == 70           # [priority] call_request
    assert len(rows) == 1
    assert rows[0][1:4] == (ev["source"]["id"], "stop", "call_request")
    # The same event_id as JSON is the same event.
    st2, b2, _ = post_event(alertd.http, ev)
    assert st2 == 202 and b2["outcome"] == "duplicate", b2
    assert b2["incident_id"] == body["incident_id"]
    # A second protobuf event of the same source merges.
    ev3 = make_event(type="call_request", source=ev["source"])
    st3, b3, _ = post_event(alertd.http, pb_event(ev3))
    assert st3 == 202 and b3["outcome"] == "merged", b3
    assert b3["incident_id"] == body["incident_id"]


def test_minimal_event_and_no_content_type(alertd):
    """Only the required fields; a missing Content-Type means JSON."""
    db = alertd.db()
    ev = make_event(zone=None, label=None, occurred_at=None, location=None,
                    attrs=None)
    assert set(ev) == {"event_id", "source", "type"}
    st, body, _ = post_event(alertd.http, ev, content_type=None)
    assert st == 202, body
    assert body["outcome"] == "new"
    assert len(event_rows(db, ev["event_id"])) == 1


def test_occurred_at_the_epoch_is_stored(alertd):
    """A device without a clock sends 1970-01-01T00:00:00Z: the audit
    row keeps that time (it once stored NULL, as if it were absent)."""
    db = alertd.db()
    ev = make_event(occurred_at="1970-01-01T00:00:00Z")
    absent = make_event(occurred_at=None)
    for e in (ev, absent):
        st, body, _ = post_event(alertd.http, e)
        assert st == 202, body
    with db.cursor() as cur:
        cur.execute("SELECT event_id, extract(epoch FROM occurred_at)"
                    " FROM events WHERE event_id IN (%s, %s)",
                    (ev["event_id"], absent["event_id"]))
        got = dict(cur.fetchall())
    assert got == {ev["event_id"]: 0, absent["event_id"]: None}


def test_ferry_source_with_its_own_secret(alertd):
    """[device_secrets] ferry-* = ferry-secret comes before * in the test
    config: a ferry signs with its own secret."""
    ev = make_event(kind="ferry", source_id="ferry-" + uid())
    st, body, _ = post_event(alertd.http, ev, secret=FERRY_SECRET)
    assert st == 202, body
    assert body["outcome"] == "new"


def test_32_attrs_is_the_limit(alertd):
    ev = make_event(attrs={"k%02d" % i: "v" for i in range(32)})
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body


def test_64_char_ids_are_accepted(alertd):
    ev = make_event(event_id="e" * 64, source_id="s" + "x" * 63)
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    assert body["event_id"] == "e" * 64
