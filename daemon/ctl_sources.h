/* ctl_sources: `alertctl sources` (list the registry with last-seen and
 * state), `alertctl sources import FILE.csv` (upsert into PostgreSQL, then
 * load into Redis) and `alertctl sources load` (PostgreSQL -> Redis again,
 * e.g. after Redis lost its data). Blocking libpq and hiredis: alertctl
 * never runs inside the daemon. */
#ifndef ALERTD_CTL_SOURCES_H
#define ALERTD_CTL_SOURCES_H

struct config;

/* argv[0] is the word after "sources" (or argc 0). Returns the exit
 * status: 0 ok, 1 failure, 2 usage. */
int ctl_sources_main(const struct config *cfg, int argc, char **argv);

#endif
