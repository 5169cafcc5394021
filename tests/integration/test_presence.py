"""Streams: snapshot of the open queue on connect, zone filtering, masking
per role; presence: the staffing incident opens when operators on duty
drop below the minimum and resolves when staff returns."""

import time
import uuid

from helpers import (SseClient, http_get, http_request, make_event,
                     post_event, wait_until)


def _open(alertd, **kw):
    st, body, _ = post_event(alertd.http, make_event(**kw))
    assert st == 202, body
    return body["incident_id"]


def _incidents(sse, n, timeout=10):
    out = []
    for _ in range(n):
        ev = sse.next_event(timeout)
        assert ev["event"] == "incident", ev
        out.append(ev)
    return out


def test_snapshot_on_connect_then_changes(alertd, operator_token):
    a = _open(alertd, type="panic")
    b = _open(alertd, type="fault")
    with SseClient(alertd.http, operator_token) as sse:
        evs = _incidents(sse, 2)
        assert [e["json"]["id"] for e in evs] == [a, b]  # queue order
        assert evs[0]["id"] == evs[1]["id"]  # the newest change id
        c = _open(alertd, type="call_request")
        ev = _incidents(sse, 1)[0]
        assert ev["json"]["id"] == c and ev["id"] != evs[0]["id"]
        assert sse.no_event_within(0.5)
        assert any("snapshot end" in x for x in sse.comments)
    # Resuming from the snapshot's id gets exactly what came after it.
    with SseClient(alertd.http, operator_token,
                   last_event_id=evs[0]["id"]) as sse:
        ev = _incidents(sse, 1)[0]
        assert ev["json"]["id"] == c
        assert sse.no_event_within(0.5)


def test_zone_filter_and_masking(alertd, alertctl, add_operator_token):
    name = "karsi-%s" % uuid.uuid4().hex[:6]
    tok = alertctl("operator", "add", name, "--role", "operator",
                   "--zones", "Karsiyaka").stdout.strip().splitlines()[-1]
    aud = add_operator_token("auditor")
    _open(alertd, type="panic", zone="Bornova")
    k = _open(alertd, type="panic", zone="Karsiyaka")
    with SseClient(alertd.http, tok) as sse, \
            SseClient(alertd.http, aud) as sa:
        assert [e["json"]["id"] for e in _incidents(sse, 1)] == [k]
        assert sse.no_event_within(0.5)
        assert len(_incidents(sa, 2)) == 2
        ev = make_event(type="call_request", zone="Karsiyaka",
                        label="Caller Ayse Yilmaz")
        ev["source"]["kind"] = "support_line"
        st, body, _ = post_event(alertd.http, ev)
        assert st == 202, body
        s = body["incident_id"]
        mine = _incidents(sse, 1)[0]["json"]
        assert mine["id"] == s
        assert mine["source"]["label"] == "Caller Ayse Yilmaz"
        seen = _incidents(sa, 1)[0]["json"]
        assert seen["id"] == s and seen["source"]["label"] == "***"


def test_staffing_incident_opens_and_resolves(alertd_factory,
                                              add_operator_token):
    alertd = alertd_factory(presence={"min_on_duty": "2"})
    t1, t2 = add_operator_token("operator"), add_operator_token("operator")
    sup = add_operator_token("supervisor")

    def staffing():
        st, q, _ = http_get(alertd.http, "/v1/incidents?state=open", sup)
        assert st == 200, q
        return [i for i in q if i["source"]["id"] == "alertd-staffing"]

    # Nobody on duty at start: the staffing incident opens.
    first = wait_until(staffing, timeout=10, what="staffing incident")[0]
    s1, s2 = SseClient(alertd.http, t1), SseClient(alertd.http, t2)
    try:
        wait_until(lambda: not staffing(), timeout=10,
                   what="staffing resolved with two on duty")
        st, snap, _ = http_get(alertd.http, "/v1/incidents/%d" % first["id"],
                               sup)
        assert snap["state"] == "resolved"
        time.sleep(1.5)
        assert not staffing()
        s2.close()  # the second-to-last operator leaves
        again = wait_until(staffing, timeout=10,
                           what="staffing incident again")[0]
        assert again["id"] != first["id"]
        assert "1 operators on duty" in again["source"]["label"]
    finally:
        s1.close()
        s2.close()
    alertd.wait_log("below the minimum")
    with alertd.db() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_state, actor FROM incident_transitions "
                    "WHERE incident_id = %s ORDER BY seq", (first["id"],))
        assert cur.fetchall() == [("new", "alertd"), ("resolved", "alertd")]


def _subscribe(alertd, cfg, token, last=""):
    from helpers import TcpClient, pb
    c = TcpClient("127.0.0.1", int(cfg.get("server",
                                           "console_tcp_listen").split(":")[1]))
    f = pb().Frame()
    f.subscribe.token = token
    f.subscribe.last_event_id = last
    c.send_payload(f.SerializeToString())
    return c


