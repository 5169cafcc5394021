/* ctl_audit: `alertctl audit verify|head|incident|source|operator|stats`.
 *
 * verify walks the hash chain of config/migrations/002_audit_chain.sql in
 * chain_seq order inside one read-only REPEATABLE READ transaction, with
 * a cursor (10,000 rows per fetch), and for every row checks:
 *   - its chain columns are not NULL and chain_seq lies in 1..head
 *                                             (else: a row inserted with
 *                                              the triggers off)
 *   - chain_seq is the previous one + 1       (else: a row deleted, or one
 *                                              chain_seq in two tables)
 *   - prev_hash is the previous row's row_hash (else: deleted/inserted/
 *                                                reordered)
 *   - row_hash = SHA-256(prev_hash || canonical text), computed here
 *     with OpenSSL                             (else: the row edited)
 *   - for a row alertd linked (migration 008), that its stored canonical
 *     text says what its columns say (content_ok, checked in SQL)
 *                                              (else: the row edited)
 * The canonical text is the stored one (canon) for a row alertd linked,
 * audit_canon(row) for a row the trigger linked (docs/audit.md).
 * and, for the whole chain, that the last row is the one the head names
 * (else: rows cut off the end, or inserted after it). The whole chain is
 * every row of every chained table, whatever its chain_seq: a forged row
 * outside 1..head is part of the audit trail too. A range (--from/--to,
 * by recorded_at) is walked with one row more on each side, so that its
 * edges are proven too (docs/audit.md says what a range cannot prove).
 * The first broken link is printed with its row, exit status 1. */
#include "ctl_audit.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>

#include "audit_query.h"
#include "config.h"
#include "jsonout.h"

enum { CTL_A_OK = 0, CTL_A_FAIL = 1, CTL_A_USAGE = 2 };

enum ctl_audit_format { FMT_TABLE, FMT_JSON, FMT_CSV };

#define CTL_AUDIT_FETCH "10000"

void ctl_audit_usage(FILE *out)
{
	fprintf(out,
		"usage: alertctl audit verify [--from TIME] [--to TIME]\n"
		"       alertctl audit head\n"
		"       alertctl audit incident ID [OUTPUT]\n"
		"       alertctl audit source ID [--from TIME] [--to TIME] [OUTPUT]\n"
		"       alertctl audit operator NAME [--from TIME] [--to TIME] [OUTPUT]\n"
		"       alertctl audit stats [--by zone|kind|priority|operator] [--from TIME] [--to TIME] [OUTPUT]\n"
		"  OUTPUT: [--format table|json|csv] [--personal] [--limit N]\n"
		"  TIME: anything PostgreSQL reads as timestamptz (2026-11-21T22:00:00Z)\n");
}

static void ctl_audit_pg_error(const char *what, const char *msg)
{
	int n = (int)strcspn(msg ? msg : "", "\n");

	fprintf(stderr, "alertctl: audit %s: %.*s\n", what, n, msg ? msg : "");
}

/* The result of one statement, or NULL (printed). */
static PGresult *ctl_audit_exec(PGconn *pg, const char *what, const char *sql,
				int n, const char *const *params)
{
	PGresult *res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		ctl_audit_pg_error(what, res ? PQresultErrorMessage(res)
					     : PQerrorMessage(pg));
		PQclear(res);
		return NULL;
	}
	return res;
}

static bool ctl_audit_ok(PGconn *pg, const char *what, const char *sql)
{
	PGresult *res = ctl_audit_exec(pg, what, sql, 0, NULL);

	PQclear(res);
	return res != NULL;
}

/* ---- verify ---- */

static int ctl_audit_unhex(const char *hex, unsigned char *out, size_t max)
{
	size_t n = strlen(hex) / 2;

	if (n > max || strlen(hex) % 2)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned int b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = (unsigned char)b;
	}
	return (int)n;
}

