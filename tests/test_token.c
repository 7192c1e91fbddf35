/* Tests of token.c: tokens built here with OpenSSL directly, checked against the SFU's rules. */
#include "token.h"

#include "base64.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define TT_NOW INT64_C(1700000000)
#define TT_BUF 20000

static const uint8_t tt_key[] = "gateway-key-0123456789abcdef-XYZ!";
#define TT_KEY_LEN (sizeof(tt_key) - 1)
static const uint8_t tt_other_key[] = "sfu-key-0123456789abcdef-0123456";
#define TT_OTHER_KEY_LEN (sizeof(tt_other_key) - 1)

/* Odoo's header, as Python's json.dumps writes it. */
static const char tt_odoo_header[] = "{\"typ\": \"JWT\", \"alg\": \"HS256\"}";

/* Encodes with OpenSSL (not base64.c): standard padded, or base64url unpadded. */
static size_t tt_b64(const void *in, size_t len, char *out, bool url)
{
	int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	char *w = out;

	cr_assert_geq(n, 0);
	if (!url)
		return (size_t)n;
	for (char *r = out; *r != '\0'; r++) {
		if (*r == '=')
			continue;
		*w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
	}
	*w = '\0';
	return (size_t)(w - out);
}

/*
 * Builds header.claims.signature into out (TT_BUF bytes) with HMAC computed here by
 * OpenSSL's HMAC() and digest md; std selects Node's standard padded form for every
 * segment instead of Odoo's base64url. Returns the token length.
 */
static size_t tt_make_md(char *out, const char *header, const char *claims, const void *key,
			 size_t key_len, const EVP_MD *md, bool std)
{
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	size_t n;

	n = tt_b64(header, strlen(header), out, !std);
	out[n++] = '.';
	n += tt_b64(claims, strlen(claims), out + n, !std);
	cr_assert_not_null(HMAC(md, key, (int)key_len, (const uint8_t *)out, n, mac, &mac_len));
	out[n++] = '.';
	n += tt_b64(mac, mac_len, out + n, !std);
	cr_assert_lt(n, TT_BUF);
	return n;
}

static size_t tt_make(char *out, const char *header, const char *claims)
{
	return tt_make_md(out, header, claims, tt_key, TT_KEY_LEN, EVP_sha256(), false);
}

/* Odoo's claims with the given exp, and an optional extra JSON member. */
static void tt_odoo_claims(char *out, size_t cap, int64_t exp, const char *extra)
{
	snprintf(out, cap,
		 "{\"iss\": \"https://odoo.example.com:channel:7\", "
		 "\"key\": \"8f14e45f-ceea-467f-a9b4-7a0c3e6f4d2b\", \"exp\": %lld%s%s}",
		 (long long)exp, extra ? ", " : "", extra ? extra : "");
}

static int tt_verify_str(const char *tok, struct token *out)
{
	return token_verify(tok, strlen(tok), tt_key, TT_KEY_LEN, TT_NOW, true, out);
}

/* Verifies a token made from claims with the test key and Odoo's header. */
static int tt_claims_status(const char *claims, bool require_iss, struct token *out)
{
	static char tok[TT_BUF];
	size_t n = tt_make(tok, tt_odoo_header, claims);

	return token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, require_iss, out);
}

Test(token, valid_odoo_token)
{
	char claims[512], tok[TT_BUF];
	struct token t;
	size_t n;

	tt_odoo_claims(claims, sizeof(claims), TT_NOW + 30, NULL);
	n = tt_make(tok, tt_odoo_header, claims);
	memset(&t, 0x5a, sizeof(t));
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, &t), TOKEN_OK);
	cr_assert_str_eq(t.iss, "https://odoo.example.com:channel:7");
	cr_assert_eq(t.iss_len, strlen(t.iss));
	cr_assert(t.has_exp);
	cr_assert_eq(t.exp, TT_NOW + 30);
	cr_assert_not(t.has_nbf);
	cr_assert_not(t.has_iat);
	cr_assert_str_eq(t.address, "");
	cr_assert_eq(t.signed_len, (size_t)(strrchr(tok, '.') - tok));
	/* No NUL needed after the token: the length is what counts. */
	tok[n] = 'x';
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL), TOKEN_OK);
	cr_assert_eq(token_verify(tok, n + 1, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_BAD_SIGNATURE);
}

Test(token, alg_must_be_exactly_hs256)
{
	static const char *headers[] = {
		"{\"typ\": \"JWT\", \"alg\": \"none\"}",
		"{\"typ\": \"JWT\", \"alg\": \"None\"}",
		"{\"typ\": \"JWT\", \"alg\": \"NONE\"}",
		"{\"typ\": \"JWT\", \"alg\": \"RS256\"}",
		"{\"typ\": \"JWT\", \"alg\": \"hs256\"}",
		"{\"typ\": \"JWT\", \"alg\": \"HS256 \"}",
		"{\"typ\": \"JWT\", \"alg\": \"HS384\"}",
		"{\"typ\": \"JWT\", \"alg\": 256}",
		"{\"typ\": \"JWT\", \"alg\": null}",
		"{\"typ\": \"JWT\", \"alg\": [\"HS256\"]}",
		"{\"typ\": \"JWT\"}",
		"{}",
		"{\"alg\": \"HS256\", \"alg\": \"none\"}",
	};
	char claims[512], tok[TT_BUF];
	size_t n;

	tt_odoo_claims(claims, sizeof(claims), TT_NOW + 30, NULL);
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		/* Even with a valid HS256 signature over the segments. */
		n = tt_make(tok, headers[i], claims);
		cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
			     TOKEN_BAD_ALG, "header %s", headers[i]);
		/* And unsigned, as alg none tokens come. */
		*strrchr(tok, '.') = '\0';
		strcat(tok, ".");
		cr_assert_eq(tt_verify_str(tok, NULL), TOKEN_BAD_ALG, "header %s", headers[i]);
	}
}

