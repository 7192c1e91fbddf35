/* Fuzz target: token_verify and token_resign on Odoo-style HS256 tokens. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "base64.h"
#include "fuzz.h"
#include "token.h"

/*
 * An input starting with '{' cannot be a token (base64url has no '{'): it is
 * taken as JSON and signed, once as the claims and once as the header, so the
 * fuzzer reaches the JSON checks behind the signature without having to
 * write base64. Any other input is a token, verified as given and again with
 * its signature replaced by the right one, for the same reason.
 */

#define FUZZ_NOW 1700000000
#define FUZZ_SIG_CHARS BASE64URL_ENCODED_LEN(32)

static const uint8_t fuzz_key[] = "odoo-gateway-fuzzing-key-0123456";
static const uint8_t fuzz_sfu_key[] = "sfu-fuzzing-key-for-re-signing!!";
#define FUZZ_KEY_LEN (sizeof(fuzz_key) - 1)
#define FUZZ_SFU_KEY_LEN (sizeof(fuzz_sfu_key) - 1)

/* Everything verification learnt must survive a re-signing unchanged. */
static bool fuzz_same_token(const struct token *a, const struct token *b)
{
	return a->signed_len == b->signed_len && a->has_exp == b->has_exp &&
	       a->has_nbf == b->has_nbf && a->has_iat == b->has_iat && a->exp == b->exp &&
	       a->nbf == b->nbf && a->iat == b->iat && a->iss_len == b->iss_len &&
	       memcmp(a->iss, b->iss, a->iss_len + 1) == 0 && strcmp(a->address, b->address) == 0;
}

/* Re-signs a verified token for the SFU key, to a new buffer and in place, and
 * checks that the SFU would accept it with the very same claims. */
static void fuzz_resign(const char *tok, size_t len, const struct token *t)
{
	size_t cap = t->signed_len + FUZZ_SIG_CHARS + 2;
	char *out = malloc(cap), *inplace = malloc(len > cap ? len : cap);
	struct token t2;
	ssize_t n, m;

	FUZZ_CHECK(out != NULL && inplace != NULL);
	n = token_resign(tok, t->signed_len, fuzz_sfu_key, FUZZ_SFU_KEY_LEN, out, cap);
	FUZZ_CHECK(n == (ssize_t)(t->signed_len + 1 + FUZZ_SIG_CHARS));
	FUZZ_CHECK(memcmp(out, tok, t->signed_len) == 0 && out[n] == '\0');
	FUZZ_CHECK(token_resign(tok, t->signed_len, fuzz_sfu_key, FUZZ_SFU_KEY_LEN, out,
				cap - 1) == -ENOSPC);
	FUZZ_CHECK(token_verify(out, (size_t)n, fuzz_sfu_key, FUZZ_SFU_KEY_LEN, FUZZ_NOW, false,
				&t2) == TOKEN_OK);
	FUZZ_CHECK(fuzz_same_token(t, &t2));
	FUZZ_CHECK(token_verify(out, (size_t)n, fuzz_key, FUZZ_KEY_LEN, FUZZ_NOW, false, NULL) ==
		   TOKEN_BAD_SIGNATURE);

	memcpy(inplace, tok, len);
	m = token_resign(inplace, t->signed_len, fuzz_sfu_key, FUZZ_SFU_KEY_LEN, inplace,
			 len > cap ? len : cap);
	FUZZ_CHECK(m == n && memcmp(inplace, out, (size_t)n + 1) == 0);
	free(out);
	free(inplace);
}

/* Verifies src[0..len) from a buffer of exactly len bytes, so that ASan sees
 * any read past the end, and checks what token_verify promises. */