/* Lower-case hex SHA-256 of prev (hex) || canon into out (65 bytes). */
static bool ctl_audit_link_hash(const char *prev_hex, const char *canon,
				char out[65])
{
	unsigned char prev[64], md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	int n = ctl_audit_unhex(prev_hex, prev, sizeof(prev));
	EVP_MD_CTX *ctx;
	bool ok;

	if (n < 0 || !(ctx = EVP_MD_CTX_new()))
		return false;
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, prev, (size_t)n) == 1 &&
	     EVP_DigestUpdate(ctx, canon, strlen(canon)) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &len) == 1 && len == 32;
	EVP_MD_CTX_free(ctx);
	for (unsigned int i = 0; ok && i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return ok;
}

/* Every chained row of every audit table comes from the view
 * audit_chain_rows (migration 005): a new audit table joins the
 * verification by extending the view. The whole chain is every row of
 * the view, with no condition on chain_seq: rows below 1 come first,
 * rows with a NULL chain_seq last (one ordered pass per table, a merge of
 * the chain_seq indexes). Ties (one chain_seq in two tables) in a fixed
 * order, so that the same row is named twice over.
 *
 * Each query comes in two forms: [1] for a schema with migration 008
 * (content_ok), [0] for an older one (a restored dump of an older
 * database), whose rows were all linked by the trigger. */
#define CTL_AUDIT_COLS(ok) \
	" SELECT chain_seq, tbl, seq, ref, encode(prev_hash, 'hex')," \
	"  encode(row_hash, 'hex'), canon, " ok " FROM audit_chain_rows"
#define CTL_AUDIT_ALL(ok) \
	"DECLARE audit_verify NO SCROLL CURSOR FOR" CTL_AUDIT_COLS(ok) \
	" ORDER BY chain_seq, tbl, seq"
static const char *const ctl_audit_all_sql[2] = {
	CTL_AUDIT_ALL("true"), CTL_AUDIT_ALL("content_ok")
};
/* A range start..end and its two edges: the row before start (the
 * anchor: its content is checked, its own link is not) and the row after
 * end (link and content checked), so that a row deleted at an edge, or
 * pushed out of the range by an edit of its recorded_at, is found. The
 * edges are two index probes; the range is then walked with literal
 * bounds, so that the planner sees its size and merges the chain_seq
 * indexes instead of sorting the rows. */
static const char ctl_audit_edges_sql[] =
	"SELECT coalesce((SELECT max(chain_seq) FROM audit_chain_rows"
	"                 WHERE chain_seq < $1::bigint), $1::bigint),"
	"       coalesce((SELECT min(chain_seq) FROM audit_chain_rows"
	"                 WHERE chain_seq > $2::bigint), $2::bigint)";
#define CTL_AUDIT_RANGE(ok) \
	"DECLARE audit_verify NO SCROLL CURSOR FOR" CTL_AUDIT_COLS(ok) \
	" WHERE chain_seq BETWEEN $1::bigint AND $2::bigint" \
	" ORDER BY chain_seq, tbl, seq"
static const char *const ctl_audit_range_sql[2] = {
	CTL_AUDIT_RANGE("true"), CTL_AUDIT_RANGE("content_ok")
};
/* A ranged verify does not read every row: the rows that cannot be
 * links at all (chain_seq NULL or outside 1..head) are found anywhere by
 * the chain_seq indexes. */
#define CTL_AUDIT_STRAY(ok) \
	"SELECT * FROM (" CTL_AUDIT_COLS(ok) \
	" WHERE chain_seq IS NULL OR chain_seq < 1 OR chain_seq > $1::bigint" \
	") s ORDER BY chain_seq, tbl, seq LIMIT 1"
static const char *const ctl_audit_stray_sql[2] = {
	CTL_AUDIT_STRAY("true"), CTL_AUDIT_STRAY("content_ok")
};
/* 1 when the schema has content_ok (migration 008). */
static const char ctl_audit_schema_sql[] =
	"SELECT count(*) FROM pg_attribute"
	" WHERE attrelid = 'audit_chain_rows'::regclass"
	" AND attname = 'content_ok' AND NOT attisdropped";

/* Any audit row's chain_seq by recorded time: min of those at or after
 * $1 (from) or max of those before $1 (to); NULL if there is none. */