/* The header is JSON: "alg" written with escapes is the same string, so a token whose
 * alg decodes to HS256 is an HS256 token (JSON.parse reads it so), and one whose alg
 * decodes to anything else is refused however it is spelled. */
Test(token, alg_is_compared_decoded)
{
	static const char *const hs256[] = {
		"{\"alg\":\"HS\\u00325\\u0036\"}",
		"{\"alg\":\"\\u0048\\u0053\\u0032\\u0035\\u0036\",\"typ\":\"JWT\"}",
		"{\"\\u0061lg\":\"HS25\\u0036\"}",
		"{\"alg\":\"HS\\u0032\\u0035\\u0036\"}",
	};
	static const char *const other[] = {
		"{\"alg\":\"HS\\u00325\\u0036\\u0020\"}", /* "HS256 " */
		"{\"alg\":\"HS\\u00325\\u0036\\u0000\"}", /* "HS256\0" */
		"{\"alg\":\"\\u0068s256\"}", /* "hs256" */
		"{\"alg\":\"HS\\u00325\\u0037\"}", /* "HS257" */
		"{\"alg\":\"HS\\u00335\\u0036\\u0035\\u0036\"}", /* "HS35656" */
		"{\"alg\":\"\\u00e9HS256\"}",
	};
	char claims[512], tok[TT_BUF];
	size_t n;

	tt_odoo_claims(claims, sizeof(claims), TT_NOW + 30, NULL);
	for (size_t i = 0; i < sizeof(hs256) / sizeof(hs256[0]); i++) {
		n = tt_make(tok, hs256[i], claims);
		cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
			     TOKEN_OK, "header %s", hs256[i]);
	}
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		n = tt_make(tok, other[i], claims);
		cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
			     TOKEN_BAD_ALG, "header %s", other[i]);
	}
}

Test(token, hs512_with_the_same_key_is_refused)
{
	char claims[512], tok[TT_BUF];
	size_t n;

	tt_odoo_claims(claims, sizeof(claims), TT_NOW + 30, NULL);
	n = tt_make_md(tok, "{\"typ\": \"JWT\", \"alg\": \"HS512\"}", claims, tt_key, TT_KEY_LEN,
		       EVP_sha512(), false);
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL), TOKEN_BAD_ALG);
	/* An HS512 signature under an HS256 header is simply a bad signature. */
	n = tt_make_md(tok, tt_odoo_header, claims, tt_key, TT_KEY_LEN, EVP_sha512(), false);
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_BAD_SIGNATURE);
}

