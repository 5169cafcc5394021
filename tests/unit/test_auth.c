/* Unit tests of auth: HMAC against vectors computed with the openssl CLI,
 * header parsing, replay window edges, secret patterns, tokens, roles. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "unit.h"

/* printf '%s' "1700000000.{}" | openssl dgst -sha256 -hmac dev-device-secret */
#define VEC_DEV "bfb8a4f65630e95edb501c62d58c044bc29d3776cb95cef2bae44f22ac518b68"
/* printf '%s' "1700000000.hello" | openssl dgst -sha256 -hmac other-secret */
#define VEC_OTHER "2c320f9e0858e70b5053cf2c470aaf10cf575939390a6df7246f8ae9e1071650"
/* printf '1700000000.\x0a\x03abc' | openssl dgst -sha256 -hmac dev-device-secret */
#define VEC_BIN "8e0dd13eff86f756c4b52a188dd69911661ef1f0154117777b40523ec7c099f0"
/* printf '%s' "tok-abc" | openssl dgst -sha256 */
#define VEC_TOKEN "0b9f31c5403adf5a5676eafcf2ed391dec857be4b8d54e9ae0923a3d10f86e47"
/* printf '%s' "" | openssl dgst -sha256 */
#define VEC_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#define T0 ((int64_t)1700000000)

static const uint8_t body_braces[] = "{}";

/* A config with the given secret rules, built by hand. */
struct auth_fixture {
	struct config cfg;
	struct config_secret secrets[4];
};

static void fixture(struct auth_fixture *f, const char *const *rules,
		    size_t n)
{
	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < n; i++) {
		f->secrets[i].pattern = (char *)rules[2 * i];
		f->secrets[i].secret = (char *)rules[2 * i + 1];
	}
	f->cfg.secrets = f->secrets;
	f->cfg.n_secrets = n;
	f->cfg.replay_window_s = 300;
}

TEST(auth_sign_known_vectors)
{
	char out[65];

	auth_sign("dev-device-secret", T0, body_braces, 2, out);
	CHECK_STR(out, VEC_DEV);
	auth_sign("other-secret", T0, (const uint8_t *)"hello", 5, out);
	CHECK_STR(out, VEC_OTHER);
	auth_sign("dev-device-secret", T0, (const uint8_t *)"\n\x03" "abc", 5,
		  out);
	CHECK_STR(out, VEC_BIN);
}

/* More secrets than auth.c keeps keyed contexts for: the evicted ones are
 * keyed again and still sign the same. */
TEST(auth_sign_many_secrets)
{
	char out[65], first[65], secret[32];

	auth_sign("dev-device-secret", T0, body_braces, 2, first);
	CHECK_STR(first, VEC_DEV);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 40; i++) {
			snprintf(secret, sizeof(secret), "secret-%d", i);
			auth_sign(secret, T0, body_braces, 2, out);
			CHECK(strlen(out) == 64);
			CHECK(strcmp(out, first) != 0);
		}
		auth_sign("dev-device-secret", T0, body_braces, 2, out);
		CHECK_STR(out, VEC_DEV);
		auth_sign("other-secret", T0, (const uint8_t *)"hello", 5, out);
		CHECK_STR(out, VEC_OTHER);
	}
}

/* A reload that drops a secret wipes its keyed context; the secrets still
 * configured stay keyed and sign the same. */
TEST(auth_forget_removed_secrets)
{
	static const char *const rules[] = {"bus-*", "dev-device-secret"};
	struct auth_fixture f;
	char out[65];

	fixture(&f, rules, 1);
	auth_forget_secrets(NULL);
	CHECK(auth_forget_secrets(&f.cfg) == 0);
	auth_sign("dev-device-secret", T0, body_braces, 2, out);
	auth_sign("removed-secret", T0, (const uint8_t *)"hello", 5, out);
	CHECK(auth_forget_secrets(&f.cfg) == 1);
	CHECK(auth_forget_secrets(&f.cfg) == 1);
	auth_sign("dev-device-secret", T0, body_braces, 2, out);
	CHECK_STR(out, VEC_DEV);
	auth_sign("removed-secret", T0, (const uint8_t *)"hello", 5, out);
	CHECK(strlen(out) == 64);
	CHECK(auth_forget_secrets(NULL) == 0);
}