static const char ctl_audit_from_sql[] =
	"SELECT min(chain_seq)"
	" FROM audit_chain_rows WHERE recorded_at >= $1::timestamptz";
static const char ctl_audit_to_sql[] =
	"SELECT max(chain_seq)"
	" FROM audit_chain_rows WHERE recorded_at < $1::timestamptz";

struct ctl_verify {
	int64_t start, end;     /* the range (1..head: the whole chain) */
	int64_t expect_seq;     /* chain_seq the next row must have */
	char prev[65];          /* row_hash of the row before */
	int64_t head_seq;
	char head_hash[65];
	int64_t rows;           /* rows of the range checked */
	int64_t before, after;  /* chain_seq of the edges read, or 0 */
	int schema;             /* 1: migration 008 is applied, else 0 */
	char last[200];         /* "<table> row seq=<seq> key=<ref>" of the
				 * row before, for a chain_seq seen twice */
};

static int64_t ctl_audit_int(PGresult *res, int i, int c)
{
	return strtoll(PQgetvalue(res, i, c), NULL, 10);
}

static void ctl_audit_broken(PGresult *res, int i, const char *why)
{
	printf("audit verify: BROKEN at chain_seq %s: %s row seq=%s "
	       "key=%s: %s\n",
	       PQgetisnull(res, i, 0) ? "NULL" : PQgetvalue(res, i, 0),
	       PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
	       PQgetvalue(res, i, 3), why);
}

/* Why row i cannot be a link of the chain before its hashes are looked
 * at (NULL if it can): NULL chain columns, a chain_seq outside 1..head,
 * a chain_seq seen twice or skipped. Such rows were written with the
 * triggers off, or moved. */
static const char *ctl_audit_misplaced(const struct ctl_verify *v,
				       PGresult *res, int i, int64_t seq,
				       char *why, size_t len)
{
	if (PQgetisnull(res, i, 0))
		return "chain_seq is NULL (row inserted with the triggers "
		       "off?)";
	if (PQgetisnull(res, i, 4) || PQgetisnull(res, i, 5))
		return "prev_hash or row_hash is NULL (row inserted with the "
		       "triggers off?)";
	if (seq < 1 || seq > v->head_seq) {
		snprintf(why, len, "chain_seq %" PRId64 " is outside the chain "
			 "1..%" PRId64 " that the head names (row inserted?)",
			 seq, v->head_seq);
		return why;
	}
	if (seq < v->expect_seq) {
		snprintf(why, len, "chain_seq %" PRId64 " appears twice, also "
			 "as %s (row inserted?)", seq, v->last);
		return why;
	}
	if (seq > v->expect_seq) {
		snprintf(why, len, "chain_seq %" PRId64 " is missing (row "
			 "deleted?)", v->expect_seq);
		return why;
	}
	return NULL;
}

/* Checks the rows of one fetch; false at the first broken link. The
 * first row of a range, if it lies before the range, is its anchor: the
 * chain is taken up from it (its own prev_hash is not checked, that link
 * is outside the range). */
static bool ctl_audit_check_rows(struct ctl_verify *v, PGresult *res)
{
	char why[320], hash[65];
	const char *bad;

	for (int i = 0; i < PQntuples(res); i++) {
		int64_t seq = ctl_audit_int(res, i, 0);
		const char *prev = PQgetvalue(res, i, 4);
		const char *row = PQgetvalue(res, i, 5);
		bool anchor = v->expect_seq == 1 && !v->last[0] &&
			      !PQgetisnull(res, i, 0) && seq >= 1 &&
			      seq < v->start;

		if (anchor) {
			v->expect_seq = seq;
			v->before = seq;
			snprintf(v->prev, sizeof(v->prev), "%s", prev);
		}
		if ((bad = ctl_audit_misplaced(v, res, i, seq, why,
					       sizeof(why)))) {
			ctl_audit_broken(res, i, bad);
			return false;
		}
		if (strcmp(prev, v->prev) != 0) {
			ctl_audit_broken(res, i,
					 "prev_hash is not the row_hash of the "
					 "row before (deleted, inserted or "
					 "reordered rows)");
			return false;
		}
		if (PQgetisnull(res, i, 6) ||
		    !ctl_audit_link_hash(prev, PQgetvalue(res, i, 6), hash) ||
		    strcmp(hash, row) != 0) {
			ctl_audit_broken(res, i,
					 "row_hash does not match the row's "
					 "content (row edited?)");
			return false;
		}
		if (strcmp(PQgetvalue(res, i, 7), "t") != 0) {
			ctl_audit_broken(res, i,
					 "the row's columns differ from the "
					 "canonical text its row_hash covers "
					 "(row edited?)");
			return false;
		}
		snprintf(v->prev, sizeof(v->prev), "%s", row);
		snprintf(v->last, sizeof(v->last), "%s row seq=%s key=%s",
			 PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
			 PQgetvalue(res, i, 3));
		v->expect_seq = seq + 1;
		if (seq > v->end)
			v->after = seq;
		else if (seq >= v->start)
			v->rows++;
	}
	return true;
}

