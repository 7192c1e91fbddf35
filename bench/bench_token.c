/* Benchmark and strictness check: the gateway's token verifier against libjwt 1.10 on Odoo's tokens. */
/*
 * Why tokens do not go through libjwt: this program measures both on the same
 * Odoo-style token (time per verification, median of rounds) and prints which
 * token variants each accepts, next to what odoo/sfu does with them. libjwt
 * is given every chance: its decode is followed by the alg check and the exp
 * read (jwt_get_grants_json + json-c) that it does not do itself.
 * Usage: bench-token [ROUNDS]   (needs libjwt-dev; built by make bench)
 */
#include <errno.h>
#include <json.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base64.h"
#include "clock.h"
#include "token.h"

#define BT_KEY "bench-token-key-0123456789abcdef"
#define BT_LOOPS 100000

/* header.claims signed with digest md (NULL: no signature), segments as written. */
static char *bt_token(const char *header, const char *claims, const EVP_MD *md, bool std_sig)
{
	static char out[16][2048];
	static int k;
	char *o = out[k++ % 16];
	uint8_t mac[64];
	unsigned mlen = 0;
	size_t n;

	n = (size_t)base64url_encode((const uint8_t *)header, strlen(header), o, 2048);
	o[n++] = '.';
	n += (size_t)base64url_encode((const uint8_t *)claims, strlen(claims), o + n, 2048 - n);
	if (md != NULL)
		HMAC(md, BT_KEY, (int)strlen(BT_KEY), (const uint8_t *)o, n, mac, &mlen);
	o[n++] = '.';
	if (std_sig)
		base64_encode(mac, mlen, o + n, 2048 - n);
	else
		base64url_encode(mac, mlen, o + n, 2048 - n);
	return o;
}

/* libjwt as a verifier would have to use it: decode, insist on HS256, read exp. */
static bool bt_libjwt(const char *tok, time_t now)
{
	jwt_t *j = NULL;
	bool ok = false;
	char *claims;
	struct json_object *o, *exp;

	if (jwt_decode(&j, tok, (const unsigned char *)BT_KEY, (int)strlen(BT_KEY)) != 0)
		return false;
	if (jwt_get_alg(j) != JWT_ALG_HS256)
		goto out;
	claims = jwt_get_grants_json(j, NULL);
	o = claims ? json_tokener_parse(claims) : NULL;
	free(claims);
	ok = o != NULL &&
	     (!json_object_object_get_ex(o, "exp", &exp) ||
	      (json_object_is_type(exp, json_type_int) && json_object_get_int64(exp) >= now));
	json_object_put(o);
out:
	jwt_free(j);
	return ok;
}

static bool bt_ours(const char *tok, time_t now)
{
	struct token t;

	return token_verify(tok, strlen(tok), (const uint8_t *)BT_KEY, strlen(BT_KEY), now, true,
			    &t) == TOKEN_OK;
}

/* One token variant, what odoo/sfu does with it, and the token. */
struct bt_case {
	const char *what, *sfu, *tok;
};

static struct bt_case bt_case(const char *what, const char *sfu, const char *tok)
{
	struct bt_case c = { what, sfu, tok };

	return c;
}

static int bt_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median ns per call over rounds of BT_LOOPS calls. */
static double bt_time(bool (*fn)(const char *, time_t), const char *tok, time_t now, int rounds)
{
	double r[32];

	for (int k = 0; k < rounds; k++) {
		int64_t t0 = clock_us();

		for (int i = 0; i < BT_LOOPS; i++)
			if (!fn(tok, now)) {
				fprintf(stderr, "bench-token: the token was refused\n");
				exit(1);
			}
		r[k] = (double)(clock_us() - t0) * 1000.0 / BT_LOOPS;
	}
	qsort(r, (size_t)rounds, sizeof(r[0]), bt_cmp);
	return r[rounds / 2];
}

int main(int argc, char **argv)
{
	static const char hdr[] = "{\"typ\": \"JWT\", \"alg\": \"HS256\"}";
	time_t now = time(NULL);
	int rounds = argc > 1 ? atoi(argv[1]) : 7;
	char claims[512], past[512], sexp[512];
	double ns_ours, ns_jwt;
	struct bt_case cases[10];
	int n = 0;

	if (rounds < 1 || rounds > 32)
		rounds = 7;
	snprintf(claims, sizeof(claims),
		 "{\"iss\": \"https://odoo.example.com:channel:42\", "
		 "\"key\": \"5b9f3c1e-2a7d-4e8b-9c0f-1d2e3f4a5b6c\", \"exp\": %lld}",
		 (long long)now + 30);
	snprintf(past, sizeof(past), "{\"iss\": \"i\", \"exp\": %lld}", (long long)now - 3600);
	snprintf(sexp, sizeof(sexp), "{\"iss\": \"i\", \"exp\": \"%lld\"}", (long long)now + 30);

	ns_ours = bt_time(bt_ours, bt_token(hdr, claims, EVP_sha256(), false), now, rounds);
	ns_jwt = bt_time(bt_libjwt, bt_token(hdr, claims, EVP_sha256(), false), now, rounds);
	printf("verify one Odoo token (%zu bytes), median of %d x %d:\n",
	       strlen(bt_token(hdr, claims, EVP_sha256(), false)), rounds, BT_LOOPS);
	printf("  token_verify (OpenSSL HMAC, own JSON scan)      %8.0f ns\n", ns_ours);
	printf("  libjwt jwt_decode + alg + exp via json-c        %8.0f ns  (x%.1f)\n\n", ns_jwt,
	       ns_jwt / ns_ours);

	cases[n++] = bt_case("Odoo's token", "accepts",
					 bt_token(hdr, claims, EVP_sha256(), false));
	cases[n++] = bt_case("HS512, same key", "refuses",
					 bt_token("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", claims,
						  EVP_sha512(), false));
	cases[n++] = bt_case("alg none, no signature", "refuses",
					 bt_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, NULL,
						  false));
	cases[n++] = bt_case("expired an hour ago", "refuses",
					 bt_token(hdr, past, EVP_sha256(), false));
	cases[n++] = bt_case("signature in Node's padded base64", "accepts",
					 bt_token(hdr, claims, EVP_sha256(), true));
	cases[n++] = bt_case("typ \"at+jwt\"", "accepts",
					 bt_token("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", claims,
						  EVP_sha256(), false));
	cases[n++] = bt_case("exp as a numeric string", "accepts",
					 bt_token(hdr, sexp, EVP_sha256(), false));
	printf("%-36s %-14s %-10s %s\n", "token", "odoo/sfu", "ours", "libjwt (+alg, +exp)");
	for (int i = 0; i < n; i++)
		printf("%-36s %-14s %-10s %s\n", cases[i].what, cases[i].sfu,
		       bt_ours(cases[i].tok, now) ? "accepts" : "refuses",
		       bt_libjwt(cases[i].tok, now) ? "accepts" : "refuses");
	printf("\n(ours refuses a string exp on purpose: see sfu-gateway(8), CAVEATS. libjwt also\n"
	       "crashes on a 16 MB segment and takes a NUL-terminated token only.)\n");
	return 0;
}
