#!/usr/bin/python3
"""Writes the seed inputs of tests/fuzz/fuzz_ingest.c into
tests/fuzz/corpus/ (seed-*: what a well-behaved device sends, one per
reader, plus a few edges). `make fuzz` starts from them; the unit tests
replay them with what the fuzzer found since: the inputs named by their
SHA-1 reach code the seeds do not (kept with libFuzzer's -merge=1, see
scripts/fuzz.sh), found-* broke a check once.

    /usr/bin/python3 tests/fuzz/make_seeds.py
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import helpers  # noqa: E402

OUT = os.path.join(HERE, "corpus")
# The first byte of an input picks the reader (fuzz_ingest.c).
JSON, PB, FRAME, SIG, TIME = 0, 1, 2, 3, 4


def event(**kw):
    ev = helpers.make_event(**kw)
    ev["event_id"] = "ev-seed-" + ev["event_id"][-8:]
    return ev


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "json-panic": (JSON, json.dumps(event()).encode()),
        "json-heartbeat-min": (JSON, json.dumps(
            event(type="heartbeat", zone=None, label=None, location=None,
                  attrs=None, occurred_at=None)).encode()),
        "json-support-line": (JSON, json.dumps(event(
            kind="support_line", type="call_request",
            attrs={"caller_phone": "+90 555 000 0000",
                   "caller_name": "Ay\u015fe", "line": "women"})).encode()),
        "json-escapes": (JSON, json.dumps(event(
            label="tab\there \"quoted\" \\ \u00e7\u011f \U0001f6a8",
            location={"lat": -90, "lon": 180.0},
            occurred_at="2026-11-21T22:14:03.120+03:00")).encode()),
        "json-not-object": (JSON, b"[1,2,{\"a\":null}]"),
        "pb-panic": (PB, helpers.pb_event(event()).SerializeToString()),
        "pb-support-line": (PB, helpers.pb_event(event(
            kind="support_line", type="callback_request",
            attrs={"caller_phone": "+90 555 000 0001"})).SerializeToString()),
        "pb-heartbeat-min": (PB, helpers.pb_event(event(
            type="heartbeat", zone=None, label=None, location=None,
            attrs=None, occurred_at=None)).SerializeToString()),
        "frame-panic": (FRAME, helpers.TcpClient.signed_frame(
            event(), t=1795000000)),
        "frame-fault": (FRAME, helpers.TcpClient.signed_frame(
            event(kind="ferry", type="fault"), t=1795000000)),
        "sig-plain": (SIG, ("t=1795000000,v1=" + "ab" * 32).encode()),
        "sig-swapped": (SIG, (" v1=" + "0f" * 32 + " , t=17 ").encode()),
        "time-utc": (TIME, b"2026-11-21T22:14:03.120Z"),
        "time-offset": (TIME, b"2026-02-28t23:59:60-09:30"),
        "time-fraction": (TIME, b"1970-01-01T00:00:00.123456789+00:00"),
    }
    for name, (reader, body) in sorted(seeds.items()):
        with open(os.path.join(OUT, "seed-" + name), "wb") as f:
            f.write(bytes([reader]) + body)
    print("%d seeds in %s" % (len(seeds), OUT))


if __name__ == "__main__":
    main()
