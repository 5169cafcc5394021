"""Audit queries on generated history with known answers: the history of
one incident, one source in a time range, one operator, and the time to
acknowledge / resolve statistics (count, p50, p90, p99, share within the
30 s and 60 s targets) by zone, source kind, priority band and operator;
with alertctl (table, JSON, CSV) and GET /v1/audit (auditor/admin only,
personal attrs masked for roles without the right)."""

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from helpers import http_get, make_event, post_event

T0 = datetime(2026, 1, 10, 10, 0, 0, tzinfo=timezone.utc)
PHONE = "+905551234567"
# A support-line label may name the caller: shown like personal attrs.
LABEL = "caller Zeynep K. 0532"
BUS_LABEL = "ESHOT 101, line 90"

# (incident, zone, kind, priority, operator, tta_s, ttr_s or None)
HISTORY = [
    (101, "Konak", "bus", 100, "ayse", 10, 60),
    (102, "Konak", "bus", 100, "ayse", 20, 120),
    (103, "Konak", "bus", 100, "ayse", 30, 180),
    (104, "Konak", "bus", 100, "mehmet", 40, 240),
    (105, "Konak", "bus", 100, "mehmet", 100, 300),
    (106, "Bornova", "support_line", 70, "mehmet", 5, 65),
    (107, "Bornova", "support_line", 70, "mehmet", 50, None),
    (108, "Bornova", "support_line", 70, "mehmet", 70, 400),
]


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def pct(values, p):
    """PostgreSQL's percentile_cont: linear interpolation."""
    v = sorted(values)
    pos = p * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def insert_history(conn):
    """The incidents of HISTORY, 10 minutes apart from T0, inserted as
    alertd would (the chain triggers link them)."""
    with conn.cursor() as cur:
        for n, (inc, zone, kind, prio, op, tta, ttr) in enumerate(HISTORY):
            opened = T0 + timedelta(minutes=10 * n)
            src = "%s-%d" % (kind.replace("_", ""), inc)
            attrs = {"route": "90"}
            label = BUS_LABEL
            if kind == "support_line":
                attrs = {"caller_phone": PHONE, "caller_name": "Zeynep K."}
                label = LABEL
            payload = {"event_id": "gen-%d" % inc,
                       "source": {"id": src, "kind": kind, "zone": zone,
                                  "label": label},
                       "type": "panic" if kind == "bus" else "call_request",
                       "attrs": attrs}
            cur.execute(
                "INSERT INTO events (accept_seq, event_id, source_id, "
                "source_kind, type, outcome, incident_id, priority, "
                "received_at, payload) VALUES (%s, %s, %s, %s, %s, 'new', "
                "%s, %s, %s, %s)",
                (inc, "gen-%d" % inc, src, kind, payload["type"], inc, prio,
                 opened, json.dumps(payload)))
            steps = [(None, "new", "alertd", 0)]
            steps.append(("new", "acknowledged", op, tta))
            if ttr is not None:
                steps.append(("acknowledged", "resolved", op, ttr))
            for frm, to, actor, dt in steps:
                cur.execute(
                    "INSERT INTO incident_transitions (transition_id, "
                    "incident_id, from_state, to_state, actor, at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    ("%d:%s" % (inc, to), inc, frm, to, actor,
                     opened + timedelta(seconds=dt)))
        # a second event of incident 101, 5 s after it opened (merged)
        cur.execute(
            "INSERT INTO events (accept_seq, event_id, source_id, "
            "source_kind, type, outcome, incident_id, priority, "
            "received_at, payload) VALUES (1001, 'gen-101b', 'bus-101', "
            "'bus', 'panic', 'merged', 101, 100, %s, '{}')",
            (T0 + timedelta(seconds=5),))


def expected_stats(metric, by):
    idx = {"zone": 1, "kind": 2, "operator": 4}
    groups = {}
    for h in HISTORY:
        secs = h[5] if metric == "acknowledge" else h[6]
        if secs is None:
            continue
        key = "critical" if by == "priority" and h[3] >= 90 else \
            "high" if by == "priority" else h[idx[by]]
        groups.setdefault(key, []).append(secs)
    return groups


@pytest.fixture
def history(test_env):
    insert_history(test_env.connect())
    return test_env


def ctl_json(alertctl, *args):
    r = alertctl("audit", *args, "--format", "json")
    return json.loads(r.stdout)


