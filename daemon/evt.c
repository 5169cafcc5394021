/* evt: the event model and its validation, shared by the JSON and the
 * protobuf decoders so that both answer the same input with the same error.
 * The order of the checks follows docs/api.md: invalid_id, then
 * invalid_field, then too_many_attrs (missing fields and enums are checked by
 * the decoders, which see the raw input). */
#include "evt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The longest occurred_at accepted (evt_validate). */
#define EVT_TIME_MAX_LEN 64

static const char *const evt_kind_names[EVT_KIND__COUNT] = {
	[EVT_KIND_BUS] = "bus",
	[EVT_KIND_FERRY] = "ferry",
	[EVT_KIND_STOP] = "stop",
	[EVT_KIND_PARK] = "park",
	[EVT_KIND_SUPPORT_LINE] = "support_line",
	[EVT_KIND_OTHER] = "other",
};

static const char *const evt_type_names[EVT_TYPE__COUNT] = {
	[EVT_TYPE_PANIC] = "panic",
	[EVT_TYPE_SILENT_ALARM] = "silent_alarm",
	[EVT_TYPE_CALL_REQUEST] = "call_request",
	[EVT_TYPE_CALLBACK_REQUEST] = "callback_request",
	[EVT_TYPE_FAULT] = "fault",
	[EVT_TYPE_HEARTBEAT] = "heartbeat",
	[EVT_TYPE_TEST] = "test",
};

static const char *const evt_outcome_names[EVT_OUTCOME__COUNT] = {
	[EVT_OUTCOME_NEW] = "new",
	[EVT_OUTCOME_MERGED] = "merged",
	[EVT_OUTCOME_DUPLICATE] = "duplicate",
};

/* Used when a caller passes no limits: the defaults of the contract. */
static const struct evt_limits evt_default_limits = {
	.max_id_len = 64,
	.max_attrs = 32,
	.max_text_len = 256,
};

const char *evt_kind_name(enum evt_kind kind)
{
	if ((unsigned)kind >= EVT_KIND__COUNT)
		return "unknown";
	return evt_kind_names[kind];
}

const char *evt_type_name(enum evt_type type)
{
	if ((unsigned)type >= EVT_TYPE__COUNT)
		return "unknown";
	return evt_type_names[type];
}

bool evt_type_urgent(enum evt_type type)
{
	switch (type) {
	case EVT_TYPE_PANIC:
	case EVT_TYPE_SILENT_ALARM:
	case EVT_TYPE_CALL_REQUEST:
	case EVT_TYPE_CALLBACK_REQUEST:
		return true;
	default:
		return false;
	}
}

const char *evt_outcome_name(enum evt_outcome outcome)
{
	if ((unsigned)outcome >= EVT_OUTCOME__COUNT)
		return "unknown";
	return evt_outcome_names[outcome];
}

static bool evt_name_lookup(const char *const *names, int n, const char *name,
			    int *out)
{
	if (name == NULL)
		return false;
	for (int i = 0; i < n; i++) {
		if (strcmp(names[i], name) == 0) {
			*out = i;
			return true;
		}
	}
	return false;
}

bool evt_kind_parse(const char *name, enum evt_kind *out)
{
	int i;

	if (!evt_name_lookup(evt_kind_names, EVT_KIND__COUNT, name, &i))
		return false;
	*out = (enum evt_kind)i;
	return true;
}

bool evt_type_parse(const char *name, enum evt_type *out)
{
	int i;

	if (!evt_name_lookup(evt_type_names, EVT_TYPE__COUNT, name, &i))
		return false;
	*out = (enum evt_type)i;
	return true;
}

bool evt_outcome_parse(const char *name, enum evt_outcome *out)
{
	int i;

	if (!evt_name_lookup(evt_outcome_names, EVT_OUTCOME__COUNT, name, &i))
		return false;
	*out = (enum evt_outcome)i;
	return true;
}

void evt_error_set(struct evt_error *err, const char *code, const char *field,
		   const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	err->code = code;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
}

bool evt_id_valid(const char *s, size_t max)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' ||
			  c == ':' || c == '-';
		if (!ok || n >= max)
			return false;
	}
	return n >= 1;
}

