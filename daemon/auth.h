/* auth: device signatures (HMAC-SHA256 with a replay window) and operator
 * token hashing. Pure functions over the config; no I/O. */
#ifndef ALERTD_AUTH_H
#define ALERTD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;

enum auth_sig_result {
	AUTH_SIG_OK = 0,
	AUTH_SIG_MISSING,   /* "signature_missing" */
	AUTH_SIG_MALFORMED, /* "signature_malformed" */
	AUTH_SIG_EXPIRED,   /* "timestamp_out_of_window" */
	AUTH_SIG_INVALID,   /* "signature_invalid" */
};

/* The contract error code of a result ("signature_missing", ...). */
const char *auth_sig_code(enum auth_sig_result r);

/* Parses an X-Alertd-Signature value "t=<unix seconds>,v1=<64 hex>" (order
 * of the two parts free, surrounding spaces allowed). */
bool auth_parse_signature_header(const char *header, int64_t *t, char *v1_hex,
				 size_t v1_len);

/* Verifies a signature before the body is parsed: checks the replay window
 * of cfg against `now`, then computes HMAC-SHA256(secret, "<t>.<body>") for
 * every distinct secret of cfg's [device_secrets] and compares in constant
 * time. On AUTH_SIG_OK, *secret_index is the index of the matching secret
 * rule, to be checked against the source with auth_source_allowed() once
 * the body is decoded. */
enum auth_sig_result auth_verify(const struct config *cfg, int64_t t,
				 const char *v1_hex, const uint8_t *body,
				 size_t len, time_t now, size_t *secret_index);

/* Wipes the keyed HMAC contexts (and copies) of secrets that cfg's
 * [device_secrets] no longer has, so that a secret removed by a reload
 * does not stay in memory; NULL wipes them all. Returns how many are
 * kept. */
size_t auth_forget_secrets(const struct config *cfg);

/* true if the secret that signed (secret_index) is the secret configured for
 * source_id (first [device_secrets] pattern that matches source_id). */
bool auth_source_allowed(const struct config *cfg, size_t secret_index,
			 const char *source_id);

/* Lower-case hex HMAC-SHA256 of "<t>.<body>" into out (>= 65 bytes). Used by
 * the tests and tools that sign. */
void auth_sign(const char *secret, int64_t t, const uint8_t *body, size_t len,
	       char out[65]);

/* Lower-case hex SHA-256 of an operator token into out (>= 65 bytes): what
 * PostgreSQL stores instead of the token. */
void auth_token_hash(const char *token, char out[65]);

/* A new random operator token (43 chars of base64url, 256 bits) into out
 * (>= 44 bytes). false if the random source failed. */
bool auth_token_new(char out[44]) __attribute__((warn_unused_result));

enum auth_role {
	AUTH_ROLE_OPERATOR = 0,
	AUTH_ROLE_SUPERVISOR,
	AUTH_ROLE_AUDITOR,
	AUTH_ROLE_ADMIN,
	AUTH_ROLE__COUNT
};
const char *auth_role_name(enum auth_role role);
bool auth_role_parse(const char *name, enum auth_role *out);

#endif
