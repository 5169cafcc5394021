/* log: levelled logging to stderr (journald adds its own timestamps when
 * run under systemd), and libevent's own messages routed through it.
 * Never log secrets or a caller's personal data. */
#ifndef ALERTD_LOG_H
#define ALERTD_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LVL_DEBUG = 0,
	LOG_LVL_INFO,
	LOG_LVL_WARN,
	LOG_LVL_ERROR,
};

extern enum log_level log_current_level;

/* "debug", "info", "warn", "error" -> level; false if unknown. */
bool log_level_parse(const char *name, enum log_level *out);
void log_set_level(enum log_level level);
/* Route libevent's internal warnings through log_write. */
void log_hook_libevent(void);
void log_write(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The formatting is skipped when the level is off. */
#define log_at(lvl, ...)                                                       \
	do {                                                                   \
		if ((lvl) >= log_current_level)                                \
			log_write((lvl), __VA_ARGS__);                         \
	} while (0)
#define log_debug(...) log_at(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_at(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_at(LOG_LVL_ERROR, __VA_ARGS__)

/* Control bytes of a formatted message made harmless, in place (every
 * line goes through it). */
void log_neutralise(char *msg);

/* Start-up only: log and exit(status). */
void die(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

#endif
