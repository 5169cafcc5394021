"""Tamper evidence: audit rows are append-only for the daemon's role and
hash-chained; `alertctl audit verify` passes on an untouched chain and
names the first broken row after an edit, a deletion, an insertion or a
reordering (done as the PostgreSQL superuser with the triggers off)."""

import hashlib
import json
import re
import struct
import time

import psycopg2
import pytest

from helpers import TcpClient, http_get, make_event, post_event, pb


@pytest.fixture
def chain(alertd, pg_server, test_env):
    """4 events of 3 sources (3 incidents): 7 chained rows."""
    src = make_event()["source"]
    for ev in [make_event(source=src), make_event(source=src),
               make_event(), make_event()]:
        st, body, _ = post_event(alertd.http, ev)
        assert st == 202, body
    admin = pg_server.admin(dbname=test_env.dbname)
    with admin.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
    return alertd, admin


def rows(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT chain_seq, 'events', event_id FROM events "
                    "UNION ALL SELECT chain_seq, 'incident_transitions', "
                    "transition_id FROM incident_transitions ORDER BY 1")
        return cur.fetchall()


def verify(d, *args):
    return d.ctl("audit", "verify", *args, check=False)


def assert_broken(r, seq, key):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    m = re.search(r"BROKEN at chain_seq (-?\d+|NULL): (\S+) row seq=\d+ "
                  r"key=(\S+):", r.stdout)
    assert m, r.stdout
    assert m.group(1) == str(seq), r.stdout
    assert m.group(3) == key, r.stdout
    return m.group(2)


