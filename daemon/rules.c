/* rules: the script's rules argument, built with jansson: what a reload
 * changes once per config, the night flag and the counters' floor per
 * call. */
#include "rules.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "evt.h"
#include "jsonw.h"
#include "log.h"
#include "tzclock.h"

bool rules_is_night(const struct config *cfg, int64_t now_ms)
{
	int minute = 0;

	if (!tzclock_local_minute(cfg->priority_timezone, now_ms, &minute)) {
		log_warn("rules: unknown time zone %s; no night window",
			 cfg->priority_timezone);
		return false;
	}
	return tzclock_in_window(minute, cfg->night_start_min,
				 cfg->night_end_min);
}

char *rules_json_fixed(const struct config *cfg)
{
	json_t *r = json_object(), *kmod = json_object(),
	       *zmod = json_object(), *nk = json_object(),
	       *sup = json_object();
	char *text = NULL;

	if (r == NULL || kmod == NULL || zmod == NULL || nk == NULL ||
	    sup == NULL)
		goto done;
	for (int k = 0; k < EVT_KIND__COUNT; k++) {
		const char *name = evt_kind_name((enum evt_kind)k);

		json_object_set_new(kmod, name,
				    json_integer(cfg->priority_kind[k]));
		if (cfg->night_kinds & (1 << k))
			json_object_set_new(nk, name, json_true());
		json_object_set_new(sup, name,
				    json_integer(cfg->supervision_s[k]));
	}
	for (size_t i = 0; i < cfg->n_zones; i++)
		json_object_set_new(zmod, cfg->zones[i].zone,
				    json_integer(cfg->zones[i].modifier));
	json_object_set(r, "kind_mod", kmod);
	json_object_set(r, "zone_mod", zmod);
	json_object_set(r, "night_kinds", nk);
	json_object_set(r, "supervision", sup);
	json_object_set_new(r, "night_boost", json_integer(cfg->night_boost));
	json_object_set_new(r, "repeat_step", json_integer(cfg->repeat_step));
	json_object_set_new(r, "repeat_cap", json_integer(cfg->repeat_cap));
	json_object_set_new(r, "aging_step", json_integer(cfg->aging_step));
	json_object_set_new(r, "aging_interval_ms",
			    json_integer((json_int_t)cfg->aging_interval_s * 1000));
	json_object_set_new(r, "aging_cap", json_integer(cfg->aging_cap));
	json_object_set_new(r, "flood_window_ms",
			    json_integer((json_int_t)cfg->flood_window_s * 1000));
	json_object_set_new(r, "flood_soft", json_integer(cfg->flood_soft));
	json_object_set_new(r, "flood_hard", json_integer(cfg->flood_hard));
	json_object_set_new(r, "unknown", json_string(cfg->unknown_accept
							      ? "accept"
							      : "reject"));
	json_object_set_new(r, "device_offline",
			    json_integer(cfg->priority_device_offline));
	text = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
done:
	json_decref(kmod);
	json_decref(zmod);
	json_decref(nk);
	json_decref(sup);
	json_decref(r);
	return text;
}

char *rules_json_join(const char *fixed, bool night,
		      const struct rules_seq_floor *floor)
{
	struct jsonw b = JSONW_INIT;
	size_t n = strlen(fixed);

	/* fixed is a non-empty object: "{...}" without its closing brace,
	 * then the members of this moment. */
	if (n < 3 || fixed[0] != '{' || fixed[n - 1] != '}')
		return NULL;
	jsonw_put(&b, fixed, n - 1);
	jsonw_lit(&b, night ? ",\"night\":1" : ",\"night\":0");
	jsonw_lit(&b, ",\"seq_floor\":{\"accept\":");
	jsonw_int(&b, floor ? floor->accept : 0);
	jsonw_lit(&b, ",\"incident\":");
	jsonw_int(&b, floor ? floor->incident : 0);
	jsonw_lit(&b, "}}");
	return jsonw_finish(&b);
}

char *rules_json(const struct config *cfg, int64_t now_ms,
		 const struct rules_seq_floor *floor)
{
	char *fixed = rules_json_fixed(cfg), *text = NULL;

	if (fixed != NULL)
		text = rules_json_join(fixed, rules_is_night(cfg, now_ms),
				       floor);
	free(fixed);
	return text;
}