@pytest.mark.parametrize("by", ["zone", "kind", "priority", "operator"])
def test_stats_known_answers(history, alertctl, by):
    rows = ctl_json(alertctl, "stats", "--by", by, "--from", iso(T0),
                    "--to", iso(T0 + timedelta(days=1)))
    got = {(r["metric"], r["key"]): r for r in rows}
    want_keys = set()
    for metric in ("acknowledge", "resolve"):
        for key, vals in expected_stats(metric, by).items():
            want_keys.add((metric, key))
            r = got[(metric, key)]
            assert r["count"] == len(vals), r
            for p, name in ((0.5, "p50_s"), (0.9, "p90_s"),
                            (0.99, "p99_s")):
                assert r[name] == pytest.approx(pct(vals, p)), (name, r)
            for t in (30, 60):
                share = sum(1 for v in vals if v <= t) / len(vals)
                assert r["within_target"][str(t)] == pytest.approx(share)
    assert set(got) == want_keys


def test_stats_range_excludes_other_incidents(history, alertctl):
    # only the first three incidents opened in [T0, T0+25min)
    rows = ctl_json(alertctl, "stats", "--by", "zone", "--from", iso(T0),
                    "--to", iso(T0 + timedelta(minutes=25)))
    ack = [r for r in rows if r["metric"] == "acknowledge"]
    assert [(r["key"], r["count"]) for r in ack] == [("Konak", 3)]
    assert ack[0]["p50_s"] == pytest.approx(20)


def test_incident_history_in_time_order(history, alertctl):
    rows = ctl_json(alertctl, "incident", "101")
    assert [(r["kind"], r["summary"]) for r in rows] == [
        ("event", "panic new priority 100"),
        ("transition", "- -> new"),
        ("event", "panic merged priority 100"),
        ("transition", "new -> acknowledged"),
        ("transition", "acknowledged -> resolved"),
    ]
    assert [r["actor"] for r in rows][3:] == ["ayse", "ayse"]
    assert rows[0]["at"] == "2026-01-10T10:00:00.000000Z"
    assert all(r["incident_id"] == 101 for r in rows)


def test_source_in_a_time_range(history, alertctl):
    rows = ctl_json(alertctl, "source", "bus-101", "--from", iso(T0),
                    "--to", iso(T0 + timedelta(seconds=15)))
    assert [(r["kind"], r["ref"]) for r in rows] == [
        ("event", "gen-101"), ("transition", "101:new"),
        ("event", "gen-101b"), ("transition", "101:acknowledged")]
    assert rows[0]["source_id"] == "bus-101"


def test_everything_one_operator_did(history, alertctl):
    rows = ctl_json(alertctl, "operator", "ayse")
    assert len(rows) == 6
    assert {r["actor"] for r in rows} == {"ayse"}
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)


def test_table_and_csv_output(history, alertctl):
    table = alertctl("audit", "incident", "106").stdout.splitlines()
    assert table[0].split()[:3] == ["at", "kind", "incident_id"]
    assert len(table) == 1 + 4
    assert PHONE not in "\n".join(table)        # masked by default
    assert LABEL not in "\n".join(table)
    assert ctl_json(alertctl, "incident", "106")[0]["data"]["source"][
        "label"] == "***"
    assert ctl_json(alertctl, "incident", "101")[0]["data"]["source"][
        "label"] == BUS_LABEL
    out = alertctl("audit", "stats", "--by", "operator", "--format",
                   "csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    ayse = [r for r in rows if r["key"] == "ayse"
            and r["metric"] == "acknowledge"][0]
    assert ayse["count"] == "3" and float(ayse["p50_s"]) == 20.0
    raw = alertctl("audit", "incident", "106", "--personal").stdout
    assert PHONE in raw and LABEL in raw


def test_audit_api_roles_and_masking(history, alertd, add_operator_token):
    op = add_operator_token("operator")
    st, body, _ = http_get(alertd.http, "/v1/audit?incident_id=106",
                           token=op)
    assert st == 403 and body["error"] == "forbidden", body
    st, body, _ = http_get(alertd.http, "/v1/audit?incident_id=106")
    assert st == 401

    auditor = add_operator_token("auditor")
    st, body, _ = http_get(alertd.http, "/v1/audit?incident_id=106",
                           token=auditor)
    assert st == 200, body
    ev = [r for r in body["rows"] if r["kind"] == "event"][0]
    assert ev["data"]["attrs"] == {"caller_phone": "***",
                                   "caller_name": "***"}
    # The label too, as the stream and GET /v1/incidents show it.
    assert ev["data"]["source"]["label"] == "***", ev
    assert PHONE not in json.dumps(body) and LABEL not in json.dumps(body)
    st, body, _ = http_get(alertd.http, "/v1/audit?incident_id=101",
                           token=auditor)
    ev = [r for r in body["rows"] if r["kind"] == "event"][0]
    assert ev["data"]["source"]["label"] == BUS_LABEL, ev

    admin = add_operator_token("admin")
    st, body, _ = http_get(alertd.http, "/v1/audit?incident_id=106",
                           token=admin)
    ev = [r for r in body["rows"] if r["kind"] == "event"][0]
    assert ev["data"]["attrs"]["caller_phone"] == PHONE
    assert ev["data"]["source"]["label"] == LABEL

    st, body, _ = http_get(alertd.http, "/v1/audit?stats=1&by=operator",
                           token=auditor)
    assert st == 200
    got = {(r["metric"], r["key"]): r["count"] for r in body["rows"]}
    assert got[("acknowledge", "mehmet")] == 5
    st, body, _ = http_get(alertd.http, "/v1/audit?operator=ayse&from="
                           "not-a-time", token=auditor)
    assert st == 400, body
    st, body, _ = http_get(alertd.http, "/v1/audit", token=auditor)
    assert st == 400


