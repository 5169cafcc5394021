/* netaddr: numeric socket addresses to and from text. */
#ifndef ALERTD_NETADDR_H
#define ALERTD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* "127.0.0.1:5555", "[::1]:5555" or "unknown". */
void netaddr_format(const struct sockaddr *sa, char *out, size_t len);

/* host from config_split_hostport: numeric only (no DNS on the loop), with
 * "localhost", "*" and "" as the usual shorthands. false if not numeric. */
bool netaddr_parse(const char *host, int port, struct sockaddr_storage *ss,
		   int *len);

#endif