/* *seq from one of the bound queries; none_seq if no row is recorded
 * on that side of t. */
static bool ctl_audit_bound(PGconn *pg, const char *sql, const char *t,
			    int64_t none_seq, int64_t *seq)
{
	const char *p[1] = {t};
	PGresult *res = ctl_audit_exec(pg, "verify", sql, 1, p);

	if (!res)
		return false;
	*seq = PQgetisnull(res, 0, 0) ? none_seq : ctl_audit_int(res, 0, 0);
	PQclear(res);
	return true;
}

/* A ranged verify: a row anywhere whose chain_seq is NULL or outside
 * 1..head is BROKEN (the walk of the whole chain meets them in order). */
static int ctl_audit_strays(PGconn *pg, struct ctl_verify *v)
{
	char h[24], why[320];
	const char *p[1] = {h};
	PGresult *res;

	snprintf(h, sizeof(h), "%" PRId64, v->head_seq);
	if (!(res = ctl_audit_exec(pg, "verify",
					 ctl_audit_stray_sql[v->schema], 1, p)))
		return CTL_A_FAIL;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return CTL_A_OK;
	}
	ctl_audit_broken(res, 0, ctl_audit_misplaced(v, res, 0,
						     ctl_audit_int(res, 0, 0),
						     why, sizeof(why)));
	PQclear(res);
	return CTL_A_FAIL;
}

/* Declares the cursor over v->start..v->end with its edges, or over
 * every row when all. */
