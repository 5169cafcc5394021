"""alertctl against a real PostgreSQL (no daemon): `migrate` applies the
schema once and is idempotent, `operator add` stores only the token's hash,
and the schema holds the rules the audit writer relies on.

Fixtures (conftest.py): pg_server, test_env (a fresh, migrated database per
test), make_config, alertctl (runs $ALERTD_BUILD/alertctl -c <config>).
"""

import hashlib
import re
import select
import socket
import time
import uuid

import psycopg2
import pytest

from helpers import REPO, make_event, post_event

MIGRATIONS = REPO / "config" / "migrations"
TABLES = {"events", "incident_transitions", "operators", "schema_migrations"}
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def versions_on_disk():
    return sorted(p.stem for p in MIGRATIONS.glob("*.sql"))


def tables(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public'")
        return {r[0] for r in cur.fetchall()}


def applied_versions(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [r[0] for r in cur.fetchall()]


def operator_rows(conn, name):
    with conn.cursor() as cur:
        cur.execute("SELECT name, role, token_hash, revoked_at, created_at "
                    "FROM operators WHERE name = %s", (name,))
        return cur.fetchall()


def unique_name(tag="op"):
    return "%s-%s" % (tag, uuid.uuid4().hex[:10])


@pytest.fixture
def empty_db(pg_server, make_config):
    """An empty database (not cloned from the migrated template) and a
    config that points alertctl at it."""
    name = "alertd_e_" + uuid.uuid4().hex[:12]
    admin = pg_server.admin()
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE %s OWNER alertd" % name)
    cfg = make_config(name="empty-db.ini",
                      postgres__conninfo=pg_server.dsn_for(name))
    yield name, cfg
    pg_server.drop_database(name)


# --------------------------------------------------------------------------
# migrate

def test_migrate_twice_on_an_empty_database(pg_server, alertctl, empty_db):
    name, cfg = empty_db
    first = alertctl("migrate", "--dir", MIGRATIONS, config=cfg.path)
    for v in versions_on_disk():
        assert "applied %s" % v in first.stdout
    conn = pg_server.connect(dbname=name)
    assert TABLES <= tables(conn)
    assert applied_versions(conn) == versions_on_disk()

    second = alertctl("migrate", "--dir", MIGRATIONS, config=cfg.path)
    assert "applied" not in second.stdout
    assert "up to date" in second.stdout
    assert applied_versions(conn) == versions_on_disk()
    assert TABLES <= tables(conn)


def test_migrate_default_dir_on_a_migrated_database(test_env, alertctl):
    # test_env's database is a clone of one that `alertctl migrate` made.
    r = alertctl("migrate")
    assert "up to date" in r.stdout
    conn = test_env.connect()
    assert TABLES <= tables(conn)
    assert applied_versions(conn) == versions_on_disk()


def test_migrate_failure_rolls_back_that_file_only(pg_server, alertctl,
                                                   empty_db, tmp_path):
    name, cfg = empty_db
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "001_one.sql").write_text("CREATE TABLE one (x int);\n")
    (d / "002_two.sql").write_text(
        "CREATE TABLE two (x int);\nSELECT no_such_function();\n")
    (d / "notes.txt").write_text("not a migration\n")

    r = alertctl("migrate", "--dir", d, config=cfg.path, check=False)
    assert r.returncode == 1
    assert "002_two" in r.stderr
    conn = pg_server.connect(dbname=name)
    assert {"one", "schema_migrations"} <= tables(conn)
    assert "two" not in tables(conn)
    assert applied_versions(conn) == ["001_one"]

    (d / "002_two.sql").write_text("CREATE TABLE two (x int);\n")
    r = alertctl("migrate", "--dir", d, config=cfg.path)
    assert "applied 002_two" in r.stdout
    assert "applied 001_one" not in r.stdout
    assert applied_versions(conn) == ["001_one", "002_two"]


def test_migrate_missing_dir_fails(alertctl, tmp_path):
    r = alertctl("migrate", "--dir", tmp_path / "nowhere", check=False)
    assert r.returncode == 1
    assert "nowhere" in r.stderr


def test_postgres_unreachable_is_a_runtime_failure(alertctl, make_config):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now
    cfg = make_config(name="nopg.ini", postgres__conninfo=(
        "host=127.0.0.1 port=%d dbname=alertd user=alertd "
        "connect_timeout=5" % port))
    r = alertctl("migrate", config=cfg.path, check=False)
    assert r.returncode == 1
    assert "postgres" in r.stderr
    r = alertctl("operator", "add", unique_name(), "--role", "operator",
                 config=cfg.path, check=False)
    assert r.returncode == 1
    assert r.stdout == ""


# --------------------------------------------------------------------------
# operator add

@pytest.mark.parametrize("role", ["operator", "supervisor", "auditor",
                                  "admin"])
def test_operator_add_prints_the_token_and_stores_its_hash(test_env,
                                                           alertctl, role):
    name = unique_name(role)
    r = alertctl("operator", "add", name, "--role", role)
    lines = r.stdout.splitlines()
    assert len(lines) == 1, "stdout must be the token only: %r" % r.stdout
    token = lines[0]
    assert TOKEN_RE.match(token)

    conn = test_env.connect()
    rows = operator_rows(conn, name)
    assert len(rows) == 1
    _, stored_role, token_hash, revoked_at, created_at = rows[0]
    assert stored_role == role
    assert token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert revoked_at is None
    assert created_at is not None
    # The token itself is stored nowhere in the table.
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM operators o "
                    "WHERE strpos(o::text, %s) > 0", (token,))
        assert cur.fetchone()[0] == 0


