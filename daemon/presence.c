/* presence: operators on duty and the staffing incident (presence.h). */
#include "presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "audit.h"
#include "config.h"
#include "decide.h"
#include "evt.h"
#include "fanout.h"
#include "log.h"
#include "pipeline.h"
#include "tzclock.h"

#define PRESENCE_TTL_MS "3000"
#define PRESENCE_SOURCE "alertd-staffing"

enum presence_state {
	PRES_IDLE,      /* nothing in flight */
	PRES_CHECKING,  /* a presence call is in flight */
};

struct presence {
	struct decide *decide;
	struct pipeline *pipeline;
	struct audit *audit;
	struct fanout *fanout;
	enum presence_state state;
	int last_on_duty;
};

/* The opening event's answer: remember the incident of this shortage. */
struct presence_open {
	struct presence *p;
	int64_t episode;
};

struct presence *presence_new(struct decide *decide, struct pipeline *pipeline,
			      struct audit *audit, struct fanout *fanout)
{
	struct presence *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->decide = decide;
	p->pipeline = pipeline;
	p->audit = audit;
	p->fanout = fanout;
	p->state = PRES_IDLE;
	p->last_on_duty = -1;
	return p;
}

void presence_free(struct presence *p)
{
	free(p);
}

static void presence_on_ignored(bool ok, const char *json, void *arg)
{
	(void)ok;
	(void)json;
	(void)arg;
}

static void presence_on_opened(const struct pipeline_answer *ans, void *arg)
{
	struct presence_open *o = arg;
	char ep[24], id[24];
	const char *params[2] = {ep, id};

	if (!ans->durable) {
		log_error("presence: the staffing incident could not be opened "
			  "(%s)", ans->detail ? ans->detail : "unavailable");
		free(o);
		return;
	}
	snprintf(ep, sizeof(ep), "%lld", (long long)o->episode);
	snprintf(id, sizeof(id), "%lld", (long long)ans->incident_id);
	log_warn("presence: staffing incident=%s opened", id);
	if (!decide_script(o->p->decide, "staffing_set", 2, params,
			   presence_on_ignored, NULL))
		log_warn("presence: cannot record the staffing incident");
	free(o);
}

static void presence_open(struct presence *p, int64_t episode, int on_duty,
			  int min)
{
	struct evt *ev = calloc(1, sizeof(*ev));
	struct presence_open *o = calloc(1, sizeof(*o));
	char id[64], label[96];

	snprintf(id, sizeof(id), "alertd-staffing-%lld", (long long)episode);
	snprintf(label, sizeof(label), "staffing: %d operators on duty, "
		 "minimum %d", on_duty, min);
	if (ev == NULL || o == NULL ||
	    (ev->event_id = strdup(id)) == NULL ||
	    (ev->source_id = strdup(PRESENCE_SOURCE)) == NULL ||
	    (ev->label = strdup(label)) == NULL) {
		log_error("presence: out of memory for the staffing incident");
		if (ev != NULL)
			evt_free(ev);
		free(o);
		return;
	}
	ev->kind = EVT_KIND_OTHER;
	ev->type = EVT_TYPE_FAULT;
	ev->received_at_ms = tzclock_now_ms();
	o->p = p;
	o->episode = episode;
	pipeline_submit(p->pipeline, ev, presence_on_opened, o);
}

static void presence_on_audited(bool durable, void *arg)
{
	(void)durable;
	(void)arg;
}