def test_audit_api_checks_its_parameters(history, alertd,
                                         add_operator_token):
    """A bad from, to or limit is answered by alertd itself, naming the
    parameter (PostgreSQL's refusal names none), without a query."""
    auditor = add_operator_token("auditor")
    bad = [("from", "not-a-time"), ("to", "2026-13-01T00:00:00Z"),
           ("from", "2026-11-21%2022:14"), ("limit", "abc"), ("limit", "0"),
           ("limit", "-1"), ("limit", "99999999999"), ("limit", "5x"),
           ("limit", "100001")]
    for name, value in bad:
        st, body, _ = http_get(alertd.http, "/v1/audit?source_id=bus-101&"
                               "%s=%s" % (name, value), token=auditor)
        assert st == 400, (name, value, body)
        assert body["error"] == "invalid_field", body
        assert body["field"] == name, body
    # RFC 3339 as the contract allows it: lower-case t and an offset.
    frm = iso(T0).replace("T", "t").replace("Z", "+00:00")
    to = iso(T0 + timedelta(seconds=15))
    st, body, _ = http_get(alertd.http, "/v1/audit?source_id=bus-101&from="
                           + frm.replace("+", "%2B") + "&to=" + to +
                           "&limit=3", token=auditor)
    assert st == 200, body
    assert [r["ref"] for r in body["rows"]] == [
        "gen-101", "101:new", "gen-101b"]


@pytest.mark.parametrize("phone_key", ["caller_phone", "Caller_Phone",
                                       "CALLER_PHONE"])
def test_personal_attrs_stored_hashed_not_logged(alertd, test_env,
                                                 phone_key):
    """Stored as an HMAC, never logged; the device spells the attr names,
    so "Caller_Phone" is the caller_phone of [audit] personal_attrs, not a
    way past it."""
    ev = make_event(kind="support_line", type="call_request",
                    attrs={phone_key: PHONE, "line": "women"})
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    with test_env.connect().cursor() as cur:
        cur.execute("SELECT payload FROM events WHERE event_id = %s",
                    (ev["event_id"],))
        payload = cur.fetchone()[0]
    assert payload["attrs"]["line"] == "women"
    assert payload["attrs"][phone_key].startswith("hmac-sha256:")
    assert PHONE not in json.dumps(payload)
    assert PHONE not in alertd.log()


def test_queries_use_indexes(history, test_env):
    conn = test_env.connect()
    with conn.cursor() as cur:
        cur.execute("SET enable_seqscan = off")
        for sql in (
            "SELECT * FROM audit_log WHERE incident_id = 101",
            "SELECT * FROM audit_log WHERE actor = 'ayse' AND "
            "at >= '2026-01-10' AND at < '2026-01-11'",
            "SELECT * FROM audit_log WHERE at >= '2026-01-10' AND "
            "at < '2026-01-11' AND kind = 'event' AND source_id = 'bus-101'",
        ):
            cur.execute("EXPLAIN " + sql)
            plan = "\n".join(r[0] for r in cur.fetchall())
            assert "Seq Scan" not in plan, plan
            assert "Index" in plan, plan


def test_payload_reals_are_shown_as_sent(alertd):
    """A device's 38.4555 is stored and shown as 38.4555, not as the 17
    digits jansson prints by default (38.455500000000001)."""
    ev = make_event()
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    with alertd.db().cursor() as cur:
        cur.execute("SELECT payload::text FROM events WHERE event_id = %s",
                    (ev["event_id"],))
        stored = cur.fetchone()[0]
    assert '"lat": 38.4555' in stored, stored
    out = alertd.ctl("audit", "incident", str(body["incident_id"]),
                     "--format", "json").stdout
    assert "38.4555," in out or "38.4555}" in out, out
    assert "38.455500000000001" not in out, out
