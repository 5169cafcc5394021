"""Issue 3 device registry and supervision: `alertctl sources import` and
`alertctl sources`, the unknown-source policy, heartbeats that make no
incident, and a silent device that opens one device_offline incident which
its next heartbeat resolves, both transitions in PostgreSQL."""

import json
import re
import time
import uuid

import pytest

from helpers import (TcpClient, http_get, make_event, post_event, uid,
                     wait_until)


def _csv(tmp_path, rows, header="id,kind,zone,label,secret_group,supervision_s"):
    p = tmp_path / ("fleet-%s.csv" % uid(6))
    p.write_text(header + "\n" + "\n".join(rows) + "\n")
    return p


def _queue(d, token):
    st, q, _ = http_get(d.http, "/v1/incidents?state=open", token=token)
    assert st == 200, q
    return q


def _offline(q, source_id):
    return [i for i in q if i["type"] == "device_offline"
            and i["source"]["id"] == source_id]


def test_import_and_list_sources(alertctl, tmp_path, test_env, redis_server):
    a, b = "bus-" + uid(6), "ferry-" + uid(6)
    path = _csv(tmp_path, [
        '%s,bus,Karsiyaka,"ESHOT 1436, line 90",buses,' % a,
        "%s,ferry,Konak,Ferry Kordon,ferries,300" % b,
    ])
    r = alertctl("sources", "import", str(path))
    assert "imported 2 sources" in r.stdout
    cur = test_env.connect().cursor()
    cur.execute("SELECT id, kind, zone, label, supervision_s FROM sources "
                "ORDER BY id")
    assert cur.fetchall() == [
        (a, "bus", "Karsiyaka", "ESHOT 1436, line 90", None),
        (b, "ferry", "Konak", "Ferry Kordon", 300)]
    rc = redis_server.client()
    h = rc.hgetall(test_env.prefix + "src:" + a)
    assert h["kind"] == "bus" and h["state"] == "unknown"
    # Supervised from the import on: bus default 180 s, ferry its own 300.
    now = time.time() * 1000
    due_a = rc.zscore(test_env.prefix + "supervise", a)
    due_b = rc.zscore(test_env.prefix + "supervise", b)
    assert 170000 < due_a - now <= 181000
    assert 290000 < due_b - now <= 301000
    out = alertctl("sources").stdout
    line = [ln for ln in out.splitlines() if ln.startswith(a)][0]
    assert "bus" in line and "unknown" in line and "never" in line
    js = json.loads(alertctl("sources", "--json").stdout)
    assert [s["id"] for s in js] == [a, b]
    # Importing again updates, never duplicates.
    path2 = _csv(tmp_path, ["%s,bus,Bornova,,," % a], header="id,kind,zone,"
                 "label,secret_group,supervision_s")
    alertctl("sources", "import", str(path2))
    cur.execute("SELECT zone FROM sources WHERE id = %s", (a,))
    assert cur.fetchall() == [("Bornova",)]


def test_import_rejects_a_bad_file_and_writes_nothing(alertctl, tmp_path,
                                                      test_env):
    path = _csv(tmp_path, ["bus-ok-1,bus,,,,", "bus-bad-2,tram,,,,"])
    r = alertctl("sources", "import", str(path), check=False)
    assert r.returncode == 2
    assert ":3: invalid kind" in r.stderr
    cur = test_env.connect().cursor()
    cur.execute("SELECT count(*) FROM sources")
    assert cur.fetchone()[0] == 0


