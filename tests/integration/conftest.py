"""Fixtures of the integration tests: real Redis, real PostgreSQL and a fresh
alertd (the sanitizer build) per test, all on free loopback ports.

Session-scoped servers:
    redis_server   .host .port .client() .stop(save=True) .start() .dir
                   stop() keeps the data (SHUTDOWN SAVE, like a restart with
                   persistence); stop(save=False) loses it.
    pg_server      .host .port .dsn .connect() .stop(mode='fast') .start()
                   .admin() (superuser connection); .dsn/.connect() point at
                   the current test's database (see below), else "alertd".
    pb             the generated alertd_pb2 module.

Per test (function scope):
    test_env       a unique Redis key prefix and a fresh PostgreSQL database
                   cloned from the migrated template: tests never see each
                   other's incidents or rows. .prefix .dbname .dsn .connect()
    alertctl       alertctl(*args, check=True, config=None, timeout=60)
                   -> CompletedProcess (text); runs $ALERTD_BUILD/alertctl -c
                   <config of this test> from the repo root.
    make_config    make_config(**overrides) -> Config (written file)
    alertd_factory start(config=None, wait_ready=True, **overrides) -> Daemon
    alertd         a started Daemon with the default test config
    operator_token an admin token (alertctl operator add, unique name)

Config overrides: section=dict merges into a section, section__key=value sets
one key, a value of None removes a key or section; raw="text" writes that
text instead. Daemon: .http .tcp .pid .config_path .config .prefix .dsn
.log() .signal(sig) .wait(timeout) .stop() .alive() .db() .redis()
.redis_keys() .ctl(*args) .wait_log(text) .expected_exit.

At teardown the daemon gets SIGTERM and the test FAILS if it does not exit
with .expected_exit (0) or its log holds a sanitizer report. Every process
started here is killed at the end of the session, even on failure.
"""

import atexit
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import psycopg2
import pytest
import redis as redis_mod

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import helpers  # noqa: E402

from helpers import (ALERTCTL, ALERTD, REPO, sanitizer_env,  # noqa: E402
                     sanitizer_report)

PG_BIN = pathlib.Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
IS_ROOT = os.geteuid() == 0

DEFAULT_TEST_TIMEOUT = int(os.environ.get("ALERTD_TEST_TIMEOUT", "180"))


# --------------------------------------------------------------------------
# Process bookkeeping: whatever we start is killed at exit.

_PROCS = []          # subprocess.Popen
_PG_DATADIRS = []    # data dirs whose postmaster.pid we kill
_TMPDIRS = []
_lock = threading.Lock()


def _note_pid(pid):
    """scripts/test.sh kills what a killed run leaves behind, by pid."""
    path = os.environ.get("ALERTD_TEST_PIDS")
    if path:
        try:
            with open(path, "a") as f:
                f.write("%d\n" % pid)
        except OSError:
            pass


def _track(proc):
    with _lock:
        _PROCS.append(proc)
    _note_pid(proc.pid)
    return proc


def _kill_pid_file(pidfile):
    try:
        pid = int(pathlib.Path(pidfile).read_text().split("\n")[0])
    except (OSError, ValueError):
        return
    for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _cleanup_all():
    with _lock:
        procs = list(_PROCS)
        _PROCS.clear()
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
    for d in list(_PG_DATADIRS):
        _kill_pid_file(pathlib.Path(d) / "postmaster.pid")
    _PG_DATADIRS.clear()
    if not os.environ.get("ALERTD_KEEP_TMP"):
        for d in list(_TMPDIRS):
            shutil.rmtree(d, ignore_errors=True)
        _TMPDIRS.clear()


atexit.register(_cleanup_all)


def _tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    _TMPDIRS.append(d)
    return pathlib.Path(d)


_given_ports = set()


