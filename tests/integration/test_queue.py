"""The operator queue: GET /v1/incidents?state=open in queue order (priority
descending, then first_seen ascending), one incident by id, bearer tokens,
and `alertctl incidents --json` showing the same order."""

import json
import re
import time

import pytest

from helpers import http_get, make_event, post_event, uid

SNAPSHOT_FIELDS = {"id", "state", "priority", "type", "source", "count",
                   "first_seen", "last_seen", "location", "escalation_level",
                   "acked_by", "version"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _post(alertd, **kw):
    ev = make_event(**kw)
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    time.sleep(0.01)    # distinct first_seen milliseconds
    return ev, body


def _fill_queue(alertd):
    """Six incidents of six sources; returns their ids in expected order."""
    inc = {}
    for name, typ in [("fault", "fault"), ("panic1", "panic"),
                      ("call", "call_request"), ("test", "test"),
                      ("silent", "silent_alarm"),
                      ("callback", "callback_request")]:
        ev, body = _post(alertd, type=typ)
        assert body["outcome"] == "new"
        inc[name] = (ev, body)
    # Merging into an older incident does not move it (first_seen stays).
    ev, body = _post(alertd, type="fault", source=inc["fault"][0]["source"])
    assert body["outcome"] == "merged"
    expected = ["panic1", "silent", "call", "callback", "fault", "test"]
    return inc, [inc[n][1]["incident_id"] for n in expected]


def test_queue_order(alertd, operator_token):
    inc, expected_ids = _fill_queue(alertd)
    st, queue, hdrs = http_get(alertd.http, "/v1/incidents?state=open",
                               token=operator_token)
    assert st == 200, queue
    assert hdrs.get("content-type", "").startswith("application/json")
    assert isinstance(queue, list)
    assert [i["id"] for i in queue] == expected_ids
    prios = [i["priority"] for i in queue]
    assert prios == [100, 100, 70, 60, 30, 5]
    assert queue[0]["first_seen"] < queue[1]["first_seen"]
    fault = [i for i in queue if i["type"] == "fault"][0]
    assert fault["count"] == 2
    for snap in queue:
        assert SNAPSHOT_FIELDS <= set(snap), snap
        assert snap["state"] == "new"
    # state=open is the default.
    st, queue2, _ = http_get(alertd.http, "/v1/incidents",
                             token=operator_token)
    assert st == 200
    assert [i["id"] for i in queue2] == expected_ids


def test_alertctl_incidents_json_same_order(alertd, operator_token):
    _, expected_ids = _fill_queue(alertd)
    r = alertd.ctl("incidents", "--json")
    data = json.loads(r.stdout)
    assert isinstance(data, list), r.stdout
    assert [i["id"] for i in data] == expected_ids
    assert [i["priority"] for i in data] == [100, 100, 70, 60, 30, 5]


def test_alertctl_incidents_text(alertd):
    ev, body = _post(alertd, type="panic")
    r = alertd.ctl("incidents")
    assert ev["source"]["id"] in r.stdout, r.stdout
    assert str(body["incident_id"]) in r.stdout


def test_incident_snapshot(alertd, operator_token):
    ev = make_event(type="panic", zone="Karsiyaka",
                    label="ESHOT 1436, line 90",
                    location={"lat": 38.4555, "lon": 27.1199})
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    st, snap, hdrs = http_get(alertd.http,
                              "/v1/incidents/%d" % body["incident_id"],
                              token=operator_token)
    assert st == 200, snap
    assert hdrs.get("content-type", "").startswith("application/json")
    assert SNAPSHOT_FIELDS <= set(snap), snap
    assert snap["id"] == body["incident_id"]
    assert snap["state"] == "new"
    assert snap["priority"] == 100
    assert snap["type"] == "panic"
    assert snap["source"] == {"id": ev["source"]["id"], "kind": "bus",
                              "zone": "Karsiyaka",
                              "label": "ESHOT 1436, line 90"}
    assert snap["count"] == 1
    assert RFC3339.match(snap["first_seen"]), snap["first_seen"]
    assert RFC3339.match(snap["last_seen"]), snap["last_seen"]
    assert snap["first_seen"] == snap["last_seen"]
    assert snap["location"] == {"lat": 38.4555, "lon": 27.1199}
    assert snap["escalation_level"] == 0
    assert snap["acked_by"] is None
    assert isinstance(snap["version"], int) and snap["version"] >= 1


def test_snapshot_without_location_or_zone(alertd, operator_token):
    ev = make_event(type="fault", zone=None, label=None, location=None)
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    st, snap, _ = http_get(alertd.http,
                           "/v1/incidents/%d" % body["incident_id"],
                           token=operator_token)
    assert st == 200, snap
    assert snap["location"] is None
    assert snap["source"]["zone"] is None
    assert snap["source"]["label"] is None


def test_unknown_incident_is_404(alertd, operator_token):
    _post(alertd)
    st, body, _ = http_get(alertd.http, "/v1/incidents/987654321",
                           token=operator_token)
    assert st == 404, body
    assert body["error"] == "not_found"
    assert body.get("detail")


def test_malformed_incident_id_is_400(alertd, operator_token):
    st, body, _ = http_get(alertd.http, "/v1/incidents/abc",
                           token=operator_token)
    assert st == 400, body
    assert body["error"] == "invalid_id"


@pytest.mark.parametrize("auth", [None, "Bearer not-a-real-token-" + uid(),
                                  "Basic dXNlcjpwYXNz", "Bearer "])
def test_operator_endpoints_need_a_token(alertd, operator_token, auth):
    _, body = _post(alertd)
    headers = {"Authorization": auth} if auth is not None else {}
    for path in ("/v1/incidents?state=open", "/v1/incidents",
                 "/v1/incidents/%d" % body["incident_id"]):
        st, resp, _ = http_get(alertd.http, path, headers=headers)
        assert st == 401, (path, resp)
        assert resp["error"] == "unauthorized", (path, resp)
        assert resp.get("detail")
    # ... and the real token works.
    st, _, _ = http_get(alertd.http, "/v1/incidents", token=operator_token)
    assert st == 200


def test_operator_role_may_read_the_queue(alertd, add_operator_token):
    tok = add_operator_token("operator")
    _, body = _post(alertd)
    st, queue, _ = http_get(alertd.http, "/v1/incidents", token=tok)
    assert st == 200, queue
    assert [i["id"] for i in queue] == [body["incident_id"]]