TEST(auth_token_hash_known_vectors)
{
	char out[65];

	auth_token_hash("tok-abc", out);
	CHECK_STR(out, VEC_TOKEN);
	auth_token_hash("", out);
	CHECK_STR(out, VEC_EMPTY);
}

TEST(auth_sig_codes)
{
	CHECK_STR(auth_sig_code(AUTH_SIG_MISSING), "signature_missing");
	CHECK_STR(auth_sig_code(AUTH_SIG_MALFORMED), "signature_malformed");
	CHECK_STR(auth_sig_code(AUTH_SIG_EXPIRED), "timestamp_out_of_window");
	CHECK_STR(auth_sig_code(AUTH_SIG_INVALID), "signature_invalid");
}

TEST(auth_parse_header_ok)
{
	char v1[65];
	int64_t t = 0;

	CHECK(auth_parse_signature_header("t=1700000000,v1=" VEC_DEV, &t, v1,
					  sizeof(v1)));
	CHECK(t == T0);
	CHECK_STR(v1, VEC_DEV);
	t = 0;
	CHECK(auth_parse_signature_header("v1=" VEC_DEV ",t=1700000000", &t,
					  v1, sizeof(v1)));
	CHECK(t == T0);
	CHECK(auth_parse_signature_header("  t=1700000000 , v1=" VEC_DEV "  ",
					  &t, v1, sizeof(v1)));
	CHECK_STR(v1, VEC_DEV);
	/* Upper-case hex is accepted and handed back in lower case. */
	CHECK(auth_parse_signature_header(
		"t=0,v1=BFB8A4F65630E95EDB501C62D58C044BC29D3776CB95CEF2BAE44F"
		"22AC518B68",
		&t, v1, sizeof(v1)));
	CHECK(t == 0);
	CHECK_STR(v1, VEC_DEV);
}

TEST(auth_parse_header_rejects)
{
	const char *bad[] = {
		"",
		"t=1700000000",
		"v1=" VEC_DEV,
		"t=1700000000;v1=" VEC_DEV,
		"t=,v1=" VEC_DEV,
		"t=-1,v1=" VEC_DEV,
		"t=12a,v1=" VEC_DEV,
		"t=99999999999999999999,v1=" VEC_DEV, /* int64 overflow */
		"t=1,v1=" VEC_DEV "0",                /* 65 hex */
		"t=1,v1=bfb8a4f65630e95edb501c62d58c044bc29d3776cb95cef2bae44f2"
		"2ac518b6",                            /* 63 hex */
		"t=1,v1=gfb8a4f65630e95edb501c62d58c044bc29d3776cb95cef2bae44f2"
		"2ac518b68",                           /* not hex */
		"t=1,t=2",
		"v1=" VEC_DEV ",v1=" VEC_DEV,
		"t=1,v1=" VEC_DEV ",v2=" VEC_DEV,
		"t = 1,v1=" VEC_DEV,
		"T=1,v1=" VEC_DEV,
		"sha256=" VEC_DEV,
	};
	char v1[65];
	int64_t t;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!auth_parse_signature_header(bad[i], &t, v1, sizeof(v1)));
	CHECK(!auth_parse_signature_header(NULL, &t, v1, sizeof(v1)));
	/* Too small an output buffer. */
	CHECK(!auth_parse_signature_header("t=1,v1=" VEC_DEV, &t, v1, 64));
}

