"""Operator actions (POST /v1/incidents/{id}/ack|resolve|note|transfer|
reopen) and operator management (alertctl operator add|list|revoke):
atomic, versioned, role- and zone-checked, every change an audit row."""

import json
import threading
import uuid

from helpers import (SseClient, http_get, http_request, make_event,
                     post_event, wait_until)


def _name(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def _open(alertd, **kw):
    st, body, _ = post_event(alertd.http, make_event(type="panic", **kw))
    assert st == 202, body
    return body["incident_id"]


def act(alertd, token, iid, action, body=None):
    data = json.dumps(body).encode() if body is not None else None
    st, resp, _ = http_request(alertd.http, "POST",
                               "/v1/incidents/%s/%s" % (iid, action),
                               body=data, token=token,
                               headers={"Content-Type": "application/json"})
    return st, resp


def get(alertd, token, iid):
    st, snap, _ = http_get(alertd.http, "/v1/incidents/%s" % iid, token)
    assert st == 200, snap
    return snap


def transitions(alertd, iid):
    with alertd.db() as conn, conn.cursor() as cur:
        cur.execute("SELECT from_state, to_state, actor, detail "
                    "FROM incident_transitions WHERE incident_id = %s "
                    "ORDER BY seq", (iid,))
        return cur.fetchall()


def test_ack_then_conflict_names_the_holder(alertd, add_operator_token):
    a, b = _name("ayse"), _name("mehmet")
    ta, tb = add_operator_token("operator", a), add_operator_token(
        "operator", b)
    iid = _open(alertd)
    st, snap = act(alertd, ta, iid, "ack")
    assert st == 200, snap
    assert snap["state"] == "acknowledged" and snap["acked_by"] == a
    assert snap["version"] == 2
    # The holder acking again changes nothing.
    st, again = act(alertd, ta, iid, "ack")
    assert st == 200 and again["version"] == 2, again
    st, err = act(alertd, tb, iid, "ack")
    assert st == 409, err
    assert err["error"] == "already_acknowledged"
    assert err["acked_by"] == a and a in err["detail"]
    assert get(alertd, tb, iid)["acked_by"] == a
    wait_until(lambda: any(r[1] == "acknowledged" and r[2] == a
                           for r in transitions(alertd, iid)),
               what="ack audit row")


def test_concurrent_acks_have_exactly_one_winner(alertd, add_operator_token):
    names = [_name("op%d" % i) for i in range(12)]
    tokens = [add_operator_token("operator", n) for n in names]
    iid = _open(alertd)
    results = [None] * len(tokens)
    go = threading.Event()

    def run(i):
        go.wait(10)
        results[i] = act(alertd, tokens[i], iid, "ack")

    threads = [threading.Thread(target=run, args=(i,))
               for i in range(len(tokens))]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(30)
    wins = [i for i, r in enumerate(results) if r[0] == 200]
    assert len(wins) == 1, results
    winner = names[wins[0]]
    for i, (st, body) in enumerate(results):
        if i != wins[0]:
            assert st == 409, body
            assert body["acked_by"] == winner, body
    wait_until(lambda: len(transitions(alertd, iid)) >= 2,
               what="audit rows")
    acks = [r for r in transitions(alertd, iid) if r[1] == "acknowledged"]
    assert len(acks) == 1 and acks[0][2] == winner, acks


def test_stale_version_is_refused(alertd, add_operator_token):
    tok = add_operator_token("operator")
    iid = _open(alertd)
    v = get(alertd, tok, iid)["version"]
    # The incident changes under the operator's eyes (a merged press).
    st, err = act(alertd, tok, iid, "note", {"note": "calling", "version": v})
    assert st == 200, err
    st, err = act(alertd, tok, iid, "ack", {"version": v})
    assert st == 409 and err["error"] == "stale_version", err
    assert err["version"] == v + 1
    assert get(alertd, tok, iid)["state"] == "new"
    st, snap = act(alertd, tok, iid, "ack", {"version": v + 1})
    assert st == 200 and snap["state"] == "acknowledged", snap


def test_resolve_closes_and_late_ack_changes_nothing(alertd,
                                                     add_operator_token):
    a = _name("res")
    ta, tb = add_operator_token("operator", a), add_operator_token("operator")
    iid = _open(alertd)
    st, err = act(alertd, ta, iid, "resolve", {})
    assert st == 400 and err["field"] == "note", err
    assert act(alertd, ta, iid, "ack")[0] == 200
    st, snap = act(alertd, ta, iid, "resolve",
                   {"note": "patrol on site", "outcome": "false_alarm"})
    assert st == 200 and snap["state"] == "resolved", snap
    st, queue, _ = http_get(alertd.http, "/v1/incidents?state=open", ta)
    assert iid not in [i["id"] for i in queue]
    before = get(alertd, ta, iid)
    for tok in (ta, tb):
        st, err = act(alertd, tok, iid, "ack")
        assert st == 409 and err["error"] == "already_resolved", err
    assert get(alertd, ta, iid) == before
    # The next press from the source opens a new incident.
    wait_until(lambda: [r[1] for r in transitions(alertd, iid)] ==
               ["new", "acknowledged", "resolved"], what="audit rows")
    row = transitions(alertd, iid)[-1]
    assert row[2] == a and row[3]["note"] == "patrol on site"
    assert row[3]["outcome"] == "false_alarm"


def test_roles(alertd, add_operator_token):
    aud, op = add_operator_token("auditor"), add_operator_token("operator")
    sup = add_operator_token("supervisor")
    iid = _open(alertd)
    st, err = act(alertd, aud, iid, "ack")
    assert st == 403, err
    assert act(alertd, op, iid, "resolve", {"note": "done"})[0] == 200
    st, err = act(alertd, op, iid, "reopen")
    assert st == 403, err
    st, snap = act(alertd, sup, iid, "reopen", {"note": "caller rang again"})
    assert st == 200 and snap["state"] == "new" and snap["acked_by"] is None
    st, queue, _ = http_get(alertd.http, "/v1/incidents?state=open", op)
    assert iid in [i["id"] for i in queue]
    st, err = act(alertd, sup, iid, "reopen")
    assert st == 409 and err["error"] == "not_resolved", err
    st, err = act(alertd, op, iid, "escalate")
    assert st == 404, err
    st, err = act(alertd, op, 999999999, "ack")
    assert st == 404, err
    st, err = act(alertd, None, iid, "ack")
    assert st == 401, err


def test_zones_and_transfer(alertd, alertctl, add_operator_token):
    karsi = _name("karsi")
    r = alertctl("operator", "add", karsi, "--role", "operator",
                 "--zones", "Karsiyaka")
    tk = r.stdout.strip().splitlines()[-1]
    sup = add_operator_token("supervisor")
    iid = _open(alertd, zone="Bornova")
    st, err = act(alertd, tk, iid, "ack")
    assert st == 403, err
    st, snap = act(alertd, sup, iid, "transfer", {"to_zone": "Karsiyaka"})
    assert st == 200, snap
    assert snap["source"]["zone"] == "Karsiyaka" and snap["state"] == "new"
    st, snap = act(alertd, tk, iid, "ack")
    assert st == 200 and snap["acked_by"] == karsi, snap
    other = _name("other")
    st, err = act(alertd, tk, iid, "transfer", {"to_operator": other})
    assert st == 400 and err["field"] == "to_operator", err
    alertctl("operator", "add", other, "--role", "operator")
    st, snap = act(alertd, tk, iid, "transfer", {"to_operator": other})
    assert st == 200 and snap["acked_by"] == other, snap
    st, err = act(alertd, tk, iid, "transfer", {})
    assert st == 400, err


def test_operator_list_and_revoke_cuts_the_stream(alertd, alertctl):
    name = _name("night")
    r = alertctl("operator", "add", name, "--role", "supervisor",
                 "--zones", "Karsiyaka,Bornova")
    tok = r.stdout.strip().splitlines()[-1]
    listed = json.loads(alertctl("operator", "list", "--json").stdout)
    me = [o for o in listed if o["name"] == name]
    assert me and me[0]["role"] == "supervisor"
    assert me[0]["zones"] == "Karsiyaka,Bornova" and me[0]["revoked_at"] is None
    assert alertctl("operator", "add", "x", "--role", "operator",
                    "--zones", "a,,b", check=False).returncode == 2

    with SseClient(alertd.http, tok) as sse:
        assert sse.status == 200
        _open(alertd)
        assert sse.next_event(10)["event"] == "incident"
        alertctl("operator", "revoke", name)
        try:
            while True:
                sse.next_event(10)
        except EOFError:
            pass
        assert any("revoked" in c for c in sse.comments), sse.comments
    st, _, _ = http_get(alertd.http, "/v1/incidents", tok)
    assert st == 401
    assert alertctl("operator", "revoke", name, check=False).returncode == 1
    listed = json.loads(alertctl("operator", "list", "--json").stdout)
    assert [o for o in listed if o["name"] == name][0]["revoked_at"]
    alertd.wait_log("token revoked")


def test_transfer_only_to_someone_who_can_hold_the_incident(
        alertd, alertctl, add_operator_token):
    """A transfer makes the target the holder and stops escalation: a
    target limited to other zones, or an auditor, could neither see nor
    resolve it, and nobody would be alerted. Refused, nothing changes."""
    karsi = _name("karsi")
    r = alertctl("operator", "add", karsi, "--role", "operator",
                 "--zones", "Karsiyaka")
    tk = r.stdout.strip().splitlines()[-1]
    aud = _name("aud")
    add_operator_token("auditor", aud)
    me = add_operator_token("operator")
    iid = _open(alertd, zone="Bornova")
    before = get(alertd, me, iid)
    st, err = act(alertd, me, iid, "transfer", {"to_operator": karsi})
    assert st == 409 and err["error"] == "target_out_of_zone", err
    assert karsi in err["detail"] and err["state"] == "new", err
    assert err["version"] == before["version"]
    st, err = act(alertd, me, iid, "transfer", {"to_operator": aud})
    assert st == 400 and err["error"] == "invalid_field", err
    assert err["field"] == "to_operator" and "auditor" in err["detail"], err
    assert get(alertd, me, iid) == before
    # Escalation still armed: the incident is in esc:due.
    assert alertd.redis().zscore(alertd.prefix + "esc:due", str(iid)) \
        is not None
    # Into the target's zone first, then the transfer is fine.
    sup = add_operator_token("supervisor")
    assert act(alertd, sup, iid, "transfer",
               {"to_zone": "Karsiyaka"})[0] == 200
    st, snap = act(alertd, me, iid, "transfer", {"to_operator": karsi})
    assert st == 200 and snap["acked_by"] == karsi, snap
    assert get(alertd, tk, iid)["acked_by"] == karsi
    st, snap = act(alertd, tk, iid, "resolve", {"note": "done"})
    assert st == 200 and snap["state"] == "resolved", snap


def test_transfer_zone_mode_first_any_operator(alertd_factory, alertctl,
                                               add_operator_token):
    """With zone_mode = first every operator may act on every zone, so a
    zoned operator may also be given another zone's incident."""
    d = alertd_factory(operators__zone_mode="first")
    karsi = _name("karsi")
    tk = alertctl("operator", "add", karsi, "--role", "operator",
                  "--zones", "Karsiyaka").stdout.strip().splitlines()[-1]
    me = add_operator_token("operator")
    iid = _open(d, zone="Bornova")
    st, snap = act(d, me, iid, "transfer", {"to_operator": karsi})
    assert st == 200 and snap["acked_by"] == karsi, snap
    assert act(d, tk, iid, "resolve", {"note": "done"})[0] == 200


def test_stale_version_out_of_zone_is_forbidden(alertd, alertctl,
                                                add_operator_token):
    """The zone check comes first: a wrong version on another zone's
    incident is 403, not a 409 naming its state, version and holder."""
    karsi = _name("karsi")
    r = alertctl("operator", "add", karsi, "--role", "operator",
                 "--zones", "Karsiyaka")
    tk = r.stdout.strip().splitlines()[-1]
    holder = _name("holder")
    th = add_operator_token("operator", holder)
    iid = _open(alertd, zone="Bornova")
    assert act(alertd, th, iid, "ack")[0] == 200
    for action, body in (("note", {"note": "x", "version": 99}),
                         ("ack", {"version": 99}),
                         ("transfer", {"to_zone": "Karsiyaka",
                                       "version": 99})):
        st, err = act(alertd, tk, iid, action, body)
        assert st == 403 and err["error"] == "forbidden", (action, err)
        assert holder not in json.dumps(err) and "version" not in err, err


def test_oversized_action_body_is_body_too_large(alertd, add_operator_token):
    """docs/api.md: 413 body_too_large, the code metrics counts."""
    tok = add_operator_token("operator")
    iid = _open(alertd)
    st, err = act(alertd, tok, iid, "note", {"note": "x" * 20000})
    assert st == 413 and err["error"] == "body_too_large", err
    st, text, _ = http_request(alertd.http, "GET", "/metrics")
    text = text if isinstance(text, str) else text.decode()
    line = [ln for ln in text.splitlines()
            if ln.startswith('alertd_errors_total{code="body_too_large"}')]
    assert line and int(line[0].split()[-1]) >= 1, line
