"""Every bad-input case of docs/api.md gets its status, its error code (and
the field at fault where there is one), as a JSON error body, and changes
nothing in Redis or PostgreSQL."""

import json
import os
import time

import pytest

from helpers import (FERRY_SECRET, event_body, http_request, make_event,
                     pb_event, post_event, sign, uid, wait_until)

MAX_BODY = 16 * 1024


def _garbage(n):
    return bytes((i * 7 + 3) % 256 for i in range(n))


def _pb_bytes(ev, **changes):
    e = pb_event(ev)
    for k, v in changes.items():
        if k == "clear":
            for f in v:
                obj = e
                *path, last = f.split(".")
                for p in path:
                    obj = getattr(obj, p)
                obj.ClearField(last)
        else:
            setattr(e, k, v)
    return e.SerializeToString()


def _ev_without(*paths):
    ev = make_event()
    for p in paths:
        if "." in p:
            a, b = p.split(".")
            ev[a].pop(b)
        else:
            ev.pop(p)
    return ev


def _big_json():
    ev = make_event(attrs={"pad": "x" * (MAX_BODY + 10)})
    return json.dumps(ev).encode()


def _signed_with(secret, ev):
    body, _ = event_body(ev)
    return dict(ev=body, signature=sign(body, secret))


def _changed_after_signing(ev):
    body, _ = event_body(ev)
    sig = sign(body)
    return dict(ev=body.replace(b'"panic"', b'"fault"'), signature=sig)


def _t_shifted(seconds):
    ev = make_event()
    body, _ = event_body(ev)
    return dict(ev=body, signature=sign(body, t=int(time.time()) + seconds))


def _hex64():
    return "ab" * 32


