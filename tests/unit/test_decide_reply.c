/* decide_reply: the script's replies, parsed from real RESP bytes by
 * hiredis's reader, including the shapes a confused Redis could send. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <hiredis/hiredis.h>

#include "decide_reply.h"
#include "unit.h"

/* RESP for a flat array: each element a bulk string, or an integer when
 * it starts with ':', or a nil when NULL. */
static redisReply *resp_array(int n, ...)
{
	char buf[4096];
	size_t len = 0;
	redisReader *r = redisReaderCreate();
	void *reply = NULL;
	va_list ap;

	len += (size_t)snprintf(buf + len, sizeof(buf) - len, "*%d\r\n", n);
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		const char *s = va_arg(ap, const char *);

		if (s == NULL)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len,
						"$-1\r\n");
		else if (s[0] == ':')
			len += (size_t)snprintf(buf + len, sizeof(buf) - len,
						"%s\r\n", s);
		else
			len += (size_t)snprintf(buf + len, sizeof(buf) - len,
						"$%zu\r\n%s\r\n", strlen(s), s);
	}
	va_end(ap);
	if (r == NULL || redisReaderFeed(r, buf, len) != REDIS_OK ||
	    redisReaderGetReply(r, &reply) != REDIS_OK)
		reply = NULL;
	redisReaderFree(r);
	return reply;
}

static redisReply *resp_raw(const char *text)
{
	redisReader *r = redisReaderCreate();
	void *reply = NULL;

	if (r == NULL || redisReaderFeed(r, text, strlen(text)) != REDIS_OK ||
	    redisReaderGetReply(r, &reply) != REDIS_OK)
		reply = NULL;
	redisReaderFree(r);
	return reply;
}

TEST(decide_reply_new_incident)
{
	struct decide_result res;
	redisReply *r = resp_array(10, "new", "new", ":42", ":700", ":5",
				   ":1", ":1", ":1700000000000",
				   "{\"id\":42}", "1700000000000-0");

	REQUIRE(r != NULL);
	REQUIRE(decide_reply_event(r, &res));
	CHECK(res.outcome == EVT_OUTCOME_NEW);
	CHECK(res.incident_id == 42 && res.priority == 700);
	CHECK(res.accept_seq == 5 && res.opened && res.version == 1);
	CHECK_STR(res.snapshot_json, "{\"id\":42}");
	CHECK_STR(res.change_id, "1700000000000-0");
	CHECK(res.refused == NULL && !res.quiet && res.resolved_id == 0);
	freeReplyObject(r);
}

TEST(decide_reply_refusal_and_its_clamp)
{
	struct decide_result res;
	redisReply *r = resp_array(3, "refused", "rate_limited", ":9000");

	REQUIRE(r != NULL);
	REQUIRE(decide_reply_event(r, &res));
	CHECK_STR(res.refused, "rate_limited");
	CHECK(res.retry_after_ms == 9000);
	freeReplyObject(r);
	r = resp_array(3, "refused", "rate_limited", ":99999999999");
	REQUIRE(r != NULL);
	REQUIRE(decide_reply_event(r, &res));
	CHECK(res.retry_after_ms == 3600000);
	freeReplyObject(r);
	/* An unknown refusal code is not passed on. */
	r = resp_array(3, "refused", "because", ":1");
	REQUIRE(r != NULL);
	CHECK(!decide_reply_event(r, &res));
	freeReplyObject(r);
}

TEST(decide_reply_wrong_shapes_refused)
{
	struct decide_result res;
	redisReply *bad[] = {
		/* too short */
		resp_array(9, "new", "new", ":42", ":700", ":5", ":1", ":1",
			   ":1", "{}"),
		/* priority out of range */
		resp_array(10, "new", "new", ":42", ":1000", ":5", ":1", ":1",
			   ":1", "{}", "1-0"),
		/* a number that is not one */
		resp_array(10, "new", "new", "42x", ":700", ":5", ":1", ":1",
			   ":1", "{}", "1-0"),
		/* the first delivery cannot have been a duplicate */
		resp_array(10, "duplicate", "duplicate", ":42", ":700", ":5",
			   ":1", ":1", ":1", "", ""),
		/* a heartbeat (no incident) with a snapshot */
		resp_array(10, "new", "new", ":0", ":0", ":5", ":0", ":0",
			   ":1", "{}", ""),
		/* a nil where the snapshot goes */
		resp_array(10, "new", "new", ":42", ":700", ":5", ":1", ":1",
			   ":1", NULL, "1-0"),
		/* an unknown extra */
		resp_array(11, "merged", "merged", ":42", ":700", ":5", ":0",
			   ":2", ":1", "{}", "1-0", "surprise"),
		resp_raw("-ERR something\r\n"),
		resp_raw(":1\r\n"),
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		REQUIRE(bad[i] != NULL);
		CHECK(!decide_reply_event(bad[i], &res));
		freeReplyObject(bad[i]);
	}
}

TEST(decide_reply_quiet_and_resolved_extras)
{
	struct decide_result res;
	redisReply *r = resp_array(18, "merged", "merged", ":42", ":700", ":6",
				   ":0", ":3", ":1", "{\"id\":42}", "",
				   "quiet", "1", "resolved", ":7", "open", ":4",
				   "{\"id\":7}", "2-0");

	REQUIRE(r != NULL);
	REQUIRE(decide_reply_event(r, &res));
	CHECK(res.quiet && res.change_id == NULL);
	CHECK(res.resolved_id == 7 && res.resolved_version == 4);
	CHECK_STR(res.resolved_from, "open");
	CHECK_STR(res.resolved_change_id, "2-0");
	freeReplyObject(r);
}

TEST(decide_reply_items_and_changes)
{
	struct decide_item *items = NULL;
	const char **ids = NULL, **snaps = NULL;
	size_t n = 0;
	redisReply *r = resp_array(8, ":1", "{\"id\":1}", "1-0", "",
				   ":2", "{\"id\":2}", "2-0", "1700000000000");

	REQUIRE(r != NULL);
	REQUIRE(decide_reply_items(r, 4, &items, &n));
	CHECK(n == 2 && items[0].incident_id == 1 &&
	      items[0].last_seen_ms == 0);
	CHECK(items[1].last_seen_ms == 1700000000000LL);
	CHECK_STR(items[1].change_id, "2-0");
	free(items);
	/* 8 elements are not groups of 3. */
	CHECK(!decide_reply_items(r, 3, &items, &n) && items == NULL);
	freeReplyObject(r);

	/* XRANGE: the entry without a snapshot field is skipped. */
	r = resp_raw("*2\r\n"
		     "*2\r\n$3\r\n1-0\r\n*2\r\n$8\r\nsnapshot\r\n$2\r\n{}\r\n"
		     "*2\r\n$3\r\n2-0\r\n*2\r\n$5\r\nother\r\n$1\r\nx\r\n");
	REQUIRE(r != NULL);
	REQUIRE(decide_reply_changes(r, &ids, &snaps, &n));
	CHECK(n == 1);
	CHECK_STR(ids[0], "1-0");
	CHECK_STR(snaps[0], "{}");
	free(ids);
	free(snaps);
	freeReplyObject(r);
	r = resp_raw("*1\r\n:5\r\n");
	REQUIRE(r != NULL);
	CHECK(!decide_reply_changes(r, &ids, &snaps, &n));
	freeReplyObject(r);
}
