/* Tokens: strict HS256 JWT verification, signing and re-signing, with a per-process HMAC cache. */
#include "token.h"

#include "base64.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include <json.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#define TOKEN_SIG_LEN 32
/* The SFU tolerates an "iat" up to this many seconds ahead of its clock. */
#define TOKEN_IAT_LEEWAY 60
/* Decoded header or claims never exceed this, since the whole token is capped. */
#define TOKEN_JSON_MAX BASE64_DECODED_MAX(TOKEN_MAX_LEN)
/* A gateway talks to a handful of keys (its own, the registration key, one per SFU). */
#define TOKEN_MAC_SLOTS 8
/* Longer keys are valid but not cached; they take the one-shot HMAC path. */
#define TOKEN_MAC_KEY_MAX 256

static const char token_header_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* One keyed HMAC-SHA256 context; re-initialising it without the key is 4x faster
 * than keying a fresh one, and HMAC runs on every request. */
struct token_mac_slot {
	EVP_MAC_CTX *ctx;
	size_t key_len;
	uint8_t key[TOKEN_MAC_KEY_MAX];
};

/*
 * Per-process state, created lazily. The daemon's processes are single-threaded, so
 * no locking; pid tells whether this copy was inherited through fork(), in which
 * case the contexts are dropped and rebuilt rather than shared in spirit with the
 * parent.
 */
static struct {
	pid_t pid;
	EVP_MAC *mac;
	unsigned next_slot;
	struct token_mac_slot slots[TOKEN_MAC_SLOTS];
	struct json_tokener *json;
} token_state;

static void token_mac_slot_clear(struct token_mac_slot *slot)
{
	EVP_MAC_CTX_free(slot->ctx);
	slot->ctx = NULL;
	OPENSSL_cleanse(slot->key, sizeof(slot->key));
	slot->key_len = 0;
}

/* Forgets the contexts inherited from a parent process, once per process. */
static void token_state_check_fork(void)
{
	pid_t pid = getpid();

	if (token_state.pid == pid)
		return;
	for (unsigned i = 0; i < TOKEN_MAC_SLOTS; i++)
		token_mac_slot_clear(&token_state.slots[i]);
	token_state.next_slot = 0;
	token_state.pid = pid;
}

/* Returns a context keyed with key, from the cache or newly made, or NULL when the
 * key is not cacheable or OpenSSL failed (the caller then uses one-shot HMAC). */
static EVP_MAC_CTX *token_mac_ctx(const uint8_t *key, size_t key_len)
{
	OSSL_PARAM params[2];
	struct token_mac_slot *slot;
	EVP_MAC_CTX *ctx;

	/* EVP_MAC_init() reads a NULL or empty key as "keep the previous key", so an
	 * empty key must never reach a context. */
	if (key_len == 0 || key_len > TOKEN_MAC_KEY_MAX)
		return NULL;
	token_state_check_fork();
	for (unsigned i = 0; i < TOKEN_MAC_SLOTS; i++) {
		slot = &token_state.slots[i];
		if (slot->ctx != NULL && slot->key_len == key_len &&
		    CRYPTO_memcmp(slot->key, key, key_len) == 0)
			return slot->ctx;
	}
	if (token_state.mac == NULL)
		token_state.mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (token_state.mac == NULL)
		return NULL;
	ctx = EVP_MAC_CTX_new(token_state.mac);
	if (ctx == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
		EVP_MAC_CTX_free(ctx);
		return NULL;
	}
	slot = &token_state.slots[token_state.next_slot];
	token_state.next_slot = (token_state.next_slot + 1) % TOKEN_MAC_SLOTS;
	token_mac_slot_clear(slot);
	slot->ctx = ctx;
	memcpy(slot->key, key, key_len);
	slot->key_len = key_len;
	return ctx;
}

/* Drops the cache slot holding ctx, so a context in an unknown state is not reused. */
static void token_mac_forget(EVP_MAC_CTX *ctx)
{
	for (unsigned i = 0; i < TOKEN_MAC_SLOTS; i++)
		if (token_state.slots[i].ctx == ctx)
			token_mac_slot_clear(&token_state.slots[i]);
}

