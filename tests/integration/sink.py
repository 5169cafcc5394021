"""A local HTTP sink for the outgoing requests of alertd (phone webhook,
generic webhook, Kannel's HTTP SMSC): records every request and answers
from a per-path script of behaviours."""

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink:
    """.requests: list of dicts (t, method, path, query, headers, body,
    json); .script(path, [200, 500, "hang", (200, "body"), ...]) sets the
    answers of the next requests to path (then 200)."""

    def __init__(self, hang_s=3.0):
        self.requests = []
        self.lock = threading.Lock()
        self.scripts = {}
        self.hang_s = hang_s
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                u = urllib.parse.urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                try:
                    js = json.loads(body) if body else None
                except ValueError:
                    js = None
                rec = {"t": time.monotonic(), "method": self.command,
                       "path": u.path,
                       "query": dict(urllib.parse.parse_qsl(u.query)),
                       "headers": {k.lower(): v for k, v in
                                   self.headers.items()},
                       "body": body, "json": js}
                with sink.lock:
                    sink.requests.append(rec)
                    script = sink.scripts.get(u.path) or []
                    what = script.pop(0) if script else 200
                if what == "hang":
                    time.sleep(sink.hang_s)
                    what = 200
                if isinstance(what, tuple):
                    what, out = what[0], what[1].encode()
                else:
                    out = (b'{"ok":true}' if what < 300
                           else b'{"ok":false}')
                try:
                    self.send_response(what)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def script(self, path, answers):
        with self.lock:
            self.scripts[path] = list(answers)

    def on(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