# name -> (builder of post_event kwargs, status, error code, field or None
# or a tuple of acceptable fields)
# A builder returns the kwargs of post_event (ev=..., signature=..., ...).
CASES = {
    # 413 whatever the body holds, signed or not, before any other check.
    "too_large_garbage_unsigned": (
        lambda: dict(ev=_garbage(MAX_BODY + 1), signature=None),
        413, "body_too_large", None),
    "too_large_garbage_signed": (
        lambda: dict(ev=_garbage(MAX_BODY + 1)),
        413, "body_too_large", None),
    "too_large_valid_json": (
        lambda: dict(ev=_big_json()),
        413, "body_too_large", None),
    "too_large_wrong_content_type": (
        lambda: dict(ev=_garbage(MAX_BODY + 1), content_type="text/plain"),
        413, "body_too_large", None),
    # 415
    "content_type_text_plain": (
        lambda: dict(ev=make_event(), content_type="text/plain"),
        415, "unsupported_media_type", None),
    "content_type_form": (
        lambda: dict(ev=make_event(),
                     content_type="application/x-www-form-urlencoded"),
        415, "unsupported_media_type", None),
    # 401
    "signature_missing": (
        lambda: dict(ev=make_event(), signature=None),
        401, "signature_missing", None),
    "signature_malformed_words": (
        lambda: dict(ev=make_event(), signature="hello world"),
        401, "signature_malformed", None),
    "signature_malformed_no_v1": (
        lambda: dict(ev=make_event(), signature="t=%d" % time.time()),
        401, "signature_malformed", None),
    "signature_malformed_t_not_digits": (
        lambda: dict(ev=make_event(), signature="t=abc,v1=" + _hex64()),
        401, "signature_malformed", None),
    "signature_malformed_short_hex": (
        lambda: dict(ev=make_event(),
                     signature="t=%d,v1=%s" % (time.time(), "ab" * 31)),
        401, "signature_malformed", None),
    "signature_malformed_not_hex": (
        lambda: dict(ev=make_event(),
                     signature="t=%d,v1=%s" % (time.time(), "zz" * 32)),
        401, "signature_malformed", None),
    "signature_wrong_secret": (
        lambda: _signed_with("not-the-secret", make_event()),
        401, "signature_invalid", None),
    "signature_body_changed": (
        lambda: _changed_after_signing(make_event()),
        401, "signature_invalid", None),
    "signature_wrong_hmac": (
        lambda: dict(ev=make_event(),
                     signature="t=%d,v1=%s" % (time.time(), _hex64())),
        401, "signature_invalid", None),
    "timestamp_too_old": (
        lambda: _t_shifted(-600),
        401, "timestamp_out_of_window", None),
    "timestamp_in_the_future": (
        lambda: _t_shifted(+600),
        401, "timestamp_out_of_window", None),
    "ferry_signed_with_default_secret": (
        lambda: dict(ev=make_event(kind="ferry",
                                   source_id="ferry-" + uid())),
        401, "signature_invalid", None),
    "bus_signed_with_ferry_secret": (
        lambda: _signed_with(FERRY_SECRET, make_event()),
        401, "signature_invalid", None),
    # 400 undecodable
    "malformed_json_truncated": (
        lambda: dict(ev=json.dumps(make_event()).encode()[:-7]),
        400, "malformed_json", None),
    "malformed_json_not_json": (
        lambda: dict(ev=b"this is not json"),
        400, "malformed_json", None),
    "malformed_json_empty_body": (
        lambda: dict(ev=b""),
        400, "malformed_json", None),
    "json_array_top_level": (
        lambda: dict(ev=json.dumps([make_event()]).encode()),
        400, "malformed_json", None),
    "json_string_top_level": (
        lambda: dict(ev=b'"panic"'),
        400, "malformed_json", None),
    "malformed_protobuf": (
        lambda: dict(ev=b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                     content_type="application/x-protobuf"),
        400, "malformed_protobuf", None),
    # 400 missing fields
    "missing_event_id": (
        lambda: dict(ev=_ev_without("event_id")),
        400, "missing_field", "event_id"),
    "empty_event_id": (
        lambda: dict(ev=make_event(event_id="")),
        400, "missing_field", "event_id"),
    "missing_source": (
        lambda: dict(ev=_ev_without("source")),
        400, "missing_field", ("source", "source.id")),
    "missing_source_id": (
        lambda: dict(ev=_ev_without("source.id")),
        400, "missing_field", "source.id"),
    "missing_source_kind": (
        lambda: dict(ev=_ev_without("source.kind")),
        400, "missing_field", "source.kind"),
    "missing_type": (
        lambda: dict(ev=_ev_without("type")),
        400, "missing_field", "type"),
    "pb_missing_event_id": (
        lambda: dict(ev=_pb_bytes(make_event(), clear=["event_id"]),
                     content_type="application/x-protobuf"),
        400, "missing_field", "event_id"),
    "pb_missing_source_id": (
        lambda: dict(ev=_pb_bytes(make_event(), clear=["source.id"]),
                     content_type="application/x-protobuf"),
        400, "missing_field", "source.id"),
    # 400 enums
    "unknown_kind": (
        lambda: dict(ev=make_event(kind="car")),
        400, "invalid_enum", "source.kind"),
    "unknown_type": (
        lambda: dict(ev=make_event(type="explosion")),
        400, "invalid_enum", "type"),
    "pb_unknown_type_value": (
        lambda: dict(ev=_pb_bytes(make_event(), type=99),
                     content_type="application/x-protobuf"),
        400, "invalid_enum", "type"),
    # 400 ids
    "event_id_bad_chars": (
        lambda: dict(ev=make_event(event_id="bad id/" + uid())),
        400, "invalid_id", "event_id"),
    "event_id_65_chars": (
        lambda: dict(ev=make_event(event_id="e" * 65)),
        400, "invalid_id", "event_id"),
    "source_id_bad_chars": (
        lambda: dict(ev=make_event(source_id="bus#" + uid())),
        400, "invalid_id", "source.id"),
    "source_id_non_ascii": (
        lambda: dict(ev=make_event(source_id="otob\u00fcs-" + uid())),
        400, "invalid_id", "source.id"),
    "source_id_65_chars": (
        lambda: dict(ev=make_event(source_id="s" * 65)),
        400, "invalid_id", "source.id"),
    # 400 attrs and fields
    "too_many_attrs": (
        lambda: dict(ev=make_event(attrs={"k%02d" % i: "v"
                                          for i in range(33)})),
        400, "too_many_attrs", "attrs"),
    "bad_occurred_at": (
        lambda: dict(ev=make_event(occurred_at="yesterday at noon")),
        400, "invalid_field", "occurred_at"),
    "occurred_at_with_endless_fraction": (
        lambda: dict(ev=make_event(
            occurred_at="2026-11-21T22:14:03." + "1" * 2000 + "Z")),
        400, "invalid_field", "occurred_at"),
    "bad_occurred_at_month_13": (
        lambda: dict(ev=make_event(occurred_at="2026-13-01T00:00:00Z")),
        400, "invalid_field", "occurred_at"),
    "lat_out_of_range": (
        lambda: dict(ev=make_event(location={"lat": 91.0, "lon": 27.1})),
        400, "invalid_field", "location.lat"),
    "lon_out_of_range": (
        lambda: dict(ev=make_event(location={"lat": 38.4, "lon": -180.5})),
        400, "invalid_field", "location.lon"),
    "event_id_wrong_json_type": (
        lambda: dict(ev=make_event(event_id=12345)),
        400, "invalid_field", "event_id"),
    "attr_value_not_string": (
        lambda: dict(ev=make_event(attrs={"route": 90})),
        400, "invalid_field", None),
    "label_too_long": (
        lambda: dict(ev=make_event(label="L" * 257)),
        400, "invalid_field", "source.label"),
}