def test_unknown_source_policy_reject(alertd_factory, alertctl, tmp_path,
                                      operator_token):
    known = "bus-" + uid(6)
    alertctl("sources", "import", str(_csv(tmp_path,
                                           ["%s,park,Bayrakli,,," % known])))
    d = alertd_factory(sources={"unknown": "reject"},
                       priority={"kind_park": 7})
    st, body, _ = post_event(d.http, make_event(source_id="bus-" + uid(6)))
    assert st == 403 and body["error"] == "unknown_source", body
    st, body, _ = post_event(d.http, make_event(source_id=known,
                                                kind="bus", zone="Konak"))
    assert st == 202 and body["outcome"] == "new", body
    # The registry's kind and zone win over what the device says.
    assert body["priority"] == 107
    path = "/v1/incidents/%d" % body["incident_id"]
    snap = wait_until(lambda: http_get(d.http, path, token=operator_token)[0]
                      == 200 and http_get(d.http, path,
                                          token=operator_token)[1], 15,
                      what="the incident")
    assert snap["source"]["kind"] == "park"
    assert snap["source"]["zone"] == "Bayrakli"
    st, snap, _ = http_get(d.http, "/metrics")
    assert 'alertd_errors_total{code="unknown_source"} 1' in snap
    with TcpClient(*d.tcp) as c:
        c.send_event(make_event(source_id="bus-" + uid(6)))
        f = c.read_frame()
    assert f.HasField("nack") and f.nack.code == "unknown_source"
    assert f.nack.retry is False


def test_production_default_rejects_unknown_sources(make_config):
    """The shipped default is reject; the dev config accepts."""
    import subprocess
    from helpers import ALERTD, REPO
    out = subprocess.run([str(ALERTD), "--print-defaults"],
                         capture_output=True, text=True, timeout=30).stdout
    sec = out.split("[sources]", 1)[1]
    assert "unknown = reject" in sec
    dev = (REPO / "config" / "alertd.dev.ini").read_text()
    assert "unknown = accept" in dev


@pytest.mark.kill_after(90)
def test_silent_device_opens_one_offline_incident_and_heartbeat_resolves(
        alertd_factory, alertctl, tmp_path, operator_token, test_env):
    dev = "bus-" + uid(6)
    alertctl("sources", "import", str(_csv(
        tmp_path, ["%s,bus,Buca,ESHOT 77,buses,2" % dev])))
    d = alertd_factory(sources={"unknown": "reject",
                                "supervision_grace_s": 0})
    wait_until(lambda: http_get(d.http, "/v1/incidents?state=open",
                                token=operator_token)[0] == 200, 15,
               what="the operator API")

    # A heartbeat: accepted, no incident (outcome merged, incident 0).
    st, hb, _ = post_event(d.http, make_event(source_id=dev,
                                              type="heartbeat"))
    assert st == 202, hb
    assert hb["outcome"] == "merged" and hb["incident_id"] == 0
    assert _offline(_queue(d, operator_token), dev) == []
    assert [i for i in _queue(d, operator_token)
            if i["source"]["id"] == dev] == []

    # Silence longer than 2 s: one device_offline incident.
    inc = wait_until(lambda: _offline(_queue(d, operator_token), dev), 15,
                     what="device_offline for the silent device")
    assert len(inc) == 1
    off = inc[0]
    assert off["state"] == "new" and off["priority"] == 20
    assert off["source"]["zone"] == "Buca"
    # Still silent, several sweeps later: still exactly one.
    time.sleep(4)
    q = _queue(d, operator_token)
    assert [i["id"] for i in _offline(q, dev)] == [off["id"]]
    st, text, _ = http_get(d.http, "/metrics")
    assert re.search(r"^alertd_device_offline_opened 1(\.0+)?$", text, re.M), \
        text
    out = alertctl("sources").stdout
    assert [ln for ln in out.splitlines() if ln.startswith(dev)][0] \
        .split()[3] == "offline"

    # The device is heard again: resolved, out of the queue.
    st, hb2, _ = post_event(d.http, make_event(source_id=dev,
                                               type="heartbeat"))
    assert st == 202 and hb2["incident_id"] == 0
    assert _offline(_queue(d, operator_token), dev) == []
    st, snap, _ = http_get(d.http, "/v1/incidents/%d" % off["id"],
                           token=operator_token)
    assert st == 200 and snap["state"] == "resolved", snap
    assert snap["version"] == 2

    # Both transitions are in PostgreSQL.
    cur = test_env.connect().cursor()

    def transitions():
        cur.execute("SELECT transition_id, from_state, to_state, actor, "
                    "detail FROM incident_transitions WHERE incident_id = %s "
                    "ORDER BY at, seq", (off["id"],))
        return cur.fetchall()

    rows = wait_until(lambda: len(transitions()) == 2 and transitions(), 15,
                      what="both transitions in PostgreSQL")
    assert rows[0][:4] == ("%d:open" % off["id"], None, "new", "alertd")
    assert rows[0][4]["reason"] == "device silent"
    assert rows[1][:4] == ("%d:2" % off["id"], "new", "resolved", "alertd")
    assert rows[1][4]["reason"] == "device heard again"
    # The heartbeats are audited as events, with no incident.
    cur.execute("SELECT count(*) FROM events WHERE source_id = %s AND "
                "type = 'heartbeat' AND incident_id = 0", (dev,))
    assert cur.fetchone()[0] == 2
    line = [ln for ln in alertctl("sources").stdout.splitlines()
            if ln.startswith(dev)][0]
    assert line.split()[3] == "online"

    # A new silence opens a new incident: once per silence, not per check.
    again = wait_until(lambda: _offline(_queue(d, operator_token), dev), 15,
                       what="a second device_offline after a new silence")
    assert len(again) == 1 and again[0]["id"] != off["id"]