def test_operator_add_gives_different_tokens(test_env, alertctl):
    a = alertctl("operator", "add", unique_name(), "--role", "operator")
    b = alertctl("operator", "add", unique_name(), "--role", "operator")
    assert a.stdout.strip() != b.stdout.strip()


def test_operator_add_notifies_running_daemons(test_env, alertctl):
    listener = test_env.connect()
    with listener.cursor() as cur:
        cur.execute("LISTEN alertd_operators")
    alertctl("operator", "add", unique_name(), "--role", "supervisor")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if select.select([listener], [], [], 0.5)[0]:
            listener.poll()
        if listener.notifies:
            break
    assert [n.channel for n in listener.notifies] == ["alertd_operators"]


def test_operator_add_bad_role_is_a_usage_error(test_env, alertctl):
    name = unique_name()
    r = alertctl("operator", "add", name, "--role", "boss", check=False)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "role" in r.stderr
    assert operator_rows(test_env.connect(), name) == []


def test_operator_add_duplicate_name_fails(test_env, alertctl):
    name = unique_name()
    first = alertctl("operator", "add", name, "--role", "operator")
    token = first.stdout.strip()
    r = alertctl("operator", "add", name, "--role", "admin", check=False)
    assert r.returncode == 1
    assert r.stdout == ""
    assert "already exists" in r.stderr
    rows = operator_rows(test_env.connect(), name)
    assert len(rows) == 1
    assert rows[0][1] == "operator"
    assert rows[0][2] == hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.parametrize("args", [
    ["operator", "add", "someone"],                      # no --role
    ["operator", "add", "--role", "admin"],              # no NAME
    ["operator", "add", "two words", "--role", "admin"],  # bad NAME
    ["operator", "add", "a", "b", "--role", "admin"],    # two NAMEs
    ["operator", "add", "x", "--role"],                  # no role value
    ["operator", "remove", "x"],
    ["operator"],
    [],
    ["frobnicate"],
    ["migrate", "--bogus"],
    ["incidents", "--yaml"],
])
def test_usage_errors_exit_2(alertctl, args):
    r = alertctl(*args, check=False)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert "usage:" in r.stderr


def test_help_exits_0(alertctl):
    r = alertctl("--help", check=False)
    assert r.returncode == 0
    assert "usage:" in r.stdout


