"""Signals and configuration: SIGHUP reloads a good file and keeps the old
config on a bad one; --check-config; SIGTERM drains without losing an
accepted event."""

import signal
import subprocess
import threading
import time

import pytest

from helpers import (ALERTD, REPO, http_get, make_event, post_event,
                     sanitizer_env, sanitizer_report, uid, wait_until)


def _panic_priority(alertd):
    st, body, _ = post_event(alertd.http, make_event(type="panic"))
    assert st == 202, body
    return body["priority"]


def test_sighup_good_config_changes_priority(alertd):
    assert _panic_priority(alertd) == 100
    alertd.config.update(priority={"panic": 150})
    alertd.signal(signal.SIGHUP)
    wait_until(lambda: _panic_priority(alertd) == 150, 10,
               what="panic priority 150 after SIGHUP")
    assert alertd.alive()
    # Other types keep their base.
    st, body, _ = post_event(alertd.http, make_event(type="fault"))
    assert st == 202 and body["priority"] == 30, body


def test_sighup_changes_the_rules_sent_to_the_script(alertd):
    """Kind and zone modifiers go to Redis in the rules argument, whose
    fixed part alertd makes once per config: a reload must make it
    again, and the next decide call must carry it."""
    before = _panic_priority(alertd)     # a bus in Konak
    alertd.config.update(priority={"kind_bus": 25},
                         priority_zones={"Konak": 7})
    alertd.signal(signal.SIGHUP)
    wait_until(lambda: _panic_priority(alertd) == before + 32, 10,
               what="the bus and Konak modifiers after SIGHUP")
    st, body, _ = post_event(alertd.http, make_event(type="panic",
                                                     kind="ferry",
                                                     zone="Bornova"))
    assert st == 202 and body["priority"] == before, body


def test_sighup_removing_a_secret_refuses_it_at_once(alertd):
    """A secret taken out of [device_secrets] by a reload (a leaked key
    rotated away) no longer signs anything from the next event on, and
    alertd forgets the key."""
    from helpers import FERRY_SECRET
    ev = make_event(kind="ferry", source_id="ferry-" + uid())
    st, body, _ = post_event(alertd.http, ev, secret=FERRY_SECRET)
    assert st == 202, body
    mark = len(alertd.log())
    alertd.config.update(device_secrets={"ferry-*": None})
    alertd.signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP" in alertd.log()[mark:], 10,
               what="the reload in the log")
    time.sleep(0.3)
    again = make_event(kind="ferry", source_id=ev["source"]["id"])
    st, body, _ = post_event(alertd.http, again, secret=FERRY_SECRET)
    assert st == 401 and body["error"] == "signature_invalid", (st, body)
    # the remaining rule (*) now signs ferries too
    st, body, _ = post_event(alertd.http, again)
    assert st == 202, body
    assert alertd.alive()


def _bad_reload(alertd, text, line):
    assert _panic_priority(alertd) == 100
    mark = len(alertd.log())
    alertd.config.update(raw=text)
    alertd.signal(signal.SIGHUP)
    path = str(alertd.config_path)
    # Not just the path: "SIGHUP, reloading <path>" comes first.
    wait_until(lambda: "reload failed" in alertd.log()[mark:], 10,
               what="the reload failure in the log")
    new_log = alertd.log()[mark:]
    assert "%s:%d" % (path, line) in new_log, new_log
    time.sleep(0.3)
    assert alertd.alive()
    assert _panic_priority(alertd) == 100     # the old config is kept
    st, body, _ = post_event(alertd.http, make_event(type="fault"))
    assert st == 202 and body["priority"] == 30, body
    return new_log


def test_sighup_syntax_error_keeps_old_config(alertd):
    text = alertd.config.text.replace(
        "[device_secrets]", "[priority]\npanic = 150\n[[this is not ini\n\n"
        "[device_secrets]")
    line = text.split("\n").index("[[this is not ini") + 1
    _bad_reload(alertd, text, line)


def test_sighup_bad_value_keeps_old_config(alertd):
    text = alertd.config.text.replace(
        "[device_secrets]", "[priority]\npanic = banana\n\n[device_secrets]")
    line = text.split("\n").index("panic = banana") + 1
    log = _bad_reload(alertd, text, line)
    assert "panic" in log


