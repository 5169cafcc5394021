/* ctl_audit: `alertctl audit ...` (verify the chain, print its head,
 * answer the audit questions). Blocking libpq: alertctl only. */
#ifndef ALERTD_CTL_AUDIT_H
#define ALERTD_CTL_AUDIT_H

#include <stdio.h>

struct config;

/* argv[0] is "audit". Exit status: 0 ok, 1 failure or a broken chain,
 * 2 usage. */
int ctl_audit(const struct config *cfg, int argc, char **argv);
void ctl_audit_usage(FILE *out);

#endif
