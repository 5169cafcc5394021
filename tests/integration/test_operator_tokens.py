"""Operator tokens: a token works as soon as it exists in PostgreSQL, even
when the daemon refreshed its cache a moment before and the NOTIFY of the
new operator has not arrived; an unknown token is refused."""

import hashlib
import secrets
import uuid

from helpers import http_get


def insert_operator_without_notify(alertd, role="operator"):
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    with alertd.db().cursor() as cur:
        cur.execute("INSERT INTO operators (name, role, token_hash) "
                    "VALUES (%s, %s, %s)",
                    ("op-" + uuid.uuid4().hex[:8], role, digest))
    return token


def test_new_token_right_after_a_refresh_is_accepted(alertd, operator_token):
    # A lookup of a known token, and a miss that makes the daemon refresh.
    st, _, _ = http_get(alertd.http, "/v1/incidents", token=operator_token)
    assert st == 200
    st, _, _ = http_get(alertd.http, "/v1/incidents", token="no-such-token")
    assert st == 401
    # Within the same second, a token the cache cannot have seen yet.
    for _ in range(5):
        token = insert_operator_without_notify(alertd)
        st, body, _ = http_get(alertd.http, "/v1/incidents", token=token)
        assert st == 200, body


def test_unknown_tokens_are_refused_each_time(alertd):
    for i in range(20):
        st, body, hdrs = http_get(alertd.http, "/v1/incidents",
                                  token="bad-%d" % i)
        assert st == 401, body
        assert body["error"] == "unauthorized"
        assert hdrs.get("www-authenticate") == "Bearer"