def test_tcp_console_stream(alertd_factory, make_config, alertctl,
                            add_operator_token):
    import json
    from conftest import free_port
    cfg = make_config(server__console_tcp_listen="127.0.0.1:%d" % free_port())
    alertd = alertd_factory(config=cfg)
    name = "tcp-%s" % uuid.uuid4().hex[:6]
    tok = alertctl("operator", "add", name, "--role", "operator",
                   "--zones", "Karsiyaka").stdout.strip().splitlines()[-1]
    a = _open(alertd, type="panic", zone="Karsiyaka")
    _open(alertd, type="panic", zone="Bornova")
    with _subscribe(alertd, cfg, tok) as c:
        f = c.read_frame(10)
        assert f.WhichOneof("msg") == "incident", f
        assert json.loads(f.incident.snapshot_json)["id"] == a
        last = f.incident.id
        b = _open(alertd, type="fault", zone="Karsiyaka")
        _open(alertd, type="fault", zone="Bornova")
        f = c.read_frame(10)
        assert json.loads(f.incident.snapshot_json)["id"] == b
        assert f.incident.id != last
    # Resume after the first update: only b comes again.
    with _subscribe(alertd, cfg, tok, last) as c:
        f = c.read_frame(10)
        assert json.loads(f.incident.snapshot_json)["id"] == b
        alertctl("operator", "revoke", name)
        f = c.read_frame(10)
        assert f is not None and f.WhichOneof("msg") == "error", f
        assert f.error.code == "token_revoked"
        assert c.is_closed(5)
    with _subscribe(alertd, cfg, tok) as c:
        f = c.read_frame(10)
        assert f.WhichOneof("msg") == "error" and \
            f.error.code == "unauthorized", f


def test_tcp_console_resume_after_trimmed_changes(alertd_factory,
                                                  make_config, alertctl):
    """A last_event_id whose changes were trimmed (or one the stream
    never had) cannot be resumed: Error resync_required, and the console
    subscribes again without it for the open queue."""
    import json
    from conftest import free_port
    cfg = make_config(server__console_tcp_listen="127.0.0.1:%d" % free_port())
    alertd = alertd_factory(config=cfg)
    tok = alertctl("operator", "add", "tr-%s" % uuid.uuid4().hex[:6],
                   "--role", "supervisor").stdout.strip().splitlines()[-1]
    a = _open(alertd, type="panic")
    with _subscribe(alertd, cfg, tok) as c:
        f = c.read_frame(10)
        assert json.loads(f.incident.snapshot_json)["id"] == a
        last = f.incident.id
    b = _open(alertd, type="fault")
    _open(alertd, type="call_request")
    alertd.redis().xtrim(alertd.prefix + "changes", maxlen=1,
                         approximate=False)
    for resume in (last, "1-0", "garbage"):
        with _subscribe(alertd, cfg, tok, resume) as c:
            f = c.read_frame(10)
            assert f.WhichOneof("msg") == "error", f
            assert f.error.code == "resync_required", f
            assert c.is_closed(5)
    with _subscribe(alertd, cfg, tok) as c:
        ids = {json.loads(c.read_frame(10).incident.snapshot_json)["id"]
               for _ in range(3)}
        assert a in ids and b in ids


def test_queue_and_incident_filtered_and_masked(alertd, alertctl,
                                                add_operator_token):
    name = "qz-%s" % uuid.uuid4().hex[:6]
    tok = alertctl("operator", "add", name, "--role", "operator",
                   "--zones", "Karsiyaka").stdout.strip().splitlines()[-1]
    aud, adm = add_operator_token("auditor"), add_operator_token("admin")
    b = _open(alertd, type="panic", zone="Bornova")
    ev = make_event(type="call_request", zone="Karsiyaka", label="Ayse Y.",
                    location={"lat": 38.46, "lon": 27.21})
    ev["source"]["kind"] = "support_line"
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    k = body["incident_id"]
    st, q, _ = http_get(alertd.http, "/v1/incidents", tok)
    assert st == 200 and [i["id"] for i in q] == [k], q
    assert q[0]["source"]["label"] == "Ayse Y."
    assert q[0]["location"] == {"lat": 38.46, "lon": 27.21}
    st, err, _ = http_get(alertd.http, "/v1/incidents/%d" % b, tok)
    assert st == 403, err
    st, q, _ = http_get(alertd.http, "/v1/incidents", aud)
    assert sorted(i["id"] for i in q) == sorted([b, k])
    assert [i for i in q if i["id"] == k][0]["source"]["label"] == "***"
    st, one, _ = http_get(alertd.http, "/v1/incidents/%d" % k, aud)
    assert st == 200 and one["source"]["label"] == "***", one
    st, one, _ = http_get(alertd.http, "/v1/incidents/%d" % k, adm)
    assert st == 200 and one["source"]["label"] == "Ayse Y.", one