/* --- RFC 3339 ---------------------------------------------------------- */

/* Reads exactly n decimal digits. */
static bool evt_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool evt_expect(const char **p, char c1, char c2)
{
	if (**p != c1 && **p != c2)
		return false;
	(*p)++;
	return true;
}

static int evt_days_in_month(int year, int month)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31};
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	if (month == 2 && leap)
		return 29;
	return days[month - 1];
}

/* "[.frac](Z|+hh:mm|-hh:mm)" after the seconds: fills ms (fraction
 * truncated to milliseconds) and the offset east of UTC in seconds. */
static bool evt_parse_tail(const char *p, int *ms, int *offset_s)
{
	int oh, om, sign;

	*ms = 0;
	if (*p == '.') {
		int scale = 100, digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
			*ms += (*p - '0') * scale;
			scale /= 10;
		}
		if (digits == 0)
			return false;
	}
	if (*p == 'Z' || *p == 'z') {
		*offset_s = 0;
		return p[1] == '\0';
	}
	if (*p != '+' && *p != '-')
		return false;
	sign = *p++ == '-' ? -1 : 1;
	if (!evt_digits(&p, 2, &oh) || !evt_expect(&p, ':', ':') ||
	    !evt_digits(&p, 2, &om) || *p != '\0')
		return false;
	if (oh > 23 || om > 59)
		return false;
	*offset_s = sign * (oh * 3600 + om * 60);
	return true;
}

bool evt_parse_time(const char *s, int64_t *out_ms)
{
	struct tm tm;
	int year, mon, day, hour, min, sec, ms, offset_s;
	const char *p = s;
	time_t t;

	if (s == NULL)
		return false;
	if (!evt_digits(&p, 4, &year) || !evt_expect(&p, '-', '-') ||
	    !evt_digits(&p, 2, &mon) || !evt_expect(&p, '-', '-') ||
	    !evt_digits(&p, 2, &day) || !evt_expect(&p, 'T', 't') ||
	    !evt_digits(&p, 2, &hour) || !evt_expect(&p, ':', ':') ||
	    !evt_digits(&p, 2, &min) || !evt_expect(&p, ':', ':') ||
	    !evt_digits(&p, 2, &sec))
		return false;
	/* sec 60 is a leap second; timegm folds it into the next minute. */
	if (mon < 1 || mon > 12 || day < 1 ||
	    day > evt_days_in_month(year, mon) || hour > 23 || min > 59 ||
	    sec > 60)
		return false;
	if (!evt_parse_tail(p, &ms, &offset_s))
		return false;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm);
	*out_ms = ((int64_t)t - offset_s) * 1000 + ms;
	return true;
}

void evt_format_time(int64_t ms, char *buf, size_t len)
{
	struct tm tm;
	int64_t secs = ms / 1000;
	int frac = (int)(ms % 1000);
	time_t t;

	/* Floor division, so that times before 1970 format correctly. */
	if (frac < 0) {
		frac += 1000;
		secs -= 1;
	}
	t = (time_t)secs;
	if (gmtime_r(&t, &tm) == NULL) {
		snprintf(buf, len, "%s", "");
		return;
	}
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, frac);
}

/* --- validation -------------------------------------------------------- */

/* true if s is well-formed UTF-8 (no overlongs, no surrogates). protobuf-c
 * does not check proto3 strings, and the canonical JSON needs valid text. */
