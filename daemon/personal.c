/* personal: personal attrs stored hashed or masked, shown masked. */
#include "personal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "config.h"
#include "jsonout.h"

/* word is one of the comma-separated items of list (spaces ignored);
 * nocase: in any case (attr names are the device's to spell, and
 * "Caller_Phone" must not get past a rule for "caller_phone"). */
static bool personal_in_list(const char *list, const char *word, bool nocase)
{
	size_t n = strlen(word);
	const char *p = list;

	while (p && *p) {
		const char *end;
		size_t len;

		while (*p == ' ' || *p == ',')
			p++;
		end = p + strcspn(p, ",");
		len = (size_t)(end - p);
		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (len == n && len > 0 &&
		    (nocase ? strncasecmp(p, word, n) : strncmp(p, word, n)) == 0)
			return true;
		p = end;
	}
	return false;
}

bool personal_is_attr(const struct config *cfg, const char *key)
{
	return cfg && cfg->personal_attrs &&
	       personal_in_list(cfg->personal_attrs, key, true);
}

bool personal_role_sees(const struct config *cfg, const char *role)
{
	return cfg && cfg->personal_roles && role &&
	       personal_in_list(cfg->personal_roles, role, false);
}

/* "hmac-sha256:<hex>" of value under the configured salt. */
static json_t *personal_hash(const struct config *cfg, const char *value)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char out[12 + 2 * EVP_MAX_MD_SIZE + 1] = "hmac-sha256:";
	const char *salt = cfg->personal_salt ? cfg->personal_salt : "";

	if (!HMAC(EVP_sha256(), salt, (int)strlen(salt),
		  (const unsigned char *)value, strlen(value), mac, &len))
		return json_string(PERSONAL_MASK);
	for (unsigned int i = 0; i < len; i++)
		snprintf(out + 12 + 2 * i, 3, "%02x", mac[i]);
	return json_string(out);
}

/* Applies fn to every personal attr of the event object. */
static void personal_each(const struct config *cfg, json_t *ev, bool hash)
{
	json_t *attrs = json_object_get(ev, "attrs"), *v;
	const char *key;

	if (!json_is_object(attrs))
		return;
	json_object_foreach(attrs, key, v) {
		json_t *nv;

		if (!personal_is_attr(cfg, key))
			continue;
		nv = hash && json_is_string(v)
			     ? personal_hash(cfg, json_string_value(v))
			     : json_string(PERSONAL_MASK);
		if (nv)
			json_object_set_new(attrs, key, nv);
	}
}

void personal_mask_attrs(const struct config *cfg, json_t *payload)
{
	personal_each(cfg, payload, false);
}

void personal_mask_label(json_t *payload)
{
	json_t *src = json_object_get(payload, "source");
	const char *kind = json_string_value(json_object_get(src, "kind"));

	if (kind != NULL && strcmp(kind, "support_line") == 0 &&
	    json_is_string(json_object_get(src, "label")))
		json_object_set_new(src, "label", json_string(PERSONAL_MASK));
}

void personal_mask_event(const struct config *cfg, json_t *payload)
{
	personal_mask_attrs(cfg, payload);
	personal_mask_label(payload);
}

char *personal_store_payload(const struct config *cfg, const char *json)
{
	json_t *ev;
	char *out;

	if (!cfg || !cfg->personal_store ||
	    strcmp(cfg->personal_store, "raw") == 0 || !cfg->personal_attrs ||
	    !cfg->personal_attrs[0] || !strstr(json, "\"attrs\""))
		return strdup(json);
	if (!(ev = json_loads(json, 0, NULL)))
		return NULL;
	personal_each(cfg, ev, strcmp(cfg->personal_store, "hash") == 0);
	out = jsonout_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	return out;
}