static bool ctl_audit_declare(PGconn *pg, const struct ctl_verify *v,
			      bool all)
{
	char s[24], e[24];
	const char *p[2] = {s, e};
	PGresult *res;

	if (all) {
		res = ctl_audit_exec(pg, "verify", ctl_audit_all_sql[v->schema],
				     0, NULL);
		PQclear(res);
		return res != NULL;
	}
	snprintf(s, sizeof(s), "%" PRId64, v->start);
	snprintf(e, sizeof(e), "%" PRId64, v->end);
	if (!(res = ctl_audit_exec(pg, "verify", ctl_audit_edges_sql, 2, p)))
		return false;
	snprintf(s, sizeof(s), "%s", PQgetvalue(res, 0, 0));
	snprintf(e, sizeof(e), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	res = ctl_audit_exec(pg, "verify", ctl_audit_range_sql[v->schema], 2,
			     p);
	PQclear(res);
	return res != NULL;
}

static int ctl_audit_walk(PGconn *pg, struct ctl_verify *v, bool all)
{
	PGresult *res;
	bool ok = true;

	if (!ctl_audit_declare(pg, v, all))
		return CTL_A_FAIL;
	v->expect_seq = 1;
	memset(v->prev, '0', 64);       /* genesis: 32 zero bytes */
	v->prev[64] = '\0';
	do {
		res = ctl_audit_exec(pg, "verify",
				     "FETCH " CTL_AUDIT_FETCH " FROM audit_verify",
				     0, NULL);
		if (!res)
			return CTL_A_FAIL;
		ok = ctl_audit_check_rows(v, res);
		if (ok && PQntuples(res) == 0) {
			PQclear(res);
			break;
		}
		PQclear(res);
	} while (ok);
	return ok ? CTL_A_OK : CTL_A_FAIL;
}

static void ctl_audit_print_ok(const struct ctl_verify *v, bool all)
{
	char b[40] = "the genesis", a[40] = "the head";

	if (v->before)
		snprintf(b, sizeof(b), "chain_seq %" PRId64, v->before);
	if (v->after)
		snprintf(a, sizeof(a), "chain_seq %" PRId64, v->after);
	if (all && v->head_seq == 0)
		printf("audit verify: ok, 0 rows (the chain is empty)");
	else if (all)
		printf("audit verify: ok, %" PRId64 " rows (chain_seq 1..%"
		       PRId64 ")", v->rows, v->end);
	else if (v->start > v->end)
		printf("audit verify: ok, 0 rows (nothing recorded in the "
		       "range, which lies between %s and %s)", b,
		       v->after ? a : "the end of the chain");
	else
		printf("audit verify: ok, %" PRId64 " rows (chain_seq %" PRId64
		       "..%" PRId64 "), linked to %s before and %s after",
		       v->rows, v->start, v->end, b, a);
	printf("; head %" PRId64 " %s\n", v->head_seq, v->head_hash);
}

static int ctl_audit_verify(PGconn *pg, const char *from, const char *to)
{
	struct ctl_verify v = {.start = 1};
	bool all = !from && !to;
	PGresult *res;
	int status;

	if (!ctl_audit_ok(pg, "verify",
			  "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
		return CTL_A_FAIL;
	res = ctl_audit_exec(pg, "verify",
			     "SELECT chain_seq, encode(hash, 'hex') FROM "
			     "audit_chain_head", 0, NULL);
	if (!res || PQntuples(res) != 1) {
		fprintf(stderr, "alertctl: audit verify: no chain head (is "
				"migration 002 applied?)\n");
		PQclear(res);
		return CTL_A_FAIL;
	}
	v.head_seq = ctl_audit_int(res, 0, 0);
	v.end = v.head_seq;
	snprintf(v.head_hash, sizeof(v.head_hash), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	if (!(res = ctl_audit_exec(pg, "verify", ctl_audit_schema_sql, 0,
				   NULL)))
		return CTL_A_FAIL;
	v.schema = ctl_audit_int(res, 0, 0) > 0;
	PQclear(res);
	if (!all && (status = ctl_audit_strays(pg, &v)) != CTL_A_OK)
		return status;
	/* Nothing recorded at or after --from: the range is empty, after
	 * the head; nothing before --to: empty, before chain_seq 1. */
	if ((from && !ctl_audit_bound(pg, ctl_audit_from_sql, from,
				      v.head_seq + 1, &v.start)) ||
	    (to && !ctl_audit_bound(pg, ctl_audit_to_sql, to, 0, &v.end)))
		return CTL_A_FAIL;
	/* An empty range (also --from after --to) sits between end and
	 * end + 1: those two rows and their link are still checked. */
	if (v.start > v.end)
		v.start = v.end + 1;
	if ((status = ctl_audit_walk(pg, &v, all)) != CTL_A_OK)
		return status;
	/* No row after the range: the range must end at the head. */
	if (!v.after && (v.expect_seq - 1 != v.head_seq ||
			 (v.head_seq > 0 && strcmp(v.prev, v.head_hash) != 0))) {
		printf("audit verify: BROKEN at chain_seq %" PRId64 ": the "
		       "chain ends at %" PRId64 " but its head names %" PRId64
		       " (rows cut off the end?)\n", v.expect_seq,
		       v.expect_seq - 1, v.head_seq);
		return CTL_A_FAIL;
	}
	ctl_audit_ok(pg, "verify", "COMMIT");
	ctl_audit_print_ok(&v, all);
	return CTL_A_OK;
}

static int ctl_audit_head(PGconn *pg)
{
	PGresult *res = ctl_audit_exec(
		pg, "head",
		"SELECT chain_seq, encode(hash, 'hex'), "
		"to_char(updated_at AT TIME ZONE 'UTC', "
		"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM audit_chain_head",
		0, NULL);

	if (!res)
		return CTL_A_FAIL;
	if (PQntuples(res) == 1)
		printf("chain_seq %s sha256 %s at %s\n", PQgetvalue(res, 0, 0),
		       PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
	PQclear(res);
	return CTL_A_OK;
}

/* ---- queries ---- */

static void ctl_audit_csv_cell(const char *s, bool last)
{
	if (strpbrk(s, ",\"\n\r")) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else {
		fputs(s, stdout);
	}
	putchar(last ? '\n' : ',');
}

/* Text of a JSON member for table and CSV ("" when null). */
static char *ctl_audit_cell_text(json_t *v)
{
	char *out = NULL;

	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_integer(v) &&
	    asprintf(&out, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) >= 0)
		return out;
	if (json_is_real(v) && asprintf(&out, "%.3f", json_real_value(v)) >= 0)
		return out;
	if (!v || json_is_null(v))
		return strdup("");
	return jsonout_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
}

static void ctl_audit_table_cell(const char *s, int width, bool last)
{
	int n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p & 0xc0) != 0x80)
			n++;
		putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
	}
	if (last) {
		putchar('\n');
		return;
	}
	do
		putchar(' ');
	while (++n < width + 1);
}

static void ctl_audit_print(json_t *rows, enum ctl_audit_format fmt,
			    bool stats)
{
	static const char *const log_cols[] = {"at", "kind", "incident_id",
					       "source_id", "actor", "summary",
					       "ref", "data"};
	static const int log_w[] = {27, 10, 8, 16, 12, 28, 20, 0};
	static const char *const st_cols[] = {"metric", "key", "count",
					      "p50_s", "p90_s", "p99_s",
					      "within_target"};
	static const int st_w[] = {11, 16, 6, 9, 9, 9, 0};
	const char *const *cols = stats ? st_cols : log_cols;
	const int *w = stats ? st_w : log_w;
	size_t ncols = stats ? 7 : 8, i;
	json_t *row;

	if (fmt == FMT_JSON) {
		char *s = jsonout_dumps(rows, JSON_COMPACT);

		puts(s ? s : "[]");
		free(s);
		return;
	}
	for (size_t c = 0; c < ncols; c++) {
		if (fmt == FMT_CSV)
			ctl_audit_csv_cell(cols[c], c + 1 == ncols);
		else
			ctl_audit_table_cell(cols[c], w[c], c + 1 == ncols);
	}
	json_array_foreach(rows, i, row) {
		for (size_t c = 0; c < ncols; c++) {
			char *t = ctl_audit_cell_text(json_object_get(row, cols[c]));

			if (fmt == FMT_CSV)
				ctl_audit_csv_cell(t ? t : "", c + 1 == ncols);
			else
				ctl_audit_table_cell(t ? t : "", w[c],
						     c + 1 == ncols);
			free(t);
		}
	}
}

static int ctl_audit_query(PGconn *pg, const struct config *cfg,
			   const struct audit_query *q,
			   enum ctl_audit_format fmt, bool personal)
{
	const char *params[AUDIT_QUERY_MAX_PARAMS] = {0}, *why;
	char id[24];
	char *sql;
	int n;
	PGresult *res;
	json_t *rows;

	if (!audit_query_build(q, cfg, &sql, params, &n, &why)) {
		fprintf(stderr, "alertctl: audit: %s\n", why);
		return CTL_A_USAGE;
	}
	if (q->kind == AUDIT_Q_INCIDENT) {
		snprintf(id, sizeof(id), "%" PRId64, q->incident_id);
		params[0] = id;
	}
	res = ctl_audit_exec(pg, "query", sql, n, params);
	free(sql);
	if (!res)
		return CTL_A_FAIL;
	rows = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(rows, audit_query_row(q, cfg, res, i,
							    personal));
	PQclear(res);
	ctl_audit_print(rows, fmt, q->kind == AUDIT_Q_STATS);
	json_decref(rows);
	return CTL_A_OK;
}

/* ---- command line ---- */

struct ctl_audit_args {
	const char *cmd, *arg, *from, *to, *by;
	enum ctl_audit_format fmt;
	bool personal;
	int limit;
};

/* s is a decimal integer in 1..max, nothing around it. */
static bool ctl_audit_positive(const char *s, long long max, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	return s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0 &&
	       *out >= 1 && *out <= max;
}

static int ctl_audit_parse(int argc, char **argv, struct ctl_audit_args *a)
{
	if (argc < 2)
		return CTL_A_USAGE;
	a->cmd = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(o, "--personal") == 0) {
			a->personal = true;
			continue;
		}
		if (o[0] != '-') {
			if (a->arg)
				return CTL_A_USAGE;
			a->arg = o;
			continue;
		}
		if (!v)
			return CTL_A_USAGE;
		i++;
		if (strcmp(o, "--from") == 0)
			a->from = v;
		else if (strcmp(o, "--to") == 0)
			a->to = v;
		else if (strcmp(o, "--by") == 0)
			a->by = v;
		else if (strcmp(o, "--limit") == 0) {
			long long n;

			if (!ctl_audit_positive(v, INT_MAX, &n)) {
				fprintf(stderr, "alertctl: --limit is a "
					"positive integer, not \"%s\"\n", v);
				return CTL_A_USAGE;
			}
			a->limit = (int)n;
		}
		else if (strcmp(o, "--format") == 0 && strcmp(v, "json") == 0)
			a->fmt = FMT_JSON;
		else if (strcmp(o, "--format") == 0 && strcmp(v, "csv") == 0)
			a->fmt = FMT_CSV;
		else if (strcmp(o, "--format") == 0 && strcmp(v, "table") == 0)
			a->fmt = FMT_TABLE;
		else
			return CTL_A_USAGE;
	}
	return CTL_A_OK;
}

