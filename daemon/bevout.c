/* bevout: see bevout.h. */
#include "bevout.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>

enum bevout_result bevout_flush(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	evutil_socket_t fd = bufferevent_getfd(bev);
	int n, err;

	if (bufferevent_get_enabled(bev) & EV_WRITE)
		return BEVOUT_PENDING;
	if (evbuffer_get_length(out) == 0)
		return BEVOUT_DONE;
	if (fd < 0) {
		errno = EBADF;
		return BEVOUT_ERROR;
	}
	/* The bufferevent keeps the front of its output frozen so that only
	 * its own write drains it, and thaws it the same way around that
	 * write. */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, fd);
	err = errno;
	evbuffer_freeze(out, 1);
	if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
		errno = err;
		return BEVOUT_ERROR;
	}
	if (evbuffer_get_length(out) == 0)
		return BEVOUT_DONE;
	bufferevent_enable(bev, EV_WRITE);
	return BEVOUT_PENDING;
}
