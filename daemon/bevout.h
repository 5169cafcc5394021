/* bevout: a bufferevent's output written by the caller, not by its write
 * event (docs/BENCHMARKS.md, optimisation 17).
 *
 * libevent's socket bufferevent writes only from its write event: every
 * answer costs an epoll_ctl to watch the socket for writing, a pass of the
 * loop to learn that it is writable (it nearly always is), and another
 * epoll_ctl to stop watching. A bufferevent used with bevout keeps EV_WRITE
 * disabled; the caller queues with bufferevent_write and then calls
 * bevout_flush, which writes the output to the socket at once and enables
 * EV_WRITE only for what the socket did not take. The bufferevent's write
 * callback (low watermark 0: all written) must then disable EV_WRITE
 * again. */
#ifndef ALERTD_BEVOUT_H
#define ALERTD_BEVOUT_H

#include <event2/bufferevent.h>

enum bevout_result {
	BEVOUT_DONE,    /* the output is empty */
	BEVOUT_PENDING, /* the rest waits for the write event (enabled) */
	BEVOUT_ERROR,   /* the socket failed; errno says why */
};

/* Writes what the socket takes now. While EV_WRITE is enabled (an earlier
 * rest is waiting) it writes nothing and answers BEVOUT_PENDING: libevent
 * writes everything in order from there. */
enum bevout_result bevout_flush(struct bufferevent *bev);

#endif