def _check_error(name, status, body, headers, want_status, want_code,
                 want_field):
    assert status == want_status, "%s: %s %r" % (name, status, body)
    assert headers.get("content-type", "").startswith("application/json"), \
        "%s: error is not JSON: %r" % (name, headers)
    assert isinstance(body, dict), "%s: body %r" % (name, body)
    assert body.get("error") == want_code, "%s: %r" % (name, body)
    assert isinstance(body.get("detail"), str) and body["detail"], \
        "%s: no detail: %r" % (name, body)
    if isinstance(want_field, tuple):
        assert body.get("field") in want_field, "%s: %r" % (name, body)
    elif want_field is not None:
        assert body.get("field") == want_field, "%s: %r" % (name, body)


def _state(alertd):
    with alertd.db().cursor() as cur:
        cur.execute("SELECT count(*) FROM events")
        n_events = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM incident_transitions")
        n_trans = cur.fetchone()[0]
    # live:<instance> is the daemon's own liveness key (docs/redis.md),
    # set within its first second whatever the input.
    keys = [k for k in alertd.redis_keys() if ":live:" not in k]
    return {"redis_keys": keys, "events": n_events,
            "transitions": n_trans}


def _send(alertd, name):
    build, st, code, field = CASES[name]
    kw = build()
    ev = kw.pop("ev")
    status, body, headers = post_event(alertd.http, ev, **kw)
    _check_error(name, status, body, headers, st, code, field)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(alertd, name):
    before = _state(alertd)
    _send(alertd, name)
    after = _state(alertd)
    assert after == before, "%s changed something: %r -> %r" % (
        name, before, after)
    assert after["events"] == 0 and after["transitions"] == 0


def test_all_bad_inputs_in_a_row_change_nothing(alertd, operator_token):
    """All of them on one daemon, then: no incident in Redis, no row in
    PostgreSQL, and a good event afterwards is still accepted as new."""
    before = _state(alertd)
    errors = []
    for name in CASES:
        try:
            _send(alertd, name)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)
    after = _state(alertd)
    assert after == before
    assert not [k for k in after["redis_keys"] if ":evt:" in k or
                ":inc" in k], after["redis_keys"]
    st, queue, _ = http_request(alertd.http, "GET", "/v1/incidents",
                                token=operator_token)
    assert st == 200 and queue == [], queue
    st, body, _ = post_event(alertd.http, make_event())
    assert st == 202 and body["outcome"] == "new", body


def test_get_on_events_is_405(alertd):
    st, body, headers = http_request(alertd.http, "GET", "/v1/events")
    _check_error("GET /v1/events", st, body, headers, 405,
                 "method_not_allowed", None)


def test_pb_event_type_unspecified(alertd):
    """proto3 cannot tell an absent enum from its zero value: type 0 is
    refused as missing (or as an invalid enum)."""
    body = _pb_bytes(make_event(), clear=["type"])
    status, resp, headers = post_event(
        alertd.http, body, content_type="application/x-protobuf")
    assert status == 400, resp
    assert resp.get("error") in ("missing_field", "invalid_enum"), resp
    assert resp.get("field") == "type", resp
    assert _state(alertd)["events"] == 0



def _cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_file_descriptors_pauses_accepts_instead_of_spinning(alertd):
    """accept() failing with EMFILE (connections opened until alertd has
    no file descriptor left): libevent's listener would retry at once,
    at 100 % of a core and a log line each time, while the devices and
    consoles already connected wait for that core. alertd pauses the
    listener a second at a time instead, and takes connections again
    once descriptors are free."""
    import socket
    import subprocess
    pid = alertd.pid
    used = len(os.listdir("/proc/%d/fd" % pid))
    subprocess.run(["prlimit", "--pid", str(pid),
                    "--nofile=%d:%d" % (used + 8, used + 8)], check=True)
    port = int(alertd.http.rsplit(":", 1)[1])
    socks = []
    try:
        for _ in range(40):
            socks.append(socket.create_connection(("127.0.0.1", port), 5))
        time.sleep(1.0)
        cpu0 = _cpu_s(pid)
        time.sleep(3.0)
        spent = _cpu_s(pid) - cpu0
        assert spent < 1.0, "alertd spun: %.2f s of CPU in 3 s" % spent
        warned = alertd.log().count("http: accept failed")
        assert 1 <= warned <= 10, warned
        assert alertd.alive()
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: http_request(alertd.http, "GET", "/healthz",
                                    timeout=2)[0] == 200, 10,
               what="/healthz once descriptors are free")
