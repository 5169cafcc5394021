/* listen_guard: a listener paused for a second when accept() fails. */
#include "listen_guard.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "log.h"

#define LISTEN_GUARD_PAUSE_S 1

struct listen_guard {
	struct evconnlistener *listener;
	struct event *resume;
	const char *name;
	struct listen_guard *next;
};

/* libevent hands the error callback the listener's own callback argument
 * (evhttp's, for the HTTP listener), so the guard is found by its
 * listener: there are three at most. */
static struct listen_guard *listen_guards;

static void listen_guard_on_error(struct evconnlistener *l, void *ctx)
{
	struct timeval tv = {LISTEN_GUARD_PAUSE_S, 0};
	int err = EVUTIL_SOCKET_ERROR();
	struct listen_guard *g;

	(void)ctx;
	for (g = listen_guards; g != NULL && g->listener != l; g = g->next)
		;
	if (g == NULL)
		return;
	log_warn("%s: accept failed: %s; pausing accepts for %d s", g->name,
		 evutil_socket_error_to_string(err), LISTEN_GUARD_PAUSE_S);
	evconnlistener_disable(l);
	event_add(g->resume, &tv);
}

static void listen_guard_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listen_guard *g = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(g->listener);
}

struct listen_guard *listen_guard_new(struct event_base *base,
				      struct evconnlistener *l,
				      const char *name)
{
	struct listen_guard *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->resume = event_new(base, -1, 0, listen_guard_on_resume, g);
	if (g->resume == NULL) {
		free(g);
		return NULL;
	}
	g->listener = l;
	g->name = name;
	g->next = listen_guards;
	listen_guards = g;
	evconnlistener_set_error_cb(l, listen_guard_on_error);
	return g;
}

void listen_guard_free(struct listen_guard *g)
{
	struct listen_guard **p;

	if (g == NULL)
		return;
	for (p = &listen_guards; *p != NULL && *p != g; p = &(*p)->next)
		;
	if (*p != NULL)
		*p = g->next;
	event_free(g->resume);
	free(g);
}