@pytest.mark.kill_after(90)
def test_registry_reloaded_from_postgres_after_redis_lost_it(
        alertd_factory, alertctl, tmp_path, redis_server, test_env):
    known = "bus-" + uid(6)
    alertctl("sources", "import", str(_csv(
        tmp_path, ["%s,stop,Gaziemir,Stop 881,,600" % known])))
    d = alertd_factory(sources={"unknown": "reject"})
    rc = redis_server.client()
    keys = rc.keys(test_env.prefix + "src:*") + \
        [test_env.prefix + "sources", test_env.prefix + "supervise"]
    rc.delete(*keys)
    # Registry gone: fail open, an alarm is never refused for that.
    st, body, _ = post_event(d.http, make_event(source_id="bus-" + uid(6)))
    assert st == 202, body
    # The janitor's check (every 10 s) loads it back from PostgreSQL.
    wait_until(lambda: rc.exists(test_env.prefix + "sources"), 25,
               what="the registry back in Redis")
    h = rc.hgetall(test_env.prefix + "src:" + known)
    assert h["kind"] == "stop" and h["zone"] == "Gaziemir"
    assert h["interval_s"] == "600"
    assert rc.zscore(test_env.prefix + "supervise", known) is not None
    d.wait_log("registry: loaded 1 sources")
    st, body, _ = post_event(d.http, make_event(source_id="bus-" + uid(6)))
    assert st == 403 and body["error"] == "unknown_source"
    st, body, _ = post_event(d.http, make_event(source_id=known))
    assert st == 202


def test_no_offline_during_the_start_up_grace(alertd_factory, alertctl,
                                              tmp_path, operator_token):
    """Devices could not be heard while alertd was down: the sweep waits
    supervision_grace_s after start before it declares any offline."""
    dev = "bus-" + uid(6)
    alertctl("sources", "import", str(_csv(
        tmp_path, ["%s,bus,Buca,,,1" % dev])))
    time.sleep(1.5)                       # overdue before alertd starts
    d = alertd_factory(sources={"supervision_grace_s": 60})
    time.sleep(4)
    q = wait_until(lambda: http_get(d.http, "/v1/incidents?state=open",
                                    token=operator_token), 15,
                   what="the queue")
    assert q[0] == 200
    assert _offline(q[1], dev) == []


