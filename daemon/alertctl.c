/* alertctl: the admin command line of alertd.
 *
 *   alertctl [-c FILE] migrate [--dir DIR]
 *   alertctl [-c FILE] operator add NAME --role ROLE [--zones Z1,Z2]
 *   alertctl [-c FILE] operator list [--json]
 *   alertctl [-c FILE] operator revoke NAME
 *   alertctl [-c FILE] incidents [--json]
 *
 * It never runs inside the daemon, so it uses blocking libpq and the
 * synchronous hiredis API. Exit status: 0 ok, 1 runtime failure (a message
 * on stderr), 2 usage or invalid config. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "auth.h"
#include "config.h"
#include "ctl_sources.h"
#include "ctl.h"
#include "ctl_audit.h"
#include "log.h"

#define CTL_DEFAULT_CONFIG "config/alertd.dev.ini"
#define CTL_DEFAULT_MIGRATIONS "config/migrations"
#define CTL_QUEUE_LIMIT "1000"
/* Key of the advisory lock that lets one `migrate` run at a time. */
#define CTL_MIGRATE_LOCK "7428531061"

/* daemon/lua/lua_blob.S: the text of daemon/lua/decide.lua. */
extern const char decide_lua_text[];

static void ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: alertctl [-c FILE] migrate [--dir DIR]\n"
		"       alertctl [-c FILE] operator add NAME --role operator|supervisor|auditor|admin [--zones Z1,Z2]\n"
		"       alertctl [-c FILE] operator list [--json]\n"
		"       alertctl [-c FILE] operator revoke NAME\n"
		"       alertctl [-c FILE] incidents [--json]\n"
		"       alertctl [-c FILE] sources [--json] | sources import FILE.csv | sources load\n"
		"       alertctl [-c FILE] audit verify|head|incident|source|operator|stats ...\n"
		"\n"
		"  -c FILE   configuration (default " CTL_DEFAULT_CONFIG ")\n"
		"  migrate   apply the SQL migrations of DIR (default "
		CTL_DEFAULT_MIGRATIONS ") not yet applied\n"
		"  operator add  create an operator; prints its token (shown once)\n"
		"  operator list the operators, their roles, zones and state\n"
		"  operator revoke  revoke an operator's token at once\n"
		"  incidents the open queue from Redis, as a table or --json\n"
		"  sources   the device registry (state, last seen); import\n"
		"            FILE.csv loads it (docs/prioritisation.md), load\n"
		"            copies it into Redis again\n"
		"  audit     verify the hash chain, show its head, query the\n"
		"            trail (alertctl audit --help, docs/audit.md)\n"
		"  --help after any command shows this text\n");
}

int ctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("alertctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	ctl_usage(stderr);
	return CTL_USAGE;
}

/* ---- PostgreSQL ---- */

/* The first line of a libpq message. */
void ctl_pg_error(const char *what, const char *msg)
{
	int n = (int)strcspn(msg ? msg : "", "\n");

	fprintf(stderr, "alertctl: %s: %.*s\n", what, n, msg ? msg : "");
}

PGconn *ctl_pg_connect(const struct config *cfg)
{
	PGconn *pg = PQconnectdb(cfg->pg_conninfo);
	PGresult *res;

	if (!pg) {
		fprintf(stderr, "alertctl: postgres: out of memory\n");
		return NULL;
	}
	if (PQstatus(pg) != CONNECTION_OK) {
		ctl_pg_error("postgres", PQerrorMessage(pg));
		PQfinish(pg);
		return NULL;
	}
	/* No NOTICE chatter ("... already exists, skipping"). */
	res = PQexec(pg, "SET client_min_messages = warning");
	PQclear(res);
	return pg;
}

/* Runs one statement; false (message printed) unless it succeeded. The
 * result is handed back in *out when out is not NULL. */
bool ctl_exec(PGconn *pg, const char *what, const char *sql,
	      int nparams, const char *const *params, PGresult **out)
{
	PGresult *res = nparams > 0
				? PQexecParams(pg, sql, nparams, NULL, params,
					       NULL, NULL, 0)
				: PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		ctl_pg_error(what, res ? PQresultErrorMessage(res)
				       : PQerrorMessage(pg));
		PQclear(res);
		return false;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return true;
}