def free_port():
    """A free TCP port on 127.0.0.1, never the same twice in a session."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise RuntimeError("no free port")


def wait_port(port, timeout=20.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def run_checked(cmd, timeout=120, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (
            " ".join(map(str, cmd)), r.returncode, r.stdout, r.stderr))
    return r


# --------------------------------------------------------------------------
# A per-test kill switch: SIGALRM fails a test stuck past its time.

class TestTimeout(Exception):
    pass


def _on_sigterm(signum, frame):
    # `timeout` stops a hung run with SIGTERM: end it like Ctrl-C so that
    # the report is written and pytest_sessionfinish stops the servers.
    raise KeyboardInterrupt("SIGTERM")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _on_sigterm)
    config.addinivalue_line(
        "markers", "kill_after(seconds): per-test kill-switch timeout "
        "(default %d s, setup + call + teardown)" % DEFAULT_TEST_TIMEOUT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    m = item.get_closest_marker("kill_after")
    secs = int(m.args[0]) if m else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded its %d s kill switch" % secs)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(secs)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def pytest_sessionfinish(session, exitstatus):
    _cleanup_all()


# --------------------------------------------------------------------------
# Redis.

class RedisServer:
    host = "127.0.0.1"

    def __init__(self):
        self.dir = _tmpdir("alertd-redis-")
        self.port = free_port()
        self.proc = None

    def start(self, timeout=20.0):
        assert self.proc is None or self.proc.poll() is not None, \
            "redis already running"
        self.logf = open(self.dir / "redis.log", "ab")
        self.proc = _track(subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", self.host,
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--dbfilename", "dump.rdb", "--daemonize", "no",
             "--protected-mode", "no", "--loglevel", "notice"],
            stdout=self.logf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: %s" % self.log())
            try:
                if self.client().ping():
                    return
            except redis_mod.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server not up: %s" % self.log())
            time.sleep(0.05)

    def stop(self, save=True, timeout=20.0):
        """Stops the server. save=True keeps the data for the next start
        (SHUTDOWN SAVE); save=False loses it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if save:
            try:
                self.client().shutdown(save=True)
            except redis_mod.exceptions.RedisError:
                pass
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if not save:
            try:
                (self.dir / "dump.rdb").unlink()
            except FileNotFoundError:
                pass
        self.logf.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kw):
        kw.setdefault("decode_responses", True)
        kw.setdefault("socket_timeout", 10)
        kw.setdefault("socket_connect_timeout", 5)
        return redis_mod.Redis(host=self.host, port=self.port, **kw)

    def log(self):
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def redis_server():
    r = RedisServer()
    r.start()
    yield r
    r.stop(save=False)


# --------------------------------------------------------------------------
# PostgreSQL.