def test_sighup_then_good_again(alertd):
    """After a failed reload, a fixed file reloads."""
    text = alertd.config.text + "\n[priority]\npanic = nope\n"
    alertd.config.update(raw=text)
    alertd.signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in alertd.log(), 10,
               what="the reload failure in the log")
    alertd.config.update(priority={"panic": 140})
    alertd.signal(signal.SIGHUP)
    wait_until(lambda: _panic_priority(alertd) == 140, 10,
               what="panic priority 140 after the second SIGHUP")


def _check_config(path):
    return subprocess.run([str(ALERTD), "--check-config", str(path)],
                          capture_output=True, text=True, timeout=30,
                          cwd=str(REPO), env=sanitizer_env())


def test_check_config_bad_file_exits_2_naming_file_and_line(make_config):
    cfg = make_config()
    lines = cfg.text.split("\n")
    i = lines.index("[redis]")
    lines.insert(i + 1, "port = not-a-port")
    cfg.update(raw="\n".join(lines))
    r = _check_config(cfg.path)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "%s:%d" % (cfg.path, i + 2) in out, out
    assert "port" in out
    assert not sanitizer_report(out), out


def test_check_config_syntax_error(make_config):
    cfg = make_config()
    text = cfg.text + "\n[server\n"
    cfg.update(raw=text)
    line = text.split("\n").index("[server") + 1
    r = _check_config(cfg.path)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "%s:%d" % (cfg.path, line) in out, out


def test_check_config_good_files_exit_0(make_config):
    r = _check_config(make_config().path)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("alertd.dev.ini", "alertd.example.ini"):
        r = _check_config(REPO / "config" / name)
        assert r.returncode == 0, (name, r.stdout + r.stderr)


