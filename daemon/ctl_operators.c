/* ctl_operators: alertctl operator add|list|revoke.
 *
 *   operator add NAME --role ROLE [--zones Z1,Z2]   prints the token once
 *   operator list [--json]
 *   operator revoke NAME
 *
 * Every change sends NOTIFY alertd_operators in its transaction: running
 * daemons reload their token cache at commit, so a new token works at
 * once and a revoked one stops at once, also on an open stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth.h"
#include "config.h"
#include "ctl.h"

#define CTL_ZONES_MAX 32

/* 1..64 characters of [A-Za-z0-9._@-]: a login, safe in logs. */
static bool ctl_operators_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '@' || c == '-'))
			return false;
	}
	return true;
}

/* "Karsiyaka,Bornova" -> the PostgreSQL array literal {"Karsiyaka",
 * "Bornova"}; each zone 1..64 characters of [A-Za-z0-9._@ -]. NULL if
 * malformed. The caller frees. */
static char *ctl_operators_zones_array(const char *list)
{
	size_t n = strlen(list), zones = 1;
	char *out = malloc(2 * n + 3 * CTL_ZONES_MAX + 3), *o = out;
	size_t len = 0;

	if (out == NULL)
		return NULL;
	*o++ = '{';
	if (n == 0)
		goto done;
	*o++ = '"';
	for (const char *p = list; *p; p++) {
		char c = *p;

		if (c == ',') {
			if (len == 0 || ++zones > CTL_ZONES_MAX)
				goto bad;
			*o++ = '"';
			*o++ = ',';
			*o++ = '"';
			len = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '@' || c == '-' || c == ' ') || ++len > 64)
			goto bad;
		*o++ = c;
	}
	if (len == 0)
		goto bad;
	*o++ = '"';
done:
	*o++ = '}';
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

struct ctl_operators_args {
	const char *verb;
	const char *name;
	const char *role;
	const char *zones;
	bool json;
};

static int ctl_operators_parse(int argc, char **argv,
			       struct ctl_operators_args *a)
{
	bool missing = false;
	enum auth_role role;
	const char *v;
	char *arr;

	memset(a, 0, sizeof(*a));
	if (argc < 1)
		return ctl_usage_error("%s", "operator: add, list or revoke?");
	a->verb = argv[0];
	if (strcmp(a->verb, "add") != 0 && strcmp(a->verb, "list") != 0 &&
	    strcmp(a->verb, "revoke") != 0)
		return ctl_usage_error("operator: unknown '%s' (add, list, "
				       "revoke)", a->verb);
	for (int i = 1; i < argc; i++) {
		if ((v = ctl_opt(argc, argv, &i, "--role", &missing)))
			a->role = v;
		else if ((v = ctl_opt(argc, argv, &i, "--zones",
						&missing)))
			a->zones = v;
		else if (missing)
			return ctl_usage_error("%s needs a value", argv[i]);
		else if (strcmp(argv[i], "--json") == 0)
			a->json = true;
		else if (argv[i][0] == '-' || a->name)
			return ctl_usage_error("operator %s: unexpected '%s'",
					       a->verb, argv[i]);
		else
			a->name = argv[i];
	}
	if (strcmp(a->verb, "list") == 0) {
		if (a->name || a->role || a->zones)
			return ctl_usage_error("%s", "operator list takes only "
					       "--json");
		return CTL_OK;
	}
	if (!a->name)
		return ctl_usage_error("operator %s: NAME is required", a->verb);
	if (!ctl_operators_name_valid(a->name))
		return ctl_usage_error("operator %s: invalid name '%s' (1..64 "
				       "characters of A-Z a-z 0-9 . _ @ -)",
				       a->verb, a->name);
	if (strcmp(a->verb, "revoke") == 0) {
		if (a->role || a->zones || a->json)
			return ctl_usage_error("%s", "operator revoke takes "
					       "only NAME");
		return CTL_OK;
	}
	if (a->json)
		return ctl_usage_error("%s", "operator add: unexpected --json");
	if (!a->role)
		return ctl_usage_error("%s", "operator add: --role is required");
	if (!auth_role_parse(a->role, &role))
		return ctl_usage_error("operator add: unknown role '%s' "
				       "(operator, supervisor, auditor, admin)",
				       a->role);
	if (a->zones) {
		if (!(arr = ctl_operators_zones_array(a->zones)))
			return ctl_usage_error("operator add: invalid --zones "
					       "'%s' (comma-separated, each "
					       "1..64 characters of A-Z a-z "
					       "0-9 . _ @ - space)", a->zones);
		free(arr);
	}
	return CTL_OK;
}

int ctl_operators_check(int argc, char **argv)
{
	struct ctl_operators_args a;

	return ctl_operators_parse(argc, argv, &a);
}

