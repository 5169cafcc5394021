/* log: levelled lines on stderr, with a UTC timestamp on a terminal; under
 * systemd (JOURNAL_STREAM set) without one, since the journal stamps each
 * line, and with a "<N>" prefix that gives journald the priority. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

enum log_level log_current_level = LOG_LVL_INFO;

static const struct {
	const char *name;
	const char *tag;
	int syslog_prio;
} log_levels[] = {
	[LOG_LVL_DEBUG] = {"debug", "DEBUG", 7},
	[LOG_LVL_INFO] = {"info", "INFO", 6},
	[LOG_LVL_WARN] = {"warn", "WARN", 4},
	[LOG_LVL_ERROR] = {"error", "ERROR", 3},
};

bool log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++) {
		if (strcmp(name, log_levels[i].name) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

void log_set_level(enum log_level level)
{
	const char *lib = getenv("ALERTD_LIBEVENT_DEBUG");

	log_current_level = level;
	/* libevent's own debug output (hundreds of lines a second, even
	 * idle) only on request: debug is for alertd's own messages. */
	event_enable_debug_logging(level == LOG_LVL_DEBUG && lib != NULL &&
					   strcmp(lib, "1") == 0
				   ? EVENT_DBG_ALL : EVENT_DBG_NONE);
}

/* A message may quote what a client sent (an id, a header): a line break
 * in it would forge a line of its own, an escape sequence would drive the
 * reader's terminal. White space becomes a space, any other control byte
 * '?', and so do both bytes of a C1 control written in UTF-8 (U+0080 ..
 * U+009F: 0xC2 0x80..0x9F; U+009B is a terminal's CSI); other UTF-8 is
 * left as it is. */
void log_neutralise(char *msg)
{
	for (unsigned char *p = (unsigned char *)msg; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
		else if (*p < 0x20 || *p == 0x7f)
			*p = '?';
		else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			p[0] = p[1] = '?';
	}
}

static void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;

	int n;

	if (getenv("JOURNAL_STREAM") != NULL) {
		/* journald stamps the line; "<N>" gives it the priority. */
		n = snprintf(line, sizeof(line), "<%d>%s ",
			     log_levels[level].syslog_prio,
			     log_levels[level].tag);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line),
			     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			     tm.tm_hour, tm.tm_min, tm.tm_sec,
			     ts.tv_nsec / 1000000, log_levels[level].tag);
	}
	if (n < 0)
		return;
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	log_neutralise(line + n);
	/* One write per line so that lines from a crash do not interleave. */
	fprintf(stderr, "%s\n", line);
}

void log_write(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

void die(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_ERROR, fmt, ap);
	va_end(ap);
	exit(status);
}

static void log_on_libevent(int severity, const char *msg)
{
	enum log_level level;

	switch (severity) {
	case EVENT_LOG_DEBUG:
		level = LOG_LVL_DEBUG;
		break;
	case EVENT_LOG_MSG:
		level = LOG_LVL_INFO;
		break;
	case EVENT_LOG_WARN:
		level = LOG_LVL_WARN;
		break;
	default:
		level = LOG_LVL_ERROR;
		break;
	}
	log_at(level, "libevent: %s", msg);
}

void log_hook_libevent(void)
{
	event_set_log_callback(log_on_libevent);
}