def test_untouched_chain_verifies(chain):
    d, admin = chain
    rs = rows(admin)
    assert [r[0] for r in rs] == list(range(1, 8))
    r = verify(d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 7 rows (chain_seq 1..7)" in r.stdout
    head = d.ctl("audit", "head").stdout
    m = re.match(r"chain_seq 7 sha256 ([0-9a-f]{64}) at ", head)
    assert m, head
    assert m.group(1) in r.stdout
    # The hash is SHA-256(prev_hash || canonical text), recomputable by
    # anyone with psql: alertd's rows keep the very text it hashed. The
    # first batch after a start is linked by the trigger (alertd does not
    # know the head yet), the others (one event each) by alertd.
    with admin.cursor() as cur:
        cur.execute("SELECT prev_hash, row_hash, canon FROM audit_chain_rows "
                    "ORDER BY chain_seq")
        links = cur.fetchall()
        cur.execute("SELECT chain_seq, canon FROM events ORDER BY chain_seq")
        evs = cur.fetchall()
    assert len(links) == 7
    for prev, row, canon in links:
        assert hashlib.sha256(bytes(prev) + canon.encode()).digest() == \
            bytes(row)
    assert evs[0][1] is None
    assert all(c is not None for _, c in evs[1:]), evs
    last = json.loads(evs[-1][1])
    assert last["table"] == "events" and last["chain_seq"] == evs[-1][0]
    assert isinstance(last["payload"], dict)


def test_rows_are_append_only_for_the_daemon_role(chain):
    d, _ = chain
    conn = d.db()
    for sql in ("UPDATE events SET priority = 1",
                "DELETE FROM events",
                "TRUNCATE events",
                "UPDATE incident_transitions SET actor = 'x'",
                "DELETE FROM incident_transitions",
                "UPDATE audit_chain_head SET chain_seq = 1"):
        with pytest.raises(psycopg2.Error) as e:
            with conn.cursor() as cur:
                cur.execute(sql)
        assert "not allowed" in str(e.value) or \
            "only the chain triggers" in str(e.value), sql
    assert verify(d).returncode == 0


def test_edited_payload_byte_is_found(chain):
    d, admin = chain
    seq, tbl, key = [r for r in rows(admin) if r[1] == "events"][1]
    with admin.cursor() as cur:
        cur.execute("UPDATE events SET payload = jsonb_set(payload, "
                    "'{attrs,route}', '\"91\"') WHERE chain_seq = %s",
                    (seq,))
    r = verify(d)
    assert_broken(r, seq, key)
    assert "edited" in r.stdout


def test_deleted_row_is_found(chain):
    d, admin = chain
    rs = rows(admin)
    seq, tbl, key = rs[3]
    with admin.cursor() as cur:
        cur.execute("DELETE FROM %s WHERE chain_seq = %%s" % tbl, (seq,))
    r = verify(d)
    # the row after the gap is named, with the missing chain_seq
    assert_broken(r, rs[4][0], rs[4][2])
    assert "chain_seq %d is missing" % seq in r.stdout


def test_deleted_last_row_is_found(chain):
    d, admin = chain
    seq, tbl, key = rows(admin)[-1]
    with admin.cursor() as cur:
        cur.execute("DELETE FROM %s WHERE chain_seq = %%s" % tbl, (seq,))
    r = verify(d)
    assert r.returncode == 1
    assert "BROKEN at chain_seq %d" % seq in r.stdout
    assert "cut off" in r.stdout


def test_inserted_row_is_found(chain):
    d, admin = chain
    rs = rows(admin)
    # A forged row in the middle: it takes chain_seq 4, the rows from 4 on
    # move up by one (as a forger would have to), hashes left as they were.
    with admin.cursor() as cur:
        for seq in range(rs[-1][0], 3, -1):
            tbl = [r[1] for r in rs if r[0] == seq][0]
            cur.execute("UPDATE %s SET chain_seq = chain_seq + 1 "
                        "WHERE chain_seq = %%s" % tbl, (seq,))
        cur.execute("SELECT row_hash FROM events WHERE chain_seq = 3 "
                    "UNION ALL SELECT row_hash FROM incident_transitions "
                    "WHERE chain_seq = 3")
        prev = bytes(cur.fetchone()[0])
        cur.execute(
            "INSERT INTO events (accept_seq, event_id, source_id, "
            "source_kind, type, outcome, incident_id, priority, "
            "received_at, payload, chain_seq, prev_hash, row_hash) VALUES "
            "(999999, 'forged-1', 'bus-x', 'bus', 'panic', 'new', 99, 100, "
            "now(), '{}', 4, %s, %s)",
            (prev, hashlib.sha256(b"forged").digest()))
    r = verify(d)
    assert_broken(r, 4, "forged-1")


FORGED_ACK = (
    "INSERT INTO incident_transitions (transition_id, incident_id, "
    "from_state, to_state, actor, detail, at, chain_seq, prev_hash, "
    "row_hash) VALUES ('1:99', 1, 'new', 'acknowledged', 'ayse', NULL, "
    "now() - interval '1 hour', %s, %s, %s)")


@pytest.mark.parametrize("seq", [0, -5, 1000])
def test_forged_row_outside_the_walked_range_is_found(chain, seq):
    """rev3 #1. A row inserted with the triggers off and a chain_seq
    outside 1..head (0, below, after the head) is part of the audit trail
    (audit_log, the queries); verify used to walk only chain_seq BETWEEN 1
    AND head and said ok. It must be BROKEN, naming the table and key."""
    d, admin = chain
    with admin.cursor() as cur:
        cur.execute(FORGED_ACK, (seq, b"\x00", b"\x00"))
        cur.execute("SELECT count(*) FROM audit_log WHERE actor = 'ayse'")
        assert cur.fetchone()[0] == 1   # the forged ack is in the trail
    r = verify(d)
    assert assert_broken(r, seq, "1:99") == "incident_transitions"
    assert "outside the chain 1..7" in r.stdout


def test_row_with_null_chain_columns_is_found(chain):
    """rev3 #1. The NOT NULL constraints dropped too: a row with no
    chain_seq, prev_hash or row_hash is BROKEN, not skipped."""
    d, admin = chain
    with admin.cursor() as cur:
        cur.execute("ALTER TABLE incident_transitions "
                    "ALTER COLUMN chain_seq DROP NOT NULL, "
                    "ALTER COLUMN prev_hash DROP NOT NULL, "
                    "ALTER COLUMN row_hash DROP NOT NULL")
        cur.execute(FORGED_ACK, (None, None, None))
    r = verify(d)
    assert assert_broken(r, "NULL", "1:99") == "incident_transitions"
    with admin.cursor() as cur:
        cur.execute("UPDATE incident_transitions SET chain_seq = 8 "
                    "WHERE transition_id = '1:99'")
    r = verify(d)
    assert_broken(r, 8, "1:99")
    assert "prev_hash or row_hash is NULL" in r.stdout


def test_one_chain_seq_in_two_tables_is_found(chain):
    """rev3 #1. chain_seq is unique per table only: a forged notification
    that takes chain_seq 3 with a correct prev_hash and a recomputed
    row_hash (a link as good as the real one) is BROKEN, both rows
    named."""
    d, admin = chain
    seq, tbl, key = rows(admin)[2]
    with admin.cursor() as cur:
        cur.execute("SELECT row_hash FROM audit_chain_rows "
                    "WHERE chain_seq = 2")
        prev = bytes(cur.fetchone()[0])
        cur.execute(
            "INSERT INTO notifications (idempotency_key, attempt, "
            "incident_id, level, channel, target, outcome, at, chain_seq, "
            "prev_hash, row_hash) VALUES ('x:1', 1, 1, 1, 'sms', "
            "'+90***0000', 'sent', now(), 3, %s, '\\x00')", (prev,))
        cur.execute("UPDATE notifications n SET row_hash = sha256(prev_hash "
                    "|| convert_to(audit_canon('notifications', n), 'UTF8'))")
    r = verify(d)
    assert r.returncode == 1, r.stdout
    assert "chain_seq 3 appears twice" in r.stdout, r.stdout
    assert "key=x:1#1:sent" in r.stdout and "key=%s" % key in r.stdout, \
        r.stdout


def test_reordered_rows_are_found(chain):
    d, admin = chain
    rs = rows(admin)
    (s1, t1, k1), (s2, t2, k2) = rs[2], rs[3]
    with admin.cursor() as cur:
        cur.execute("UPDATE %s SET chain_seq = -1 WHERE chain_seq = %%s"
                    % t1, (s1,))
        cur.execute("UPDATE %s SET chain_seq = %%s WHERE chain_seq = %%s"
                    % t2, (s1, s2))
        cur.execute("UPDATE %s SET chain_seq = %%s WHERE chain_seq = -1"
                    % t1, (s2,))
    r = verify(d)
    assert_broken(r, s1, k2)


def _t_mid(d):
    """A time between the chain fixture's 7 rows and one more event's 2
    (chain_seq 8, 9)."""
    time.sleep(0.05)
    now = time.time()  # one reading: seconds and fraction must agree
    t_mid = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + \
        ".%06dZ" % int((now % 1) * 1e6)
    time.sleep(0.05)
    st, body, _ = post_event(d.http, make_event())
    assert st == 202
    return t_mid


def test_verify_a_time_range(chain):
    d, admin = chain
    t_mid = _t_mid(d)
    r = verify(d, "--from", t_mid)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 2 rows (chain_seq 8..9), linked to chain_seq 7 before " \
        "and the head after" in r.stdout
    r = verify(d, "--to", t_mid)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 7 rows (chain_seq 1..7), linked to the genesis before and " \
        "chain_seq 8 after" in r.stdout
    # an edit outside the range and its edge rows is not seen, inside it
    # is
    seq, tbl, key = rows(admin)[8]
    with admin.cursor() as cur:
        cur.execute("UPDATE %s SET incident_id = 99 WHERE chain_seq = 9"
                    % tbl)
    assert verify(d, "--to", t_mid).returncode == 0
    assert_broken(verify(d, "--from", t_mid), 9, key)


def test_a_range_checks_its_edge_rows(chain):
    """rev3 #2. The row after the range (and the one before) is read too:
    its link to the range's last row and its content are checked, so an
    edge row's edit is BROKEN; the rows beyond are not read."""
    d, admin = chain
    t_mid = _t_mid(d)
    rs = rows(admin)
    with admin.cursor() as cur:
        cur.execute("UPDATE %s SET incident_id = 99 WHERE chain_seq = 9"
                    % rs[8][1])
    assert verify(d, "--to", t_mid).returncode == 0
    with admin.cursor() as cur:
        cur.execute("UPDATE events SET priority = 1 WHERE chain_seq = 8")
    assert_broken(verify(d, "--to", t_mid), 8, rs[7][2])


def test_range_with_its_last_row_deleted_is_broken(chain):
    """rev3 #2. --to T: the last row recorded before T is deleted (rows
    after T exist). The deleted row belonged to the range; verify used to
    walk 1..6 and say ok."""
    d, admin = chain
    t_mid = _t_mid(d)
    assert "chain_seq 1..7" in verify(d, "--to", t_mid).stdout
    rs = rows(admin)
    seq, tbl, key = rs[6]      # chain_seq 7, recorded before T
    assert seq == 7
    with admin.cursor() as cur:
        cur.execute("DELETE FROM %s WHERE chain_seq = 7" % tbl)
    r = verify(d, "--to", t_mid)
    assert_broken(r, 8, rs[7][2])
    assert "chain_seq 7 is missing" in r.stdout


def test_range_with_its_first_row_deleted_is_broken(chain):
    """rev3 #2. --from T: the first row recorded at or after T is
    deleted; the range would start one row later."""
    d, admin = chain
    t_mid = _t_mid(d)
    rs = rows(admin)
    with admin.cursor() as cur:
        cur.execute("DELETE FROM %s WHERE chain_seq = 8" % rs[7][1])
    r = verify(d, "--from", t_mid)
    assert_broken(r, 9, rs[8][2])
    assert "chain_seq 8 is missing" in r.stdout


@pytest.mark.parametrize("edge", ["last", "first"])
def test_range_edge_row_moved_out_by_its_time_is_broken(chain, edge):
    """rev3 #2. recorded_at of the range's last (--to) or first (--from)
    row edited so that it falls outside the range: the range shrinks by
    that row, which is then its edge row, whose content no longer
    matches its hash."""
    d, admin = chain
    t_mid = _t_mid(d)
    rs = rows(admin)
    seq, tbl, key = rs[6] if edge == "last" else rs[7]
    shift = "+ interval '1 hour'" if edge == "last" else \
        "- interval '1 hour'"
    with admin.cursor() as cur:
        cur.execute("UPDATE %s SET recorded_at = recorded_at %s "
                    "WHERE chain_seq = %%s" % (tbl, shift), (seq,))
    r = verify(d, "--to" if edge == "last" else "--from", t_mid)
    assert_broken(r, seq, key)
    assert "edited" in r.stdout


def test_a_range_finds_rows_outside_the_chain(chain):
    """rev3 #1 for a ranged verify: a row with chain_seq NULL or outside
    1..head is found by the chain_seq indexes wherever it lies in time."""
    d, admin = chain
    t_mid = _t_mid(d)
    with admin.cursor() as cur:
        cur.execute(FORGED_ACK, (-1, b"\x00", b"\x00"))
    assert_broken(verify(d, "--from", t_mid), -1, "1:99")


def test_range_after_the_last_row_is_not_broken(chain):
    """rev3 #3. An intact chain, --from after its last row (e.g. a daily
    cron run before the day's first alarm): nothing to walk, ok with 0
    rows. It used to look for chain_seq INT64_MAX - 1 and say BROKEN."""
    d, _ = chain
    r = verify(d, "--from", "2100-01-01T00:00:00Z")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 0 rows (nothing recorded in the range, which lies " \
        "between chain_seq 7 and the end of the chain); head 7" in r.stdout


def test_empty_ranges_still_check_where_they_lie(chain):
    """rev3 #3. An empty range is ok with 0 rows, but the two rows around
    it are checked: the last row after --from past the end must still be
    the head, and a range between two rows needs them linked."""
    d, admin = chain
    t_mid = _t_mid(d)
    r = verify(d, "--to", "2000-01-01T00:00:00Z")
    assert "ok, 0 rows (nothing recorded in the range, which lies " \
        "between the genesis and chain_seq 1)" in r.stdout, r.stdout
    r = verify(d, "--from", t_mid, "--to", t_mid)
    assert "ok, 0 rows (nothing recorded in the range, which lies " \
        "between chain_seq 7 and chain_seq 8)" in r.stdout, r.stdout
    rs = rows(admin)
    with admin.cursor() as cur:
        cur.execute("DELETE FROM %s WHERE chain_seq = 9" % rs[8][1])
    r = verify(d, "--from", "2100-01-01T00:00:00Z")
    assert r.returncode == 1, r.stdout
    assert "BROKEN at chain_seq 9: the chain ends at 8 but its head " \
        "names 9" in r.stdout
    with admin.cursor() as cur:
        cur.execute("DELETE FROM %s WHERE chain_seq = 8" % rs[7][1])
    r = verify(d, "--from", t_mid, "--to", t_mid)
    assert r.returncode == 1, r.stdout


def test_an_empty_chain_verifies(alertd):
    assert "ok, 0 rows (the chain is empty); head 0 " in \
        verify(alertd).stdout
    r = verify(alertd, "--from", "2000-01-01T00:00:00Z")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 0 rows (nothing recorded in the range, which lies " \
        "between the genesis and the end of the chain)" in r.stdout


def trigger_linked(d):
    st, text, _ = http_get(d.http, "/metrics")
    m = re.search(r"^alertd_audit_trigger_linked_batches (\d+)$", text, re.M)
    assert st == 200 and m, text
    return int(m.group(1))


def test_duplicate_delivery_does_not_move_the_chain(alertd, test_env):
    """A duplicate's rows are written again only to be sure they are
    durable: they are checked, not linked, so the batch they ride in is
    still linked by alertd (only the first batch after the start, when
    alertd does not know the head yet, is linked by the trigger)."""
    ev = make_event()
    for _ in range(3):
        st, body, _ = post_event(alertd.http, ev)
        assert st == 202
    r = alertd.ctl("audit", "verify")
    assert "ok, 2 rows" in r.stdout, r.stdout
    assert trigger_linked(alertd) == 1
    # a batch of nothing but a duplicate's rows writes nothing and leaves
    # the head alone (no failed batch spooled and replayed behind this)
    assert not re.search(r"audit: batch of \d+ rows failed", alertd.log()), \
        alertd.log()
    conn = alertd.db()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM events")
        assert cur.fetchone()[0] == 1


def test_duplicate_whose_original_is_gone_is_written(chain):
    """A duplicate's row is checked against the stored rows: when its
    original is not there (here deleted by hand; in life a row dropped
    after failing again and again), the batch is linked by the trigger
    and the row is written, so an accepted event keeps a row."""
    d, admin = chain
    ev, ev2 = make_event(), make_event()
    for e in (ev, ev2):
        st, body, _ = post_event(d.http, e)
        assert st == 202, body
    before = trigger_linked(d)
    with admin.cursor() as cur:
        cur.execute("DELETE FROM events WHERE event_id = %s",
                    (ev["event_id"],))
        assert cur.rowcount == 1
    st, body, _ = post_event(d.http, ev)
    assert st == 202 and body["outcome"] == "duplicate", body
    with admin.cursor() as cur:
        cur.execute("SELECT chain_seq, canon IS NULL FROM events "
                    "WHERE event_id = %s", (ev["event_id"],))
        assert cur.fetchall() == [(12, True)]
    assert trigger_linked(d) == before + 1
    # the hole where the deleted row was is still found
    r = verify(d)
    assert r.returncode == 1 and "BROKEN at chain_seq" in r.stdout, r.stdout


def test_repeats_inside_one_batch_are_written_once(alertd):
    """Every frame sent twice in one write, so that an event and its repeat
    usually share a Redis call and an audit batch: acked twice, new then
    duplicate, stored once, and the repeat did not move the head (the
    chain verifies with one link per row)."""
    m = pb()
    evs = [make_event() for _ in range(20)]
    data = b"".join(struct.pack(">I", len(f)) + f
                    for f in (TcpClient.signed_frame(ev) for ev in evs)
                    for _ in range(2))
    with TcpClient(*alertd.tcp) as c:
        c.send_raw(data)
        acks = [c.read_frame() for _ in range(40)]
    outcomes = {}
    for f in acks:
        assert f.WhichOneof("msg") == "ack", f
        outcomes.setdefault(f.ack.event_id, []).append(f.ack.outcome)
    assert sorted(outcomes) == sorted(ev["event_id"] for ev in evs)
    for got in outcomes.values():
        assert sorted(got) == sorted([m.NEW, m.DUPLICATE]), got
    conn = alertd.db()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT event_id) FROM events")
        assert cur.fetchone() == (20, 20)
    r = alertd.ctl("audit", "verify")
    assert "ok, 40 rows" in r.stdout, r.stdout     # 20 events + 20 opened