static void fuzz_verify(const char *src, size_t len)
{
	char *tok = malloc(len > 0 ? len : 1);
	struct token t;
	int rc, rc_iss;

	FUZZ_CHECK(tok != NULL);
	memcpy(tok, src, len);
	rc = token_verify(tok, len, fuzz_key, FUZZ_KEY_LEN, FUZZ_NOW, false, &t);
	FUZZ_CHECK(rc >= TOKEN_OK && rc <= TOKEN_NO_ISS && rc != TOKEN_NO_ISS);
	FUZZ_CHECK(strcmp(token_status_str(rc), "unknown token status") != 0);
	/* Requiring iss only ever adds TOKEN_NO_ISS, after every other check. */
	rc_iss = token_verify(tok, len, fuzz_key, FUZZ_KEY_LEN, FUZZ_NOW, true, NULL);
	FUZZ_CHECK(rc_iss == rc || (rc == TOKEN_OK && rc_iss == TOKEN_NO_ISS));
	/* An empty key verifies nothing. */
	FUZZ_CHECK(token_verify(tok, len, fuzz_key, 0, FUZZ_NOW, false, NULL) != TOKEN_OK);
	if (rc == TOKEN_OK) {
		FUZZ_CHECK(t.signed_len < len && tok[t.signed_len] == '.');
		FUZZ_CHECK(t.iss_len < TOKEN_ISS_MAX && t.iss[t.iss_len] == '\0');
		FUZZ_CHECK(strlen(t.address) < TOKEN_ADDRESS_MAX);
		FUZZ_CHECK(token_verify(tok, len, fuzz_sfu_key, FUZZ_SFU_KEY_LEN, FUZZ_NOW, false,
					NULL) == TOKEN_BAD_SIGNATURE);
		fuzz_resign(tok, len, &t);
	}
	free(tok);
}

/* Replaces whatever follows the last '.' by the right signature and verifies. */
static void fuzz_verify_resigned(const char *data, size_t size)
{
	const char *dot = memrchr(data, '.', size);
	size_t signed_len = dot != NULL ? (size_t)(dot - data) : size;
	size_t cap = signed_len + FUZZ_SIG_CHARS + 2;
	char *tok = malloc(cap);
	ssize_t n;

	FUZZ_CHECK(tok != NULL);
	n = token_resign(data, signed_len, fuzz_key, FUZZ_KEY_LEN, tok, cap);
	FUZZ_CHECK(n == (ssize_t)(signed_len + 1 + FUZZ_SIG_CHARS));
	fuzz_verify(tok, (size_t)n);
	free(tok);
}

/* The input is JSON: sign it as the claims, then as the header of a token. */
static void fuzz_json(const uint8_t *data, size_t size)
{
	static const char claims[] = "{\"iss\":\"https://odoo.example.com\",\"exp\":1700000600}";
	char *json = malloc(size + 1);
	size_t hcap = BASE64URL_ENCODED_LEN(size) + 1;
	size_t ccap = BASE64URL_ENCODED_LEN(sizeof(claims) - 1) + 1;
	size_t cap = hcap + ccap + FUZZ_SIG_CHARS + 2;
	char *tok = malloc(cap + size * 2 + 128);
	ssize_t n, h, c;

	FUZZ_CHECK(json != NULL && tok != NULL);
	memcpy(json, data, size);
	json[size] = '\0';
	n = token_sign(json, fuzz_key, FUZZ_KEY_LEN, tok, cap + size * 2 + 128);
	FUZZ_CHECK(n > 0);
	fuzz_verify(tok, (size_t)n);

	h = base64url_encode(data, size, tok, hcap);
	FUZZ_CHECK(h == (ssize_t)(hcap - 1));
	tok[h] = '.';
	c = base64url_encode((const uint8_t *)claims, sizeof(claims) - 1, tok + h + 1, ccap);
	FUZZ_CHECK(c == (ssize_t)(ccap - 1));
	n = token_resign(tok, (size_t)(h + 1 + c), fuzz_key, FUZZ_KEY_LEN, tok, cap);
	FUZZ_CHECK(n > 0);
	fuzz_verify(tok, (size_t)n);
	free(json);
	free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 2 * TOKEN_MAX_LEN)
		return 0;
	if (size > 0 && data[0] == '{') {
		fuzz_json(data, size);
		return 0;
	}
	fuzz_verify((const char *)data, size);
	fuzz_verify_resigned((const char *)data, size);
	return 0;
}
