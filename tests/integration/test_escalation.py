"""Escalation with short delays: each level fires at its time, in order,
once; ack and resolve stop it; a restart neither skips nor repeats a
level; the phone webhook is retried after a 500 and a timeout with one
idempotency key, and a give-up brings the next level forward."""

import json
import signal
import time

import pytest

from helpers import http_request, make_event, post_event, wait_until
from sink import Sink

NUMBER = "+905321112233"


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def policy(sink, level1="300ms", level2="1500ms", level3="1500ms",
           repeat="1500ms", **channels):
    ch = {"call_url": sink.url("/call"), "webhook.ops": sink.url("/hook"),
          "timeout_ms": "400", "retries": "3", "backoff_ms": "100",
          "call_template": "Alarm {type} in {zone}, incident {id}"}
    ch.update(channels)
    return {
        "escalation": {
            "urgent.min_priority": "50",
            "urgent.level1": "%s console:desk webhook:ops" % level1,
            "urgent.level2": "%s console:supervisors call:%s" % (level2,
                                                                  NUMBER),
            "urgent.level3": "%s webhook:ops" % level3,
            "urgent.repeat": repeat,
        },
        "channels": ch,
    }


def _open(alertd, **kw):
    st, body, _ = post_event(alertd.http, make_event(type="panic", **kw))
    assert st == 202, body
    return body["incident_id"]


def escalations(alertd, iid):
    with alertd.db() as conn, conn.cursor() as cur:
        cur.execute("SELECT detail->>'level' FROM incident_transitions "
                    "WHERE incident_id = %s AND to_state = 'escalated' "
                    "ORDER BY seq", (iid,))
        return [int(r[0]) for r in cur.fetchall()]


def notifications(alertd, iid):
    with alertd.db() as conn, conn.cursor() as cur:
        cur.execute("SELECT idempotency_key, attempt, channel, target, "
                    "outcome FROM notifications WHERE incident_id = %s "
                    "ORDER BY seq", (iid,))
        return cur.fetchall()


def hooks(sink, iid):
    return [r for r in sink.on("/hook")
            if r["json"]["incident"]["id"] == iid]


def calls(sink, iid):
    return [r for r in sink.on("/call")
            if r["json"]["incident"]["id"] == iid]


def act(alertd, token, iid, action, body=None):
    st, resp, _ = http_request(alertd.http, "POST",
                               "/v1/incidents/%s/%s" % (iid, action),
                               body=json.dumps(body or {}).encode(),
                               token=token)
    return st, resp


def test_levels_fire_in_order_once_and_ack_stops_them(alertd_factory, sink,
                                                       operator_token):
    alertd = alertd_factory(**policy(sink))
    t0 = time.monotonic()
    iid = _open(alertd, zone="Karsiyaka")
    wait_until(lambda: len(hooks(sink, iid)) >= 1, timeout=5,
               what="level 1 webhook")
    t1 = hooks(sink, iid)[0]["t"] - t0
    assert 0.2 <= t1 < 1.5, t1
    wait_until(lambda: len(calls(sink, iid)) >= 1, timeout=6,
               what="level 2 call")
    c = calls(sink, iid)[0]
    t2 = c["t"] - t0
    assert t2 - t1 >= 1.3, (t1, t2)
    assert c["json"]["number"] == NUMBER
    assert c["json"]["level"] == 2
    assert "Karsiyaka" in c["json"]["text"]
    assert c["headers"]["idempotency-key"] == c["json"]["idempotency_key"]
    wait_until(lambda: len(hooks(sink, iid)) >= 2, timeout=6,
               what="level 3 webhook")
    assert hooks(sink, iid)[1]["json"]["level"] == 3
    st, snap = act(alertd, operator_token, iid, "ack")
    assert st == 200, snap
    level_at_ack = snap["escalation_level"]
    assert level_at_ack >= 3
    time.sleep(3.5)  # two repeat periods
    assert escalations(alertd, iid) == list(range(1, level_at_ack + 1))
    n_hooks = len(hooks(sink, iid))
    assert n_hooks == level_at_ack - 1, [r["json"]["level"]
                                         for r in hooks(sink, iid)]
    assert len(calls(sink, iid)) == 1
    rows = notifications(alertd, iid)
    shown = [r for r in rows if r[2] == "console"]
    assert [r[3] for r in shown][:2] == ["desk", "supervisors"]
    sent_call = [r for r in rows if r[2] == "call"]
    assert sent_call and sent_call[0][4] == "sent"
    assert NUMBER not in sent_call[0][3] and sent_call[0][3].endswith("33")