def test_zone_mode_first_puts_own_zone_first(alertd_factory, alertctl):
    """[operators] zone_mode = first: a zoned operator sees every incident,
    those of the own zones first, and may act on any zone."""
    d = alertd_factory(operators__zone_mode="first")
    name = "karsi-%s" % uuid.uuid4().hex[:6]
    tok = alertctl("operator", "add", name, "--role", "operator",
                   "--zones", "Karsiyaka").stdout.strip().splitlines()[-1]
    other = _open(d, type="panic", zone="Bornova")       # higher priority
    own = _open(d, type="fault", zone="Karsiyaka")
    st, queue, _ = http_get(d.http, "/v1/incidents", tok)
    assert st == 200, queue
    assert [i["id"] for i in queue][:2] == [own, other]
    with SseClient(d.http, tok) as sse:
        evs = _incidents(sse, 2)
        assert [e["json"]["id"] for e in evs] == [own, other]
    st, snap, _ = http_get(d.http, "/v1/incidents/%d" % other, tok)
    assert st == 200 and snap["source"]["zone"] == "Bornova", snap
    st, snap, _ = http_request(d.http, "POST",
                               "/v1/incidents/%d/ack" % other, body=b"{}",
                               token=tok,
                               headers={"Content-Type": "application/json"})
    assert st == 200 and snap["acked_by"] == name, snap


def test_tcp_console_zone_first_snapshot_order(alertd_factory, make_config,
                                               alertctl):
    """docs/operations.md: zone_mode = first puts the own zones first in
    the snapshot a console gets on connect; docs/api.md: the TCP stream is
    filtered exactly like GET /v1/stream."""
    import json
    from conftest import free_port
    cfg = make_config(server__console_tcp_listen="127.0.0.1:%d" % free_port(),
                      operators__zone_mode="first")
    d = alertd_factory(config=cfg)
    name = "karsi-%s" % uuid.uuid4().hex[:6]
    tok = alertctl("operator", "add", name, "--role", "operator",
                   "--zones", "Karsiyaka").stdout.strip().splitlines()[-1]
    other = _open(d, type="panic", zone="Bornova")
    own = _open(d, type="fault", zone="Karsiyaka")
    with SseClient(d.http, tok) as sse:
        ids = [ev["json"]["id"] for ev in _incidents(sse, 2)]
        assert ids == [own, other]
    with _subscribe(d, cfg, tok) as c:
        ids = [json.loads(c.read_frame(10).incident.snapshot_json)["id"]
               for _ in range(2)]
        assert ids == [own, other]


def test_tcp_console_error_frame_then_orderly_close(alertd_factory,
                                                    make_config):
    """An Error frame goes after what is queued and the connection ends
    with a FIN once it is written: input still arriving (the rest of an
    oversized frame) is read and dropped meanwhile, so the close is not a
    reset that could cost the console the Error frame."""
    import socket
    import struct
    import threading
    from conftest import free_port
    from helpers import TcpClient
    port = free_port()
    cfg = make_config(server__console_tcp_listen="127.0.0.1:%d" % port)
    alertd_factory(config=cfg)
    with TcpClient("127.0.0.1", port) as c:
        def flood():
            try:
                c.sock.sendall(struct.pack(">I", 70000) + b"x" * 300000)
            except OSError:
                pass
        t = threading.Thread(target=flood)
        t.start()
        f = c.read_frame(10)
        assert f is not None and f.WhichOneof("msg") == "error", f
        assert f.error.code == "frame_too_large", f
        assert c.buf == b""
        c.sock.settimeout(10)
        assert c.sock.recv(65536) == b""    # FIN, not a reset
        t.join(10)
        c.sock.shutdown(socket.SHUT_WR)


def test_tcp_console_told_why_when_refused_before_subscribing(alertd_factory,
                                                              make_config):
    """A Subscribe without a token is refused as unauthorized (like a
    request without a bearer token), and a console that sends nothing
    within 10 s is told so in an Error frame before the close, like any
    other refusal (docs/api.md: errors come as Frame{error})."""
    import time
    from conftest import free_port
    from helpers import TcpClient
    port = free_port()
    cfg = make_config(server__console_tcp_listen="127.0.0.1:%d" % port)
    alertd = alertd_factory(config=cfg)
    with _subscribe(alertd, cfg, "") as c:
        f = c.read_frame(10)
        assert f is not None and f.WhichOneof("msg") == "error", f
        assert f.error.code == "unauthorized", f
        assert c.read_frame(10) is None            # then closed
    with TcpClient("127.0.0.1", port) as c:
        t0 = time.monotonic()
        f = c.read_frame(20)
        assert f is not None and f.WhichOneof("msg") == "error", f
        assert f.error.code == "timeout", f
        assert 9 <= time.monotonic() - t0 < 15
        assert c.read_frame(10) is None
