/* ctl: what alertctl.c shares with its subcommand files (daemon/ctl_*.c):
 * exit codes, usage errors and blocking PostgreSQL helpers. alertctl only;
 * never linked into the daemon. */
#ifndef ALERTD_CTL_H
#define ALERTD_CTL_H

#include <stdbool.h>

#include <libpq-fe.h>

struct config;

enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2 };

/* Prints "alertctl: <message>" and the usage to stderr; CTL_USAGE. */
int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctl_pg_error(const char *what, const char *msg);
/* "--opt VALUE" or "--opt=VALUE" at argv[*i] (advancing *i past VALUE);
 * NULL when argv[*i] is not that option, with *missing set when it is but
 * the value is absent. */
const char *ctl_opt(int argc, char **argv, int *i, const char *opt,
		    bool *missing);
PGconn *ctl_pg_connect(const struct config *cfg);
bool ctl_exec(PGconn *pg, const char *what, const char *sql, int nparams,
	      const char *const *params, PGresult **out);
void ctl_rollback(PGconn *pg);

/* alertctl operator add|list|revoke ... (ctl_operators.c): argv starts
 * after "operator". */
int ctl_operators_main(const struct config *cfg, int argc, char **argv);
/* Checks the command line before the config is read. */
int ctl_operators_check(int argc, char **argv);

#endif
