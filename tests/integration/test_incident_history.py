"""GET /v1/incidents/{id}: one incident with its events and transitions
(DESIGN.md). The snapshot comes from Redis, the history from the audit
trail in PostgreSQL: the newest 100 events and 200 transitions, oldest
first, personal attrs masked like GET /v1/audit; without PostgreSQL the
snapshot is still answered, with the lists null and "history_error"."""

import json
import re

import pytest

from helpers import http_get, http_request, make_event, post_event, uid

SNAPSHOT_FIELDS = {"id", "state", "priority", "type", "source", "count",
                   "first_seen", "last_seen", "location", "escalation_level",
                   "acked_by", "version"}
MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PHONE = "+905551234567"


def _post(alertd, ev):
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    return body


def _act(alertd, token, iid, action, body=None):
    st, resp, _ = http_request(
        alertd.http, "POST", "/v1/incidents/%s/%s" % (iid, action),
        body=json.dumps(body).encode() if body is not None else None,
        token=token, headers={"Content-Type": "application/json"})
    assert st == 200, resp
    return resp


def _get(alertd, token, iid):
    st, inc, hdrs = http_get(alertd.http, "/v1/incidents/%s" % iid, token)
    assert st == 200, inc
    assert hdrs.get("content-type", "").startswith("application/json")
    return inc


def test_incident_with_its_events_and_transitions(alertd, operator_token):
    first = make_event(type="panic", zone="Karsiyaka",
                       location={"lat": 38.4555, "lon": 27.1199},
                       attrs={"route": "90"})
    opened = _post(alertd, first)
    second = make_event(type="panic", source=first["source"])
    merged = _post(alertd, second)
    assert merged["outcome"] == "merged"
    # A duplicate delivery changes nothing, in the history either.
    assert _post(alertd, first)["outcome"] == "duplicate"
    iid = opened["incident_id"]
    _act(alertd, operator_token, iid, "ack")
    resolved = _act(alertd, operator_token, iid, "resolve",
                    {"note": "driver safe"})

    inc = _get(alertd, operator_token, iid)
    assert SNAPSHOT_FIELDS <= set(inc), inc
    assert inc["id"] == iid and inc["state"] == "resolved"
    assert inc["version"] == resolved["version"]
    assert inc["location"] == {"lat": 38.4555, "lon": 27.1199}

    events = inc["events"]
    assert [e["event"]["event_id"] for e in events] == \
        [first["event_id"], second["event_id"]], events
    assert [e["outcome"] for e in events] == ["new", "merged"]
    assert [e["priority"] for e in events] == \
        [opened["priority"], merged["priority"]]
    assert all(MS_UTC.match(e["received_at"]) for e in events), events
    assert events[0]["received_at"] <= events[1]["received_at"]
    # The event as the device sent it (attrs are not personal here),
    # reals as sent.
    assert events[0]["event"]["source"]["id"] == first["source"]["id"]
    assert events[0]["event"]["attrs"] == {"route": "90"}
    assert events[0]["event"]["location"] == {"lat": 38.4555,
                                              "lon": 27.1199}
    assert inc["events_truncated"] is False

    steps = [(t["from"], t["to"]) for t in inc["transitions"]]
    assert steps == [(None, "new"), ("new", "acknowledged"),
                     ("acknowledged", "resolved")], inc["transitions"]
    t = inc["transitions"]
    assert t[0]["actor"] == "alertd"
    assert t[1]["actor"] == inc["acked_by"] == t[2]["actor"]
    assert t[1]["detail"]["action"] == "ack"
    assert t[2]["detail"]["note"] == "driver safe"
    # no outcome given: none recorded (not "")
    assert t[2]["detail"] == {"action": "resolve", "note": "driver safe"}
    assert all(MS_UTC.match(x["at"]) for x in t), t
    assert inc["transitions_truncated"] is False
    assert "history_error" not in inc


def test_personal_attrs_masked_unless_the_role_may_see_them(
        alertd, operator_token, add_operator_token):
    ev = make_event(kind="support_line", type="call_request",
                    label="caller Zeynep K.",
                    attrs={"caller_phone": PHONE, "line": "women"})
    iid = _post(alertd, ev)["incident_id"]

    # operator: not in [audit] personal_roles (default admin); the label
    # as in the snapshot beside it
    seen = _get(alertd, add_operator_token("operator"), iid)
    attrs = seen["events"][0]["event"]["attrs"]
    assert attrs == {"caller_phone": "***", "line": "women"}, attrs
    assert PHONE not in json.dumps(seen)
    assert seen["source"]["label"] == "caller Zeynep K."
    assert seen["events"][0]["event"]["source"]["label"] == \
        "caller Zeynep K."

    # auditor: also the support-line label, in the snapshot too
    seen = _get(alertd, add_operator_token("auditor"), iid)
    assert seen["source"]["label"] == "***"
    assert seen["events"][0]["event"]["source"]["label"] == "***"
    assert seen["events"][0]["event"]["attrs"]["caller_phone"] == "***"

    # admin: what is stored (personal_store = hash by default)
    seen = _get(alertd, operator_token, iid)
    stored = seen["events"][0]["event"]["attrs"]["caller_phone"]
    assert stored.startswith("hmac-sha256:"), stored
    assert seen["events"][0]["event"]["source"]["label"] == \
        "caller Zeynep K."


def test_newest_events_first_kept_when_there_are_many(alertd_factory,
                                                      operator_token):
    alertd = alertd_factory(dedup__flood_soft=1000, dedup__flood_hard=1000)
    first = make_event(type="panic")
    iid = _post(alertd, first)["incident_id"]
    sent = [first["event_id"]]
    for _ in range(104):
        ev = make_event(type="panic", source=first["source"])
        assert _post(alertd, ev)["incident_id"] == iid
        sent.append(ev["event_id"])

    inc = _get(alertd, operator_token, iid)
    assert inc["count"] == 105
    assert inc["events_truncated"] is True
    # the newest 100, oldest first
    assert [e["event"]["event_id"] for e in inc["events"]] == sent[-100:]
    assert inc["transitions_truncated"] is False
    assert len(inc["transitions"]) == 1


def test_zone_operator_gets_403_before_any_history(alertd, alertctl):
    r = alertctl("operator", "add", "hist-karsi-" + uid(),
                 "--role", "operator", "--zones", "Karsiyaka")
    tok = r.stdout.strip().splitlines()[-1]
    iid = _post(alertd, make_event(type="panic", zone="Bornova"))[
        "incident_id"]
    st, err, _ = http_get(alertd.http, "/v1/incidents/%s" % iid, tok)
    assert st == 403 and err["error"] == "forbidden", err
    mine = _post(alertd, make_event(type="panic", zone="Karsiyaka"))
    inc = _get(alertd, tok, mine["incident_id"])
    assert [e["outcome"] for e in inc["events"]] == ["new"]


@pytest.mark.kill_after(180)
def test_snapshot_without_history_while_postgres_is_down(alertd,
                                                         operator_token,
                                                         pg_server):
    ev = make_event(type="panic")
    iid = _post(alertd, ev)["incident_id"]
    assert len(_get(alertd, operator_token, iid)["events"]) == 1
    pg_server.stop("fast")
    try:
        inc = _get(alertd, operator_token, iid)
        assert inc["id"] == iid and inc["state"] == "new"
        assert inc["events"] is None and inc["transitions"] is None
        assert "unavailable" in inc["history_error"]
        assert alertd.alive()
    finally:
        pg_server.start()