static int ctl_operators_add(const struct config *cfg,
			     const struct ctl_operators_args *a)
{
	char token[44], hash[65];
	char *zones = ctl_operators_zones_array(a->zones ? a->zones : "");
	const char *params[4] = {a->name, a->role, hash, zones};
	PGresult *res;
	PGconn *pg = NULL;
	int status = CTL_FAIL;

	if (!zones) {
		fprintf(stderr, "alertctl: out of memory\n");
		return CTL_FAIL;
	}
	if (!auth_token_new(token)) {
		fprintf(stderr, "alertctl: cannot make a token: the random "
				"source failed\n");
		goto done;
	}
	auth_token_hash(token, hash);
	if (!(pg = ctl_pg_connect(cfg)))
		goto done;
	if (!ctl_exec(pg, "operator add", "BEGIN", 0, NULL, NULL))
		goto done;
	res = PQexecParams(pg,
			   "INSERT INTO operators (name, role, token_hash, zones) "
			   "VALUES ($1, $2, $3, $4::text[])",
			   4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *cons =
			PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

		if (state && strcmp(state, "23505") == 0 && cons &&
		    strcmp(cons, "operators_name_key") == 0)
			fprintf(stderr, "alertctl: operator %s already exists\n",
				a->name);
		else
			ctl_pg_error("operator add", PQresultErrorMessage(res));
		PQclear(res);
		ctl_rollback(pg);
		goto done;
	}
	PQclear(res);
	/* Delivered at commit: running daemons reload their token cache. */
	if (!ctl_exec(pg, "operator add", "NOTIFY alertd_operators", 0, NULL,
		      NULL) ||
	    !ctl_exec(pg, "operator add", "COMMIT", 0, NULL, NULL)) {
		ctl_rollback(pg);
		goto done;
	}
	/* The token goes to stdout only, once; PostgreSQL has its hash. */
	printf("%s\n", token);
	fflush(stdout);
	fprintf(stderr, "alertctl: operator %s added with role %s%s%s; keep "
			"the token, it is not shown again\n",
		a->name, a->role, a->zones ? ", zones " : "",
		a->zones ? a->zones : "");
	status = CTL_OK;
done:
	if (pg)
		PQfinish(pg);
	free(zones);
	explicit_bzero(token, sizeof(token));
	return status;
}

static int ctl_operators_revoke(const struct config *cfg,
				const struct ctl_operators_args *a)
{
	const char *params[1] = {a->name};
	PGresult *res = NULL;
	PGconn *pg;
	int status = CTL_FAIL;

	if (!(pg = ctl_pg_connect(cfg)))
		return CTL_FAIL;
	if (!ctl_exec(pg, "operator revoke", "BEGIN", 0, NULL, NULL))
		goto done;
	if (!ctl_exec(pg, "operator revoke",
		      "UPDATE operators SET revoked_at = now() "
		      "WHERE name = $1 AND revoked_at IS NULL RETURNING id",
		      1, params, &res)) {
		ctl_rollback(pg);
		goto done;
	}
	if (PQntuples(res) == 0) {
		fprintf(stderr, "alertctl: no active operator %s\n", a->name);
		ctl_rollback(pg);
		goto done;
	}
	if (!ctl_exec(pg, "operator revoke", "NOTIFY alertd_operators", 0,
		      NULL, NULL) ||
	    !ctl_exec(pg, "operator revoke", "COMMIT", 0, NULL, NULL)) {
		ctl_rollback(pg);
		goto done;
	}
	fprintf(stderr, "alertctl: operator %s revoked\n", a->name);
	status = CTL_OK;
done:
	PQclear(res);
	PQfinish(pg);
	return status;
}

static int ctl_operators_list(const struct config *cfg,
			      const struct ctl_operators_args *a)
{
	PGresult *res = NULL;
	PGconn *pg;
	json_t *arr = NULL;
	int status = CTL_FAIL;

	if (!(pg = ctl_pg_connect(cfg)))
		return CTL_FAIL;
	if (!ctl_exec(pg, "operator list",
		      "SELECT name, role, array_to_string(zones, ','), "
		      "to_char(created_at AT TIME ZONE 'UTC', "
		      "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
		      "coalesce(to_char(revoked_at AT TIME ZONE 'UTC', "
		      "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') "
		      "FROM operators ORDER BY name",
		      0, NULL, &res))
		goto done;
	if (a->json && !(arr = json_array()))
		goto done;
	if (!a->json)
		printf("%-24s %-10s %-8s %s\n", "NAME", "ROLE", "STATE",
		       "ZONES");
	for (int i = 0; i < PQntuples(res); i++) {
		const char *revoked = PQgetvalue(res, i, 4);
		const char *zones = PQgetvalue(res, i, 2);

		if (a->json) {
			json_array_append_new(arr, json_pack(
				"{s:s, s:s, s:s, s:s, s:s?}",
				"name", PQgetvalue(res, i, 0),
				"role", PQgetvalue(res, i, 1),
				"zones", zones,
				"created_at", PQgetvalue(res, i, 3),
				"revoked_at", revoked[0] ? revoked : NULL));
			continue;
		}
		printf("%-24s %-10s %-8s %s\n", PQgetvalue(res, i, 0),
		       PQgetvalue(res, i, 1), revoked[0] ? "revoked" : "active",
		       zones[0] ? zones : "(all)");
	}
	if (a->json) {
		char *text = json_dumps(arr, JSON_COMPACT);

		if (!text)
			goto done;
		printf("%s\n", text);
		free(text);
	}
	status = CTL_OK;
done:
	json_decref(arr);
	PQclear(res);
	PQfinish(pg);
	return status;
}

int ctl_operators_main(const struct config *cfg, int argc, char **argv)
{
	struct ctl_operators_args a;
	int status = ctl_operators_parse(argc, argv, &a);

	if (status != CTL_OK)
		return status;
	if (strcmp(a.verb, "add") == 0)
		return ctl_operators_add(cfg, &a);
	if (strcmp(a.verb, "revoke") == 0)
		return ctl_operators_revoke(cfg, &a);
	return ctl_operators_list(cfg, &a);
}