def test_bad_config_exits_2(alertctl, make_config):
    cfg = make_config(name="bad.ini", raw="[postgres]\nconninfo = x\n")
    r = alertctl("migrate", config=cfg.path, check=False)
    assert r.returncode == 2
    assert "bad.ini" in r.stderr


# --------------------------------------------------------------------------
# The schema's rules that the audit writer relies on.

def test_schema_idempotency_keys_and_checks(test_env):
    conn = test_env.connect()
    ins = ("INSERT INTO events (accept_seq, event_id, source_id, source_kind,"
           " type, outcome, incident_id, priority, received_at, payload)"
           " VALUES (%s, %s, 'bus-1', 'bus', 'panic', %s, 1, 100, now(),"
           " '{}') ON CONFLICT (accept_seq, event_id) DO NOTHING")
    with conn.cursor() as cur:
        cur.execute(ins, (1, "e-1", "new"))
        cur.execute(ins, (1, "e-1", "new"))          # the same delivery
        assert cur.rowcount == 0
        cur.execute(ins, (2, "e-1", "merged"))       # event_id not unique
        cur.execute(ins, (1, "e-9", "new"))          # Redis counted again
        assert cur.rowcount == 1
        cur.execute("SELECT count(*) FROM events WHERE event_id = 'e-1'")
        assert cur.fetchone()[0] == 2
        with pytest.raises(psycopg2.errors.CheckViolation):
            cur.execute(ins, (3, "e-3", "duplicate"))
        with pytest.raises(psycopg2.errors.CheckViolation):
            cur.execute("INSERT INTO operators (name, role, token_hash) "
                        "VALUES ('x', 'boss', %s)", ("0" * 64,))
        tr = ("INSERT INTO incident_transitions (transition_id, incident_id,"
              " to_state, actor, at) VALUES ('1:open', 1, 'new', 'alertd',"
              " %s) ON CONFLICT (transition_id, at) DO NOTHING")
        cur.execute(tr, ("2026-11-21T22:14:03.120Z",))
        cur.execute(tr, ("2026-11-21T22:14:03.120Z",))
        assert cur.rowcount == 0
        cur.execute(tr, ("2026-11-22T08:00:00.000Z",))  # a reused id
        assert cur.rowcount == 1


def migrations_before(version, tmp_path):
    """A folder with the migrations older than version (an upgrade
    test's starting schema)."""
    d = tmp_path / "migrations"
    d.mkdir()
    for p in MIGRATIONS.glob("*.sql"):
        if p.stem < version:
            (d / p.name).write_text(p.read_text())
    return d


def schema_before(version, pg_server, alertctl, name, cfg, tmp_path):
    """Database `name` migrated up to (not including) version: an upgrade
    test's start. Returns an autocommit connection to it."""
    alertctl("migrate", "--dir", migrations_before(version, tmp_path),
             config=cfg.path)
    conn = pg_server.connect(dbname=name)
    conn.autocommit = True
    return conn