@pytest.mark.kill_after(120)
def test_import_the_city_fleet(alertctl, tmp_path, test_env, redis_server):
    """1,436 buses and 20 ferries in one import."""
    rows = ["bus-%04d,bus,Zone%02d,ESHOT %d,buses," % (i, i % 30, i)
            for i in range(1, 1437)]
    rows += ["ferry-%02d,ferry,Gulf,Ferry %d,ferries," % (i, i)
             for i in range(1, 21)]
    t = time.monotonic()
    r = alertctl("sources", "import", str(_csv(tmp_path, rows)),
                 timeout=100)
    print("\nimport of 1456 sources: %.2f s" % (time.monotonic() - t))
    assert "imported 1456 sources" in r.stdout
    js = json.loads(alertctl("sources", "--json").stdout)
    assert len(js) == 1456
    assert {s["kind"] for s in js} == {"bus", "ferry"}
    rc = redis_server.client()
    assert rc.scard(test_env.prefix + "sources") == 1456
    assert rc.zcard(test_env.prefix + "supervise") == 1456


def _opened(d):
    st, text, _ = http_get(d.http, "/metrics")
    assert st == 200
    m = re.search(r"^alertd_device_offline_opened (\d+)", text, re.M)
    assert m, text
    return int(m.group(1))


@pytest.mark.kill_after(90)
def test_a_silent_district_is_swept_in_short_slices_within_one_tick(
        alertd_factory, alertctl, tmp_path, test_env):
    """A power cut silences 100 devices at once. The sweep opens their
    device_offline incidents in script calls of at most 32, so that no
    call holds Redis for long, one after the other up to
    supervision_batch: all 100 at the same tick, not 32 a second."""
    devs = ["stop-" + uid(8) for _ in range(100)]
    alertctl("sources", "import", str(_csv(
        tmp_path, ["%s,stop,Konak,,stops,3600" % s for s in devs])))
    d = alertd_factory(sources={"unknown": "reject",
                                "supervision_grace_s": 0})
    r = d.redis()
    wait_until(lambda: all(r.exists(d.prefix + "src:" + s) for s in devs),
               15, what="the registry in Redis")
    assert _opened(d) == 0
    # Every device overdue now (their last heartbeat an hour ago).
    r.zadd(d.prefix + "supervise", {s: 0 for s in devs})
    wait_until(lambda: _opened(d) > 0, 5, interval=0.02,
               what="the first sweep slice")
    t0 = time.monotonic()
    wait_until(lambda: _opened(d) == 100, 5, interval=0.02,
               what="every silent device's incident")
    assert time.monotonic() - t0 < 0.9
    assert r.zcard(d.prefix + "supervise") == 0
    assert all(r.get(d.prefix + "open:%s:device_offline" % s) for s in devs)


@pytest.mark.kill_after(90)
def test_sweep_slices_stop_at_supervision_batch_a_tick(
        alertd_factory, alertctl, tmp_path, test_env):
    """supervision_batch still bounds what one tick opens: 40 of 100
    overdue devices (a slice of 32 and one of 8), the rest at the next
    ticks."""
    devs = ["park-" + uid(8) for _ in range(100)]
    alertctl("sources", "import", str(_csv(
        tmp_path, ["%s,park,Buca,,parks,3600" % s for s in devs])))
    d = alertd_factory(sources={"unknown": "reject",
                                "supervision_grace_s": 0,
                                "supervision_batch": 40})
    r = d.redis()
    wait_until(lambda: all(r.exists(d.prefix + "src:" + s) for s in devs),
               15, what="the registry in Redis")
    r.zadd(d.prefix + "supervise", {s: 0 for s in devs})
    wait_until(lambda: _opened(d) > 0, 5, interval=0.02,
               what="the first sweep slice")
    time.sleep(0.4)
    assert _opened(d) == 40
    wait_until(lambda: _opened(d) == 100, 10,
               what="the rest at the next ticks")