void ctl_rollback(PGconn *pg)
{
	PQclear(PQexec(pg, "ROLLBACK"));
}

/* ---- migrate ---- */

static int ctl_sql_file(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return d->d_name[0] != '.' && n > 4 &&
	       strcmp(d->d_name + n - 4, ".sql") == 0;
}

/* Byte order, whatever the locale: 001_, 002_, ... */
static int ctl_name_order(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static char *ctl_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	do {
		if (cap - len < 4096) {
			char *p = realloc(buf, cap + 65536);

			if (!p)
				goto fail;
			buf = p;
			cap += 65536;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	if (ferror(f))
		goto fail;
	buf[len] = '\0';
	fclose(f);
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

/* Applies one file in its own transaction unless its version is recorded.
 * Returns 1 if applied, 0 if already there, -1 on failure (printed). */
static int ctl_migrate_one(PGconn *pg, const char *dir, const char *file)
{
	char version[256], path[4096], what[512];
	const char *params[1] = {version};
	PGresult *res = NULL;
	char *sql = NULL;
	bool done;

	snprintf(version, sizeof(version), "%.*s", (int)(strlen(file) - 4),
		 file);
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	snprintf(what, sizeof(what), "migrate: %s", file);
	if (!ctl_exec(pg, what, "BEGIN", 0, NULL, NULL))
		return -1;
	if (!ctl_exec(pg, what,
		      "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
		      params, &res))
		goto fail;
	done = PQntuples(res) > 0;
	PQclear(res);
	if (done) {
		ctl_rollback(pg);
		return 0;
	}
	if (!(sql = ctl_read_file(path))) {
		fprintf(stderr, "alertctl: %s: cannot read %s: %s\n", what,
			path, strerror(errno));
		goto fail;
	}
	if (!ctl_exec(pg, what, sql, 0, NULL, NULL))
		goto fail;
	if (!ctl_exec(pg, what,
		      "INSERT INTO schema_migrations (version) VALUES ($1)", 1,
		      params, NULL))
		goto fail;
	if (!ctl_exec(pg, what, "COMMIT", 0, NULL, NULL))
		goto fail;
	free(sql);
	printf("applied %s\n", version);
	return 1;
fail:
	free(sql);
	ctl_rollback(pg);
	return -1;
}

static int ctl_migrate(const struct config *cfg, const char *dir)
{
	struct dirent **files = NULL;
	int n, applied = 0, status = CTL_FAIL;
	PGconn *pg = NULL;

	n = scandir(dir, &files, ctl_sql_file, ctl_name_order);
	if (n < 0) {
		fprintf(stderr, "alertctl: migrate: cannot read %s: %s\n", dir,
			strerror(errno));
		return CTL_FAIL;
	}
	if (n == 0) {
		fprintf(stderr, "alertctl: migrate: no *.sql file in %s\n", dir);
		goto done;
	}
	if (!(pg = ctl_pg_connect(cfg)))
		goto done;
	/* One migrate at a time; the lock goes with the session. */
	if (!ctl_exec(pg, "migrate: lock",
		      "SELECT pg_advisory_lock(" CTL_MIGRATE_LOCK ")", 0, NULL,
		      NULL) ||
	    !ctl_exec(pg, "migrate: schema_migrations",
		      "CREATE TABLE IF NOT EXISTS schema_migrations ("
		      " version text PRIMARY KEY,"
		      " applied_at timestamptz NOT NULL DEFAULT now())",
		      0, NULL, NULL))
		goto done;
	for (int i = 0; i < n; i++) {
		int r = ctl_migrate_one(pg, dir, files[i]->d_name);

		if (r < 0)
			goto done;
		applied += r;
	}
	if (applied == 0)
		printf("up to date (%d migrations)\n", n);
	status = CTL_OK;
done:
	if (pg)
		PQfinish(pg);
	for (int i = 0; i < n; i++)
		free(files[i]);
	free(files);
	return status;
}

/* ---- incidents ---- */

/* Prints s padded to width characters (UTF-8 aware), control characters
 * replaced: zone and label come from devices. */
static void ctl_cell(const char *s, int width, bool last)
{
	int chars = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p & 0xc0) != 0x80)
			chars++;
		putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
	}
	if (last)
		return;
	do
		putchar(' ');
	while (++chars < width + 1);
}

