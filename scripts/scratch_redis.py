"""A throwaway redis-server on a free loopback port, for the measuring
scripts (pending_scan.py, queue_calls.py): no persistence, its folder
removed and the server stopped on exit, even on failure."""
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time

import redis


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def scratch_redis(prefix):
    """Yields a decode_responses client of a new redis-server."""
    port = free_port()
    tmp = tempfile.mkdtemp(prefix=prefix)
    srv = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port, decode_responses=True)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        yield r
    finally:
        srv.terminate()
        srv.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