Test(token, bad_signatures)
{
	char claims[512], tok[TT_BUF], copy[TT_BUF], sig_text[64];
	uint8_t sig[32];
	size_t n, signed_len;

	tt_odoo_claims(claims, sizeof(claims), TT_NOW + 30, NULL);
	n = tt_make(tok, tt_odoo_header, claims);
	signed_len = (size_t)(strrchr(tok, '.') - tok);
	cr_assert_eq(base64_decode(tok + signed_len + 1, n - signed_len - 1, sig, sizeof(sig)), 32);

	/* Every single bit flipped in the decoded signature. */
	for (size_t bit = 0; bit < 256; bit++) {
		sig[bit / 8] ^= (uint8_t)(1u << bit % 8);
		memcpy(copy, tok, signed_len + 1);
		tt_b64(sig, sizeof(sig), sig_text, true);
		strcpy(copy + signed_len + 1, sig_text);
		cr_assert_eq(tt_verify_str(copy, NULL), TOKEN_BAD_SIGNATURE, "bit %zu", bit);
		sig[bit / 8] ^= (uint8_t)(1u << bit % 8);
	}
	/* Wrong key, empty key, NULL key. */
	cr_assert_eq(token_verify(tok, n, tt_other_key, TT_OTHER_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_BAD_SIGNATURE);
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN - 1, TT_NOW, true, NULL),
		     TOKEN_BAD_SIGNATURE);
	cr_assert_eq(token_verify(tok, n, tt_key, 0, TT_NOW, true, NULL), TOKEN_BAD_SIGNATURE);
	cr_assert_eq(token_verify(tok, n, NULL, 0, TT_NOW, true, NULL), TOKEN_BAD_SIGNATURE);
	/* Truncated by one to four characters, then emptied. */
	for (size_t cut = 1; cut <= 4; cut++)
		cr_assert_eq(token_verify(tok, n - cut, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
			     TOKEN_BAD_SIGNATURE, "cut %zu", cut);
	cr_assert_eq(token_verify(tok, signed_len + 1, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_BAD_SIGNATURE);
	/* A signature one byte too long. */
	memcpy(copy, tok, n);
	strcpy(copy + n, "AA");
	cr_assert_eq(tt_verify_str(copy, NULL), TOKEN_BAD_SIGNATURE);
	/* The payload changed after signing (exp pushed by a character). */
	memcpy(copy, tok, n + 1);
	copy[signed_len - 2] = copy[signed_len - 2] == 'A' ? 'B' : 'A';
	cr_assert_eq(tt_verify_str(copy, NULL), TOKEN_BAD_SIGNATURE);
}

Test(token, time_claims)
{
	char claims[512];
	struct token t;

	tt_odoo_claims(claims, sizeof(claims), TT_NOW - 1, NULL);
	cr_assert_eq(tt_claims_status(claims, true, NULL), TOKEN_EXPIRED);
	tt_odoo_claims(claims, sizeof(claims), TT_NOW, NULL);
	cr_assert_eq(tt_claims_status(claims, true, NULL), TOKEN_OK);

	/* Floats, as Python's time.time() + 30 gives, are truncated toward zero. */
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": 1700000030.75}", true, &t),
		     TOKEN_OK);
	cr_assert_eq(t.exp, TT_NOW + 30);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": 1699999999.5}", true, NULL),
		     TOKEN_EXPIRED);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": 1.7e9}", true, &t), TOKEN_OK);
	cr_assert_eq(t.exp, INT64_C(1700000000));
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": 1e400}", true, &t), TOKEN_OK);
	cr_assert_eq(t.exp, INT64_MAX);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": -1e400}", true, NULL),
		     TOKEN_EXPIRED);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": 99999999999999999999}", true, &t),
		     TOKEN_OK);
	cr_assert_eq(t.exp, INT64_MAX);

	/* Anything but a number is a bad claim. */
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": \"1700000030\"}", true, NULL),
		     TOKEN_BAD_CLAIM);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": \"tomorrow\"}", true, NULL),
		     TOKEN_BAD_CLAIM);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": null}", true, NULL),
		     TOKEN_BAD_CLAIM);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": true}", true, NULL),
		     TOKEN_BAD_CLAIM);
	/* NaN is not JSON at all (JSON.parse throws): the claims are malformed. */
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"exp\": NaN}", true, NULL),
		     TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"nbf\": \"0\"}", true, NULL),
		     TOKEN_BAD_CLAIM);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"iat\": {}}", true, NULL),
		     TOKEN_BAD_CLAIM);

	/* nbf and iat, at and just past their limits. */
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"nbf\": 1700000001}", true, NULL),
		     TOKEN_NOT_YET_VALID);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"nbf\": 1700000000}", true, &t),
		     TOKEN_OK);
	cr_assert(t.has_nbf);
	cr_assert_eq(t.nbf, TT_NOW);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"iat\": 1700000061}", true, NULL),
		     TOKEN_IAT_FUTURE);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"iat\": 1700000060}", true, &t),
		     TOKEN_OK);
	cr_assert(t.has_iat);
	cr_assert_eq(t.iat, TT_NOW + 60);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"iat\": 9223372036854775807}", true,
				      NULL),
		     TOKEN_IAT_FUTURE);
	/* No exp at all is accepted, as the SFU does. */
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\"}", true, &t), TOKEN_OK);
	cr_assert_not(t.has_exp);
}

/* A time claim longer than jscan's number buffer keeps its value (found by
 * tests/fuzz/fuzz_jscan): 0.000...1 used to read as infinity, a token that
 * never expired where JSON.parse, and so the SFU, sees an expired one. */
Test(token, long_number_claims)
{
	char claims[2048];
	struct token t;
	int n;

	n = snprintf(claims, sizeof(claims), "{\"iss\": \"i\", \"exp\": 0.%0600d1}", 0);
	cr_assert_lt(n, (int)sizeof(claims));
	cr_assert_eq(tt_claims_status(claims, true, NULL), TOKEN_EXPIRED);
	snprintf(claims, sizeof(claims), "{\"iss\": \"i\", \"exp\": 1699999999.%0600d}", 0);
	cr_assert_eq(tt_claims_status(claims, true, NULL), TOKEN_EXPIRED);
	snprintf(claims, sizeof(claims), "{\"iss\": \"i\", \"exp\": 1700000030.%0600d}", 0);
	cr_assert_eq(tt_claims_status(claims, true, &t), TOKEN_OK);
	cr_assert_eq(t.exp, TT_NOW + 30);
	snprintf(claims, sizeof(claims), "{\"iss\": \"i\", \"nbf\": -0.%0600d1}", 0);
	cr_assert_eq(tt_claims_status(claims, true, &t), TOKEN_OK);
	cr_assert_eq(t.nbf, 0);
}