/* Text of a scalar member ("-" when absent or null). */
static const char *ctl_text(json_t *v, char *buf, size_t len)
{
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	}
	if (json_is_real(v)) {
		snprintf(buf, len, "%g", json_real_value(v));
		return buf;
	}
	if (json_is_true(v))
		return "true";
	if (json_is_false(v))
		return "false";
	return "-";
}

static int ctl_print_queue(const char *text, size_t len)
{
	static const struct {
		const char *title, *key, *sub;
		int width;
	} cols[] = {
		{"ID", "id", NULL, 6},
		{"PRI", "priority", NULL, 4},
		{"STATE", "state", NULL, 12},
		{"TYPE", "type", NULL, 16},
		{"SOURCE", "source", "id", 18},
		{"ZONE", "source", "zone", 14},
		{"COUNT", "count", NULL, 5},
		{"FIRST_SEEN", "first_seen", NULL, 24},
		{"ACKED_BY", "acked_by", NULL, 0},
	};
	const size_t ncols = sizeof(cols) / sizeof(cols[0]);
	json_error_t err;
	json_t *arr = json_loadb(text, len, 0, &err), *inc;
	size_t i;

	if (!json_is_array(arr)) {
		fprintf(stderr, "alertctl: incidents: the queue is not a JSON "
				"array (%s)\n", arr ? "other JSON" : err.text);
		json_decref(arr);
		return CTL_FAIL;
	}
	if (json_array_size(arr) == 0) {
		printf("no open incidents\n");
		json_decref(arr);
		return CTL_OK;
	}
	for (size_t c = 0; c < ncols; c++)
		ctl_cell(cols[c].title, cols[c].width, c + 1 == ncols);
	putchar('\n');
	json_array_foreach(arr, i, inc) {
		for (size_t c = 0; c < ncols; c++) {
			json_t *v = json_object_get(inc, cols[c].key);
			char buf[64];

			if (cols[c].sub)
				v = json_object_get(v, cols[c].sub);
			ctl_cell(ctl_text(v, buf, sizeof(buf)), cols[c].width,
				 c + 1 == ncols);
		}
		putchar('\n');
	}
	json_decref(arr);
	return CTL_OK;
}

static int ctl_incidents(const struct config *cfg, bool as_json)
{
	int ms = cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 2000;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	const char *argv[6] = {"EVAL", decide_lua_text, "0", "queue",
			       cfg->redis_prefix, CTL_QUEUE_LIMIT};
	redisContext *c = redisConnectWithTimeout(cfg->redis_host,
						  cfg->redis_port, tv);
	redisReply *reply = NULL;
	int status = CTL_FAIL;

	if (!c || c->err) {
		fprintf(stderr, "alertctl: redis %s:%d: %s\n", cfg->redis_host,
			cfg->redis_port, c ? c->errstr : "out of memory");
		goto done;
	}
	redisSetTimeout(c, tv);
	reply = redisCommandArgv(c, 6, argv, NULL);
	if (!reply) {
		fprintf(stderr, "alertctl: redis %s:%d: %s\n", cfg->redis_host,
			cfg->redis_port, c->errstr);
		goto done;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "alertctl: incidents: %s\n", reply->str);
		goto done;
	}
	if (reply->type != REDIS_REPLY_STRING) {
		fprintf(stderr, "alertctl: incidents: unexpected reply type %d\n",
			reply->type);
		goto done;
	}
	if (as_json) {
		fwrite(reply->str, 1, reply->len, stdout);
		putchar('\n');
		status = CTL_OK;
	} else {
		status = ctl_print_queue(reply->str, reply->len);
	}
done:
	if (reply)
		freeReplyObject(reply);
	if (c)
		redisFree(c);
	return status;
}

/* ---- command line ---- */

struct ctl_cmd {
	enum { CMD_MIGRATE, CMD_OPERATOR, CMD_INCIDENTS, CMD_AUDIT } which;
	int argi;   /* CMD_AUDIT: index of "audit" in argv */
	const char *dir;
	bool json;
	int sub_argc;        /* operator ...: the words after "operator" */
	char **sub_argv;
};