int token_hmac_sha256(const uint8_t *key, size_t key_len, const void *data, size_t len,
		      uint8_t out[32])
{
	static const uint8_t empty_key;
	EVP_MAC_CTX *ctx = token_mac_ctx(key, key_len);
	unsigned int md_len = 0;
	size_t out_len = 0;

	if (ctx != NULL) {
		if (EVP_MAC_init(ctx, NULL, 0, NULL) == 1 && EVP_MAC_update(ctx, data, len) == 1 &&
		    EVP_MAC_final(ctx, out, &out_len, TOKEN_SIG_LEN) == 1 &&
		    out_len == TOKEN_SIG_LEN)
			return 0;
		token_mac_forget(ctx);
	}
	if (key_len > INT_MAX || (key == NULL && key_len > 0))
		return -EIO;
	/* HMAC() wants a non-NULL pointer even for the (valid) empty key. */
	if (HMAC(EVP_sha256(), key_len > 0 ? key : &empty_key, (int)key_len, data, len, out,
		 &md_len) == NULL ||
	    md_len != TOKEN_SIG_LEN) {
		log_error("token: HMAC-SHA256 failed in OpenSSL");
		return -EIO;
	}
	return 0;
}

/*
 * Parses len bytes as exactly one JSON object, with only whitespace around it.
 * Strict mode because the SFU uses JSON.parse: no comments, trailing commas, True.
 * Returns a new reference, or NULL.
 */
static struct json_object *token_parse_object(const uint8_t *buf, size_t len)
{
	struct json_object *obj;

	if (len > INT_MAX)
		return NULL;
	if (token_state.json == NULL) {
		token_state.json = json_tokener_new();
		if (token_state.json == NULL) {
			log_error("token: out of memory for the JSON tokener");
			return NULL;
		}
		json_tokener_set_flags(token_state.json, JSON_TOKENER_STRICT);
	}
	json_tokener_reset(token_state.json);
	obj = json_tokener_parse_ex(token_state.json, (const char *)buf, (int)len);
	/* An incomplete document gives NULL with json_tokener_continue, and a NUL byte
	 * after the object stops the parser early: parse_end must reach len. */
	if (obj == NULL || json_tokener_get_error(token_state.json) != json_tokener_success ||
	    json_tokener_get_parse_end(token_state.json) != len ||
	    !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return NULL;
	}
	return obj;
}

/* True when the header object says "alg": "HS256", exactly (case and all). */
static bool token_header_is_hs256(struct json_object *header)
{
	struct json_object *alg;

	if (!json_object_object_get_ex(header, "alg", &alg) ||
	    !json_object_is_type(alg, json_type_string))
		return false;
	return json_object_get_string_len(alg) == 5 &&
	       memcmp(json_object_get_string(alg), "HS256", 5) == 0;
}

/*
 * Reads the optional time claim name: absent leaves *has false; a JSON integer or
 * float (truncated toward zero, clamped to the int64 range) sets it. Any other type,
 * null included, or NaN, returns -EINVAL.
 */
static int token_time_claim(struct json_object *claims, const char *name, bool *has,
			    int64_t *value)
{
	struct json_object *v;
	double d;

	*has = false;
	*value = 0;
	if (!json_object_object_get_ex(claims, name, &v))
		return 0;
	switch (json_object_get_type(v)) {
	case json_type_int:
		/* json-c clamps integers beyond int64 to its bounds: fine for times. */
		*value = json_object_get_int64(v);
		break;
	case json_type_double:
		d = json_object_get_double(v);
		if (isnan(d))
			return -EINVAL;
		if (d >= 9223372036854775807.0)
			*value = INT64_MAX;
		else if (d <= -9223372036854775807.0)
			*value = INT64_MIN;
		else
			*value = (int64_t)d;
		break;
	default:
		return -EINVAL;
	}
	*has = true;
	return 0;
}

/* Copies the string claim name into buf (cap bytes with the NUL). A longer value is
 * truncated when truncate, else left out. Returns true when a string was present. */
static bool token_string_claim(struct json_object *claims, const char *name, char *buf,
			       size_t cap, bool truncate, size_t *len_out)
{
	struct json_object *v;
	size_t len;

	buf[0] = '\0';
	*len_out = 0;
	if (!json_object_object_get_ex(claims, name, &v) ||
	    !json_object_is_type(v, json_type_string))
		return false;
	len = (size_t)json_object_get_string_len(v);
	if (len >= cap) {
		if (!truncate)
			return true;
		len = cap - 1;
	}
	memcpy(buf, json_object_get_string(v), len);
	buf[len] = '\0';
	*len_out = len;
	return true;
}