static void presence_on_resolved(bool ok, const char *json, void *arg)
{
	struct presence *p = arg;
	json_t *r = ok && json ? json_loads(json, 0, NULL) : NULL;
	const char *status = json_string_value(json_object_get(r, "status"));
	const char *snap = json_string_value(json_object_get(r, "snapshot"));
	const char *cid = json_string_value(json_object_get(r, "change_id"));
	json_int_t id, version;
	char tid[48];
	struct audit_transition_row row;

	if (status == NULL || strcmp(status, "ok") != 0 || snap == NULL ||
	    cid == NULL || cid[0] == '\0') {
		log_warn("presence: the staffing incident was not resolved "
			 "(%s)", status ? status : "Redis unavailable");
		json_decref(r);
		return;
	}
	{
		json_t *s = json_loads(snap, 0, NULL);

		id = json_integer_value(json_object_get(s, "id"));
		json_decref(s);
	}
	version = json_integer_value(json_object_get(r, "version"));
	snprintf(tid, sizeof(tid), "%lld:%lld", (long long)id,
		 (long long)version);
	row = (struct audit_transition_row){
		.transition_id = tid,
		.incident_id = id,
		.from_state = json_string_value(json_object_get(r, "from")),
		.to_state = "resolved",
		.actor = "alertd",
		.detail_json = "{\"action\":\"resolve\",\"outcome\":\"staffed\"}",
		.at_ms = tzclock_now_ms(),
	};
	audit_record(p->audit, NULL, &row, presence_on_audited, NULL);
	log_info("presence: staff is back; staffing incident=%lld resolved",
		 (long long)id);
	json_decref(r);
}

static void presence_close(struct presence *p, int64_t incident_id)
{
	char id[24], now_ms[24], now_iso[32];
	int64_t now = tzclock_now_ms();
	const char *params[10];

	if (incident_id <= 0) {
		log_warn("presence: staff is back before the staffing incident "
			 "was recorded; resolve it by hand");
		return;
	}
	snprintf(id, sizeof(id), "%lld", (long long)incident_id);
	snprintf(now_ms, sizeof(now_ms), "%lld", (long long)now);
	evt_format_time(now, now_iso, sizeof(now_iso));
	params[0] = id;
	params[1] = "alertd";
	params[2] = "";
	params[3] = now_ms;
	params[4] = now_iso;
	params[5] = "10000";
	params[6] = "";
	params[7] = "1";
	params[8] = "staff is back on duty";
	params[9] = "staffed";
	if (!decide_script(p->decide, "resolve", 10, params,
			   presence_on_resolved, p))
		log_warn("presence: cannot resolve the staffing incident now");
}

static void presence_on_checked(bool ok, const char *json, void *arg)
{
	struct presence *p = arg;
	const struct config *cfg = config_current();
	json_t *r;
	const char *action;
	int on_duty;

	p->state = PRES_IDLE;
	if (!ok || json == NULL || (r = json_loads(json, 0, NULL)) == NULL)
		return;
	on_duty = (int)json_integer_value(json_object_get(r, "on_duty"));
	action = json_string_value(json_object_get(r, "action"));
	if (on_duty != p->last_on_duty)
		log_info("presence: %d operators on duty (minimum %d)", on_duty,
			 cfg->min_on_duty);
	p->last_on_duty = on_duty;
	if (action != NULL && strcmp(action, "open") == 0) {
		log_warn("presence: %d operators on duty, below the minimum of "
			 "%d; opening a staffing incident", on_duty,
			 cfg->min_on_duty);
		presence_open(p, json_integer_value(json_object_get(r,
								    "episode")),
			      on_duty, cfg->min_on_duty);
	} else if (action != NULL && strcmp(action, "close") == 0) {
		presence_close(p, json_integer_value(json_object_get(r,
								     "incident")));
	}
	json_decref(r);
}

void presence_tick(struct presence *p)
{
	const struct config *cfg = config_current();
	char now[24], min[16];
	char *names;
	const char *params[4];

	if (p->state != PRES_IDLE || (names = fanout_on_duty(p->fanout)) == NULL)
		return;
	snprintf(now, sizeof(now), "%lld", (long long)tzclock_now_ms());
	snprintf(min, sizeof(min), "%d", cfg->min_on_duty);
	params[0] = now;
	params[1] = PRESENCE_TTL_MS;
	params[2] = min;
	params[3] = names;
	if (decide_script(p->decide, "presence", 4, params,
			  presence_on_checked, p))
		p->state = PRES_CHECKING;
	free(names);
}