/* The value of "--opt VALUE" or "--opt=VALUE" at argv[*i]; NULL if argv[*i]
 * is not that option. Sets *missing when the value is absent. */
const char *ctl_opt(int argc, char **argv, int *i, const char *opt,
		    bool *missing)
{
	size_t n = strlen(opt);

	if (strncmp(argv[*i], opt, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

static int ctl_parse(int argc, char **argv, int i, struct ctl_cmd *cmd)
{
	const char *v;
	bool missing = false;

	if (i >= argc)
		return ctl_usage_error("%s", "a command is required");
	if (strcmp(argv[i], "migrate") == 0) {
		cmd->which = CMD_MIGRATE;
		cmd->dir = CTL_DEFAULT_MIGRATIONS;
		for (i++; i < argc; i++) {
			if ((v = ctl_opt(argc, argv, &i, "--dir", &missing)))
				cmd->dir = v;
			else
				return ctl_usage_error(missing ? "%s needs a value"
							       : "migrate: unexpected '%s'",
						       argv[i]);
		}
		return CTL_OK;
	}
	if (strcmp(argv[i], "audit") == 0) {
		cmd->which = CMD_AUDIT;
		cmd->argi = i;
		return CTL_OK;
	}
	if (strcmp(argv[i], "incidents") == 0) {
		cmd->which = CMD_INCIDENTS;
		for (i++; i < argc; i++) {
			if (strcmp(argv[i], "--json") == 0)
				cmd->json = true;
			else
				return ctl_usage_error("incidents: unexpected '%s'",
						       argv[i]);
		}
		return CTL_OK;
	}
	if (strcmp(argv[i], "operator") != 0)
		return ctl_usage_error("unknown command '%s'", argv[i]);
	cmd->which = CMD_OPERATOR;
	cmd->sub_argc = argc - i - 1;
	cmd->sub_argv = argv + i + 1;
	return ctl_operators_check(cmd->sub_argc, cmd->sub_argv);
}

int main(int argc, char **argv)
{
	const char *config_path = CTL_DEFAULT_CONFIG;
	struct ctl_cmd cmd = {0};
	struct config *cfg;
	char err[512];
	int i = 1, status;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			ctl_usage(stdout);
			return CTL_OK;
		}
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			config_path = argv[++i];
		else if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2])
			config_path = argv[i] + 2;
		else
			return ctl_usage_error("unknown option '%s'", argv[i]);
	}
	/* "alertctl migrate --help": help, not a usage error (the audit
	 * command has its own). */
	for (int j = i; j < argc; j++) {
		if (strcmp(argv[j], "-h") == 0 || strcmp(argv[j], "--help") == 0) {
			if (strcmp(argv[i], "audit") == 0)
				ctl_audit_usage(stdout);
			else
				ctl_usage(stdout);
			return CTL_OK;
		}
	}
	if (i < argc && strcmp(argv[i], "sources") == 0) {
		cfg = config_load(config_path, err, sizeof(err));
		if (!cfg) {
			fprintf(stderr, "alertctl: %s\n", err);
			return CTL_USAGE;
		}
		status = ctl_sources_main(cfg, argc - i - 1, argv + i + 1);
		config_free(cfg);
		return status;
	}
	if ((status = ctl_parse(argc, argv, i, &cmd)) != CTL_OK)
		return status;
	cfg = config_load(config_path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "alertctl: %s\n", err);
		return CTL_USAGE;
	}
	switch (cmd.which) {
	case CMD_MIGRATE:
		status = ctl_migrate(cfg, cmd.dir);
		break;
	case CMD_OPERATOR:
		status = ctl_operators_main(cfg, cmd.sub_argc, cmd.sub_argv);
		break;
	case CMD_INCIDENTS:
		status = ctl_incidents(cfg, cmd.json);
		break;
	case CMD_AUDIT:
		status = ctl_audit(cfg, argc - cmd.argi, argv + cmd.argi);
		break;
	default:
		status = CTL_USAGE;
	}
	config_free(cfg);
	return status;
}
