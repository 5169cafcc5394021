"""HTTP/1.1 protocol behaviour of alertd's HTTP layer (daemon/http1.c,
docs/api.md "HTTP"): keep-alive and HTTP/1.0, pipelining,
`Connection: close`, chunked request bodies, `Expect: 100-continue`, HEAD,
size limits, malformed requests, unknown methods, clients that leave or
dawdle or half-close, idle connections, the connection cap and the framing
of the SSE stream.

Everything here talks to the daemon over raw sockets so that the bytes on
the wire are exactly the ones written below; the helpers of helpers.py
(http.client) would hide them. The endpoints' own answers (status codes of
bad events, the stream's content) are tested elsewhere (test_bad_input.py,
test_ingest_http.py, test_stream.py); only what the HTTP layer decides is
here.
"""

import email.utils
import json
import os
import re
import socket
import time
import urllib.parse

import pytest

from helpers import (SocketOwner, event_body, make_event, mutate, post_event,
                     sign, wait_until)

# The daemon's limits (daemon/http_server.c): request line and headers,
# and the largest body it reads at all (the largest value max_body_bytes
# may take, 1 MiB, plus one).
MAX_HEADER_BYTES = 16 * 1024
HARD_BODY_LIMIT = 1024 * 1024 + 1
# The idle timeout the timeout tests configure ([server]
# http_idle_timeout_s, 60 by default).
IDLE_TIMEOUT_S = 2


# --------------------------------------------------------------------------
# A raw HTTP/1.x client.