/* Checks exp, nbf and iat against now: types first, then the SFU's three rules. */
static int token_check_times(struct json_object *claims, int64_t now, struct token *out)
{
	if (token_time_claim(claims, "exp", &out->has_exp, &out->exp) < 0 ||
	    token_time_claim(claims, "nbf", &out->has_nbf, &out->nbf) < 0 ||
	    token_time_claim(claims, "iat", &out->has_iat, &out->iat) < 0)
		return TOKEN_BAD_CLAIM;
	if (out->has_exp && out->exp < now)
		return TOKEN_EXPIRED;
	if (out->has_nbf && out->nbf > now)
		return TOKEN_NOT_YET_VALID;
	/* Written without now + 60, which could overflow. */
	if (out->has_iat && out->iat > now && (uint64_t)out->iat - (uint64_t)now > TOKEN_IAT_LEEWAY)
		return TOKEN_IAT_FUTURE;
	return TOKEN_OK;
}

/*
 * Everything after a good signature: the claims must decode to a JSON object, the
 * times must be numbers that pass, then iss (truncated to TOKEN_ISS_MAX - 1 bytes:
 * the SFU accepts any length, and iss only keys affinity, where two issuers sharing
 * a 1023-byte prefix merely share an SFU) and address (left "" when it does not fit
 * or holds a NUL, so that it can never compare equal to a truncated address).
 */
static int token_check_claims(const char *seg, size_t seg_len, int64_t now, bool require_iss,
			      struct token *out)
{
	uint8_t buf[TOKEN_JSON_MAX];
	struct json_object *claims;
	size_t addr_len;
	ssize_t n;
	bool has_iss;
	int rc;

	n = base64_decode(seg, seg_len, buf, sizeof(buf));
	if (n < 0)
		return TOKEN_MALFORMED;
	claims = token_parse_object(buf, (size_t)n);
	if (claims == NULL)
		return TOKEN_MALFORMED;
	rc = token_check_times(claims, now, out);
	if (rc != TOKEN_OK)
		goto out;
	has_iss = token_string_claim(claims, "iss", out->iss, sizeof(out->iss), true,
				     &out->iss_len);
	if (token_string_claim(claims, "address", out->address, sizeof(out->address), false,
			       &addr_len) &&
	    memchr(out->address, '\0', addr_len) != NULL)
		out->address[0] = '\0';
	if (require_iss && !has_iss)
		rc = TOKEN_NO_ISS;
out:
	json_object_put(claims);
	return rc;
}

/* Decodes the header segment and requires a JSON object with alg "HS256". */
static int token_check_header(const char *seg, size_t seg_len)
{
	uint8_t buf[TOKEN_JSON_MAX];
	struct json_object *header;
	ssize_t n;
	int rc;

	n = base64_decode(seg, seg_len, buf, sizeof(buf));
	if (n < 0)
		return TOKEN_MALFORMED;
	header = token_parse_object(buf, (size_t)n);
	if (header == NULL)
		return TOKEN_MALFORMED;
	rc = token_header_is_hs256(header) ? TOKEN_OK : TOKEN_BAD_ALG;
	json_object_put(header);
	return rc;
}

/*
 * Any signature segment that is not the right HMAC is a bad signature: empty, not
 * base64, not 32 bytes or not equal. Unused low bits of the last character are
 * ignored, as Node's decoder does, so the SFU and the gateway agree.
 */
static int token_check_signature(const char *tok, size_t signed_len, const char *seg,
				 size_t seg_len, const uint8_t *key, size_t key_len)
{
	uint8_t sig[TOKEN_SIG_LEN], mac[TOKEN_SIG_LEN];
	ssize_t n;

	if (key == NULL || key_len == 0)
		return TOKEN_BAD_SIGNATURE;
	n = base64_decode(seg, seg_len, sig, sizeof(sig));
	if (n != TOKEN_SIG_LEN)
		return TOKEN_BAD_SIGNATURE;
	if (token_hmac_sha256(key, key_len, tok, signed_len, mac) < 0)
		return TOKEN_BAD_SIGNATURE;
	return CRYPTO_memcmp(sig, mac, TOKEN_SIG_LEN) == 0 ? TOKEN_OK : TOKEN_BAD_SIGNATURE;
}