static bool evt_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned char c = *p;
		int n;
		unsigned cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		for (int i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

/* An optional text member: NULL is fine, else bounded, valid UTF-8. */
static bool evt_check_text(const char *s, const char *field, size_t max,
			   struct evt_error *err)
{
	if (s == NULL)
		return true;
	if (strlen(s) > max) {
		evt_error_set(err, "invalid_field", field,
			      "%s is longer than %zu bytes", field, max);
		return false;
	}
	if (!evt_utf8_valid(s)) {
		evt_error_set(err, "invalid_field", field,
			      "%s is not valid UTF-8", field);
		return false;
	}
	return true;
}

static bool evt_check_ids(const struct evt *ev, size_t max,
			  struct evt_error *err)
{
	if (ev->event_id == NULL || ev->event_id[0] == '\0') {
		evt_error_set(err, "missing_field", "event_id",
			      "event_id is required");
		return false;
	}
	if (ev->source_id == NULL || ev->source_id[0] == '\0') {
		evt_error_set(err, "missing_field", "source.id",
			      "source.id is required");
		return false;
	}
	if (!evt_id_valid(ev->event_id, max)) {
		evt_error_set(err, "invalid_id", "event_id",
			      "event_id must be 1..%zu characters of "
			      "[A-Za-z0-9._:-]", max);
		return false;
	}
	if (!evt_id_valid(ev->source_id, max)) {
		evt_error_set(err, "invalid_id", "source.id",
			      "source.id must be 1..%zu characters of "
			      "[A-Za-z0-9._:-]", max);
		return false;
	}
	return true;
}

/* Attr keys and values. The field is named after the key when it fits;
 * values are personal data at times, so they never appear in the detail. */
static bool evt_check_attrs(const struct evt *ev, size_t max,
			    struct evt_error *err)
{
	for (size_t i = 0; i < ev->n_attrs; i++) {
		const struct evt_attr *a = &ev->attrs[i];
		char field[64];

		if (a->key == NULL || a->key[0] == '\0') {
			evt_error_set(err, "invalid_field", "attrs",
				      "attrs keys must not be empty");
			return false;
		}
		if (!evt_check_text(a->key, "attrs", max, err))
			return false;
		if (a->value == NULL) {
			evt_error_set(err, "invalid_field", "attrs",
				      "attrs values must be strings");
			return false;
		}
		if (strlen(a->key) + 7 <= sizeof(field))
			snprintf(field, sizeof(field), "attrs.%s", a->key);
		else
			snprintf(field, sizeof(field), "attrs");
		if (!evt_check_text(a->value, field, max, err))
			return false;
	}
	return true;
}

static bool evt_check_location(const struct evt *ev, struct evt_error *err)
{
	if (!ev->has_location)
		return true;
	/* Written so that NaN fails too. */
	if (!(ev->lat >= -90.0 && ev->lat <= 90.0)) {
		evt_error_set(err, "invalid_field", "location.lat",
			      "location.lat must be within -90..90");
		return false;
	}
	if (!(ev->lon >= -180.0 && ev->lon <= 180.0)) {
		evt_error_set(err, "invalid_field", "location.lon",
			      "location.lon must be within -180..180");
		return false;
	}
	return true;
}

bool evt_validate(struct evt *ev, const struct evt_limits *limits,
		  struct evt_error *err)
{
	const struct evt_limits *lim = limits ? limits : &evt_default_limits;

	if (!evt_check_ids(ev, lim->max_id_len, err))
		return false;
	if (!evt_check_text(ev->zone, "source.zone", lim->max_text_len, err) ||
	    !evt_check_text(ev->label, "source.label", lim->max_text_len, err))
		return false;
	/* RFC 3339 with nanoseconds and an offset is 35 characters; the
	 * fraction's digits are otherwise unbounded, and the text is kept in
	 * the stored payload. */
	if (ev->occurred_at != NULL &&
	    (strlen(ev->occurred_at) > EVT_TIME_MAX_LEN ||
	     !evt_parse_time(ev->occurred_at, &ev->occurred_at_ms))) {
		evt_error_set(err, "invalid_field", "occurred_at",
			      "occurred_at must be RFC 3339, e.g. "
			      "2026-11-21T22:14:03.120Z");
		return false;
	}
	if (!evt_check_location(ev, err))
		return false;
	if (!evt_check_attrs(ev, lim->max_text_len, err))
		return false;
	if (ev->n_attrs > lim->max_attrs) {
		evt_error_set(err, "too_many_attrs", "attrs",
			      "at most %zu attrs are allowed", lim->max_attrs);
		return false;
	}
	return true;
}

void evt_free(struct evt *ev)
{
	if (ev == NULL)
		return;
	free(ev->event_id);
	free(ev->source_id);
	free(ev->zone);
	free(ev->label);
	free(ev->occurred_at);
	for (size_t i = 0; i < ev->n_attrs; i++) {
		free(ev->attrs[i].key);
		free(ev->attrs[i].value);
	}
	free(ev->attrs);
	free(ev);
}
