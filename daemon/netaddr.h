/* netaddr: numeric socket addresses to and from text. */
#ifndef ALERTD_NETADDR_H
#define ALERTD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* The accept queue of the device listeners (TCP and HTTP): a city's
 * devices reconnect together after a restart or a network cut, and
 * libevent's default (128) drops the SYNs past it, which the devices
 * resend only a second later (docs/operations.md). The kernel caps it at
 * net.core.somaxconn. */
#define NETADDR_LISTEN_BACKLOG 1024

/* "127.0.0.1:5555", "[::1]:5555" or "unknown". */
void netaddr_format(const struct sockaddr *sa, char *out, size_t len);

/* host from config_split_hostport: numeric only (no DNS on the loop), with
 * "localhost", "*" and "" as the usual shorthands. false if not numeric. */
bool netaddr_parse(const char *host, int port, struct sockaddr_storage *ss,
		   int *len);

#endif