Test(token, iss_rules)
{
	char claims[4096], iss[2001];
	struct token t;

	memset(&t, 0x5a, sizeof(t));
	cr_assert_eq(tt_claims_status("{\"key\": \"k\", \"exp\": 1700000030}", true, &t),
		     TOKEN_NO_ISS);
	/* *out is filled on TOKEN_NO_ISS too. */
	cr_assert(t.has_exp);
	cr_assert_eq(t.exp, TT_NOW + 30);
	cr_assert_str_eq(t.iss, "");
	cr_assert_eq(t.iss_len, 0);
	cr_assert_eq(tt_claims_status("{\"key\": \"k\", \"exp\": 1700000030}", false, &t),
		     TOKEN_OK);
	cr_assert_eq(tt_claims_status("{\"iss\": 7, \"exp\": 1700000030}", true, NULL),
		     TOKEN_NO_ISS);
	cr_assert_eq(tt_claims_status("{\"iss\": null}", true, NULL), TOKEN_NO_ISS);
	/* An empty issuer is refused like a missing one (the SFU answers 403 to both),
	 * but an escaped NUL is a one-character issuer, as JSON.parse reads it. */
	cr_assert_eq(tt_claims_status("{\"iss\": \"\"}", true, NULL), TOKEN_NO_ISS);
	cr_assert_eq(tt_claims_status("{\"iss\": \"\", \"exp\": 1700000030}", false, &t),
		     TOKEN_OK);
	cr_assert_eq(tt_claims_status("{\"iss\": \"\\u0000\"}", true, &t), TOKEN_OK);
	cr_assert_eq(t.iss_len, 1);
	cr_assert_eq(tt_claims_status("{\"iss\": 7}", false, &t), TOKEN_OK);
	cr_assert_str_eq(t.iss, "");
	/* NO_ISS comes only after every other check passed. */
	cr_assert_eq(tt_claims_status("{\"exp\": 1699999999}", true, NULL), TOKEN_EXPIRED);
	cr_assert_eq(tt_claims_status("{\"exp\": \"x\"}", true, NULL), TOKEN_BAD_CLAIM);

	/* A long iss is truncated, NUL-terminated, never overflowed. */
	memset(iss, 'a', sizeof(iss) - 1);
	iss[sizeof(iss) - 1] = '\0';
	iss[0] = 'b';
	snprintf(claims, sizeof(claims), "{\"iss\": \"%s\"}", iss);
	cr_assert_eq(tt_claims_status(claims, true, &t), TOKEN_OK);
	cr_assert_eq(t.iss_len, TOKEN_ISS_MAX - 1);
	cr_assert_eq(strlen(t.iss), TOKEN_ISS_MAX - 1);
	cr_assert(memcmp(t.iss, iss, TOKEN_ISS_MAX - 1) == 0);
	/* An escaped NUL inside iss is kept and counted. */
	cr_assert_eq(tt_claims_status("{\"iss\": \"a\\u0000b\"}", true, &t), TOKEN_OK);
	cr_assert_eq(t.iss_len, 3);
	cr_assert(memcmp(t.iss, "a\0b", 4) == 0);
}

Test(token, address_claim)
{
	char claims[1024], addr[301];
	struct token t;

	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", "
				      "\"address\": \"https://sfu1.example:8070\"}",
				      true, &t),
		     TOKEN_OK);
	cr_assert_str_eq(t.address, "https://sfu1.example:8070");
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"address\": 5}", true, &t), TOKEN_OK);
	cr_assert_str_eq(t.address, "");
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\", \"address\": \"a\\u0000b\"}", true, &t),
		     TOKEN_OK);
	cr_assert_str_eq(t.address, "");
	/* Too long to hold: left out rather than truncated. */
	memset(addr, 'a', sizeof(addr) - 1);
	addr[sizeof(addr) - 1] = '\0';
	snprintf(claims, sizeof(claims), "{\"iss\": \"i\", \"address\": \"%s\"}", addr);
	cr_assert_eq(tt_claims_status(claims, true, &t), TOKEN_OK);
	cr_assert_str_eq(t.address, "");
	addr[TOKEN_ADDRESS_MAX - 1] = '\0';
	snprintf(claims, sizeof(claims), "{\"iss\": \"i\", \"address\": \"%s\"}", addr);
	cr_assert_eq(tt_claims_status(claims, true, &t), TOKEN_OK);
	cr_assert_str_eq(t.address, addr);
}

