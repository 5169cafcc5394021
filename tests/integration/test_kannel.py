"""SMS through a real Kannel (Debian's bearerbox + smsbox on loopback,
its SMSC a generic HTTP SMSC pointing at a local sink): the sink gets the
masked text for the right numbers, and a delivery report that the sink
sends back through Kannel reaches alertd's dlr-url and is recorded."""

import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

from conftest import _track, free_port, wait_port
from helpers import make_event, post_event, wait_until
from sink import Sink

BEARERBOX = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
SMSBOX = shutil.which("smsbox") or "/usr/sbin/smsbox"
NUMBERS = ["+905321112233", "+905059998877"]


class Kannel:
    def __init__(self, sink):
        self.dir = tempfile.mkdtemp(prefix="alertd-kannel-")
        self.admin, self.box = free_port(), free_port()
        self.smsc, self.sendsms = free_port(), free_port()
        d = self.dir
        conf = """
group = core
admin-port = %(admin)d
admin-password = adm
admin-allow-ip = "127.0.0.1"
smsbox-port = %(box)d
box-allow-ip = "127.0.0.1"
log-file = "%(d)s/bearerbox.log"
log-level = 0
access-log = "%(d)s/access.log"
dlr-storage = internal

group = smsc
smsc = http
smsc-id = sink
system-type = generic
send-url = "http://127.0.0.1:%(sink)d/sms?to=%%p&from=%%P&text=%%b"
port = %(smsc)d
connect-allow-ip = "127.0.0.1"
status-success-regex = "ok"
generic-foreign-id-regex = "id=([a-z0-9]+)"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = %(box)d
sendsms-port = %(sendsms)d
log-file = "%(d)s/smsbox.log"
log-level = 0

group = sendsms-user
username = alertd
password = smspw
max-messages = 3
concatenation = true

group = sms-service
keyword = default
text = "ok"
""" % {"admin": self.admin, "box": self.box, "smsc": self.smsc,
       "sendsms": self.sendsms, "sink": sink.port, "d": d}
        self.conf = "%s/kannel.conf" % d
        with open(self.conf, "w") as f:
            f.write(conf)
        self.bb = _track(subprocess.Popen(
            [BEARERBOX, self.conf], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        if not wait_port(self.box, 20, self.bb):
            raise RuntimeError("bearerbox did not start: %s" % self.log())
        self.sb = _track(subprocess.Popen(
            [SMSBOX, self.conf], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        if not wait_port(self.sendsms, 20, self.sb):
            raise RuntimeError("smsbox did not start: %s" % self.log())

    def log(self):
        out = []
        for n in ("bearerbox.log", "smsbox.log"):
            try:
                with open("%s/%s" % (self.dir, n)) as f:
                    out.append(f.read()[-3000:])
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        for p in (self.sb, self.bb):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in (self.sb, self.bb):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def kannel_sink():
    if not shutil.os.path.exists(BEARERBOX):
        pytest.skip("kannel is not installed (scripts/deps.sh)")
    sink = Sink()
    # The "SMSC" accepts every message and gives it a message id.
    sink.script("/sms", [(200, "ok id=m%d" % i) for i in range(1, 50)])
    k = Kannel(sink)
    yield k, sink
    k.stop()
    sink.close()


def test_sms_through_kannel_masked_and_dlr_recorded(alertd_factory,
                                                    make_config,
                                                    kannel_sink):
    kannel, sink = kannel_sink
    cfg = {
        "escalation": {
            "urgent.min_priority": "50",
            "urgent.level1": "0ms sms:%s sms:%s" % tuple(NUMBERS),
            "urgent.repeat": "60s",
        },
        "channels": {
            "sms_url": "http://127.0.0.1:%d/cgi-bin/sendsms"
                       % kannel.sendsms,
            "sms_user": "alertd", "sms_password": "smspw",
            "sms_from": "112",
            "sms_template": "ALARM #{id} {type} {zone} L{level} {label}",
            "timeout_ms": "3000", "retries": "2", "backoff_ms": "200",
        },
    }
    conf = make_config(**cfg)
    conf.update(channels={"sms_dlr_url": "http://127.0.0.1:%d/v1/dlr/sms"
                          % conf.http_port, "sms_dlr_secret": "k4nnel"})
    alertd = alertd_factory(config=conf)
    ev = make_event(type="call_request", zone="Karsiyaka",
                    label="Caller Ayse Yilmaz 0532")
    ev["source"]["kind"] = "support_line"
    st, body, _ = post_event(alertd.http, ev)
    assert st == 202, body
    iid = body["incident_id"]
    try:
        wait_until(lambda: len(sink.on("/sms")) >= 2, timeout=20,
                   what="two SMS at the sink")
    except AssertionError:
        raise AssertionError("no SMS at the sink; kannel logs:\n%s\n%s" % (
            kannel.log(), alertd.log()[-3000:]))
    msgs = sink.on("/sms")
    assert sorted(m["query"]["to"] for m in msgs) == sorted(NUMBERS)
    for m in msgs:
        text = m["query"]["text"]
        assert text.startswith("ALARM #%d call_request Karsiyaka L1" % iid)
        assert "Ayse" not in text and "***" in text

    def rows(outcome):
        with alertd.db() as conn, conn.cursor() as cur:
            cur.execute("SELECT idempotency_key, target FROM notifications"
                        " WHERE incident_id = %s AND channel = 'sms' AND "
                        "outcome = %s", (iid, outcome))
            return cur.fetchall()

    wait_until(lambda: len(rows("sent")) == 2, timeout=10, what="sent rows")
    assert all(NUMBERS[0] not in t and NUMBERS[1] not in t
               for _, t in rows("sent"))

    # The SMSC reports the delivery of message m1 to Kannel, which calls
    # alertd's dlr-url (filled with %p, %d, %A).
    to = [m for m in msgs if m["query"]["to"] == NUMBERS[0]]
    mid = "m%d" % (msgs.index(to[0]) + 1)
    url = ("http://127.0.0.1:%d/?dlr-mid=%s&dlr-mask=1&to=%s&from=112"
           % (kannel.smsc, mid, urllib.parse.quote(NUMBERS[0])))
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status in (200, 202), r.status
    try:
        wait_until(lambda: rows("delivered"), timeout=15,
                   what="the delivery report recorded")
    except AssertionError:
        raise AssertionError("no DLR; kannel logs:\n%s\n%s" % (
            kannel.log(), alertd.log()[-3000:]))
    (key, target), = rows("delivered")
    sent = {k for k, _ in rows("sent")}
    assert key in sent and key.startswith("%d@" % iid), (key, sent)
    assert key.endswith(":1:sms:%s" % NUMBERS[0]), key
    # The report got through: alertd put the secret (only in
    # sms_dlr_secret, not in sms_dlr_url) into the dlr-url it gave Kannel.
    assert target.endswith("33") and NUMBERS[0] not in target


def test_dlr_endpoint_checks_its_input(alertd_factory):
    alertd = alertd_factory(channels={"sms_dlr_secret": "s3cret"})
    from helpers import http_get
    base = "/v1/dlr/sms?key=7:2:sms:%2B905321112233&type=1"
    st, body, _ = http_get(alertd.http, base)
    assert st == 401, body
    st, body, _ = http_get(alertd.http, base + "&secret=wrong")
    assert st == 401, body
    st, body, _ = http_get(alertd.http, "/v1/dlr/sms?key=7:x&type=1"
                           "&secret=s3cret")
    assert st == 400 and body["field"] == "key", body
    st, body, _ = http_get(alertd.http, base + "&secret=s3cret")
    assert st == 200 and body["recorded"] == "delivered", body

    def rows():
        with alertd.db() as conn, conn.cursor() as cur:
            cur.execute("SELECT incident_id, level, attempt, target, outcome"
                        " FROM notifications WHERE channel = 'sms'")
            return cur.fetchall()

    wait_until(rows, timeout=5, what="the report row")
    assert rows() == [(7, 2, 0, "+90********33", "delivered")]


def test_delivery_reports_need_a_secret(alertd):
    """Without sms_dlr_secret (the example config sets none) the DLR
    route refuses every report: it is on the device-facing port, and a
    report writes a chained 'delivered' row into the audit trail."""
    from helpers import http_get
    st, body, _ = http_get(alertd.http, "/v1/dlr/sms?key=4242:3:sms:"
                           "%2B905551112233&type=1&answer=forged")
    assert st == 403 and body["error"] == "forbidden", (st, body)
    st, body, _ = http_get(alertd.http, "/v1/dlr/sms?key=4242:3:sms:"
                           "%2B905551112233&type=1&secret=")
    assert st == 403, (st, body)
    time.sleep(0.5)
    with alertd.db() as conn, conn.cursor() as cur:
        cur.execute("SELECT outcome FROM notifications "
                    "WHERE incident_id = 4242")
        assert cur.fetchall() == []


def test_dlr_url_without_secret_is_refused(make_config):
    from conftest import ALERTD
    bad = make_config(channels={"sms_url": "http://127.0.0.1:13013/x",
                                "sms_dlr_url":
                                "http://127.0.0.1:8080/v1/dlr/sms"})
    r = subprocess.run([str(ALERTD), "--check-config", str(bad.path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "sms_dlr_secret" in r.stderr, r.stderr
