/* follow: the consoles' live feed, read from the Redis change stream.
 *
 * Every incident change is an entry of P changes, written by whichever
 * alertd instance made it (decide.lua). An instance's consoles must see
 * all of them, not only its own: several instances share one Redis
 * (DESIGN.md), and a panic taken by another instance must reach an
 * operator connected here. So the consoles are fed from the stream itself,
 * on a connection of its own that waits in XREAD BLOCK after the last
 * entry delivered, and hands each new entry, in stream order, to
 * fanout_publish (which also feeds the TCP consoles).
 *
 * When the follower lost its connection and the stream was trimmed past
 * its last entry meanwhile (or is gone), changes were missed: every
 * console is cut, and resumes with its Last-Event-ID, where the replay
 * finds the same gap and sends the open queue again. */
#ifndef ALERTD_FOLLOW_H
#define ALERTD_FOLLOW_H

#include <stdint.h>

struct event_base;
struct fanout;
struct follow;

/* Its own Redis connection to host:port; timeout_ms is the per-command
 * deadline, and each XREAD blocks for half of it. NULL: no memory. */
struct follow *follow_new(struct event_base *base, const char *host, int port,
			  int timeout_ms, struct fanout *fanout);
void follow_start(struct follow *fl);
/* Entries handed to the consoles since start (for tests and metrics). */
uint64_t follow_delivered(const struct follow *fl);
void follow_free(struct follow *fl);

#endif