class PgServer:
    host = "127.0.0.1"
    template = "alertd_tpl"

    def __init__(self):
        self.dir = _tmpdir("alertd-pg-")
        self.data = self.dir / "data"
        self.port = free_port()
        self.current_dbname = "alertd"
        self._conns = []
        if IS_ROOT:
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, "postgres", "postgres")
        _PG_DATADIRS.append(str(self.data))

    def _cmd(self, args):
        args = [str(a) for a in args]
        if IS_ROOT:
            return ["runuser", "-u", "postgres", "--"] + args
        return args

    def initdb(self):
        run_checked(self._cmd([PG_BIN / "initdb", "-D", self.data,
                               "--auth=trust", "-U", "postgres",
                               "-E", "UTF8", "--locale=C", "--no-sync"]),
                    cwd="/")

    def start(self):
        opts = ("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=on "
                "-c synchronous_commit=on -c max_connections=200"
                % (self.port, self.dir))
        run_checked(self._cmd([PG_BIN / "pg_ctl", "-D", self.data, "-l",
                               self.dir / "pg.log", "-w", "-t", "60",
                               "-o", opts, "start"]), cwd="/")
        try:
            _note_pid(int((self.data / "postmaster.pid").read_text()
                          .split("\n")[0]))
        except (OSError, ValueError):
            pass

    def stop(self, mode="fast"):
        assert mode in ("smart", "fast", "immediate")
        if not (self.data / "postmaster.pid").exists():
            return
        run_checked(self._cmd([PG_BIN / "pg_ctl", "-D", self.data, "-w",
                               "-t", "60", "-m", mode, "stop"]), cwd="/")

    def running(self):
        r = subprocess.run(self._cmd([PG_BIN / "pg_ctl", "-D", self.data,
                                      "status"]),
                           capture_output=True, timeout=30, cwd="/")
        return r.returncode == 0

    def log(self):
        try:
            return (self.dir / "pg.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def dsn_for(self, dbname, user="alertd"):
        return "host=%s port=%d dbname=%s user=%s" % (
            self.host, self.port, dbname, user)

    @property
    def dsn(self):
        """libpq conninfo of the current test's database (else alertd)."""
        return self.dsn_for(self.current_dbname)

    def connect(self, dbname=None, user="alertd"):
        """psycopg2 connection (autocommit) to the current test's database,
        closed at the end of the test (or session)."""
        c = psycopg2.connect(self.dsn_for(dbname or self.current_dbname,
                                          user), connect_timeout=10)
        c.autocommit = True
        self._conns.append(c)
        return c

    def admin(self, dbname="postgres"):
        return self.connect(dbname=dbname, user="postgres")

    def close_connections(self):
        for c in self._conns:
            try:
                c.close()
            except psycopg2.Error:
                pass
        self._conns.clear()

    def setup_databases(self, migrate):
        """Role alertd, database alertd (migrated with `migrate`, a function
        of a dsn) and the template alertd_tpl cloned from it."""
        a = self.admin()
        with a.cursor() as cur:
            cur.execute("CREATE ROLE alertd LOGIN")
            cur.execute("CREATE DATABASE alertd OWNER alertd")
        migrate("alertd")
        with a.cursor() as cur:
            cur.execute("CREATE DATABASE %s TEMPLATE alertd OWNER alertd"
                        % self.template)
        self.close_connections()

    def new_database(self):
        name = "alertd_t_" + uuid.uuid4().hex[:12]
        a = psycopg2.connect(self.dsn_for("postgres", "postgres"),
                             connect_timeout=10)
        a.autocommit = True
        try:
            with a.cursor() as cur:
                cur.execute("CREATE DATABASE %s TEMPLATE %s OWNER alertd"
                            % (name, self.template))
        finally:
            a.close()
        return name

    def drop_database(self, name):
        try:
            a = psycopg2.connect(self.dsn_for("postgres", "postgres"),
                                 connect_timeout=10)
        except psycopg2.Error:
            return   # server stopped by the test: the session end cleans up
        a.autocommit = True
        try:
            with a.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        except psycopg2.Error:
            pass
        finally:
            a.close()


def _need_binary(path):
    if not path.exists():
        pytest.fail("%s is missing: build it first (make SAN=1 B=build/asan "
                    "build/asan/alertd build/asan/alertctl)" % path)


def _run_alertctl(config_path, args, timeout=60):
    r = subprocess.run([str(ALERTCTL), "-c", str(config_path)] +
                       [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout,
                       cwd=str(REPO), env=sanitizer_env())
    rep = sanitizer_report(r.stderr)
    if rep:
        raise AssertionError("alertctl %s: sanitizer report %s:\n%s" % (
            " ".join(map(str, args)), rep, r.stderr))
    return r


@pytest.fixture(scope="session")
def pg_server(redis_server):
    _need_binary(ALERTCTL)
    pg = PgServer()
    pg.initdb()
    pg.start()

    def migrate(dbname):
        cfg = Config(pathlib.Path(pg.dir) / "migrate.ini", _base_sections(
            redis_server, pg, dbname, "alertd-migrate:", free_port(),
            free_port()))
        cfg.write()
        r = _run_alertctl(cfg.path, ["migrate"], timeout=120)
        if r.returncode != 0:
            raise RuntimeError("alertctl migrate failed (%d):\n%s\n%s" % (
                r.returncode, r.stdout, r.stderr))

    try:
        pg.setup_databases(migrate)
    except Exception:
        pg.stop("immediate")
        raise
    yield pg
    pg.close_connections()
    try:
        pg.stop("immediate")
    except Exception:  # noqa: BLE001 - session end kills it anyway
        pass


@pytest.fixture(scope="session")
def pb():
    return helpers.pb()


# --------------------------------------------------------------------------
# Config files.

def _base_sections(redis_server, pg, dbname, prefix, http_port, tcp_port):
    return {
        "server": {
            "http_listen": "127.0.0.1:%d" % http_port,
            "tcp_listen": "127.0.0.1:%d" % tcp_port,
            "log_level": "info",
            "drain_timeout_s": "20",
            "retry_after_s": "2",
        },
        "redis": {
            "host": redis_server.host,
            "port": str(redis_server.port),
            "prefix": prefix,
            "timeout_ms": "2000",
        },
        "postgres": {
            "conninfo": pg.dsn_for(dbname),
            "timeout_ms": "5000",
        },
        # Issue 3: tests make up their sources, as the dev config lets
        # them; the rules that depend on the wall clock or on repeats are
        # off here so that priorities are exact (test_priority.py turns
        # them on).
        "sources": {"unknown": "accept"},
        "priority": {"night_boost": "0", "repeat_step": "0"},
        "device_secrets": {
            "ferry-*": helpers.FERRY_SECRET,
            "*": helpers.DEV_SECRET,
        },
    }


def render_config(sections):
    out = ["; written by tests/integration/conftest.py"]
    for name, kv in sections.items():
        out.append("")
        out.append("[%s]" % name)
        for k, v in kv.items():
            out.append("%s = %s" % (k, v))
    return "\n".join(out) + "\n"


def apply_overrides(sections, overrides):
    for key, val in overrides.items():
        if "__" in key:
            sec, name = key.split("__", 1)
            if val is None:
                sections.get(sec, {}).pop(name, None)
            else:
                sections.setdefault(sec, {})[name] = str(val)
        elif val is None:
            sections.pop(key, None)
        elif isinstance(val, dict):
            sec = sections.setdefault(key, {})
            for k, v in val.items():
                if v is None:
                    sec.pop(k, None)
                else:
                    sec[k] = str(v)
        else:
            raise TypeError("override %s: use section={...} or "
                            "section__key=value" % key)
    return sections


class Config:
    """A config file: .sections (dict of dicts), .path, .text, .raw."""

    def __init__(self, path, sections, raw=None):
        self.path = pathlib.Path(path)
        self.sections = sections
        self.raw = raw

    @property
    def text(self):
        return self.raw if self.raw is not None else \
            render_config(self.sections)

    def write(self):
        self.path.write_text(self.text)
        return self.path

    def update(self, raw=None, **overrides):
        """Applies overrides (or replaces the text with raw) and rewrites
        the file."""
        if raw is not None:
            self.raw = raw
        else:
            self.raw = None
            apply_overrides(self.sections, overrides)
        return self.write()

    def get(self, section, key, default=None):
        return self.sections.get(section, {}).get(key, default)

    @property
    def http_port(self):
        return int(self.get("server", "http_listen").rsplit(":", 1)[1])

    @property
    def tcp_port(self):
        return int(self.get("server", "tcp_listen").rsplit(":", 1)[1])


# --------------------------------------------------------------------------
# Per-test environment: Redis prefix + fresh database.

class TestEnv:
    def __init__(self, redis_server, pg, tmp, name):
        self.redis_server = redis_server
        self.pg = pg
        self.tmp = tmp
        self.prefix = "at:%s:%s:" % (re.sub(r"[^A-Za-z0-9]", "", name)[-24:],
                                     uuid.uuid4().hex[:8])
        self.dbname = pg.new_database()
        self.dsn = pg.dsn_for(self.dbname)
        self._n = 0

    def connect(self):
        return self.pg.connect(self.dbname)

    def sections(self, http_port=None, tcp_port=None):
        s = _base_sections(self.redis_server, self.pg, self.dbname,
                           self.prefix, http_port or free_port(),
                           tcp_port or free_port())
        # One spool directory per test: a restarted daemon (same config
        # or not) replays what its predecessor spooled.
        s["spool"] = {"path": str(self.spool_dir)}
        return s

    @property
    def spool_dir(self):
        return self.tmp / "spool"

    def config(self, raw=None, name=None, **overrides):
        self._n += 1
        path = self.tmp / (name or "alertd-%d.ini" % self._n)
        cfg = Config(path, apply_overrides(self.sections(), overrides),
                     raw=raw)
        cfg.write()
        return cfg


@pytest.fixture
def test_env(redis_server, pg_server, tmp_path, request):
    env = TestEnv(redis_server, pg_server, tmp_path, request.node.name)
    pg_server.current_dbname = env.dbname
    yield env
    pg_server.close_connections()
    pg_server.current_dbname = "alertd"
    # The servers may have been left stopped by a failed outage test.
    if not redis_server.running():
        redis_server.start()
    if not pg_server.running():
        pg_server.start()
    pg_server.drop_database(env.dbname)


@pytest.fixture
def make_config(test_env):
    """make_config(raw=None, name=None, **overrides) -> Config (written)."""
    return test_env.config


@pytest.fixture
def alertctl(test_env):
    _need_binary(ALERTCTL)
    cfg = test_env.config(name="alertctl.ini")

    def run(*args, check=True, config=None, timeout=60):
        r = _run_alertctl(config or cfg.path, args, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("alertctl %s exited %d:\n%s\n%s" % (
                " ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        return r

    run.config = cfg
    return run


TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{40,}")


def add_operator(alertctl, role="admin", name=None):
    name = name or "t-%s-%s" % (role, uuid.uuid4().hex[:8])
    r = alertctl("operator", "add", name, "--role", role)
    toks = TOKEN_RE.findall(r.stdout)
    assert toks, "no token in alertctl output: %r" % r.stdout
    return toks[-1]


@pytest.fixture
def operator_token(alertctl):
    return add_operator(alertctl, "admin")


@pytest.fixture
def add_operator_token(alertctl):
    """add_operator_token(role='operator', name=None) -> token"""
    return lambda role="operator", name=None: add_operator(alertctl, role,
                                                           name)


# --------------------------------------------------------------------------
# The daemon.

class Daemon:
    def __init__(self, env, config, wait_ready=True, ready_timeout=30.0):
        _need_binary(ALERTD)
        self.env = env
        self.config = config
        self.config_path = config.path
        self.prefix = env.prefix
        self.dsn = env.dsn
        self.http = "http://127.0.0.1:%d" % config.http_port
        self.tcp = ("127.0.0.1", config.tcp_port)
        self.expected_exit = 0
        self.log_path = config.path.with_suffix(".log")
        self.logf = open(self.log_path, "ab")
        self.proc = _track(subprocess.Popen(
            [str(ALERTD), "-c", str(config.path)], cwd=str(REPO),
            stdout=self.logf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=sanitizer_env()))
        self.pid = self.proc.pid
        if wait_ready:
            self.wait_ready(ready_timeout)

    def wait_ready(self, timeout=30.0, postgres=True):
        """/readyz 200; with postgres=True also PostgreSQL connected (a
        daemon with a spool is ready before it is)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("alertd exited %d before ready:\n%s" % (
                    self.proc.returncode, self.log()))
            try:
                st, body, _ = helpers.http_get(self.http, "/readyz",
                                               timeout=2)
                if st == 200 and (not postgres or body.get("postgres")):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("alertd not ready in %.0f s:\n%s" % (
                    timeout, self.log()))
            time.sleep(0.05)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, text, timeout=10.0):
        helpers.wait_until(lambda: text in self.log(), timeout,
                           what="%r in the alertd log" % text)

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=30.0):
        """Exit status; raises AssertionError (and kills) on timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("alertd did not exit within %.0f s" % timeout)

    def stop(self, timeout=40.0):
        """SIGTERM and wait: exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def db(self):
        return self.env.connect()

    def redis(self):
        return self.env.redis_server.client()

    def redis_keys(self):
        return sorted(self.redis().scan_iter(match=self.prefix + "*",
                                             count=1000))

    def ctl(self, *args, check=True, timeout=60):
        r = _run_alertctl(self.config_path, args, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("alertctl %s exited %d:\n%s\n%s" % (
                " ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        return r

    def finish(self):
        """Teardown: stop, then the problems found (list of str)."""
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                problems.append("alertd did not exit within 45 s of SIGTERM")
        rc = self.proc.returncode
        self.logf.close()
        if rc != self.expected_exit and not problems:
            problems.append("alertd exited with %s, expected %s" % (
                rc, self.expected_exit))
        rep = sanitizer_report(self.log())
        if rep:
            problems.append("sanitizer report in the alertd log: %s" % rep)
        return problems


@pytest.fixture
def alertd_factory(test_env):
    """start(config=None, wait_ready=True, **overrides) -> Daemon"""
    daemons = []

    def start(config=None, wait_ready=True, **overrides):
        cfg = config or test_env.config(**overrides)
        d = Daemon(test_env, cfg, wait_ready=False)
        daemons.append(d)
        if wait_ready:
            d.wait_ready()
        return d

    yield start
    problems = []
    for d in daemons:
        for p in d.finish():
            problems.append(p)
            tail = d.log()[-6000:]
            problems.append("--- %s (tail) ---\n%s" % (d.log_path, tail))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def alertd(alertd_factory):
    return alertd_factory()
