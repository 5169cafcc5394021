/* listen_guard: a listener whose accept() fails (EMFILE or ENFILE when
 * file descriptors run out, ENOBUFS, ENOMEM). libevent's listener only
 * warns and stays armed, so the loop would call accept() again at once:
 * 100 % of a core and millions of log lines a minute, while the
 * connections already open (devices, consoles, Redis, PostgreSQL) wait
 * for that core. The guard pauses the listener for a second instead and
 * logs once per pause; new connections wait in the kernel's backlog. */
#ifndef ALERTD_LISTEN_GUARD_H
#define ALERTD_LISTEN_GUARD_H

struct event_base;
struct evconnlistener;
struct listen_guard;

/* Guards l (which it does not own); name is for the log ("http", "tcp",
 * "console tcp"). NULL when out of memory. */
struct listen_guard *listen_guard_new(struct event_base *base,
				      struct evconnlistener *l,
				      const char *name);
/* Before the listener is freed. */
void listen_guard_free(struct listen_guard *g);

#endif