class Resp:
    """One parsed answer. headers: lower-case name -> value (repeated
    headers joined with ", "); header_list keeps them as sent."""

    def __init__(self, version, status, reason, header_list, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.header_list = header_list
        self.raw_head = raw_head
        self.headers = {}
        for k, v in header_list:
            k = k.lower()
            self.headers[k] = (self.headers[k] + ", " + v
                               if k in self.headers else v)
        self.body = b""
        self.chunked = False

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def tokens(self, name):
        """The comma-separated tokens of a header, lower case."""
        v = self.header(name) or ""
        return [t.strip().lower() for t in v.split(",") if t.strip()]

    @property
    def json(self):
        try:
            return json.loads(self.body.decode())
        except ValueError:
            return None

    def __repr__(self):
        return "<%s %d %s %r body=%r>" % (self.version, self.status,
                                          self.reason, self.header_list,
                                          self.body[:300])


class Conn(SocketOwner):
    """A TCP connection to the daemon's HTTP port. .buf holds what was
    received and not parsed yet; .eof is set once the server closed."""

    def __init__(self, daemon, timeout=5.0, nodelay=True):
        u = urllib.parse.urlsplit(daemon.http)
        self.host, self.port = u.hostname, u.port
        self.timeout = timeout
        self.sock = socket.create_connection((self.host, self.port),
                                             timeout=timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.reset = False

    def send(self, data):
        self.sock.sendall(data)

    def _recv(self, deadline):
        """Reads once into buf; False at EOF (or reset). Raises
        TimeoutError past deadline."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no bytes from the server in time; have %r"
                               % self.buf[:300])
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no bytes from the server in time; have %r"
                               % self.buf[:300]) from None
        except ConnectionResetError:
            self.reset = True
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take_line(self, deadline, what):
        while b"\r\n" not in self.buf:
            if not self._recv(deadline):
                raise EOFError("connection closed in %s; have %r"
                               % (what, self.buf[:300]))
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n, deadline, what):
        while len(self.buf) < n:
            if not self._recv(deadline):
                raise EOFError("connection closed in %s (%d of %d bytes)"
                               % (what, len(self.buf), n))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self, timeout=None):
        """Status line and headers of the next answer (1xx included)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._recv(deadline):
                raise EOFError("connection closed before a complete answer "
                               "head; have %r" % self.buf[:300])
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        assert m, "malformed status line %r (head %r)" % (lines[0], head)
        hl = []
        for ln in lines[1:]:
            k, sep, v = ln.partition(":")
            assert sep and k and k == k.strip(), \
                "malformed header line %r in %r" % (ln, head)
            hl.append((k, v.strip()))
        return Resp(m.group(1), int(m.group(2)), m.group(3) or "", hl,
                    head + b"\r\n\r\n")

    def read_chunked(self, deadline):
        """A chunked body, strictly framed: size line, data, CRLF; the
        last chunk and the (empty) trailer."""
        out = b""
        while True:
            line = self._take_line(deadline, "a chunk size line")
            size_txt = line.split(b";")[0].strip()
            assert re.match(rb"^[0-9a-fA-F]+$", size_txt), \
                "bad chunk size line %r" % line
            size = int(size_txt, 16)
            if size == 0:
                while self._take_line(deadline, "the trailer") != b"":
                    pass
                return out
            out += self._take(size, deadline, "a chunk")
            crlf = self._take(2, deadline, "a chunk's CRLF")
            assert crlf == b"\r\n", "chunk data not followed by CRLF: %r" \
                % crlf
        return out

    def read_response(self, method="GET", timeout=None):
        """The next answer with its body (framed by Content-Length, chunked
        encoding, or the close). A 1xx answer is returned as it is (no
        body): the caller reads the final one next."""
        deadline = time.monotonic() + (timeout or self.timeout)
        r = self.read_head(max(0.01, deadline - time.monotonic()))
        if 100 <= r.status < 200 or r.status in (204, 304) or \
                method == "HEAD":
            return r
        te = r.tokens("transfer-encoding")
        if te:
            assert te[-1] == "chunked", "unknown transfer-encoding %r" % te
            assert r.header("content-length") is None, \
                "both Transfer-Encoding and Content-Length: %r" % r
            r.chunked = True
            r.body = self.read_chunked(deadline)
            return r
        cl = r.header("content-length")
        if cl is not None:
            assert re.match(r"^\d+$", cl), "bad Content-Length %r" % cl
            r.body = self._take(int(cl), deadline, "the body")
            return r
        # Delimited by the close.
        while self._recv(deadline):
            pass
        r.body, self.buf = self.buf, b""
        return r

    def closed_by_server(self, timeout=2.0):
        """True if the server closes (EOF or reset) within timeout; bytes
        still arriving are kept in .buf."""
        deadline = time.monotonic() + timeout
        try:
            while self._recv(deadline):
                pass
        except TimeoutError:
            return False
        return True

    def quiet(self, seconds=0.2):
        """True if nothing arrives within `seconds` and the connection
        stays open."""
        before = len(self.buf)
        deadline = time.monotonic() + seconds
        try:
            while self._recv(deadline):
                pass
        except TimeoutError:
            return len(self.buf) == before
        return False


def request(method, path, version="1.1", headers=(), body=b"", host=True,
            content_length=True):
    """The bytes of one request. headers: (name, value) pairs in order."""
    lines = ["%s %s HTTP/%s" % (method, path, version)]
    if host:
        lines.append("Host: 127.0.0.1")
    names = {k.lower() for k, _ in headers}
    lines += ["%s: %s" % (k, v) for k, v in headers]
    if body and content_length and "content-length" not in names and \
            "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def signed_event(ev=None):
    """(event dict, body bytes, headers) of a signed JSON event."""
    ev = ev or make_event()
    body, ctype = event_body(ev)
    return ev, body, [("Content-Type", ctype),
                      ("X-Alertd-Signature", sign(body))]


def signed_post(version="1.1", extra=(), ev=None):
    """(event dict, bytes of POST /v1/events with a signed JSON event)."""
    ev, body, hdrs = signed_event(ev)
    return ev, request("POST", "/v1/events", version, hdrs + list(extra),
                       body)


def assert_accepted(r, ev, need_length=True):
    """A 202 for event ev, its JSON body framed by a correct length (or,
    need_length=False, by the close: an HTTP/1.0 answer may be)."""
    assert r.status == 202, r
    assert r.header("content-type", "").startswith("application/json"), r
    cl = r.header("content-length")
    if need_length and not r.chunked:
        assert cl is not None, "no Content-Length: %r" % r
    if cl is not None:
        assert int(cl) == len(r.body), r
    body = r.json
    assert isinstance(body, dict), r
    assert body["event_id"] == ev["event_id"], (body, ev["event_id"])
    assert body["outcome"] in ("new", "merged", "duplicate"), body
    return body


def assert_daemon_serves(daemon):
    """The daemon runs and answers GET /healthz on a new connection."""
    assert daemon.alive(), daemon.log()[-3000:]
    with Conn(daemon) as c:
        c.send(request("GET", "/healthz", headers=[("Connection", "close")]))
        r = c.read_response()
    assert r.status == 200, r
    assert r.json == {"status": "ok"}, r


def event_stored(daemon, event_id):
    with daemon.db().cursor() as cur:
        cur.execute("SELECT count(*) FROM events WHERE event_id = %s",
                    (event_id,))
        return cur.fetchone()[0] == 1


def assert_closes(c, timeout=2.0, what="the server"):
    assert c.closed_by_server(timeout), \
        "%s left the connection open (buffered: %r)" % (what, c.buf[:300])


# --------------------------------------------------------------------------
# 1. Keep-alive.

def test_keepalive_three_signed_posts_on_one_socket(alertd):
    with Conn(alertd) as c:
        for i in range(3):
            ev, data = signed_post()
            c.send(data)
            r = c.read_response()
            assert r.version == "HTTP/1.1", r
            assert_accepted(r, ev)
            assert "close" not in r.tokens("connection"), r
            # The Content-Length covered the whole body: nothing follows.
            assert c.buf == b"", "bytes after answer %d: %r" % (i, c.buf)
        assert c.quiet(0.3), "the server closed or sent more: %r" % c.buf
        # And the socket is still usable.
        c.send(request("GET", "/healthz"))
        assert c.read_response().status == 200


# --------------------------------------------------------------------------
# 2. Pipelining.

def test_pipelined_requests_answered_in_order(alertd):
    """Four requests in one write: the answers come in the order of the
    requests, even where a later one (GET /healthz) is ready before an
    earlier event is durable."""
    ev1, p1 = signed_post()
    ev2, p2 = signed_post()
    ev3, p3 = signed_post()
    with Conn(alertd) as c:
        c.send(p1 + request("GET", "/healthz") + p2 + p3)
        assert_accepted(c.read_response(), ev1)
        h = c.read_response()
        assert h.status == 200 and h.json == {"status": "ok"}, h
        assert_accepted(c.read_response(), ev2)
        assert_accepted(c.read_response(), ev3)
        assert c.quiet(0.2), c.buf
    for ev in (ev1, ev2, ev3):
        assert event_stored(alertd, ev["event_id"])


# --------------------------------------------------------------------------
# 3. HTTP/1.0.

def test_http10_without_keepalive_is_answered_then_closed(alertd):
    with Conn(alertd) as c:
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.version in ("HTTP/1.0", "HTTP/1.1"), r
        assert r.status == 200, r
        assert r.json == {"status": "ok"}, r
        assert "keep-alive" not in r.tokens("connection"), r
        assert_closes(c)


def test_http10_signed_post_is_answered_then_closed(alertd):
    ev, data = signed_post(version="1.0")
    with Conn(alertd) as c:
        c.send(data)
        r = c.read_response()
        assert r.version in ("HTTP/1.0", "HTTP/1.1"), r
        assert_accepted(r, ev, need_length=False)
        assert_closes(c)
    assert event_stored(alertd, ev["event_id"])


def test_http10_keepalive_connection_stays_usable(alertd):
    ka = [("Connection", "keep-alive")]
    with Conn(alertd) as c:
        c.send(request("GET", "/healthz", "1.0", ka, host=False))
        r = c.read_response()
        assert r.status == 200 and r.json == {"status": "ok"}, r
        # An HTTP/1.0 client keeps the connection only if told so, and
        # needs the length to find the end of the body.
        assert r.header("content-length") is not None, r
        if r.version == "HTTP/1.0":
            assert "keep-alive" in r.tokens("connection"), r
        assert c.quiet(0.3), "closed after the first HTTP/1.0 keep-alive " \
            "answer"
        ev, data = signed_post(version="1.0", extra=ka)
        c.send(data)
        r2 = c.read_response()
        assert_accepted(r2, ev)


# --------------------------------------------------------------------------
# 4. Connection: close from an HTTP/1.1 client.

def test_http11_connection_close_is_honoured(alertd):
    with Conn(alertd) as c:
        c.send(request("GET", "/healthz", headers=[("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200, r
        assert "close" in r.tokens("connection"), r
        assert_closes(c)


def test_http11_connection_close_on_signed_post(alertd):
    """The same for an answer that comes later (once the event is
    durable)."""
    ev, data = signed_post(extra=[("Connection", "close")])
    with Conn(alertd) as c:
        c.send(data)
        r = c.read_response()
        assert_accepted(r, ev)
        assert "close" in r.tokens("connection"), r
        assert_closes(c)


# --------------------------------------------------------------------------
# 5. Chunked request bodies.

def _chunked(body, sizes):
    out, i = b"", 0
    for n in sizes:
        part = body[i:i + n]
        if not part:
            break
        out += b"%x\r\n" % len(part) + part + b"\r\n"
        i += n
    if i < len(body):
        out += b"%x\r\n" % (len(body) - i) + body[i:] + b"\r\n"
    return out + b"0\r\n\r\n"


def test_chunked_request_body_is_decoded_before_the_signature(alertd):
    ev, body, hdrs = signed_event()
    data = request("POST", "/v1/events",
                   headers=hdrs + [("Transfer-Encoding", "chunked")],
                   body=_chunked(body, [1, 17, 100]))
    with Conn(alertd) as c:
        c.send(data)
        r = c.read_response()
        body_json = assert_accepted(r, ev)
        assert body_json["outcome"] == "new", body_json
        # The last chunk was consumed: the connection goes on.
        c.send(request("GET", "/healthz"))
        assert c.read_response().status == 200
    assert event_stored(alertd, ev["event_id"])


def test_chunked_body_over_max_body_bytes_is_413(alertd):
    """The limit holds for the decoded size of a chunked body (which
    announces no length)."""
    ev = make_event(attrs={"pad": "x" * (20 * 1024)})
    _, body, hdrs = signed_event(ev)
    data = request("POST", "/v1/events",
                   headers=hdrs + [("Transfer-Encoding", "chunked")],
                   body=_chunked(body, [4096] * 10))
    with Conn(alertd) as c:
        c.send(data)
        r = c.read_response()
    assert r.status == 413, r
    assert r.json and r.json.get("error") == "body_too_large", r
    assert not event_stored(alertd, ev["event_id"])


# --------------------------------------------------------------------------
# 6. Expect: 100-continue.

def test_expect_100_continue(alertd):
    ev, body, hdrs = signed_event()
    head = request("POST", "/v1/events",
                   headers=hdrs + [("Content-Length", str(len(body))),
                                   ("Expect", "100-continue")])
    with Conn(alertd) as c:
        c.send(head)
        t0 = time.monotonic()
        r = c.read_head(timeout=1.0)
        assert time.monotonic() - t0 < 1.0
        assert r.status == 100, r
        assert r.version == "HTTP/1.1", r
        assert c.buf == b"", "bytes after the 100 Continue: %r" % c.buf
        c.send(body)
        assert_accepted(c.read_response(), ev)


# --------------------------------------------------------------------------
# 7. HEAD.

def test_head_healthz_has_no_body(alertd):
    """HEAD gets the head of the GET answer and not one body byte: the
    next answer on the socket starts right after the blank line."""
    with Conn(alertd) as c:
        c.send(request("HEAD", "/healthz"))
        r = c.read_response(method="HEAD")
        assert r.status == 200, r
        assert c.quiet(0.3) and c.buf == b"", \
            "body bytes after a HEAD answer: %r" % c.buf
        c.send(request("GET", "/healthz"))
        g = c.read_response()
        assert g.status == 200 and g.json == {"status": "ok"}, g
        cl = r.header("content-length")
        if cl is not None:
            # A HEAD answer's length, if given, is the GET answer's.
            assert int(cl) == len(g.body), (r, g)


def test_head_then_get_pipelined(alertd):
    with Conn(alertd) as c:
        c.send(request("HEAD", "/healthz") + request("GET", "/healthz"))
        r = c.read_response(method="HEAD")
        assert r.status == 200, r
        g = c.read_response()
        assert g.status == 200 and g.json == {"status": "ok"}, g


# --------------------------------------------------------------------------
# 8. Limits.

def _oversized_headers():
    return request("GET", "/healthz",
                   headers=[("X-Pad", "a" * (MAX_HEADER_BYTES + 1000))])


def test_large_headers_under_the_limit_are_accepted(alertd):
    """12 KiB of headers (more than one read of a small buffer) are
    fine."""
    with Conn(alertd) as c:
        c.send(request("GET", "/healthz",
                       headers=[("X-Pad-%d" % i, "b" * 1000)
                                for i in range(12)]))
        r = c.read_response()
        assert r.status == 200 and r.json == {"status": "ok"}, r
        assert c.quiet(0.2)


def test_oversized_headers_refused_and_closed(alertd):
    with Conn(alertd) as c:
        c.send(_oversized_headers())
        r = c.read_response()
        assert 400 <= r.status < 500, r
        assert_closes(c)
    assert_daemon_serves(alertd)


def test_oversized_headers_are_431_json(alertd):
    """413 is for bodies (RFC 9110 15.5.14); headers too large are 431
    (RFC 6585), with the JSON error of every endpoint."""
    with Conn(alertd) as c:
        c.send(_oversized_headers())
        r = c.read_response()
    assert r.status == 431, r
    assert r.json["error"] == "headers_too_large", r


def _huge_post_head():
    """Headers of a POST that announces more than the daemon ever reads;
    the body is never sent (the server must answer without it)."""
    return request("POST", "/v1/events",
                   headers=[("Content-Type", "application/json"),
                            ("Content-Length", str(HARD_BODY_LIMIT + 1)),
                            ("X-Alertd-Signature", sign(b"x"))])


def test_content_length_over_hard_limit_is_413_and_closed(alertd):
    with Conn(alertd) as c:
        c.send(_huge_post_head())
        r = c.read_response(timeout=3)
        assert r.status == 413, r
        assert_closes(c)
    assert_daemon_serves(alertd)


def test_oversized_body_json_error(alertd):
    """docs/api.md: 413 body_too_large as JSON whatever the size (evhttp,
    before optimisation 36, answered a request that announced > 1 MiB
    with its own HTML page)."""
    with Conn(alertd) as c:
        c.send(_huge_post_head())
        r = c.read_response(timeout=3)
    assert r.status == 413, r
    assert r.header("content-type", "").startswith("application/json"), r
    assert r.json and r.json.get("error") == "body_too_large", r


# Content-Length between max_body_bytes and 1 MiB: test_bad_input.py
# (too_large_*) already checks the JSON 413 body_too_large.


# --------------------------------------------------------------------------
# 9. Malformed requests.

MALFORMED = {
    "garbage_request_line": b"GARBAGE\r\n\r\n",
    "header_without_colon":
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "content_length_not_a_number":
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "content_length_negative":
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_request_is_400_and_closed(alertd, name):
    with Conn(alertd) as c:
        c.send(MALFORMED[name])
        r = c.read_response()
        assert r.status == 400, r
        assert r.json["error"] == "bad_request", r
        assert_closes(c)
    assert_daemon_serves(alertd)


UNKNOWN_VERSIONS = {
    "http_9_9": b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    "http_2_0_in_http1_syntax": b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
    # No version at all: an HTTP/0.9 request line.
    "no_version": b"GET /healthz\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_VERSIONS))
def test_unknown_http_version_is_refused_and_closed(alertd, name):
    """505 HTTP Version Not Supported for a version alertd does not
    speak, a request line without one (HTTP/0.9) included."""
    with Conn(alertd) as c:
        c.send(UNKNOWN_VERSIONS[name])
        r = c.read_response()
        assert (r.status, r.json["error"]) == (505, "http_version"), r
        assert_closes(c)
    assert_daemon_serves(alertd)


def test_content_length_with_transfer_encoding_smuggles_nothing(alertd):
    """Content-Length and Transfer-Encoding both (RFC 9112 6.1): refused,
    or read as chunked and the connection closed after the answer; the
    bytes the two framings disagree on are never read as a request of
    their own."""
    body = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    with Conn(alertd) as c:
        c.send(request("POST", "/v1/events",
                       headers=[("Content-Type", "application/json"),
                                ("Content-Length", str(len(body))),
                                ("Transfer-Encoding", "chunked")],
                       body=body))
        r = c.read_response()
        assert 400 <= r.status < 500, r
        assert_closes(c)
        assert b"HTTP/1." not in c.buf, "a second answer: %r" % c.buf
    assert_daemon_serves(alertd)


# --------------------------------------------------------------------------
# 10. Unknown path, method not allowed (on a kept-alive connection: an
# error answer does not end it).

def test_404_and_405_json_keep_the_connection(alertd):
    with Conn(alertd) as c:
        c.send(request("GET", "/no/such/path"))
        r = c.read_response()
        assert r.status == 404, r
        assert r.header("content-type", "").startswith("application/json")
        assert r.json and r.json.get("error") == "not_found", r
        assert int(r.header("content-length")) == len(r.body), r

        c.send(request("GET", "/v1/events"))
        r = c.read_response()
        assert r.status == 405, r
        assert "post" in r.tokens("allow"), r
        assert r.header("content-type", "").startswith("application/json")
        assert r.json and r.json.get("error") == "method_not_allowed", r

        c.send(request("GET", "/healthz"))
        assert c.read_response().status == 200


# --------------------------------------------------------------------------
# 11. Methods the server does not know or allow.

@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "PUT", "BREW"])
def test_unsupported_method_is_refused_daemon_alive(alertd, method):
    ev, body, hdrs = signed_event()
    with Conn(alertd) as c:
        c.send(request(method, "/v1/events", headers=hdrs, body=body))
        r = c.read_response()
    assert 400 <= r.status < 600, r
    assert r.status != 202
    assert_daemon_serves(alertd)
    assert not event_stored(alertd, ev["event_id"])


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS"])
def test_unsupported_method_on_events_is_405_json(alertd, method):
    """The desired answer: 405 method_not_allowed (JSON, Allow: POST), as
    for GET, whatever the method."""
    ev, body, hdrs = signed_event()
    with Conn(alertd) as c:
        c.send(request(method, "/v1/events", headers=hdrs, body=body))
        r = c.read_response()
    assert r.status == 405, r
    assert "post" in r.tokens("allow"), r
    assert r.header("content-type", "").startswith("application/json"), r
    assert r.json and r.json.get("error") == "method_not_allowed", r


# --------------------------------------------------------------------------
# 12. Client gone while its event is in flight.

def test_client_disconnect_while_event_in_flight(alertd):
    """A device that sends its event and closes at once (no wait for the
    202) leaves the event durable and the daemon serving."""
    evs = []
    for _ in range(3):
        ev, data = signed_post()
        c = Conn(alertd)
        c.send(data)
        c.close()
        evs.append(ev)
    for ev in evs:
        wait_until(lambda: event_stored(alertd, ev["event_id"]), 10,
                   what="event %s in PostgreSQL" % ev["event_id"])
    # The same with a reset rather than a close: no durability promise
    # (the kernel may drop the unread request), but the daemon survives.
    for _ in range(3):
        ev, data = signed_post()
        c = Conn(alertd)
        c.send(data)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    time.sleep(0.3)
    assert_daemon_serves(alertd)
    st, body, _ = post_event(alertd.http, make_event())
    assert st == 202, body


# --------------------------------------------------------------------------
# 13. Idle keep-alive timeout.

def test_idle_keepalive_connection_is_closed_after_the_timeout(
        alertd_factory):
    """http_idle_timeout_s closes: a kept alive connection after its
    answer, a connection that never sent a byte, and one stuck in the
    middle of its headers (that one with a 408). Not before the timeout,
    and not much after it."""
    alertd = alertd_factory(server__http_idle_timeout_s=IDLE_TIMEOUT_S)
    after_answer = Conn(alertd)
    after_answer.send(request("GET", "/healthz"))
    assert after_answer.read_response().status == 200
    silent = Conn(alertd)
    partial = Conn(alertd)
    partial.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A")
    t0 = time.monotonic()
    conns = {"after_answer": after_answer, "silent": silent,
             "partial": partial}
    try:
        for name, c in conns.items():
            assert not c.closed_by_server(0.1), "%s closed at once" % name
        time.sleep(IDLE_TIMEOUT_S * 0.6)
        for name, c in conns.items():
            assert not c.closed_by_server(0.1), \
                "%s closed before the timeout" % name
        for name, c in conns.items():
            left = t0 + IDLE_TIMEOUT_S + 5 - time.monotonic()
            assert c.closed_by_server(max(0.1, left)), \
                "%s still open %.0f s after its last byte" % (
                    name, time.monotonic() - t0)
        # Nothing unasked on a kept-alive connection (a client would take
        # it for the answer to its next request).
        assert after_answer.buf == b"", after_answer.buf
        assert silent.buf == b"", silent.buf
    finally:
        for c in conns.values():
            c.close()
    assert_daemon_serves(alertd)


def test_trickled_request_gets_408_at_the_timeout(alertd_factory):
    """The idle timeout restarts with every byte, but a request must
    arrive whole within it of its first byte: 408 JSON, then the close."""
    alertd = alertd_factory(server__http_idle_timeout_s=IDLE_TIMEOUT_S)
    ev, data = signed_post()
    with Conn(alertd) as c:
        t0 = time.monotonic()
        i = 0
        while i < len(data) - 1 and \
                time.monotonic() - t0 < IDLE_TIMEOUT_S + 3:
            try:
                c.send(data[i:i + 1])
            except OSError:
                break  # the daemon gave up on us: what we want
            i += 1
            time.sleep(0.25)
        r = c.read_response()
        assert r.status == 408, r
        assert r.json["error"] == "request_timeout", r
        assert_closes(c)
    assert not event_stored(alertd, ev["event_id"])
    assert_daemon_serves(alertd)


# --------------------------------------------------------------------------
# 13b. The connection cap, half-closed clients.

def test_connections_over_http_max_connections_get_503(alertd_factory):
    alertd = alertd_factory(server__http_max_connections=3)
    held = [Conn(alertd) for _ in range(3)]
    try:
        for c in held:
            c.send(request("GET", "/healthz"))
            assert c.read_response().status == 200
        with Conn(alertd) as extra:
            r = extra.read_response()
            assert r.status == 503, r
            assert r.json["error"] == "unavailable", r
            assert_closes(extra)
        # The ones inside are served as before.
        held[0].send(request("GET", "/healthz"))
        assert held[0].read_response().status == 200
    finally:
        held.pop().close()
    # One left: there is room again (the daemon sees the close first).
    deadline = time.monotonic() + 5
    while True:
        with Conn(alertd) as c:
            c.send(request("GET", "/healthz"))
            r = c.read_response()
        if r.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status == 200, r
    for c in held:
        c.close()


def test_half_closed_client_still_gets_its_answer(alertd):
    """A client that shuts its sending side after the request (nc -N,
    some device stacks) gets the 202, then the close."""
    ev, data = signed_post()
    with Conn(alertd) as c:
        c.send(data)
        c.sock.shutdown(socket.SHUT_WR)
        assert_accepted(c.read_response(), ev)
        assert_closes(c)
    assert event_stored(alertd, ev["event_id"])


# --------------------------------------------------------------------------
# 14. Slow client.

def test_request_one_byte_at_a_time(alertd):
    ev, data = signed_post()
    pause = 0.5 / len(data)
    with Conn(alertd) as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
            time.sleep(pause)
        assert_accepted(c.read_response(), ev)


# --------------------------------------------------------------------------
# 15. SSE framing.

def _stream_request(token, version):
    return request("GET", "/v1/stream", version,
                   [("Accept", "text/event-stream"),
                    ("Authorization", "Bearer " + token)],
                   host=(version == "1.1"))


def _sse_blocks(text):
    """Complete SSE blocks of text -> (list of dicts, rest)."""
    text = text.replace("\r\n", "\n")
    out = []
    while "\n\n" in text:
        block, text = text.split("\n\n", 1)
        ev = {"data": []}
        for ln in block.split("\n"):
            if ln.startswith(":"):
                continue
            k, _, v = ln.partition(":")
            ev.setdefault(k, "")
            if k == "data":
                ev["data"].append(v[1:] if v.startswith(" ") else v)
            else:
                ev[k] = v[1:] if v.startswith(" ") else v
        if ev["data"]:
            out.append(ev)
    return out, text


def _find_incident(blocks, incident_id):
    for b in blocks:
        if b.get("event") != "incident":
            continue
        try:
            snap = json.loads("\n".join(b["data"]))
        except ValueError:
            continue
        if snap.get("id") == incident_id:
            return snap
    return None


def test_stream_over_http11_is_chunked(alertd, operator_token):
    with Conn(alertd) as c:
        c.send(_stream_request(operator_token, "1.1"))
        r = c.read_head()
        assert r.status == 200, r
        assert r.header("content-type", "").startswith("text/event-stream")
        assert "chunked" in r.tokens("transfer-encoding"), r
        assert r.header("content-length") is None, r
        st, body, _ = post_event(alertd.http, make_event())
        assert st == 202, body
        # Strict chunk framing until the change arrives.
        deadline = time.monotonic() + 10
        text, snap = "", None
        while snap is None:
            line = c._take_line(deadline, "a chunk size line")
            assert re.match(rb"^[0-9a-fA-F]+(;.*)?$", line), \
                "bad chunk size line %r" % line
            size = int(line.split(b";")[0], 16)
            assert size > 0, "the stream ended"
            text += c._take(size, deadline, "a chunk").decode()
            assert c._take(2, deadline, "a chunk's CRLF") == b"\r\n"
            blocks, _ = _sse_blocks(text)
            snap = _find_incident(blocks, body["incident_id"])
        assert snap["id"] == body["incident_id"]


def test_stream_over_http10_is_not_chunked(alertd, operator_token):
    """HTTP/1.0 has no chunked encoding: the stream is the bare event
    text, delimited by the close."""
    with Conn(alertd) as c:
        c.send(_stream_request(operator_token, "1.0"))
        r = c.read_head()
        assert r.status == 200, r
        assert r.header("content-type", "").startswith("text/event-stream")
        assert "chunked" not in r.tokens("transfer-encoding"), r
        assert r.header("content-length") is None, r
        st, body, _ = post_event(alertd.http, make_event())
        assert st == 202, body
        deadline = time.monotonic() + 10
        snap = None
        while snap is None:
            if not c._recv(deadline):
                raise AssertionError("stream closed: %r" % c.buf)
            blocks, _ = _sse_blocks(c.buf.decode())
            snap = _find_incident(blocks, body["incident_id"])
        first = c.buf.split(b"\n", 1)[0].rstrip(b"\r")
        assert not re.match(rb"^[0-9a-fA-F]+$", first), \
            "a chunk size line in an HTTP/1.0 stream: %r" % c.buf[:200]
        assert b"\r\n0\r\n" not in c.buf


# --------------------------------------------------------------------------
# Every answer carries a Date (RFC 9110 6.6.1: an origin server with a
# clock MUST send one).

def test_answers_carry_a_date_header(alertd):
    with Conn(alertd) as c:
        c.send(request("GET", "/healthz"))
        r = c.read_response()
    d = r.header("date")
    assert d, r
    when = email.utils.parsedate_to_datetime(d).timestamp()
    assert abs(when - time.time()) < 60, d


# --------------------------------------------------------------------------
# Mutated requests: whatever arrives on the HTTP port, the daemon answers
# with a well-formed status line or closes, and keeps serving. Seeded, so
# that a failure can be replayed (FUZZ_SEED), and small enough for make
# test; the daemon runs under AddressSanitizer there.

FUZZ_CASES = int(os.environ.get("FUZZ_CASES", "400"))


def _fuzz_corpus(token):
    auth = [("Authorization", "Bearer " + token)]
    _, post = signed_post()
    _, post10 = signed_post("1.0", [("Connection", "keep-alive")])
    ev, body, hdrs = signed_event()
    chunked = request("POST", "/v1/events", headers=hdrs + [
        ("Transfer-Encoding", "chunked")], body=_chunked(body, [7, 30, 1000]),
        content_length=False)
    return [
        post, post10, chunked,
        request("GET", "/healthz"),
        request("HEAD", "/healthz"),
        request("GET", "/v1/incidents?state=open&limit=5", headers=auth),
        request("GET", "/v1/audit?limit=3", headers=auth),
        request("POST", "/v1/incidents/1/ack", headers=auth,
                body=b'{"note":"x"}'),
        request("GET", "/metrics"),
        request("GET", "/v1/stream", headers=auth),
        post + request("GET", "/healthz") + post,
        request("POST", "/v1/events", headers=hdrs + [
            ("Expect", "100-continue")], body=body),
    ]


# Inserted into requests: HTTP syntax, huge numbers, long runs.
HTTP_SNIPPETS = [b"\r\n", b"\r\n\r\n", b":", b" ", b"\0", b"0\r\n\r\n",
                 b"Content-Length: 99\r\n", b"Transfer-Encoding: chunked\r\n",
                 b"Connection: close\r\n", b"ffffffffffffffff\r\n",
                 b"HTTP/1.1", b"99999999999999999999", b"A" * 5000,
                 b"\r" * 100, b" " * 20000]
# Inserted into event bodies: JSON syntax, odd numbers and escapes,
# invalid UTF-8, deep nesting.
JSON_SNIPPETS = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"null", b"1e999",
                 b"-0", b"\\u0000", b"\\ud800", b"\xc3\x28", b"\xff",
                 b'"a":1,', b'"type":"panic",', b"[" * 200, b"9" * 400,
                 b" " * 30]


def test_mutated_requests_never_crash_the_daemon(alertd, operator_token):
    import random

    seed = int(os.environ.get("FUZZ_SEED", "20261123"))
    rng = random.Random(seed)
    corpus = _fuzz_corpus(operator_token)
    answered = 0
    for case in range(FUZZ_CASES):
        data = mutate(rng, rng.choice(corpus), HTTP_SNIPPETS, 4)
        with Conn(alertd, timeout=3.0) as c:
            try:
                pos = 0
                while pos < len(data):      # in random pieces
                    n = rng.choice([1, 7, 100, len(data)])
                    c.send(data[pos:pos + n])
                    pos += n
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass                        # the server closed first
            # Whatever comes back before the close (or 1 s of silence: a
            # stream, or a request still waiting for its body).
            deadline = time.monotonic() + 1.0
            try:
                while c._recv(deadline):
                    pass
            except TimeoutError:
                pass
        if c.buf:
            answered += 1
            assert re.match(rb"^HTTP/1\.[01] [1-5]\d\d ", c.buf), \
                "seed %d case %d: %r -> %r" % (seed, case, data[:200],
                                                c.buf[:200])
        if case % 50 == 49:
            assert_daemon_serves(alertd)
    assert_daemon_serves(alertd)
    # Most mutations still reach the parser far enough to be answered
    # (a refusal is an answer too).
    assert answered > FUZZ_CASES // 2, answered


def test_mutated_signed_events_get_an_answer_or_a_json_error(alertd):
    """Event bodies mutated and then signed, so that they pass the
    signature and reach the JSON decoder and the event's checks: each
    gets 202 or a 4xx with a JSON error, on a connection that stays
    usable."""
    import random

    seed = int(os.environ.get("FUZZ_SEED", "20261123"))
    rng = random.Random(seed)
    statuses = {}
    accepted = []
    c = Conn(alertd)
    try:
        for case in range(FUZZ_CASES // 2):
            body = event_body(make_event(type=rng.choice(
                ["panic", "heartbeat", "fault"])))[0]
            if isinstance(body, str):
                body = body.encode()
            body = mutate(rng, body, JSON_SNIPPETS)
            c.send(request("POST", "/v1/events", headers=[
                ("Content-Type", "application/json"),
                ("X-Alertd-Signature", sign(body))], body=body))
            r = c.read_response("POST")
            statuses[r.status] = statuses.get(r.status, 0) + 1
            what = "seed %d case %d: %r -> %r" % (seed, case, body[:300], r)
            assert r.status == 202 or 400 <= r.status < 500, what
            assert isinstance(r.json, dict), what
            if r.status != 202:
                assert isinstance(r.json.get("error"), str), what
            assert r.header("connection", "").lower() != "close", what
            if r.status == 202:
                accepted.append(r.json["event_id"])
    finally:
        c.close()
    assert_daemon_serves(alertd)
    # Every event it accepted is durable: none of the mutations that got
    # through poisoned an audit batch.
    with alertd.db().cursor() as cur:
        cur.execute("SELECT count(DISTINCT event_id) FROM events"
                    " WHERE event_id = ANY(%s)", (accepted,))
        assert cur.fetchone()[0] == len(set(accepted)), accepted
    # The mutations reached the decoder: most are refused, some not.
    assert statuses.get(400, 0) + statuses.get(422, 0) > FUZZ_CASES // 8, \
        statuses


def test_http11_request_without_host_is_served(alertd):
    """docs/api.md "HTTP": Host is not required (device firmware omits
    it); the event is accepted like any other."""
    ev, body, hdrs = signed_event()
    with Conn(alertd) as c:
        c.send(request("POST", "/v1/events", headers=hdrs, body=body,
                       host=False))
        r = c.read_response("POST")
        assert_accepted(r, ev)
        c.send(request("GET", "/healthz", host=False))
        assert c.read_response().status == 200
    assert event_stored(alertd, ev["event_id"])
