/* Tokens: strict HS256 JWT verification; re-signing keeps header and claims byte for byte. */
#ifndef SFU_TOKEN_H
#define SFU_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Longer tokens are rejected before any decoding (libjwt crashed on 16 MB). */
#define TOKEN_MAX_LEN 8192
#define TOKEN_ISS_MAX 1024
#define TOKEN_ADDRESS_MAX 256
/* Room for a "sha256" claim: base64url of 32 bytes is 43 characters. */
#define TOKEN_SHA256_MAX 64
/* The largest "seq" read: JavaScript's largest safe integer, 2^53 - 1. */
#define TOKEN_SEQ_MAX UINT64_C(9007199254740991)

enum token_status {
	TOKEN_OK = 0,
	TOKEN_TOO_LONG, /* over TOKEN_MAX_LEN */
	TOKEN_MALFORMED, /* not 3 segments, bad base64, header/claims not a JSON object */
	TOKEN_BAD_ALG, /* header alg is not exactly "HS256" (none, HS512, RS256...) */
	TOKEN_BAD_SIGNATURE, /* HMAC-SHA256 mismatch (constant-time compare) */
	TOKEN_EXPIRED, /* exp < now */
	TOKEN_NOT_YET_VALID, /* nbf > now */
	TOKEN_IAT_FUTURE, /* iat > now + 60 */
	TOKEN_BAD_CLAIM, /* exp/nbf/iat present but not a number */
	TOKEN_NO_ISS, /* no "iss" string claim, or an empty one (the SFU answers 403) */
};

/* What verification learnt; the token text itself stays in the caller's buffer. */
struct token {
	size_t signed_len; /* length of "header.payload" at the start of the token */
	bool has_exp, has_nbf, has_iat;
	int64_t exp, nbf, iat; /* seconds; floats are truncated toward zero */
	char iss[TOKEN_ISS_MAX]; /* "" when absent; only checked when require_iss */
	size_t iss_len;
	char address[TOKEN_ADDRESS_MAX]; /* "address" claim when a string, else "" */
	/* A heartbeat's binding to its body and its place in the SFU's sequence. They
	 * are reported, never checked here: only heartbeat.c requires them. */
	bool has_sha256; /* a "sha256" member is present (whatever its type) */
	char sha256[TOKEN_SHA256_MAX]; /* its string when it fits and holds no NUL, else "" */
	bool has_seq; /* a "seq" member is present (whatever its type) */
	bool seq_valid; /* it is a whole number 1..TOKEN_SEQ_MAX written in plain digits */
	uint64_t seq; /* its value when seq_valid, else 0 */
};

/*
 * Verifies tok (len bytes, need not be NUL-terminated) as odoo/sfu would:
 * three segments; header and claims in either base64 alphabet, padded or not,
 * each decoding to a JSON object; header "alg" exactly "HS256"; signature
 * (either alphabet, padded or not) equal to HMAC-SHA256(key, "header.payload")
 * compared in constant time; then exp < now, nbf > now, iat > now + 60 reject.
 * Order: length (TOKEN_TOO_LONG), segments (empty header or payload, 2 or 4
 * segments: TOKEN_MALFORMED), header, signature, claims, iss. A signature segment
 * that is empty, not base64 or not 32 bytes is TOKEN_BAD_SIGNATURE, like a wrong one.
 * JSON is parsed strictly (like JSON.parse: no comments, trailing commas or garbage);
 * duplicate members: the last wins, as in JSON.parse.
 * When require_iss, a missing, empty or non-string iss gives TOKEN_NO_ISS (after every
 * other check passed). An iss longer than TOKEN_ISS_MAX - 1 bytes is truncated
 * (iss_len is the truncated length); "address" is left "" when it is not a string,
 * does not fit in TOKEN_ADDRESS_MAX - 1 bytes or holds a NUL; "sha256" and "seq"
 * are reported as struct token describes, for heartbeats.
 * key_len must be > 0 (an empty key is refused: TOKEN_BAD_SIGNATURE).
 * Returns an enum token_status; *out (may be NULL) is filled on TOKEN_OK and TOKEN_NO_ISS.
 * Allocates only inside json-c; keyed HMAC contexts are cached per process.
 */
int token_verify(const char *tok, size_t len, const uint8_t *key, size_t key_len, int64_t now,
		 bool require_iss, struct token *out);

/*
 * Re-signs a verified token for another key: copies the first signed_len bytes
 * of tok unchanged, then '.', then base64url(HMAC-SHA256(key, those bytes)) without
 * padding, then a NUL. out may be tok itself (in place). Returns the length written,
 * -ENOSPC, -EINVAL (NULL argument or empty key) or -EIO (OpenSSL failed).
 */
ssize_t token_resign(const char *tok, size_t signed_len, const uint8_t *key, size_t key_len,
		     char *out, size_t outcap);

/* Builds a token {"alg":"HS256","typ":"JWT"}.<claims_json>.<sig>, all base64url
 * unpadded, for the agent and tests. claims_json is not checked. Returns the length,
 * -ENOSPC, -EINVAL (NULL argument or empty key) or -EIO. */
ssize_t token_sign(const char *claims_json, const uint8_t *key, size_t key_len, char *out,
		   size_t outcap);

/* HMAC-SHA256 of data into out[32] (an empty key is valid here). 0 or -EIO. */
int token_hmac_sha256(const uint8_t *key, size_t key_len, const void *data, size_t len,
		      uint8_t out[32]);

/* Short English reason for logs (never contains token material). */
const char *token_status_str(int status);

#endif