TEST(auth_verify_known_signature)
{
	const char *rules[] = {"*", "dev-device-secret"};
	struct auth_fixture f;
	size_t idx = 99;

	fixture(&f, rules, 1);
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, body_braces, 2, T0, &idx) ==
	      AUTH_SIG_OK);
	CHECK(idx == 0);
	/* A changed body, timestamp or signature does not verify. */
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, (const uint8_t *)"{ }", 3, T0,
			  &idx) == AUTH_SIG_INVALID);
	CHECK(auth_verify(&f.cfg, T0 + 1, VEC_DEV, body_braces, 2, T0, &idx) ==
	      AUTH_SIG_INVALID);
	CHECK(auth_verify(&f.cfg, T0, VEC_OTHER, body_braces, 2, T0, &idx) ==
	      AUTH_SIG_INVALID);
	/* Upper case is the same signature. */
	CHECK(auth_verify(&f.cfg, T0,
			  "BFB8A4F65630E95EDB501C62D58C044BC29D3776CB95CEF2BAE4"
			  "4F22AC518B68",
			  body_braces, 2, T0, &idx) == AUTH_SIG_OK);
}

TEST(auth_verify_missing_and_malformed)
{
	const char *rules[] = {"*", "dev-device-secret"};
	struct auth_fixture f;
	size_t idx;

	fixture(&f, rules, 1);
	CHECK(auth_verify(&f.cfg, T0, "", body_braces, 2, T0, &idx) ==
	      AUTH_SIG_MISSING);
	CHECK(auth_verify(&f.cfg, T0, NULL, body_braces, 2, T0, &idx) ==
	      AUTH_SIG_MISSING);
	CHECK(auth_verify(&f.cfg, T0, "abc", body_braces, 2, T0, &idx) ==
	      AUTH_SIG_MALFORMED);
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV "00", body_braces, 2, T0, &idx) ==
	      AUTH_SIG_MALFORMED);
	/* A malformed signature is reported as such even when stale. */
	CHECK(auth_verify(&f.cfg, 0, "zz", body_braces, 2, T0, &idx) ==
	      AUTH_SIG_MALFORMED);
	/* 64 characters with one that is not a hex digit, wherever it is:
	 * the last, a byte above 0x7f, the first. */
	CHECK(auth_verify(&f.cfg, T0,
			  "bfb8a4f65630e95edb501c62d58c044bc29d3776cb95cef2bae4"
			  "4f22ac518b6g",
			  body_braces, 2, T0, &idx) == AUTH_SIG_MALFORMED);
	CHECK(auth_verify(&f.cfg, T0,
			  "bfb8a4f65630e95edb501c62d58c044bc29d3776cb95cef2bae4"
			  "4f22ac51\xff" "b68",
			  body_braces, 2, T0, &idx) == AUTH_SIG_MALFORMED);
	CHECK(auth_verify(&f.cfg, T0,
			  "Gfb8a4f65630e95edb501c62d58c044bc29d3776cb95cef2bae4"
			  "4f22ac518b68",
			  body_braces, 2, T0, &idx) == AUTH_SIG_MALFORMED);
}

TEST(auth_verify_window_edges)
{
	const char *rules[] = {"*", "dev-device-secret"};
	struct auth_fixture f;
	size_t idx;

	fixture(&f, rules, 1);
	/* |now - t| == window is inside, one second more is out. */
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, body_braces, 2, T0 + 300,
			  &idx) == AUTH_SIG_OK);
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, body_braces, 2, T0 - 300,
			  &idx) == AUTH_SIG_OK);
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, body_braces, 2, T0 + 301,
			  &idx) == AUTH_SIG_EXPIRED);
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, body_braces, 2, T0 - 301,
			  &idx) == AUTH_SIG_EXPIRED);
	/* The window is checked before the HMAC. */
	CHECK(auth_verify(&f.cfg, T0, VEC_OTHER, body_braces, 2, T0 + 301,
			  &idx) == AUTH_SIG_EXPIRED);
	/* Hostile timestamps must not overflow (UBSan watches). */
	CHECK(auth_verify(&f.cfg, INT64_MIN, VEC_DEV, body_braces, 2, T0,
			  &idx) == AUTH_SIG_EXPIRED);
	CHECK(auth_verify(&f.cfg, INT64_MAX, VEC_DEV, body_braces, 2, T0,
			  &idx) == AUTH_SIG_EXPIRED);
	f.cfg.replay_window_s = 10;
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, body_braces, 2, T0 + 11,
			  &idx) == AUTH_SIG_EXPIRED);
}

