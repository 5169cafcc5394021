/* auth: device signatures and operator tokens, pure functions over the
 * config. HMAC and hashes come from OpenSSL libcrypto. */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "numtext.h"

#define AUTH_HEX_LEN 64 /* SHA-256 as hex */
/* "<t>." : an int64 is at most 20 characters with its sign. */
#define AUTH_PREFIX_MAX 24

static const char *const auth_role_names[AUTH_ROLE__COUNT] = {
	[AUTH_ROLE_OPERATOR] = "operator",
	[AUTH_ROLE_SUPERVISOR] = "supervisor",
	[AUTH_ROLE_AUDITOR] = "auditor",
	[AUTH_ROLE_ADMIN] = "admin",
};

const char *auth_sig_code(enum auth_sig_result r)
{
	switch (r) {
	case AUTH_SIG_OK:
		return "ok";
	case AUTH_SIG_MISSING:
		return "signature_missing";
	case AUTH_SIG_MALFORMED:
		return "signature_malformed";
	case AUTH_SIG_EXPIRED:
		return "timestamp_out_of_window";
	case AUTH_SIG_INVALID:
		return "signature_invalid";
	}
	return "signature_invalid";
}

static void auth_hex(const unsigned char *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

/* Each byte's lowercase hex digit, 0 for a byte that is not one: the
 * signature's 64 random digits mix numbers and letters, and a check by
 * ranges mispredicted about every other one (optimisation 35). */
static const char auth_hex_lower[256] = {
	['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3', ['4'] = '4',
	['5'] = '5', ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9',
	['a'] = 'a', ['b'] = 'b', ['c'] = 'c', ['d'] = 'd', ['e'] = 'e',
	['f'] = 'f', ['A'] = 'a', ['B'] = 'b', ['C'] = 'c', ['D'] = 'd',
	['E'] = 'e', ['F'] = 'f',
};

/* The length of the run of hex digits at s (up to a non-digit). */
static size_t auth_hex_span(const char *s)
{
	size_t n = 0;

	while (auth_hex_lower[(unsigned char)s[n]] != 0)
		n++;
	return n;
}

/* Copies exactly 64 hex digits from s (lowercased) into out[65]. */
static bool auth_take_hex(const char *s, size_t n, char *out)
{
	char bad = 0;

	if (n != AUTH_HEX_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		out[i] = auth_hex_lower[(unsigned char)s[i]];
		bad |= (char)(out[i] == 0);
	}
	out[n] = '\0';
	return !bad;
}

static const char *auth_skip_spaces(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* One "t=<digits>" or "v1=<hex>" part ending at ',' or the end. */
static bool auth_parse_part(const char **pp, bool *have_t, int64_t *t,
			    bool *have_v1, char *v1)
{
	const char *p = auth_skip_spaces(*pp);
	const char *end;

	if (p[0] == 't' && p[1] == '=' && !*have_t) {
		int64_t v = 0;

		p += 2;
		if (*p < '0' || *p > '9')
			return false;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (v > (INT64_MAX - (*p - '0')) / 10)
				return false;
			v = v * 10 + (*p - '0');
		}
		*t = v;
		*have_t = true;
	} else if (p[0] == 'v' && p[1] == '1' && p[2] == '=' && !*have_v1) {
		p += 3;
		end = p + auth_hex_span(p);
		if (!auth_take_hex(p, (size_t)(end - p), v1))
			return false;
		p = end;
		*have_v1 = true;
	} else {
		return false;
	}
	*pp = auth_skip_spaces(p);
	return true;
}

bool auth_parse_signature_header(const char *header, int64_t *t, char *v1_hex,
				 size_t v1_len)
{
	char v1[AUTH_HEX_LEN + 1];
	bool have_t = false, have_v1 = false;
	int64_t tv = 0;
	const char *p = header;

	if (header == NULL || v1_len < sizeof(v1))
		return false;
	if (!auth_parse_part(&p, &have_t, &tv, &have_v1, v1) || *p != ',')
		return false;
	p++;
	if (!auth_parse_part(&p, &have_t, &tv, &have_v1, v1) || *p != '\0')
		return false;
	if (!have_t || !have_v1)
		return false;
	*t = tv;
	memcpy(v1_hex, v1, sizeof(v1));
	return true;
}

/* Keyed HMAC-SHA256 contexts, one per secret in use. The one-shot HMAC()
 * fetched the algorithm and derived the key's pads on every call: about
 * 6 % of alertd's CPU per TCP event and more per HTTP one
 * (docs/BENCHMARKS.md, optimisation 14). A context re-initialised without
 * a key keeps its key (EVP_MAC_init(3)). A secret dropped by a reload
 * is wiped by auth_forget_secrets; the slots are few because the secrets
 * are. */
#define AUTH_MAC_SLOTS 64

static struct auth_mac_slot {
	char *secret;
	EVP_MAC_CTX *ctx;
} auth_mac_slots[AUTH_MAC_SLOTS];
static unsigned auth_mac_next_evict;

static void auth_mac_slot_clear(struct auth_mac_slot *s)
{
	EVP_MAC_CTX_free(s->ctx);
	if (s->secret)
		OPENSSL_clear_free(s->secret, strlen(s->secret));
	*s = (struct auth_mac_slot){0};
}

static EVP_MAC_CTX *auth_mac_keyed(const char *secret)
{
	static EVP_MAC *mac;
	struct auth_mac_slot *s = NULL;
	OSSL_PARAM params[2];
	char digest[] = "SHA256";

	for (size_t i = 0; i < AUTH_MAC_SLOTS; i++) {
		if (auth_mac_slots[i].secret &&
		    strcmp(auth_mac_slots[i].secret, secret) == 0)
			return auth_mac_slots[i].ctx;
		if (!s && !auth_mac_slots[i].secret)
			s = &auth_mac_slots[i];
	}
	if (!mac && !(mac = EVP_MAC_fetch(NULL, "HMAC", NULL)))
		return NULL;
	if (!s) {
		s = &auth_mac_slots[auth_mac_next_evict++ % AUTH_MAC_SLOTS];
		auth_mac_slot_clear(s);
	}
	params[0] = OSSL_PARAM_construct_utf8_string("digest", digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!(s->ctx = EVP_MAC_CTX_new(mac)) ||
	    !EVP_MAC_init(s->ctx, (const unsigned char *)secret,
			  strlen(secret), params) ||
	    !(s->secret = OPENSSL_strdup(secret))) {
		auth_mac_slot_clear(s);
		return NULL;
	}
	return s->ctx;
}

size_t auth_forget_secrets(const struct config *cfg)
{
	size_t kept = 0;

	for (size_t i = 0; i < AUTH_MAC_SLOTS; i++) {
		struct auth_mac_slot *s = &auth_mac_slots[i];
		bool wanted = false;

		if (s->secret == NULL)
			continue;
		for (size_t j = 0; cfg != NULL && j < cfg->n_secrets; j++)
			if (strcmp(cfg->secrets[j].secret, s->secret) == 0)
				wanted = true;
		if (wanted)
			kept++;
		else
			auth_mac_slot_clear(s);
	}
	return kept;
}

/* The signed message's "<t>." prefix; returns its length. */
static size_t auth_signed_prefix(int64_t t, char prefix[AUTH_PREFIX_MAX])
{
	size_t n = numtext_i64(prefix, t);

	prefix[n++] = '.';
	return n;
}

/* HMAC-SHA256(secret, prefix || body) as lowercase hex: the message fed
 * in its two parts rather than copied into one buffer first. */
static bool auth_hmac_hex(const char *secret, const char *prefix, size_t plen,
			  const uint8_t *body, size_t len,
			  char out[AUTH_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	size_t md_len = 0;
	EVP_MAC_CTX *ctx = auth_mac_keyed(secret);

	if (!ctx || !EVP_MAC_init(ctx, NULL, 0, NULL) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)prefix, plen) ||
	    (len > 0 && !EVP_MAC_update(ctx, body, len)) ||
	    !EVP_MAC_final(ctx, md, &md_len, sizeof(md)) ||
	    md_len != AUTH_HEX_LEN / 2)
		return false;
	auth_hex(md, md_len, out);
	OPENSSL_cleanse(md, sizeof(md));
	return true;
}

void auth_sign(const char *secret, int64_t t, const uint8_t *body, size_t len,
	       char out[65])
{
	char prefix[AUTH_PREFIX_MAX];
	size_t plen = auth_signed_prefix(t, prefix);

	if (!auth_hmac_hex(secret, prefix, plen, body, len, out))
		out[0] = '\0';
}

enum auth_sig_result auth_verify(const struct config *cfg, int64_t t,
				 const char *v1_hex, const uint8_t *body,
				 size_t len, time_t now, size_t *secret_index)
{
	char given[AUTH_HEX_LEN + 1], want[AUTH_HEX_LEN + 1];
	char prefix[AUTH_PREFIX_MAX];
	int64_t window = cfg->replay_window_s;
	enum auth_sig_result r = AUTH_SIG_INVALID;
	size_t plen;

	if (v1_hex == NULL || v1_hex[0] == '\0')
		return AUTH_SIG_MISSING;
	if (!auth_take_hex(v1_hex, strlen(v1_hex), given))
		return AUTH_SIG_MALFORMED;
	/* Written so that a hostile t near INT64_MIN/MAX cannot overflow. */
	if (t < (int64_t)now - window || t > (int64_t)now + window)
		return AUTH_SIG_EXPIRED;
	plen = auth_signed_prefix(t, prefix);
	/* Every distinct secret once (a repeat's HMAC was computed already):
	 * the cost of a signature that matches none grows with the number
	 * of distinct secrets (docs/configuration.md). */
	for (size_t i = 0; i < cfg->n_secrets; i++) {
		if (cfg->secrets[i].repeat)
			continue;
		if (!auth_hmac_hex(cfg->secrets[i].secret, prefix, plen, body,
				   len, want))
			continue;
		if (CRYPTO_memcmp(want, given, AUTH_HEX_LEN) == 0) {
			*secret_index = i;
			r = AUTH_SIG_OK;
			break;
		}
	}
	OPENSSL_cleanse(want, sizeof(want));
	return r;
}

bool auth_source_allowed(const struct config *cfg, size_t secret_index,
			 const char *source_id)
{
	const char *want;

	if (secret_index >= cfg->n_secrets || source_id == NULL)
		return false;
	want = config_secret_for(cfg, source_id);
	return want != NULL &&
	       strcmp(cfg->secrets[secret_index].secret, want) == 0;
}

void auth_token_hash(const char *token, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	if (!EVP_Digest(token, strlen(token), md, &md_len, EVP_sha256(), NULL) ||
	    md_len != AUTH_HEX_LEN / 2) {
		out[0] = '\0';
		return;
	}
	auth_hex(md, md_len, out);
}

bool auth_token_new(char out[44])
{
	unsigned char raw[32];
	/* EVP_EncodeBlock writes 4 chars per 3 bytes, padded, NUL-ended. */
	char b64[4 * ((sizeof(raw) + 2) / 3) + 1];
	int n;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return false;
	n = EVP_EncodeBlock((unsigned char *)b64, raw, sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	/* base64 -> base64url without padding (RFC 4648 section 5). */
	while (n > 0 && b64[n - 1] == '=')
		n--;
	if (n != 43)
		return false;
	for (int i = 0; i < n; i++)
		out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	out[n] = '\0';
	OPENSSL_cleanse(b64, sizeof(b64));
	return true;
}

const char *auth_role_name(enum auth_role role)
{
	if ((unsigned)role >= AUTH_ROLE__COUNT)
		return "unknown";
	return auth_role_names[role];
}

bool auth_role_parse(const char *name, enum auth_role *out)
{
	if (name == NULL)
		return false;
	for (int i = 0; i < AUTH_ROLE__COUNT; i++) {
		if (strcmp(auth_role_names[i], name) == 0) {
			*out = (enum auth_role)i;
			return true;
		}
	}
	return false;
}