def test_migration_007_keeps_the_key_and_the_chain(pg_server, alertctl,
                                                   empty_db, tmp_path):
    """007 swaps the idempotency key's column order and drops the plain
    event_id index on a database that already holds chained rows: the
    rows, their chain and the key's behaviour stay; an event_id lookup
    still uses an index."""
    name, cfg = empty_db
    conn = schema_before("007", pg_server, alertctl, name, cfg, tmp_path)
    ins = ("INSERT INTO events (accept_seq, event_id, source_id, source_kind,"
           " type, outcome, incident_id, priority, received_at, payload)"
           " VALUES (%s, %s, 'bus-1', 'bus', 'panic', 'new', 1, 100, now(),"
           " '{}') ON CONFLICT (accept_seq, event_id) DO NOTHING")
    with conn.cursor() as cur:
        for i in range(1, 4):
            cur.execute(ins, (i, "before-%d" % i))
    assert alertctl("audit", "verify", config=cfg.path).returncode == 0

    r = alertctl("migrate", "--dir", MIGRATIONS, config=cfg.path)
    assert "applied 007_events_key_order" in r.stdout
    with conn.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes"
                    " WHERE tablename = 'events'")
        idx = dict(cur.fetchall())
        assert "events_event_id_idx" not in idx
        assert idx["events_idempotency_key"].endswith(
            "USING btree (event_id, accept_seq)")
        cur.execute(ins, (1, "before-1"))          # the same delivery
        assert cur.rowcount == 0
        cur.execute(ins, (4, "after-4"))
        cur.execute(ins, (2, "after-4"))           # event_id not unique
        assert cur.rowcount == 1
        cur.execute("SET enable_seqscan = off")
        cur.execute("EXPLAIN SELECT * FROM events WHERE event_id = 'x'")
        plan = " ".join(r[0] for r in cur.fetchall())
        assert "events_idempotency_key" in plan, plan
        cur.execute("SELECT count(*) FROM events")
        assert cur.fetchone()[0] == 5
    r = alertctl("audit", "verify", config=cfg.path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 5 rows" in r.stdout


def insert_events_by_hand(cur, n):
    """n rows inserted by hand (the chain trigger links them): an older
    database's rows, before-1..before-n of source bus-1."""
    for i in range(1, n + 1):
        cur.execute(
            "INSERT INTO events (accept_seq, event_id, source_id,"
            " source_kind, type, outcome, incident_id, priority,"
            " received_at, payload) VALUES (%s, %s, 'bus-1', 'bus',"
            " 'panic', 'new', 1, 100, now(), '{\"n\": 1}')",
            (i, "before-%d" % i))


def test_migration_008_keeps_old_rows_and_links_new_ones(
        pg_server, alertctl, empty_db, alertd_factory, tmp_path):
    """A database of 007 holding trigger-linked rows: verify works on it
    as it is (no content_ok column yet), 008 changes no old row's text,
    and an alertd started on it afterwards links its own rows after them:
    one chain of both kinds, verified."""
    name, cfg = empty_db
    conn = schema_before("008", pg_server, alertctl, name, cfg, tmp_path)
    with conn.cursor() as cur:
        insert_events_by_hand(cur, 3)
    r = alertctl("audit", "verify", config=cfg.path, check=False)
    assert r.returncode == 0 and "ok, 3 rows" in r.stdout, r.stdout + r.stderr

    r = alertctl("migrate", "--dir", MIGRATIONS, config=cfg.path)
    assert "applied 008_chain_in_alertd" in r.stdout
    r = alertctl("audit", "verify", config=cfg.path, check=False)
    assert r.returncode == 0 and "ok, 3 rows" in r.stdout, r.stdout + r.stderr

    daemon = alertd_factory(postgres__conninfo=pg_server.dsn_for(name))
    for _ in range(3):
        st, body, _ = post_event(daemon.http, make_event())
        assert st == 202, body
    with conn.cursor() as cur:
        cur.execute("SELECT chain_seq, canon IS NOT NULL FROM events"
                    " ORDER BY chain_seq")
        got = cur.fetchall()
    # 3 old rows, then 3 events each with its opening transition; the
    # first batch after the start is linked by the trigger, the next two
    # by alertd
    assert [s for s, _ in got] == [1, 2, 3, 4, 6, 8], got
    assert [c for _, c in got] == [False] * 4 + [True] * 2, got
    r = alertctl("audit", "verify", config=cfg.path, check=False)
    assert r.returncode == 0 and "ok, 9 rows (chain_seq 1..9)" in r.stdout, \
        r.stdout + r.stderr


@pytest.fixture
def utf8_locale_db(pg_server, make_config):
    """An empty database made with a locale other than C, as `createdb`
    makes it on a server installed under one (the test cluster itself is
    made with --locale=C). C.utf8 is in every Debian glibc."""
    name = "alertd_l_" + uuid.uuid4().hex[:12]
    with pg_server.admin().cursor() as cur:
        cur.execute("CREATE DATABASE %s OWNER alertd TEMPLATE template0"
                    " LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8'" % name)
    cfg = make_config(name="locale-db.ini",
                      postgres__conninfo=pg_server.dsn_for(name))
    yield name, cfg
    pg_server.drop_database(name)


def column_collations(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname || '.' || a.attname, coalesce(k.collname, '')"
            "  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            "  LEFT JOIN pg_collation k ON k.oid = a.attcollation"
            " WHERE c.relname IN ('events', 'incident_transitions',"
            "                     'notifications') AND a.attnum > 0"
            "   AND NOT a.attisdropped AND a.atttypid = 'text'::regtype")
        return dict(cur.fetchall())


def test_migration_009_keys_compare_bytewise_in_any_locale(
        pg_server, alertctl, utf8_locale_db, alertd_factory, tmp_path):
    """009 on a database of another locale that holds rows: the audit
    tables' text keys get the C collation, nothing else changes, the views
    come back, the chain still verifies, the key and the per-source index
    are still used, and an alertd writes and queries through them."""
    name, cfg = utf8_locale_db
    conn = schema_before("009", pg_server, alertctl, name, cfg, tmp_path)
    with conn.cursor() as cur:
        cur.execute("SELECT datcollate FROM pg_database"
                    " WHERE datname = current_database()")
        assert cur.fetchone()[0] == "C.utf8"
        insert_events_by_hand(cur, 3)
        cur.execute("SELECT event_id, row_hash FROM events ORDER BY seq")
        before = cur.fetchall()
    assert set(column_collations(conn).values()) == {"default"}

    r = alertctl("migrate", "--dir", MIGRATIONS, config=cfg.path)
    assert "applied 009_identifier_collation" in r.stdout
    coll = column_collations(conn)
    keys = {"events.event_id", "events.source_id",
            "incident_transitions.transition_id",
            "incident_transitions.actor", "incident_transitions.to_state",
            "notifications.idempotency_key", "notifications.outcome"}
    assert {k for k, v in coll.items() if v == "C"} == keys, coll
    assert coll["events.type"] == "default"
    with conn.cursor() as cur:
        cur.execute("SELECT event_id, row_hash FROM events ORDER BY seq")
        assert cur.fetchall() == before
        cur.execute("SELECT count(*) FROM audit_log WHERE source_id = %s",
                    ("bus-1",))
        assert cur.fetchone()[0] == 3
        cur.execute("SET enable_seqscan = off")
        for sql, index in (
                ("SELECT 1 FROM events WHERE event_id = 'before-1'"
                 " AND accept_seq = 1", "events_idempotency_key"),
                ("SELECT 1 FROM events WHERE source_id = 'bus-1' AND"
                 " received_at >= now() - interval '1 day'",
                 "events_source_received_idx")):
            cur.execute("EXPLAIN " + sql)
            plan = " ".join(r[0] for r in cur.fetchall())
            assert index in plan, plan
    r = alertctl("audit", "verify", config=cfg.path, check=False)
    assert r.returncode == 0 and "ok, 3 rows" in r.stdout, r.stdout + r.stderr

    # alertd's batch statement and the audit queries against the columns
    # (a parameter compared with a "C" column takes its collation)
    daemon = alertd_factory(postgres__conninfo=pg_server.dsn_for(name))
    ev = make_event()
    for _ in range(2):                         # a delivery and its retry
        st, body, _ = post_event(daemon.http, ev)
        assert st == 202, body
    src = ev["source"]["id"]
    r = alertctl("audit", "source", src, "--format", "json",
                 config=cfg.path)
    assert r.stdout.count(ev["event_id"]) >= 1, r.stdout
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM events WHERE event_id = %s",
                    (ev["event_id"],))
        assert cur.fetchone()[0] == 1
    r = alertctl("audit", "verify", config=cfg.path, check=False)
    assert r.returncode == 0 and "ok, 5 rows" in r.stdout, r.stdout + r.stderr