Test(token, segment_structure)
{
	char claims[512], tok[TT_BUF], bad[TT_BUF + 16];
	size_t n, dot1, dot2;

	tt_odoo_claims(claims, sizeof(claims), TT_NOW + 30, NULL);
	n = tt_make(tok, tt_odoo_header, claims);
	dot1 = (size_t)(strchr(tok, '.') - tok);
	dot2 = (size_t)(strrchr(tok, '.') - tok);

	/* Two segments: the signature and its dot removed. */
	cr_assert_eq(token_verify(tok, dot2, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);
	/* One segment. */
	cr_assert_eq(token_verify(tok, dot1, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);
	/* Four segments, with the extra one empty or not. */
	snprintf(bad, sizeof(bad), "%s.", tok);
	cr_assert_eq(tt_verify_str(bad, NULL), TOKEN_MALFORMED);
	snprintf(bad, sizeof(bad), "%s.e30", tok);
	cr_assert_eq(tt_verify_str(bad, NULL), TOKEN_MALFORMED);
	/* Empty header or payload. */
	snprintf(bad, sizeof(bad), "%s", tok + dot1);
	cr_assert_eq(tt_verify_str(bad, NULL), TOKEN_MALFORMED);
	snprintf(bad, sizeof(bad), "%.*s%s", (int)dot1 + 1, tok, tok + dot2);
	cr_assert_eq(tt_verify_str(bad, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_verify_str("..", NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_verify_str("", NULL), TOKEN_MALFORMED);
	cr_assert_eq(token_verify(NULL, 0, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);
	/* Leading or trailing whitespace, a scheme word left in. */
	snprintf(bad, sizeof(bad), " %s", tok);
	cr_assert_eq(tt_verify_str(bad, NULL), TOKEN_MALFORMED);
	snprintf(bad, sizeof(bad), "jwt %s", tok);
	cr_assert_eq(tt_verify_str(bad, NULL), TOKEN_MALFORMED);
	snprintf(bad, sizeof(bad), "%s\n", tok);
	cr_assert_eq(tt_verify_str(bad, NULL), TOKEN_BAD_SIGNATURE);
	(void)n;
}

Test(token, length_limits)
{
	char *tok = malloc(TT_BUF), *claims = malloc(TT_BUF), *filler = malloc(TT_BUF);
	size_t fill, n = 0;

	cr_assert(tok && claims && filler);
	/* Find a filler length that makes the token exactly TOKEN_MAX_LEN long. */
	for (fill = 5000; fill < 7000; fill++) {
		memset(filler, 'f', fill);
		filler[fill] = '\0';
		snprintf(claims, TT_BUF, "{\"iss\": \"i\", \"exp\": 1700000030, \"pad\": \"%s\"}",
			 filler);
		n = tt_make(tok, tt_odoo_header, claims);
		if (n >= TOKEN_MAX_LEN)
			break;
	}
	cr_assert_eq(n, TOKEN_MAX_LEN, "no filler gave exactly TOKEN_MAX_LEN (%zu)", n);
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL), TOKEN_OK);
	/* One more character of padding makes it too long, before anything else. */
	tok[n] = '=';
	cr_assert_eq(token_verify(tok, n + 1, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_TOO_LONG);
	cr_assert_eq(token_verify(tok, n + 1, NULL, 0, TT_NOW, true, NULL), TOKEN_TOO_LONG);
	free(tok);
	free(claims);
	free(filler);
}

Test(token, sixteen_megabytes_do_not_crash, .timeout = 10)
{
	size_t len = 16u << 20;
	char *tok = malloc(len);

	cr_assert_not_null(tok);
	memset(tok, 'A', len);
	tok[100] = '.';
	tok[len - 44] = '.';
	cr_assert_eq(token_verify(tok, len, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_TOO_LONG);
	free(tok);
}

/* Builds a Node-style token whose segments really use '+', '/' and '='. */
static size_t tt_make_node_style(char *tok)
{
	char claims[512];
	size_t n = 0;

	for (int salt = 0; salt < 1000; salt++) {
		char *p, *s;

		/* "???>>>" gives '/' and '+' at some alignment; the salt moves it. */
		snprintf(claims, sizeof(claims),
			 "{\"iss\": \"https://odoo.example.com:channel:7\", \"exp\": 1700000030, "
			 "\"x\": \"%.*s\?\?\?>>>\", \"n\": %d}",
			 salt % 3, "ab", salt);
		n = tt_make_md(tok, tt_odoo_header, claims, tt_key, TT_KEY_LEN, EVP_sha256(),
			       true);
		p = strchr(tok, '.') + 1;
		s = strrchr(tok, '.') + 1;
		if (strcspn(p, "+/") < (size_t)(s - p) && memchr(p, '=', (size_t)(s - p)) &&
		    strcspn(s, "+/") < strlen(s) && s[strlen(s) - 1] == '=')
			return n;
	}
	cr_assert_fail("no Node-style token found");
	return 0;
}

Test(token, node_standard_base64_segments)
{
	char tok[TT_BUF], mixed[TT_BUF], *sig;
	struct token t;
	size_t n;

	n = tt_make_node_style(tok);
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, &t), TOKEN_OK);
	cr_assert_str_eq(t.iss, "https://odoo.example.com:channel:7");
	/* The standard-alphabet signature may also come unpadded or url-safe. */
	memcpy(mixed, tok, n + 1);
	sig = strrchr(mixed, '.') + 1;
	for (char *c = sig; *c != '\0'; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	cr_assert_eq(tt_verify_str(mixed, NULL), TOKEN_OK);
	mixed[n - 1] = '\0';
	cr_assert_eq(tt_verify_str(mixed, NULL), TOKEN_OK);
	/* Wrong padding on the signature is bad base64, hence a bad signature. */
	memcpy(mixed, tok, n + 1);
	strcat(mixed, "=");
	cr_assert_eq(tt_verify_str(mixed, NULL), TOKEN_BAD_SIGNATURE);
}

Test(token, json_shapes)
{
	char tok[TT_BUF];
	size_t n;

	/* Claims that are valid JSON but not an object. */
	cr_assert_eq(tt_claims_status("[\"iss\", 1700000030]", true, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("\"iss\"", true, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("1700000030", true, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("null", true, NULL), TOKEN_MALFORMED);
	/* Claims that are not JSON, incomplete or followed by something. */
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\"", true, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\"} x", true, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\"}{}", true, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\",}", true, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("{\"iss\": \"i\" /* c */}", true, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("", true, NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_claims_status("   ", true, NULL), TOKEN_MALFORMED);
	/* Whitespace around the object is JSON, and accepted. */
	cr_assert_eq(tt_claims_status(" {\"iss\": \"i\"}\n", true, NULL), TOKEN_OK);

	/* Headers that are not a JSON object. */
	n = tt_make(tok, "hello", "{\"iss\": \"i\"}");
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);
	n = tt_make(tok, "[\"HS256\"]", "{\"iss\": \"i\"}");
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);
	n = tt_make(tok, "{\"alg\": \"HS256\"} x", "{\"iss\": \"i\"}");
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);
	/* The minimal header is fine, typ is not required. */
	n = tt_make(tok, "{\"alg\":\"HS256\"}", "{\"iss\": \"i\"}");
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL), TOKEN_OK);
}

/* Signs raw claim bytes (which may hold NULs) with Odoo's header. */
static size_t tt_make_raw(char *out, const void *claims, size_t claims_len)
{
	uint8_t mac[32];
	unsigned int mac_len = 0;
	size_t n;

	n = tt_b64(tt_odoo_header, strlen(tt_odoo_header), out, true);
	out[n++] = '.';
	n += tt_b64(claims, claims_len, out + n, true);
	cr_assert_not_null(HMAC(EVP_sha256(), tt_key, TT_KEY_LEN, (const uint8_t *)out, n, mac,
				&mac_len));
	out[n++] = '.';
	return n + tt_b64(mac, mac_len, out + n, true);
}

Test(token, garbage_and_nul_bytes)
{
	static const char obj_nul[] = "{\"iss\": \"i\"}\0";
	static const char nul_obj[] = "\0{\"iss\": \"i\"}";
	static const char raw_nul[] = "{\"iss\": \"a\0b\"}";
	char claims[512], tok[TT_BUF], bad[TT_BUF];
	size_t n;

	/* NUL bytes inside the decoded claims. */
	n = tt_make_raw(tok, obj_nul, sizeof(obj_nul) - 1);
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);
	n = tt_make_raw(tok, nul_obj, sizeof(nul_obj) - 1);
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);
	n = tt_make_raw(tok, raw_nul, sizeof(raw_nul) - 1);
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);

	/* NUL bytes in the token text itself. */
	tt_odoo_claims(claims, sizeof(claims), TT_NOW + 30, NULL);
	n = tt_make(tok, tt_odoo_header, claims);
	memcpy(bad, tok, n);
	bad[3] = '\0';
	cr_assert_eq(token_verify(bad, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_MALFORMED);
	memcpy(bad, tok, n);
	bad[n - 5] = '\0';
	cr_assert_eq(token_verify(bad, n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_BAD_SIGNATURE);
	/* Pure garbage. */
	cr_assert_eq(tt_verify_str("\xff\xfe.\x01\x02.\x7f", NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_verify_str("a.b.c", NULL), TOKEN_MALFORMED);
	cr_assert_eq(tt_verify_str("e30.e30.e30", NULL), TOKEN_BAD_ALG);
	cr_assert_eq(tt_verify_str("not a token at all", NULL), TOKEN_MALFORMED);
}

/* Decodes the payload segment of tok into out; returns its length. */
static size_t tt_payload(const char *tok, uint8_t *out, size_t cap)
{
	const char *p = strchr(tok, '.') + 1;
	ssize_t n = base64_decode(p, (size_t)(strrchr(tok, '.') - p), out, cap);

	cr_assert_geq(n, 0);
	return (size_t)n;
}

Test(token, resign_keeps_header_and_claims)
{
	static const char claims[] =
		"{\"iss\": \"https://odoo.example.com:channel:7\", "
		"\"key\": \"8f14e45f-ceea-467f-a9b4-7a0c3e6f4d2b\", \"exp\": 1700000030, "
		"\"x-unknown\": {\"nested\": [1, 2.50, \"\\u00e9\", null],  \"k\":true}, "
		"\"sessionIdsByChannel\": {\"u\": [3, 4]}}";
	char tok[TT_BUF], out[TT_BUF], again[TT_BUF];
	uint8_t payload[TT_BUF];
	struct token t;
	size_t n;
	ssize_t m;

	n = tt_make(tok, tt_odoo_header, claims);
	cr_assert_eq(token_verify(tok, n, tt_key, TT_KEY_LEN, TT_NOW, true, &t), TOKEN_OK);
	m = token_resign(tok, t.signed_len, tt_other_key, TT_OTHER_KEY_LEN, out, sizeof(out));
	cr_assert_eq(m, (ssize_t)(t.signed_len + 1 + 43));
	cr_assert_eq(strlen(out), (size_t)m);
	cr_assert(memcmp(out, tok, t.signed_len + 1) == 0);
	cr_assert_eq(tt_payload(out, payload, sizeof(payload)), strlen(claims));
	cr_assert(memcmp(payload, claims, strlen(claims)) == 0);
	cr_assert_eq(token_verify(out, (size_t)m, tt_other_key, TT_OTHER_KEY_LEN, TT_NOW, true,
				  NULL),
		     TOKEN_OK);
	cr_assert_eq(token_verify(out, (size_t)m, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_BAD_SIGNATURE);

	/* The new signature is exactly what OpenSSL computes over the same bytes. */
	n = tt_make_md(again, tt_odoo_header, claims, tt_other_key, TT_OTHER_KEY_LEN,
		       EVP_sha256(), false);
	cr_assert_str_eq(out, again);

	/* Capacity: exact fits, one less does not. */
	cr_assert_eq(token_resign(tok, t.signed_len, tt_other_key, TT_OTHER_KEY_LEN, out,
				  (size_t)m + 1),
		     m);
	cr_assert_eq(token_resign(tok, t.signed_len, tt_other_key, TT_OTHER_KEY_LEN, out,
				  (size_t)m),
		     -ENOSPC);
	cr_assert_eq(token_resign(tok, t.signed_len, tt_other_key, 0, out, sizeof(out)), -EINVAL);

	/* In place, from a Node-style token: signed part kept, signature replaced. */
	n = tt_make_node_style(tok);
	memcpy(out, tok, n + 1);
	cr_assert_eq(token_verify(out, n, tt_key, TT_KEY_LEN, TT_NOW, true, &t), TOKEN_OK);
	m = token_resign(out, t.signed_len, tt_other_key, TT_OTHER_KEY_LEN, out, sizeof(out));
	cr_assert_gt(m, 0);
	cr_assert(memcmp(out, tok, t.signed_len + 1) == 0);
	cr_assert_eq(token_verify(out, (size_t)m, tt_other_key, TT_OTHER_KEY_LEN, TT_NOW, true,
				  NULL),
		     TOKEN_OK);
}

Test(token, sign_output_verifies)
{
	static const char claims[] =
		"{\"address\":\"https://sfu.example:8070\",\"exp\":1700000030}";
	char tok[TT_BUF], ref[TT_BUF];
	uint8_t header[64];
	struct token t;
	ssize_t n;

	n = token_sign(claims, tt_key, TT_KEY_LEN, tok, sizeof(tok));
	cr_assert_gt(n, 0);
	cr_assert_eq(strlen(tok), (size_t)n);
	cr_assert_eq(token_verify(tok, (size_t)n, tt_key, TT_KEY_LEN, TT_NOW, false, &t), TOKEN_OK);
	cr_assert_str_eq(t.address, "https://sfu.example:8070");
	cr_assert_eq(token_verify(tok, (size_t)n, tt_key, TT_KEY_LEN, TT_NOW, true, NULL),
		     TOKEN_NO_ISS);
	/* The header is exactly the agreed one, and the whole token matches OpenSSL's. */
	cr_assert_eq(base64_decode(tok, (size_t)(strchr(tok, '.') - tok), header, sizeof(header)),
		     27);
	cr_assert(memcmp(header, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27) == 0);
	tt_make(ref, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims);
	cr_assert_str_eq(tok, ref);
	/* Capacity and arguments. */
	cr_assert_eq(token_sign(claims, tt_key, TT_KEY_LEN, tok, (size_t)n + 1), n);
	cr_assert_eq(token_sign(claims, tt_key, TT_KEY_LEN, tok, (size_t)n), -ENOSPC);
	cr_assert_eq(token_sign(claims, tt_key, 0, tok, sizeof(tok)), -EINVAL);
	cr_assert_eq(token_sign(NULL, tt_key, TT_KEY_LEN, tok, sizeof(tok)), -EINVAL);
}

/* Compares token_hmac_sha256 with OpenSSL's HMAC() for one key. */
static void tt_check_hmac(const uint8_t *key, size_t key_len, const char *data)
{
	static const uint8_t empty;
	uint8_t got[32], want[32];
	unsigned int want_len = 0;

	cr_assert_eq(token_hmac_sha256(key, key_len, data, strlen(data), got), 0);
	cr_assert_not_null(HMAC(EVP_sha256(), key_len ? key : &empty, (int)key_len,
				(const uint8_t *)data, strlen(data), want, &want_len));
	cr_assert_eq(want_len, 32);
	cr_assert(memcmp(got, want, 32) == 0, "HMAC differs for a %zu-byte key", key_len);
}

Test(token, hmac_matches_openssl_and_cache_is_correct)
{
	static const uint8_t rfc4231[32] = {
		0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
		0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
		0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43,
	};
	uint8_t keys[20][40], big[300], out[32];

	/* RFC 4231 test case 2. */
	cr_assert_eq(token_hmac_sha256((const uint8_t *)"Jefe", 4, "what do ya want for nothing?",
				       28, out),
		     0);
	cr_assert(memcmp(out, rfc4231, 32) == 0);
	/* More keys than cache slots, some prefixes of others, used round after round. */
	for (size_t i = 0; i < 20; i++)
		for (size_t j = 0; j < sizeof(keys[i]); j++)
			keys[i][j] = (uint8_t)(i < 10 ? 'k' : i * 7 + j);
	for (int round = 0; round < 5; round++)
		for (size_t i = 0; i < 20; i++)
			tt_check_hmac(keys[i], i < 10 ? i + 1 : sizeof(keys[i]),
				      round % 2 ? "header.payload" : "other data");
	/* Uncached paths: a long key and the empty key. */
	memset(big, 0x42, sizeof(big));
	tt_check_hmac(big, sizeof(big), "data");
	tt_check_hmac(big, 256, "data");
	tt_check_hmac(big, 257, "data");
	tt_check_hmac(NULL, 0, "data");
	tt_check_hmac(tt_key, TT_KEY_LEN, "");
}

Test(token, hmac_after_fork, .timeout = 10)
{
	pid_t pid;
	int status = 0;

	tt_check_hmac(tt_key, TT_KEY_LEN, "before fork");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		uint8_t got[32], want[32];
		unsigned int len = 0;
		int bad = 0;

		for (int i = 0; i < 3; i++) {
			const uint8_t *k = i == 1 ? tt_other_key : tt_key;
			size_t kl = i == 1 ? TT_OTHER_KEY_LEN : TT_KEY_LEN;

			bad |= token_hmac_sha256(k, kl, "in child", 8, got) != 0;
			HMAC(EVP_sha256(), k, (int)kl, (const uint8_t *)"in child", 8, want, &len);
			bad |= memcmp(got, want, 32) != 0;
		}
		_exit(bad ? 3 : 0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	tt_check_hmac(tt_key, TT_KEY_LEN, "after fork");
}

Test(token, status_strings)
{
	for (int s = TOKEN_OK; s <= TOKEN_NO_ISS; s++) {
		const char *str = token_status_str(s);

		cr_assert_not_null(str);
		cr_assert_gt(strlen(str), 0);
		for (int o = TOKEN_OK; o < s; o++)
			cr_assert_str_neq(str, token_status_str(o));
	}
	cr_assert_not_null(token_status_str(-1));
	cr_assert_not_null(token_status_str(1000));
}

static uint64_t tt_rng_state = 0x2545f4914f6cdd1dULL;

static uint32_t tt_rand(void)
{
	tt_rng_state ^= tt_rng_state << 13;
	tt_rng_state ^= tt_rng_state >> 7;
	tt_rng_state ^= tt_rng_state << 17;
	return (uint32_t)(tt_rng_state >> 32);
}

Test(token, random_mutations, .timeout = 30)
{
	static const char charset[] = "AZaz09-_+/=. \"{}\x00\x80\xff";
	char claims[512], tok[TT_BUF], mut[TT_BUF];
	uint8_t sig_orig[32], sig_mut[32];
	size_t n, signed_len;
	int ok_count = 0;

	tt_odoo_claims(claims, sizeof(claims), TT_NOW + 30, "\"nbf\": 1699999990");
	n = tt_make(tok, tt_odoo_header, claims);
	signed_len = (size_t)(strrchr(tok, '.') - tok);
	cr_assert_eq(base64_decode(tok + signed_len + 1, n - signed_len - 1, sig_orig, 32), 32);

	for (int iter = 0; iter < 20000; iter++) {
		size_t m = n, edits = 1 + tt_rand() % 3;
		struct token t;
		int rc;

		memcpy(mut, tok, n);
		for (size_t e = 0; e < edits; e++) {
			size_t pos = m ? tt_rand() % m : 0;
			char c = tt_rand() % 2 ? (char)tt_rand()
					       : charset[tt_rand() % (sizeof(charset) - 1)];

			switch (tt_rand() % 5) {
			case 0: /* replace */
				if (m)
					mut[pos] = c;
				break;
			case 1: /* flip a bit */
				if (m)
					mut[pos] ^= (char)(1u << tt_rand() % 8);
				break;
			case 2: /* delete */
				if (m) {
					memmove(mut + pos, mut + pos + 1, m - pos - 1);
					m--;
				}
				break;
			case 3: /* insert */
				memmove(mut + pos + 1, mut + pos, m - pos);
				mut[pos] = c;
				m++;
				break;
			default: /* truncate */
				m = pos;
				break;
			}
		}
		rc = token_verify(mut, m, tt_key, TT_KEY_LEN, TT_NOW, true, &t);
		cr_assert(rc >= TOKEN_OK && rc <= TOKEN_NO_ISS, "status %d", rc);
		if (rc != TOKEN_OK)
			continue;
		/*
		 * Accepted: the signed part must be byte-identical and the signature
		 * must decode to the same bytes (only the unused low bits of its last
		 * character, or '=' padding, may differ, as Node allows).
		 */
		ok_count++;
		cr_assert_eq(t.signed_len, signed_len, "iteration %d", iter);
		cr_assert(memcmp(mut, tok, signed_len + 1) == 0, "iteration %d", iter);
		cr_assert_eq(base64_decode(mut + signed_len + 1, m - signed_len - 1, sig_mut, 32),
			     32);
		cr_assert(memcmp(sig_mut, sig_orig, 32) == 0, "iteration %d", iter);
	}
	/* Most mutations must be refused; a handful of equivalent spellings may pass. */
	cr_assert_lt(ok_count, 2000, "%d mutations accepted", ok_count);
}

/* The heartbeat claims are reported as they are, for heartbeat.c to judge; they never
 * change a token's verdict. */
Test(token, heartbeat_claims_are_reported)
{
	static const struct {
		const char *seq;
		bool valid;
		uint64_t value;
	} seqs[] = {
		{ "1", true, 1 },
		{ "1764250000123", true, UINT64_C(1764250000123) },
		{ "9007199254740991", true, UINT64_C(9007199254740991) },
		{ "9007199254740992", false, 0 },
		{ "99999999999999999999", false, 0 },
		{ "0", false, 0 },
		{ "-5", false, 0 },
		{ "1.5", false, 0 },
		{ "1e3", false, 0 },
		{ "\"5\"", false, 0 },
		{ "null", false, 0 },
		{ "[5]", false, 0 },
	};
	const char *sha = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";
	char claims[512];
	struct token t;

	cr_assert_eq(tt_claims_status("{\"address\": \"http://a:1\"}", false, &t), TOKEN_OK);
	cr_expect_not(t.has_sha256);
	cr_expect_not(t.has_seq);
	cr_expect_not(t.seq_valid);
	cr_expect_str_eq(t.sha256, "");
	for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		snprintf(claims, sizeof(claims), "{\"sha256\": \"%s\", \"seq\": %s}", sha,
			 seqs[i].seq);
		memset(&t, 0x5a, sizeof(t));
		cr_assert_eq(tt_claims_status(claims, false, &t), TOKEN_OK, "%s", claims);
		cr_expect(t.has_sha256);
		cr_expect_str_eq(t.sha256, sha);
		cr_expect(t.has_seq, "%s", claims);
		cr_expect_eq(t.seq_valid, seqs[i].valid, "%s", claims);
		cr_expect_eq(t.seq, seqs[i].value, "%s", claims);
	}
	/* A sha256 that is no string, too long, or holds a NUL reads "", but present. */
	cr_assert_eq(tt_claims_status("{\"sha256\": 5}", false, &t), TOKEN_OK);
	cr_expect(t.has_sha256);
	cr_expect_str_eq(t.sha256, "");
	snprintf(claims, sizeof(claims), "{\"sha256\": \"%s%s\"}", sha, sha);
	cr_assert_eq(tt_claims_status(claims, false, &t), TOKEN_OK);
	cr_expect(t.has_sha256);
	cr_expect_str_eq(t.sha256, "");
	cr_assert_eq(tt_claims_status("{\"sha256\": \"a\\u0000b\"}", false, &t), TOKEN_OK);
	cr_expect_str_eq(t.sha256, "");
	/* Escapes are decoded. */
	cr_assert_eq(tt_claims_status("{\"sha256\": \"\\u0041b\"}", false, &t), TOKEN_OK);
	cr_expect_str_eq(t.sha256, "Ab");
}