def test_resolve_stops_escalation(alertd_factory, sink, operator_token):
    alertd = alertd_factory(**policy(sink, level2="1s"))
    iid = _open(alertd)
    wait_until(lambda: escalations(alertd, iid) == [1], timeout=5,
               what="level 1")
    st, snap = act(alertd, operator_token, iid, "resolve",
                   {"note": "handled by phone"})
    assert st == 200, snap
    time.sleep(2.5)
    assert escalations(alertd, iid) == [1]
    assert calls(sink, iid) == []


def test_restart_between_levels_neither_skips_nor_repeats(
        alertd_factory, make_config, sink):
    cfg = make_config(**policy(sink, level2="3s", level3="2s",
                               repeat="60s"))
    a1 = alertd_factory(config=cfg)
    iid = _open(a1)
    wait_until(lambda: escalations(a1, iid) == [1], timeout=5,
               what="level 1")
    assert a1.stop() == 0
    time.sleep(3.5)  # level 2 falls due while alertd is down
    a2 = alertd_factory(config=cfg)
    wait_until(lambda: escalations(a2, iid) == [1, 2], timeout=5,
               what="level 2 after the restart")
    assert a2.stop() == 0
    a3 = alertd_factory(config=cfg)  # restart before level 3 is due
    wait_until(lambda: escalations(a3, iid) == [1, 2, 3], timeout=6,
               what="level 3")
    time.sleep(1.0)
    assert escalations(a3, iid) == [1, 2, 3]
    assert len(calls(sink, iid)) == 1
    assert [r["json"]["level"] for r in hooks(sink, iid)] == [1, 3]


def test_call_retries_after_500_and_timeout_with_one_key(alertd_factory,
                                                         sink):
    sink.script("/call", [500, "hang", 200])
    alertd = alertd_factory(**policy(sink, level1="0ms", level2="200ms",
                                     level3="60s", repeat="60s"))
    iid = _open(alertd)
    wait_until(lambda: len(calls(sink, iid)) >= 3, timeout=10,
               what="three call attempts")
    wait_until(lambda: any(r[2] == "call" and r[4] == "sent"
                           for r in notifications(alertd, iid)),
               timeout=5, what="sent row")
    cs = calls(sink, iid)
    keys = {c["headers"]["idempotency-key"] for c in cs}
    assert len(keys) == 1, keys
    assert keys == {c["json"]["idempotency_key"] for c in cs}
    assert cs[1]["t"] - cs[0]["t"] >= 0.04  # backoff (100 ms, jitter)
    rows = [(r[1], r[4]) for r in notifications(alertd, iid)
            if r[2] == "call"]
    assert rows == [(1, "failed"), (2, "failed"), (3, "sent")], rows
    time.sleep(0.5)
    assert len(calls(sink, iid)) == 3


def test_give_up_is_audited_and_escalates_further(alertd_factory, sink):
    sink.script("/call", [500] * 10)
    alertd = alertd_factory(**policy(sink, level1="0ms", level2="200ms",
                                     level3="30s", repeat="60s",
                                     retries="1"))
    iid = _open(alertd)
    wait_until(lambda: any(r[2] == "call" and r[4] == "gave_up"
                           for r in notifications(alertd, iid)),
               timeout=10, what="gave_up row")
    # Level 3 (due in 30 s) comes now, since the call could not be made.
    wait_until(lambda: escalations(alertd, iid) == [1, 2, 3], timeout=5,
               what="level 3 brought forward")
    assert len(calls(sink, iid)) == 2
    alertd.wait_log("gave up")