int token_verify(const char *tok, size_t len, const uint8_t *key, size_t key_len, int64_t now,
		 bool require_iss, struct token *out)
{
	const char *dot1, *dot2, *payload, *sig;
	struct token scratch;
	size_t header_len, payload_len, sig_len;
	int rc;

	if (len > TOKEN_MAX_LEN)
		return TOKEN_TOO_LONG;
	if (out == NULL)
		out = &scratch;
	memset(out, 0, offsetof(struct token, iss));
	out->iss[0] = '\0';
	out->iss_len = 0;
	out->address[0] = '\0';
	if (tok == NULL || len == 0)
		return TOKEN_MALFORMED;

	dot1 = memchr(tok, '.', len);
	if (dot1 == NULL)
		return TOKEN_MALFORMED;
	payload = dot1 + 1;
	dot2 = memchr(payload, '.', len - (size_t)(payload - tok));
	if (dot2 == NULL)
		return TOKEN_MALFORMED;
	sig = dot2 + 1;
	sig_len = len - (size_t)(sig - tok);
	if (memchr(sig, '.', sig_len) != NULL)
		return TOKEN_MALFORMED;
	header_len = (size_t)(dot1 - tok);
	payload_len = (size_t)(dot2 - payload);
	if (header_len == 0 || payload_len == 0)
		return TOKEN_MALFORMED;

	rc = token_check_header(tok, header_len);
	if (rc != TOKEN_OK)
		return rc;
	out->signed_len = (size_t)(dot2 - tok);
	rc = token_check_signature(tok, out->signed_len, sig, sig_len, key, key_len);
	if (rc != TOKEN_OK)
		return rc;
	return token_check_claims(payload, payload_len, now, require_iss, out);
}

ssize_t token_resign(const char *tok, size_t signed_len, const uint8_t *key, size_t key_len,
		     char *out, size_t outcap)
{
	const size_t sig_chars = BASE64URL_ENCODED_LEN(TOKEN_SIG_LEN);
	uint8_t mac[TOKEN_SIG_LEN];

	if (tok == NULL || out == NULL || key == NULL || key_len == 0)
		return -EINVAL;
	if (signed_len > SIZE_MAX - sig_chars - 2 || outcap < signed_len + sig_chars + 2)
		return -ENOSPC;
	/* The MAC comes first so that out may be tok itself (re-signing in place). */
	if (token_hmac_sha256(key, key_len, tok, signed_len, mac) < 0)
		return -EIO;
	memmove(out, tok, signed_len);
	out[signed_len] = '.';
	if (base64url_encode(mac, TOKEN_SIG_LEN, out + signed_len + 1, outcap - signed_len - 1) !=
	    (ssize_t)sig_chars)
		return -EIO;
	return (ssize_t)(signed_len + 1 + sig_chars);
}

ssize_t token_sign(const char *claims_json, const uint8_t *key, size_t key_len, char *out,
		   size_t outcap)
{
	const size_t header_json_len = sizeof(token_header_json) - 1;
	const size_t header_chars = BASE64URL_ENCODED_LEN(header_json_len);
	size_t claims_len, claims_chars;
	ssize_t n;

	if (claims_json == NULL || out == NULL || key == NULL || key_len == 0)
		return -EINVAL;
	claims_len = strlen(claims_json);
	if (claims_len > SIZE_MAX / 2)
		return -ENOSPC;
	claims_chars = BASE64URL_ENCODED_LEN(claims_len);
	if (outcap < header_chars + 1 + claims_chars + 1 + BASE64URL_ENCODED_LEN(TOKEN_SIG_LEN) + 1)
		return -ENOSPC;
	n = base64url_encode((const uint8_t *)token_header_json, header_json_len, out, outcap);
	if (n != (ssize_t)header_chars)
		return -EIO;
	out[header_chars] = '.';
	n = base64url_encode((const uint8_t *)claims_json, claims_len, out + header_chars + 1,
			     outcap - header_chars - 1);
	if (n != (ssize_t)claims_chars)
		return -EIO;
	return token_resign(out, header_chars + 1 + claims_chars, key, key_len, out, outcap);
}

const char *token_status_str(int status)
{
	switch (status) {
	case TOKEN_OK:
		return "ok";
	case TOKEN_TOO_LONG:
		return "token too long";
	case TOKEN_MALFORMED:
		return "malformed token";
	case TOKEN_BAD_ALG:
		return "algorithm is not HS256";
	case TOKEN_BAD_SIGNATURE:
		return "bad signature";
	case TOKEN_EXPIRED:
		return "token expired";
	case TOKEN_NOT_YET_VALID:
		return "token not yet valid (nbf)";
	case TOKEN_IAT_FUTURE:
		return "token issued in the future (iat)";
	case TOKEN_BAD_CLAIM:
		return "exp, nbf or iat is not a number";
	case TOKEN_NO_ISS:
		return "no iss claim";
	default:
		return "unknown token status";
	}
}
