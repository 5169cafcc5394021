/* console_tcp: the operator stream over TCP (protobuf frames) for native
 * consoles, on its own listener ([server] console_tcp_listen, off when
 * empty): Subscribe{token, last_event_id} in, IncidentUpdate{id,
 * snapshot_json} out, with the same snapshot-on-connect, resume, role and
 * zone filtering, masking and revocation cut-off as GET /v1/stream. */
#ifndef ALERTD_CONSOLE_TCP_H
#define ALERTD_CONSOLE_TCP_H

#include <stdbool.h>

struct event_base;
struct decide;
struct fanout;
struct operators;
struct console_tcp;

struct console_tcp *console_tcp_new(struct event_base *base,
				    struct decide *decide,
				    struct operators *operators,
				    struct fanout *fanout);
bool console_tcp_listen(struct console_tcp *t, const char *hostport)
	__attribute__((warn_unused_result));
void console_tcp_free(struct console_tcp *t);

#endif