TEST(auth_verify_picks_matching_rule)
{
	const char *rules[] = {"bus-*",	 "bus-secret",	 "park-*",
			       "other-secret", "*", "dev-device-secret"};
	struct auth_fixture f;
	size_t idx = 99;

	fixture(&f, rules, 3);
	CHECK(auth_verify(&f.cfg, T0, VEC_OTHER, (const uint8_t *)"hello", 5,
			  T0, &idx) == AUTH_SIG_OK);
	CHECK(idx == 1);
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, body_braces, 2, T0, &idx) ==
	      AUTH_SIG_OK);
	CHECK(idx == 2);
}

TEST(auth_verify_duplicate_secret_first_rule)
{
	const char *rules[] = {"bus-*", "dev-device-secret", "*",
			       "dev-device-secret"};
	struct auth_fixture f;
	size_t idx = 99;

	fixture(&f, rules, 2);
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, body_braces, 2, T0, &idx) ==
	      AUTH_SIG_OK);
	CHECK(idx == 0);
}

TEST(auth_verify_no_secrets)
{
	struct auth_fixture f;
	size_t idx;

	fixture(&f, NULL, 0);
	CHECK(auth_verify(&f.cfg, T0, VEC_DEV, body_braces, 2, T0, &idx) ==
	      AUTH_SIG_INVALID);
}

TEST(auth_source_allowed_patterns)
{
	const char *rules[] = {"bus-*",	 "bus-secret", "park-*",
			       "other-secret", "*", "dev-device-secret"};
	struct auth_fixture f;

	fixture(&f, rules, 3);
	CHECK(auth_source_allowed(&f.cfg, 0, "bus-1436"));
	CHECK(!auth_source_allowed(&f.cfg, 0, "park-7"));
	CHECK(auth_source_allowed(&f.cfg, 1, "park-7"));
	CHECK(!auth_source_allowed(&f.cfg, 2, "bus-1436"));
	CHECK(auth_source_allowed(&f.cfg, 2, "ferry-3"));
	CHECK(!auth_source_allowed(&f.cfg, 3, "ferry-3")); /* no such rule */
	CHECK(!auth_source_allowed(&f.cfg, 0, NULL));
}

TEST(auth_source_allowed_same_secret_other_rule)
{
	/* What matters is the secret, not which rule matched first. */
	const char *rules[] = {"bus-*", "shared", "*", "shared"};
	const char *only_bus[] = {"bus-*", "bus-secret"};
	struct auth_fixture f;

	fixture(&f, rules, 2);
	CHECK(auth_source_allowed(&f.cfg, 0, "park-1"));
	CHECK(auth_source_allowed(&f.cfg, 1, "bus-1"));
	/* A source that no pattern matches has no secret. */
	fixture(&f, only_bus, 1);
	CHECK(!auth_source_allowed(&f.cfg, 0, "park-1"));
}

static bool is_base64url(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	return true;
}

TEST(auth_token_new_shape)
{
	char a[44], b[44];

	REQUIRE(auth_token_new(a));
	REQUIRE(auth_token_new(b));
	CHECK(strlen(a) == 43 && strlen(b) == 43);
	CHECK(is_base64url(a) && is_base64url(b));
	CHECK(strcmp(a, b) != 0);
}

TEST(auth_roles)
{
	const char *names[] = {"operator", "supervisor", "auditor", "admin"};

	for (int i = 0; i < AUTH_ROLE__COUNT; i++) {
		enum auth_role r = AUTH_ROLE__COUNT;

		CHECK_STR(auth_role_name((enum auth_role)i), names[i]);
		CHECK(auth_role_parse(names[i], &r) && (int)r == i);
	}
	{
		enum auth_role r;

		CHECK(!auth_role_parse("root", &r));
		CHECK(!auth_role_parse("Admin", &r));
		CHECK(!auth_role_parse(NULL, &r));
	}
}