@pytest.mark.kill_after(180)
def test_two_instances_writing_at_once_keep_one_chain(alertd_factory,
                                                      test_env):
    """Each daemon links its batches after the head it last saw, and the
    batch statement checks that head under its row lock (writing nothing
    and naming the new head if it moved): two daemons committing batches
    at the same time still make one chain."""
    import threading
    d1 = alertd_factory(spool__path=str(test_env.tmp / "spool-a"))
    d2 = alertd_factory(spool__path=str(test_env.tmp / "spool-b"))
    accepted = []

    def send(d):
        for _ in range(40):
            ev = make_event()
            st, body, _ = post_event(d.http, ev)
            if st == 202:
                accepted.append(ev["event_id"])

    ts = [threading.Thread(target=send, args=(d,)) for d in (d1, d2, d1, d2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert len(accepted) == 160
    r = d1.ctl("audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    # 160 events, each of a new source: 160 opening transitions too
    assert "ok, 320 rows" in r.stdout, r.stdout


def test_notification_rows_join_the_chain(chain):
    """Notification attempts (escalation) are chained like events and
    transitions: verified, written once on a retried batch, and an edit is
    found."""
    d, admin = chain
    key = "1:1:call:+90***1234"
    conn = d.db()
    with conn.cursor() as cur:
        for attempt, outcome in ((1, "failed"), (2, "sent"), (2, "sent")):
            cur.execute(
                "INSERT INTO notifications (idempotency_key, attempt, "
                "incident_id, level, channel, target, outcome, at) "
                "VALUES (%s, %s, 1, 1, 'call', '+90***1234', %s, now())",
                (key, attempt, outcome))
        cur.execute("SELECT chain_seq, attempt FROM notifications "
                    "ORDER BY chain_seq")
        assert cur.fetchall() == [(8, 1), (9, 2)]
        cur.execute("SELECT kind, ref FROM audit_log "
                    "WHERE kind = 'notification' ORDER BY chain_seq")
        assert [r[0] for r in cur.fetchall()] == ["notification"] * 2
    r = verify(d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 9 rows (chain_seq 1..9)" in r.stdout
    with conn.cursor() as cur:
        with pytest.raises(psycopg2.Error):
            cur.execute("UPDATE notifications SET outcome = 'delivered'")
    with admin.cursor() as cur:
        cur.execute("UPDATE notifications SET outcome = 'delivered' "
                    "WHERE chain_seq = 9")
    # The row is named as it reads now, edited.
    assert_broken(verify(d), 9, key + "#2:delivered")


def test_rows_linked_elsewhere_move_the_head_alertd_links_after(chain):
    """alertd links its rows after the head it last saw; rows linked by
    the trigger meanwhile (notifications, a row inserted by hand) move
    the head, and alertd's next batch, finding the head moved, is linked
    by the trigger instead, in the same statement; the batch after it is
    alertd's again: one chain, no row lost, no second round trip."""
    d, admin = chain
    conn = d.db()
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO notifications (idempotency_key, attempt, "
            "incident_id, level, channel, target, outcome, at) "
            "VALUES ('1:1:sms:+90***1', 1, 1, 1, 'sms', '+90***1', "
            "'sent', now())")
    conn.commit()
    ev, ev2 = make_event(), make_event()
    for e in (ev, ev2):
        st, body, _ = post_event(d.http, e)
        assert st == 202, body
    with conn.cursor() as cur:
        cur.execute("SELECT chain_seq, canon IS NOT NULL FROM events "
                    "WHERE event_id = ANY(%s) ORDER BY chain_seq",
                    ([ev["event_id"], ev2["event_id"]],))
        assert cur.fetchall() == [(9, False), (11, True)]
        cur.execute("SELECT chain_seq FROM audit_chain_head")
        assert cur.fetchone()[0] == 12
    st, text, _ = http_get(d.http, "/metrics")
    assert re.search(r"^alertd_audit_trigger_linked_batches [12]$", text,
                     re.M), text
    r = verify(d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 12 rows (chain_seq 1..12)" in r.stdout, r.stdout


def test_edited_canonical_text_is_found(chain):
    """A row alertd linked keeps the text it hashed (canon): editing that
    text breaks the hash."""
    d, admin = chain
    seq, tbl, key = [r for r in rows(admin) if r[1] == "events"][2]
    with admin.cursor() as cur:
        cur.execute("UPDATE events SET canon = replace(canon, "
                    "'\"priority\":', '\"priority\":1') "
                    "WHERE chain_seq = %s", (seq,))
        assert cur.rowcount == 1
    r = verify(d)
    assert_broken(r, seq, key)
    assert "row_hash does not match" in r.stdout


@pytest.mark.parametrize("edit", [
    "UPDATE events SET recorded_at = recorded_at + interval '1 ms'",
    "UPDATE events SET occurred_at = NULL",
    "UPDATE events SET source_kind = 'ferry'",
])
def test_edited_column_of_an_alertd_row_is_found(chain, edit):
    """The canonical text stays as hashed; a column that no longer says
    what it says (recorded_at and chain_seq included) is BROKEN."""
    d, admin = chain
    seq, tbl, key = [r for r in rows(admin) if r[1] == "events"][1]
    with admin.cursor() as cur:
        cur.execute(edit + " WHERE chain_seq = %s", (seq,))
        assert cur.rowcount == 1
    r = verify(d)
    assert_broken(r, seq, key)
    assert "columns differ from the canonical text" in r.stdout, r.stdout


def test_canonical_text_that_is_not_json_is_broken_not_an_error(chain):
    """A canon replaced by text that is not JSON, with a row_hash made to
    match it, is a BROKEN row, not a verify that stops with an error."""
    d, admin = chain
    seq, tbl, key = [r for r in rows(admin)
                     if r[1] == "incident_transitions"][0]
    with admin.cursor() as cur:
        cur.execute("UPDATE incident_transitions SET canon = '{not json', "
                    "row_hash = sha256(prev_hash || "
                    "convert_to('{not json', 'UTF8')) "
                    "WHERE chain_seq = %s", (seq,))
    r = verify(d)
    assert_broken(r, seq, key)
    assert "columns differ" in r.stdout, r.stdout


def test_rows_from_any_session_time_zone_and_batch_shape_verify(chain):
    """The trigger of migration 006 locks the head once per transaction and
    computes the canonical text inline in UTC sessions, through audit_canon
    otherwise: rows written from a UTC and a non-UTC session, several rows
    per statement, two statements and two tables in one transaction, and a
    repeated key inside one statement all make one chain verify accepts."""
    d, _ = chain
    for zone in ("UTC", "Europe/Istanbul", "America/Sao_Paulo"):
        conn = d.db()
        with conn.cursor() as cur:
            cur.execute("SET TimeZone = %s", (zone,))
            cur.execute(
                "INSERT INTO events (accept_seq, event_id, source_id, "
                "source_kind, type, outcome, incident_id, priority, "
                "received_at, payload) "
                "SELECT 900000 + g %% 3, %s || (g %% 3), 'bus-tz', "
                "'bus', 'heartbeat', 'merged', 0, 0, now(), "
                "'{\"n\": 1.50}' "
                "FROM generate_series(1, 6) g "
                "ON CONFLICT DO NOTHING",
                ("tz-" + zone + "-",))
            cur.execute(
                "INSERT INTO incident_transitions (transition_id, "
                "incident_id, to_state, actor, at) "
                "VALUES (%s, 1, 'acknowledged', 'tz-test', now())",
                ("tz:" + zone,))
        conn.commit()
        conn.close()
    # rows 4-6 of each statement repeat the keys of rows 1-3: 7 + 3 * 4
    r = verify(d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok, 19 rows (chain_seq 1..19)" in r.stdout, r.stdout
    conn = d.db()
    with conn.cursor() as cur:
        # the same rows again, one transaction: nothing moves
        cur.execute(
            "INSERT INTO events (accept_seq, event_id, source_id, "
            "source_kind, type, outcome, incident_id, priority, "
            "received_at, payload) "
            "SELECT 900000 + g % 3, 'tz-UTC-' || (g % 3), 'bus-tz', 'bus', "
            "'heartbeat', 'merged', 0, 0, now(), '{}' "
            "FROM generate_series(1, 6) g ON CONFLICT DO NOTHING")
        assert cur.rowcount == 0
        cur.execute("SELECT chain_seq FROM audit_chain_head")
        assert cur.fetchone()[0] == 19
    conn.commit()
    conn.close()