def test_bad_policy_is_refused(make_config, alertd_factory, tmp_path):
    import subprocess
    from conftest import ALERTD
    bad = make_config(escalation={"x.min_priority": "50",
                                  "x.level2": "1s console:a"})
    r = subprocess.run([str(ALERTD), "--check-config", str(bad.path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "level1" in r.stderr, r.stderr
    bad = make_config(escalation={"x.min_priority": "50",
                                  "x.level1": "1s call:+90555"},
                      channels={"call_url": "http://pbx.example:80/x"})
    r = subprocess.run([str(ALERTD), "--check-config", str(bad.path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "IPv4" in r.stderr, r.stderr


def test_ack_stops_the_retries_of_a_fired_level(alertd_factory, sink,
                                                 operator_token):
    sink.script("/call", [500] * 20)
    alertd = alertd_factory(**policy(sink, level1="0ms", level2="200ms",
                                     level3="60s", repeat="60s",
                                     backoff_ms="1500", retries="5"))
    iid = _open(alertd)
    wait_until(lambda: len(calls(sink, iid)) >= 1, timeout=5,
               what="the first call attempt")
    st, snap = act(alertd, operator_token, iid, "ack")
    assert st == 200, snap
    wait_until(lambda: any(r[2] == "call" and r[4] == "cancelled"
                           for r in notifications(alertd, iid)),
               timeout=10, what="cancelled row")
    n = len(calls(sink, iid))
    assert n <= 2, n  # at most one retry was already on the wire
    time.sleep(2)
    assert len(calls(sink, iid)) == n
    assert not any(r[4] == "gave_up" for r in notifications(alertd, iid))


def test_notification_rows_wait_for_postgres(alertd_factory, sink,
                                             pg_server):
    alertd = alertd_factory(**policy(sink, level1="2s", level2="60s",
                                     repeat="60s"))
    iid = _open(alertd)
    pg_server.stop("fast")
    try:
        wait_until(lambda: len(hooks(sink, iid)) >= 1, timeout=8,
                   what="level 1 webhook while PostgreSQL is down")
        time.sleep(1.0)
    finally:
        pg_server.start()
    wait_until(lambda: {(r[2], r[4]) for r in notifications(alertd, iid)}
               >= {("console", "shown"), ("webhook", "sent")},
               timeout=20, what="the rows written after PostgreSQL is back")
    alertd.wait_log("rows that waited")


# Reviewer findings (rev3): escalation skipped or repeated.

def _dead_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_give_up_at_the_last_level_waits_its_repeat(alertd_factory, sink):
    """The last level calls a phone server that is down (port closed) and
    sends a webhook. A give-up hurries the next level; for the last level
    the next one is its own repeat: it must wait the repeat interval, not
    come again at once (which gave up again: a storm of webhooks)."""
    alertd = alertd_factory(
        escalation={"b.min_priority": "50",
                    "b.level1": "0ms call:+905059998877 webhook:ops",
                    "b.repeat": "60s"},
        channels={"webhook.ops": sink.url("/hook"),
                  "call_url": "http://127.0.0.1:%d/originate" % _dead_port(),
                  "timeout_ms": "500", "retries": "0", "backoff_ms": "10"})
    iid = _open(alertd)
    wait_until(lambda: any(r[2] == "call" and r[4] == "gave_up"
                           for r in notifications(alertd, iid)),
               timeout=5, what="gave_up row")
    time.sleep(3)
    assert len(hooks(sink, iid)) == 1, (len(hooks(sink, iid)),
                                        escalations(alertd, iid)[-1:])
    assert escalations(alertd, iid) == [1]


def test_hurry_mark_left_by_an_ack_does_not_hurry_a_reopen(
        alertd_factory, sink, operator_token):
    """A give-up marks the incident's next level as due at once; an ack
    that lands between the mark and the next poll leaves the mark in the
    hash (simulated here). A reopen starts again from level 1, due after
    its delay: the old mark must not make it fire at once."""
    alertd = alertd_factory(
        escalation={"b.min_priority": "50",
                    "b.level1": "2s console:desk webhook:ops",
                    "b.repeat": "60s"},
        channels={"webhook.ops": sink.url("/hook")})
    iid = _open(alertd)
    st, snap = act(alertd, operator_token, iid, "ack")
    assert st == 200, snap
    alertd.redis().hset(alertd.prefix + "inc:%d" % iid, "esc_hurry", "1")
    st, snap = act(alertd, operator_token, iid, "resolve", {"note": "x"})
    assert st == 200, snap
    st, snap = act(alertd, operator_token, iid, "reopen", {"note": "y"})
    assert st == 200, snap
    time.sleep(1.0)
    assert escalations(alertd, iid) == [] and hooks(sink, iid) == []
    wait_until(lambda: escalations(alertd, iid) == [1], timeout=5,
               what="level 1 after its delay")


def test_level_whose_done_was_lost_is_not_sent_again(alertd_factory,
                                                     redis_server):
    """The webhook answers after 2.5 s; Redis restarts meanwhile, so the
    first esc_done of the level cannot be sent. It is retried until it
    lands: after the lease nobody sends the level a second time, and the
    'sent' row is in the audit trail once."""
    slow = Sink(hang_s=2.5)
    try:
        slow.script("/hook", ["hang"])
        alertd = alertd_factory(
            escalation={"b.min_priority": "50",
                        "b.level1": "0ms webhook:ops",
                        "b.repeat": "3600s"},
            channels={"webhook.ops": slow.url("/hook"), "timeout_ms": "5000",
                      "retries": "0", "backoff_ms": "10"})
        iid = _open(alertd)
        wait_until(lambda: len(hooks(slow, iid)) == 1, timeout=5,
                   what="the webhook request")
        redis_server.stop()          # SHUTDOWN SAVE: nothing is lost
        time.sleep(3.0)              # the answer comes while Redis is down
        redis_server.start()
        wait_until(lambda: alertd.redis().hlen(
            alertd.prefix + "notify:pending") == 0, timeout=10,
            what="the level's esc_done after Redis is back")
        time.sleep(37)               # past the lease (30 s + 5 s + 15 ms)
        sent = [r for r in notifications(alertd, iid)
                if r[2] == "webhook" and r[4] == "sent"]
        assert len(hooks(slow, iid)) == 1 and len(sent) == 1, (
            len(hooks(slow, iid)), sent)
    finally:
        slow.close()


def test_pending_level_skips_targets_already_sent(alertd_factory, sink):
    """A level stays in notify:pending although its webhook was sent (its
    esc_done never reached Redis, or its instance died right after the
    answer): when it is taken up again, the target that has a 'sent' row
    is not sent again."""
    alertd = alertd_factory(
        escalation={"b.min_priority": "50",
                    "b.level1": "0ms console:desk webhook:ops",
                    "b.repeat": "3600s"},
        channels={"webhook.ops": sink.url("/hook")})
    iid = _open(alertd)
    wait_until(lambda: any(r[2] == "webhook" and r[4] == "sent"
                           for r in notifications(alertd, iid)),
               timeout=5, what="the sent row")
    r = alertd.redis()
    pend = alertd.prefix + "notify:pending"
    wait_until(lambda: r.hlen(pend) == 0, timeout=5, what="esc_done")
    entry = {"id": iid, "level": 1, "lease": 0}
    run = r.hget(alertd.prefix + "inc:%d" % iid, "esc_run_ms")
    if run is not None:
        entry["run"] = int(run)
    r.hset(pend, "%d:1" % iid, json.dumps(entry))
    alertd.wait_log("already sent", timeout=10)
    wait_until(lambda: r.hlen(pend) == 0, timeout=5,
               what="the resumed level done")
    time.sleep(0.5)
    assert len(hooks(sink, iid)) == 1
    assert [x[4] for x in notifications(alertd, iid)
            if x[2] == "webhook"] == ["sent"]


@pytest.mark.kill_after(120)
def test_pending_level_is_not_sent_after_ack(alertd_factory, make_config,
                                             operator_token):
    """alertd stops while a level's webhook is on the wire (the level stays
    in notify:pending). After the restart an operator acks the incident.
    When the level is taken up again it must see the ack and not send."""
    slow = Sink(hang_s=2.5)
    try:
        slow.script("/hook", ["hang"])
        cfg = make_config(
            escalation={"b.min_priority": "50", "b.level1": "0ms webhook:ops",
                        "b.repeat": "3600s"},
            channels={"webhook.ops": slow.url("/hook"), "timeout_ms": "5000",
                      "retries": "0", "backoff_ms": "10"})
        a1 = alertd_factory(config=cfg)
        iid = _open(a1)
        wait_until(lambda: len(hooks(slow, iid)) == 1, timeout=5,
                   what="the webhook request")
        assert a1.stop() == 0
        # a1 deleted its live key when it stopped; it is set again until
        # the ack is in, so that a2 does not take the level up before it.
        r = a1.redis()
        pend = a1.prefix + "notify:pending"
        owner = json.loads(r.hget(pend, "%d:1" % iid))["owner"]
        live = a1.prefix + "live:" + owner
        r.set(live, "1", px=60000)
        a2 = alertd_factory(config=cfg)
        st, snap = act(a2, operator_token, iid, "ack")
        assert st == 200, snap
        r.delete(live)
        wait_until(lambda: a2.redis().hlen(pend) == 0, timeout=15,
                   what="the pending level dropped after the ack")
        time.sleep(1.0)
        assert len(hooks(slow, iid)) == 1, [
            h["json"]["incident"]["state"] for h in hooks(slow, iid)]
    finally:
        slow.close()


def _slow_policy(sink):
    """One level, a webhook whose request may take a minute: the level's
    lease is 30 s + 60 s + backoff, far beyond the live key's 6 s."""
    return dict(
        escalation={"b.min_priority": "50", "b.level1": "0ms webhook:ops",
                    "b.repeat": "3600s"},
        channels={"webhook.ops": sink.url("/hook"), "timeout_ms": "60000",
                  "retries": "0", "backoff_ms": "10"})


@pytest.mark.kill_after(90)
def test_level_of_a_dead_instance_is_taken_up_before_its_lease(
        alertd_factory, make_config):
    """alertd dies (SIGKILL) while a level's webhook is on the wire. Its
    live key expires within seconds, and the instance started after it
    takes the level up then, not after the 90 s lease."""
    slow = Sink(hang_s=3.0)
    try:
        slow.script("/hook", ["hang"])
        cfg = make_config(**_slow_policy(slow))
        a1 = alertd_factory(config=cfg)
        iid = _open(a1)
        wait_until(lambda: len(hooks(slow, iid)) == 1, timeout=5,
                   what="the webhook request")
        a1.expected_exit = -signal.SIGKILL
        a1.proc.kill()
        a1.wait(10)
        a2 = alertd_factory(config=cfg)
        wait_until(lambda: len(hooks(slow, iid)) == 2, timeout=30,
                   what="the level taken up by the next instance")
        assert "taking them up again" in a2.log()
        wait_until(lambda: [r[4] for r in notifications(a2, iid)
                            if r[2] == "webhook"] == ["sent"], timeout=5,
                   what="the sent row")
    finally:
        slow.close()


@pytest.mark.kill_after(90)
def test_level_of_a_live_instance_is_left_to_it(alertd_factory, test_env):
    """Two instances on one Redis. The one that fired a level waits 14 s
    for its webhook: the other, polling notify:pending every 5 s, must see
    the owner's live key refreshed and leave the level alone."""
    slow = Sink(hang_s=14.0)
    try:
        slow.script("/hook", ["hang"])
        a = alertd_factory(**_slow_policy(slow))
        b = alertd_factory(spool={"path": str(test_env.tmp / "spool-b")},
                           **_slow_policy(slow))
        iid = _open(a)
        wait_until(lambda: len(hooks(slow, iid)) == 1, timeout=5,
                   what="the webhook request")
        time.sleep(12.0)
        assert len(hooks(slow, iid)) == 1
        assert "taking them up again" not in a.log() + b.log()
        wait_until(lambda: a.redis().hlen(a.prefix + "notify:pending") == 0,
                   timeout=10, what="the level done by its owner")
        assert len(hooks(slow, iid)) == 1
    finally:
        slow.close()


@pytest.mark.kill_after(90)
def test_level_of_a_stopped_instance_goes_to_a_neighbour(alertd_factory,
                                                         test_env):
    """Two instances on one Redis. The one notifying a level is stopped
    (SIGTERM) while its webhook hangs: it deletes its live key as it
    leaves, so the other takes the level up at its next look (every 5 s),
    not after the key's 6 s TTL, and the level is sent once more, not
    twice."""
    slow = Sink(hang_s=3.0)
    try:
        slow.script("/hook", ["hang"])
        a = alertd_factory(**_slow_policy(slow))
        b = alertd_factory(spool={"path": str(test_env.tmp / "spool-b")},
                           **_slow_policy(slow))
        time.sleep(6.5)        # b judges others once its own key is 6 s old
        iid = _open(a)
        wait_until(lambda: len(hooks(slow, iid)) == 1, timeout=5,
                   what="the webhook request")
        r = a.redis()
        pend = a.prefix + "notify:pending"
        owner = json.loads(r.hget(pend, "%d:1" % iid))["owner"]
        # Either instance may have claimed the level: stop its owner.
        if "escalate: instance " + owner not in a.log():
            a, b = b, a
        assert "escalate: instance " + owner in a.log()
        assert r.exists(a.prefix + "live:" + owner) == 1
        assert a.stop() == 0
        assert r.exists(a.prefix + "live:" + owner) == 0
        assert "leaves" in a.log()
        wait_until(lambda: len(hooks(slow, iid)) == 2, timeout=15,
                   what="the level taken up by the other instance")
        assert "taking them up again" in b.log()
        wait_until(lambda: r.hlen(pend) == 0, timeout=10,
                   what="the level done by the other instance")
        assert len(hooks(slow, iid)) == 2
    finally:
        slow.close()


def test_escalation_after_redis_lost_its_data_is_audited(alertd_factory,
                                                         sink):
    """Redis loses its data: incident ids do not count from 1 again
    (docs/redis.md, the counters' floor), so the new incident's level 1
    can neither reuse the old incident's idempotency key (a receiver that
    drops repeats would drop it) nor have its notifications row taken for
    a repeat: both are delivered and audited under their own ids."""
    alertd = alertd_factory(
        escalation={"b.min_priority": "50", "b.level1": "0ms webhook:ops",
                    "b.repeat": "3600s"},
        channels={"webhook.ops": sink.url("/hook")})
    iid = _open(alertd)
    wait_until(lambda: len(notifications(alertd, iid)) == 1, timeout=5,
               what="first row")
    r = alertd.redis()
    r.delete(*r.keys(alertd.prefix + "*"))        # the data is gone
    iid2 = _open(alertd)
    assert iid2 == iid + 1, (iid, iid2)           # never reused
    wait_until(lambda: len(hooks(sink, iid2)) == 1, timeout=5,
               what="the new incident's webhook")
    wait_until(lambda: len(notifications(alertd, iid2)) == 1, timeout=5,
               what="the new incident's row")
    keys = {h["json"]["idempotency_key"]
            for h in hooks(sink, iid) + hooks(sink, iid2)}
    assert len(keys) == 2, keys
    assert {x[0] for x in notifications(alertd, iid) +
            notifications(alertd, iid2)} == keys
    assert len(notifications(alertd, iid)) == 1   # the old one untouched


def test_incident_that_ages_into_a_band_escalates(alertd_factory, sink):
    """A fault (30) ages to 90 in 2 s; the only band starts at 50. Once
    its priority is in the band it escalates like any incident of that
    priority (the first poll must not drop it from esc:due for good)."""
    alertd = alertd_factory(
        priority={"night_boost": "0", "aging_step": "30",
                  "aging_interval_s": "1", "aging_cap": "60"},
        escalation={"b.min_priority": "50",
                    "b.level1": "0ms console:desk webhook:ops",
                    "b.repeat": "60s"},
        channels={"webhook.ops": sink.url("/hook")})
    st, body, _ = post_event(alertd.http, make_event(type="fault"))
    assert st == 202, body
    iid = body["incident_id"]
    assert body["priority"] < 50
    wait_until(lambda: int(alertd.redis().hget(
        alertd.prefix + "inc:%d" % iid, "priority")) >= 50, timeout=5,
        what="the priority in the band")
    wait_until(lambda: escalations(alertd, iid) == [1], timeout=5,
               what="level 1 of an incident that aged into the band")