def test_check_config_warns_of_idempotency_shorter_than_replays(make_config):
    """A signed event stays acceptable for twice replay_window_s after it
    was first sent; a shorter idempotency record lets a replay through as
    a new event. Valid, but said."""
    r = _check_config(make_config(dedup__idempotency_ttl_s="599").path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "warning: [dedup] idempotency_ttl_s (599)" in out, out
    assert "replay_window_s (300)" in out, out
    r = _check_config(make_config(dedup__idempotency_ttl_s="600").path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "idempotency_ttl_s" not in r.stdout + r.stderr


def test_check_config_missing_file(tmp_path):
    r = _check_config(tmp_path / "nope.ini")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "nope.ini" in r.stdout + r.stderr


def test_start_with_bad_config_exits_2(make_config):
    cfg = make_config(server__max_body_bytes="lots")
    r = subprocess.run([str(ALERTD), "-c", str(cfg.path)],
                       capture_output=True, text=True, timeout=30,
                       cwd=str(REPO), env=sanitizer_env())
    assert r.returncode == 2, r.stdout + r.stderr
    assert str(cfg.path) in r.stdout + r.stderr


@pytest.mark.kill_after(240)
def test_sigterm_drains_accepted_events(alertd):
    n = 200
    events = [make_event(type="panic") for _ in range(n)]
    # a few sources with many events each, so that merges happen too
    for i, ev in enumerate(events):
        if i % 4:
            ev["source"] = events[i - i % 4]["source"]
    results = [None] * n
    started = threading.Barrier(n + 1)
    answered = threading.Semaphore(0)

    def worker(i):
        started.wait(30)
        try:
            results[i] = post_event(alertd.http, events[i], timeout=60)
        except Exception as e:  # noqa: BLE001 - refused, reset: fine
            results[i] = e
        answered.release()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    started.wait(30)
    for _ in range(15):                  # some answered, most in flight
        assert answered.acquire(timeout=60)
    alertd.signal(signal.SIGTERM)
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "requests still hanging"
    rc = alertd.wait(60)
    assert rc == 0, alertd.log()[-3000:]

    with alertd.db().cursor() as cur:
        cur.execute("SELECT event_id, incident_id FROM events"
                    " WHERE event_id = ANY(%s)",
                    ([ev["event_id"] for ev in events],))
        rows = dict(cur.fetchall())
    ok = [i for i, r in enumerate(results)
          if isinstance(r, tuple) and r[0] == 202]
    kinds = {}
    for r in results:
        k = r[0] if isinstance(r, tuple) else type(r).__name__
        kinds[k] = kinds.get(k, 0) + 1
    print("answers after SIGTERM:", kinds, "rows:", len(rows))
    assert len(ok) >= 15
    lost = [events[i]["event_id"] for i in ok
            if events[i]["event_id"] not in rows]
    assert not lost, "202 without a row: %s" % lost
    for i in ok:
        assert rows[events[i]["event_id"]] == results[i][1]["incident_id"]
    # Everything else was refused or answered retryable, never a success.
    for i, r in enumerate(results):
        if isinstance(r, tuple) and r[0] != 202:
            assert r[0] == 503, r
            assert r[1]["error"] == "unavailable", r
            assert "retry-after" in r[2], r


def _spool_event_ids(path):
    """event_ids of the event rows in a spool file (spool.h's records)."""
    import json
    import struct
    ids = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ids
    off = 0
    while off + 8 <= len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        payload = data[off + 8:off + 8 + n]
        off += 8 + n
        ev = payload.split(b"\n", 1)[0]
        if ev:
            ids.append(json.loads(ev)["event_id"])
    return ids


def _send_behind_a_lock(d, timeout):
    """Locks the events table (the next audit batch waits) and sends one
    event from a thread: (locker connection, its cursor, the event, the
    dict that gets "answer", the thread)."""
    st, body, _ = post_event(d.http, make_event())   # statement prepared
    assert st == 202, body
    locker = d.db()
    cur = locker.cursor()
    cur.execute("BEGIN")
    cur.execute("LOCK TABLE events IN SHARE MODE")   # blocks INSERTs
    ev = make_event()
    res = {}

    def send():
        try:
            res["answer"] = post_event(d.http, ev, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - a cut is what is looked for
            res["answer"] = e

    t = threading.Thread(target=send)
    t.start()
    return locker, cur, ev, res, t


@pytest.mark.kill_after(120)
def test_sigterm_drain_timeout_with_a_batch_in_flight(alertd_factory,
                                                      test_env):
    """The drain times out while an audit batch is stuck (its table
    locked): the batch's rows go to the spool at teardown and their
    senders are answered while the HTTP server and the pipeline are still
    alive (no use after free, no libevent assertion); the row is in the
    spool and replayed at the next start."""
    cfg = test_env.config(server__drain_timeout_s="1",
                          postgres__timeout_ms="30000")
    d = alertd_factory(config=cfg)
    locker, _, ev, res, t = _send_behind_a_lock(d, 20)
    try:
        time.sleep(1.0)                              # batch in flight
        d.signal(signal.SIGTERM)
        rc = d.wait(20)
    finally:
        locker.rollback()
        locker.close()
        t.join(25)
    d.expected_exit = rc
    log = d.log()
    assert not sanitizer_report(log), log[-6000:]
    assert "Assertion" not in log, log[-3000:]
    assert rc == 1, (rc, log[-3000:])
    # Never a success that is not durable: a 202 only if spooled.
    ans = res.get("answer")
    assert not isinstance(ans, tuple) or ans[0] in (202, 503), ans
    assert ev["event_id"] in _spool_event_ids(
        test_env.spool_dir / "audit.spool"), log[-3000:]
    d2 = alertd_factory(config=cfg)
    wait_until(lambda: http_get(d2.http, "/readyz")[1]["spool"]["rows"]
               == 0, 30, what="the spool replayed")
    with d2.db().cursor() as c2:
        c2.execute("SELECT count(*) FROM events WHERE event_id = %s",
                   (ev["event_id"],))
        assert c2.fetchone()[0] == 1


@pytest.mark.kill_after(120)
def test_sigterm_keeps_the_grace_for_an_http_answer_of_the_same_turn(
        alertd_factory):
    """A 202 produced in the loop turn in which the drain finds nothing
    left (here: the audit commit and SIGTERM read by the same epoll_wait)
    is still in evhttp's output buffer: the drain must keep its grace for
    it to leave the socket, even without device TCP connections."""
    d = alertd_factory(postgres__timeout_ms="30000")
    locker, cur, _, res, t = _send_behind_a_lock(d, 30)
    stopped = False
    try:
        time.sleep(1.0)                              # batch in flight
        d.signal(signal.SIGSTOP)
        stopped = True
        cur.execute("ROLLBACK")  # the batch commits; its result waits
        time.sleep(0.5)
        d.signal(signal.SIGTERM)
        time.sleep(0.3)        # and the janitor's tick is due
        d.signal(signal.SIGCONT)
        stopped = False
        rc = d.wait(20)
    finally:
        if stopped:
            d.signal(signal.SIGCONT)
        locker.close()
        t.join(35)
    assert rc == 0, d.log()[-3000:]
    ans = res.get("answer")
    assert isinstance(ans, tuple) and ans[0] == 202, (ans, d.log()[-3000:])