int ctl_audit(const struct config *cfg, int argc, char **argv)
{
	struct ctl_audit_args a = {0};
	struct audit_query q = {0};
	PGconn *pg;
	int status;

	if (ctl_audit_parse(argc, argv, &a) != CTL_A_OK) {
		ctl_audit_usage(stderr);
		return CTL_A_USAGE;
	}
	q.from = a.from;
	q.to = a.to;
	q.by = a.by;
	q.limit = a.limit;
	if (strcmp(a.cmd, "incident") == 0 && a.arg) {
		long long id;

		if (!ctl_audit_positive(a.arg, LLONG_MAX, &id)) {
			fprintf(stderr, "alertctl: an incident id is a positive "
				"integer, not \"%s\"\n", a.arg);
			return CTL_A_USAGE;
		}
		q.kind = AUDIT_Q_INCIDENT;
		q.incident_id = id;
	} else if (strcmp(a.cmd, "source") == 0 && a.arg) {
		q.kind = AUDIT_Q_SOURCE;
		q.source_id = a.arg;
	} else if (strcmp(a.cmd, "operator") == 0 && a.arg) {
		q.kind = AUDIT_Q_OPERATOR;
		q.operator_name = a.arg;
	} else if (strcmp(a.cmd, "stats") == 0 && !a.arg) {
		q.kind = AUDIT_Q_STATS;
	} else if (strcmp(a.cmd, "verify") != 0 && strcmp(a.cmd, "head") != 0) {
		ctl_audit_usage(stderr);
		return CTL_A_USAGE;
	}
	pg = PQconnectdb(cfg->pg_conninfo);
	if (!pg || PQstatus(pg) != CONNECTION_OK) {
		ctl_audit_pg_error("postgres", pg ? PQerrorMessage(pg)
						  : "out of memory");
		PQfinish(pg);
		return CTL_A_FAIL;
	}
	if (strcmp(a.cmd, "verify") == 0)
		status = ctl_audit_verify(pg, a.from, a.to);
	else if (strcmp(a.cmd, "head") == 0)
		status = ctl_audit_head(pg);
	else
		status = ctl_audit_query(pg, cfg, &q, a.fmt, a.personal);
	PQfinish(pg);
	return status;
}
