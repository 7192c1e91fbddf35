/* Tokens: strict HS256 JWT verification, signing and re-signing, with a per-process HMAC cache. */
#include "token.h"

#include "base64.h"
#include "jscan.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

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
 * no locking; forked (set by a pthread_atfork child handler) tells whether this
 * copy was inherited through fork(), in which case the contexts are dropped and
 * rebuilt rather than shared in spirit with the parent.
 */
static struct {
	int atfork, forked;
	EVP_MAC *mac;
	unsigned next_slot;
	struct token_mac_slot slots[TOKEN_MAC_SLOTS];
} token_state;

static void token_mac_slot_clear(struct token_mac_slot *slot)
{
	EVP_MAC_CTX_free(slot->ctx);
	slot->ctx = NULL;
	OPENSSL_cleanse(slot->key, sizeof(slot->key));
	slot->key_len = 0;
}

/* Forgets the contexts inherited from a parent process, once per process. */
/* In a child after fork(): the inherited contexts are dropped at next use. */
static void token_after_fork(void)
{
	token_state.forked = 1;
}

static void token_state_check_fork(void)
{
	/* A fork() handler instead of comparing getpid() on every call: that
	 * was two system calls per channel request. */
	if (!token_state.atfork) {
		pthread_atfork(NULL, NULL, token_after_fork);
		token_state.atfork = 1;
	}
	if (!token_state.forked)
		return;
	for (unsigned i = 0; i < TOKEN_MAC_SLOTS; i++)
		token_mac_slot_clear(&token_state.slots[i]);
	token_state.next_slot = 0;
	token_state.forked = 0;
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
 * The members a token check reads, as the last occurrence of each (duplicate
 * keys: last wins, as with the SFU's JSON.parse). Pointers into the decoded
 * segment, which outlives the check.
 */
struct token_fields {
	struct jscan_member alg, exp, nbf, iat, iss, address, sha256, seq;
	bool has_alg, has_exp, has_nbf, has_iat, has_iss, has_address, has_sha256, has_seq;
};

static int token_collect(const struct jscan_member *m, void *ctx)
{
	struct token_fields *f = ctx;

#define TOKEN_FIELD(name)                  \
	if (jscan_key_is(m, #name)) {      \
		f->name = *m;              \
		f->has_##name = true;      \
		return 0;                  \
	}
	TOKEN_FIELD(alg)
	TOKEN_FIELD(exp)
	TOKEN_FIELD(nbf)
	TOKEN_FIELD(iat)
	TOKEN_FIELD(iss)
	TOKEN_FIELD(address)
	TOKEN_FIELD(sha256)
	TOKEN_FIELD(seq)
#undef TOKEN_FIELD
	return 0;
}

/* Decodes a segment and scans it as exactly one JSON object (strict RFC 8259
 * grammar, as JSON.parse): no comments, no trailing commas, nothing after. */
static int token_scan_segment(const char *seg, size_t seg_len, uint8_t *buf, size_t cap,
			      struct token_fields *f)
{
	ssize_t n = base64_decode(seg, seg_len, buf, cap);

	memset(f, 0, sizeof(*f));
	if (n < 0 || jscan_object((const char *)buf, (size_t)n, token_collect, f) != 0)
		return TOKEN_MALFORMED;
	return TOKEN_OK;
}

/*
 * Reads the optional time claim: absent leaves *has false; a JSON number
 * (truncated toward zero, clamped to the int64 range) sets it. Any other type,
 * null included, returns -EINVAL.
 */
static int token_time_claim(const struct jscan_member *m, bool present, bool *has, int64_t *value)
{
	*has = false;
	*value = 0;
	if (!present)
		return 0;
	if (jscan_int64(m, value) != 0)
		return -EINVAL;
	*has = true;
	return 0;
}

/* Checks exp, nbf and iat against now: types first, then the SFU's three rules. */
static int token_check_times(const struct token_fields *f, int64_t now, struct token *out)
{
	if (token_time_claim(&f->exp, f->has_exp, &out->has_exp, &out->exp) < 0 ||
	    token_time_claim(&f->nbf, f->has_nbf, &out->has_nbf, &out->nbf) < 0 ||
	    token_time_claim(&f->iat, f->has_iat, &out->has_iat, &out->iat) < 0)
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
 * A heartbeat's "seq": a whole number written in plain digits (no sign, fraction or
 * exponent), 1 to TOKEN_SEQ_MAX, so that every sender's number reads the same here
 * as in JavaScript. 0, or -EINVAL.
 */
static int token_seq_claim(const struct jscan_member *m, uint64_t *out)
{
	uint64_t v = 0;

	if (m->type != JSCAN_NUMBER || m->val_len == 0 || m->val_len > 16)
		return -EINVAL;
	for (size_t i = 0; i < m->val_len; i++) {
		if (m->val[i] < '0' || m->val[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(m->val[i] - '0');
	}
	if (v == 0 || v > TOKEN_SEQ_MAX)
		return -EINVAL;
	*out = v;
	return 0;
}

/* The heartbeat claims "sha256" and "seq", as struct token describes them. */
static void token_heartbeat_claims(const struct token_fields *f, struct token *out)
{
	char tmp[TOKEN_SHA256_MAX];
	ssize_t n;

	out->has_sha256 = f->has_sha256;
	if (f->has_sha256 && f->sha256.type == JSCAN_STRING) {
		n = jscan_string(&f->sha256, tmp, sizeof(tmp));
		if (n >= 0 && memchr(tmp, '\0', (size_t)n) == NULL)
			memcpy(out->sha256, tmp, (size_t)n + 1);
	}
	out->has_seq = f->has_seq;
	out->seq_valid = f->has_seq && token_seq_claim(&f->seq, &out->seq) == 0;
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
	char tmp[TOKEN_JSON_MAX];
	struct token_fields f;
	ssize_t n;
	int rc;

	rc = token_scan_segment(seg, seg_len, buf, sizeof(buf), &f);
	if (rc != TOKEN_OK)
		return rc;
	rc = token_check_times(&f, now, out);
	if (rc != TOKEN_OK)
		return rc;
	out->iss[0] = out->address[0] = '\0';
	out->iss_len = 0;
	if (f.has_iss && f.iss.type == JSCAN_STRING) {
		n = jscan_string(&f.iss, tmp, sizeof(tmp));
		if (n < 0) {
			/* A lone surrogate: keep the raw text, iss only keys affinity. */
			n = (ssize_t)(f.iss.val_len < sizeof(tmp) - 1 ? f.iss.val_len : sizeof(tmp) - 1);
			memcpy(tmp, f.iss.val, (size_t)n);
		}
		out->iss_len = (size_t)n < sizeof(out->iss) ? (size_t)n : sizeof(out->iss) - 1;
		memcpy(out->iss, tmp, out->iss_len);
		out->iss[out->iss_len] = '\0';
		/* The SFU refuses an empty issuer as it refuses a missing one (403):
		 * forwarding it would only make every SFU answer so. */
		if (require_iss && n == 0)
			return TOKEN_NO_ISS;
	} else if (require_iss) {
		return TOKEN_NO_ISS;
	}
	if (f.has_address && f.address.type == JSCAN_STRING) {
		n = jscan_string(&f.address, tmp, sizeof(out->address));
		if (n >= 0 && memchr(tmp, '\0', (size_t)n) == NULL)
			memcpy(out->address, tmp, (size_t)n + 1);
	}
	token_heartbeat_claims(&f, out);
	return TOKEN_OK;
}

/* Decodes the header segment and requires a JSON object with alg "HS256". */
static int token_check_header(const char *seg, size_t seg_len)
{
	uint8_t buf[TOKEN_JSON_MAX];
	char alg[8];
	struct token_fields f;
	int rc = token_scan_segment(seg, seg_len, buf, sizeof(buf), &f);

	if (rc != TOKEN_OK)
		return rc;
	/* Exactly "HS256", case and all; "none", "HS512" and the rest are refused. */
	if (!f.has_alg || jscan_string(&f.alg, alg, sizeof(alg)) != 5 || memcmp(alg, "HS256", 5) != 0)
		return TOKEN_BAD_ALG;
	return TOKEN_OK;
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
	out->has_sha256 = out->has_seq = out->seq_valid = false;
	out->sha256[0] = '\0';
	out->seq = 0;
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
