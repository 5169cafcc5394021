/* ingest_tcp: the device TCP protocol: length-prefixed protobuf frames
 * (proto/alertd.proto), pipelined; every event answered with an Ack or a
 * Nack as soon as it is durable (so answers may come out of order). A
 * malformed or oversized frame is answered with an Error frame and closes
 * that connection only. At most tcp_max_inflight events per connection
 * (and a fair share of 16384 events / 16 MB of frames over all
 * connections) are read and not answered yet: beyond that the connection
 * is not read (back-pressure). The pipeline decides when each one starts,
 * urgent types first. */
#ifndef ALERTD_INGEST_TCP_H
#define ALERTD_INGEST_TCP_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct pipeline;
struct ingest_tcp;

struct ingest_tcp *ingest_tcp_new(struct event_base *base,
				  struct pipeline *pipeline);
bool ingest_tcp_listen(struct ingest_tcp *t, const char *hostport)
	__attribute__((warn_unused_result));
void ingest_tcp_stop_accepting(struct ingest_tcp *t);
/* Connections still waiting for answers to be written. */
size_t ingest_tcp_connections(const struct ingest_tcp *t);
void ingest_tcp_free(struct ingest_tcp *t);

#endif
