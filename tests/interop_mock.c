/* The mock SFU against the real one: the same requests must get the same answers from both. */
#include <criterion/criterion.h>

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "interop_fleet.h"

/* Both run as behind a gateway (PROXY); this host makes the channel urls comparable. */
#define IMK_HOST "X-Forwarded-Host: sfu.example.test\r\n"
#define IMK_HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define IMK_MAX_UUIDS 64

/* One SFU under comparison and the uuids it handed out, in order: bodies name them U1, U2...
 * so that "the same channel again" and "a new channel" compare equal across the two. */
struct imk_sfu {
	const char *name;
	struct harness_proc *p;
	char uuids[IMK_MAX_UUIDS][37];
	int nuuid;
};

enum imk_sig { IMK_SHA256, IMK_NONE, IMK_SHA512 };

/* One request. A token is made when claims is set: the claims text with %EXP% (now + 30),
 * %OLD% (now - 100), %LATER% (now + 3600) and %U1% (the first channel this SFU created)
 * replaced, signed with key (NULL: the SFU's) as sig says, header hdr (NULL: HS256). The
 * token fills the one %s of auth (the Authorization value; NULL: no header) or of body. */
struct imk_case {
	const char *name;
	const char *method;
	const char *path;
	const char *auth;
	const char *claims;
	const char *body;
	const char *extra;
	const char *key;
	const char *hdr;
	enum imk_sig sig;
};

/* What came back, comparable across the two SFUs. */
struct imk_answer {
	int status;
	char ctype[64];
	char body[8192];
};

static void imk_replace(char *s, size_t len, const char *what, const char *with)
{
	char *at;

	while ((at = strstr(s, what)) != NULL) {
		size_t wl = strlen(what), nl = strlen(with), rest = strlen(at + wl);

		cr_assert_lt(strlen(s) - wl + nl, len);
		memmove(at + nl, at + wl, rest + 1);
		memcpy(at, with, nl);
	}
}

static const char *imk_token(const struct imk_sfu *s, const struct imk_case *c)
{
	char claims[2048], num[32];
	const EVP_MD *md = c->sig == IMK_SHA256 ? EVP_sha256() :
			   c->sig == IMK_SHA512 ? EVP_sha512() : NULL;

	snprintf(claims, sizeof(claims), "%s", c->claims);
	snprintf(num, sizeof(num), "%lld", (long long)time(NULL) + 30);
	imk_replace(claims, sizeof(claims), "%EXP%", num);
	snprintf(num, sizeof(num), "%lld", (long long)time(NULL) - 100);
	imk_replace(claims, sizeof(claims), "%OLD%", num);
	snprintf(num, sizeof(num), "%lld", (long long)time(NULL) + 3600);
	imk_replace(claims, sizeof(claims), "%LATER%", num);
	imk_replace(claims, sizeof(claims), "%U1%", s->nuuid > 0 ? s->uuids[0] : "none");
	return harness_token_ex(c->hdr != NULL ? c->hdr : IMK_HS256, claims,
				c->key != NULL ? c->key : FLEET_SFU_KEY, md, false);
}

/* The body with every uuid named by its order of appearance on this SFU and every
 * createDate value blanked. */
static void imk_normalize(struct imk_sfu *s, const char *in, char *out, size_t len)
{
	size_t o = 0;

	while (*in != '\0' && o + 8 < len) {
		char cand[37];

		memcpy(cand, in, strnlen(in, 36));
		cand[strnlen(in, 36)] = '\0';
		if (fleet_uuid_valid(cand)) {
			int k = 0;

			while (k < s->nuuid && strcmp(s->uuids[k], cand) != 0)
				k++;
			if (k == s->nuuid) {
				cr_assert_lt(s->nuuid, IMK_MAX_UUIDS);
				snprintf(s->uuids[s->nuuid++], 37, "%s", cand);
			}
			o += (size_t)snprintf(out + o, len - o, "U%d", k + 1);
			in += 36;
		} else if (strncmp(in, "\"createDate\":\"", 14) == 0 && strchr(in + 14, '"')) {
			o += (size_t)snprintf(out + o, len - o, "\"createDate\":\"D\"");
			in = strchr(in + 14, '"') + 1;
		} else {
			out[o++] = *in++;
		}
	}
	out[o] = '\0';
}

static void imk_send(struct imk_sfu *s, const struct imk_case *c, struct imk_answer *a)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	char *req = malloc(65536), auth[20000] = "", body[20000] = "";
	const char *tok = c->claims != NULL ? imk_token(s, c) : "";
	int n;

	cr_assert(r != NULL && req != NULL);
	if (c->auth != NULL) {
		n = snprintf(auth, sizeof(auth), "Authorization: ");
		snprintf(auth + n, sizeof(auth) - (size_t)n, c->auth, tok);
		strcat(auth, "\r\n");
	}
	if (c->body != NULL)
		snprintf(body, sizeof(body), c->body, tok);
	n = snprintf(req, 65536,
		     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n%s",
		     c->method, c->path, IMK_HOST, auth, c->extra != NULL ? c->extra : "",
		     strlen(body), body);
	cr_assert_eq(harness_raw(s->p->port, req, (size_t)n, r, 5000), 0, "%s: %s: no answer",
		     s->name, c->name);
	a->status = r->status;
	if (!harness_resp_header(r, "Content-Type", a->ctype, sizeof(a->ctype)))
		snprintf(a->ctype, sizeof(a->ctype), "(none)");
	imk_normalize(s, r->body, a->body, sizeof(a->body));
	free(req);
	free(r);
}

/* Sends every case to both SFUs in order; each answer of the mock must be the real one's. */
static void imk_compare(const struct imk_case *cases, size_t n)
{
	static const char *const mock_args[] = { "--proxy", NULL };
	struct imk_sfu *real = calloc(1, sizeof(*real)), *mock = calloc(1, sizeof(*mock));
	struct imk_answer *ra = calloc(1, sizeof(*ra)), *ma = calloc(1, sizeof(*ma));

	cr_assert(real != NULL && mock != NULL && ra != NULL && ma != NULL);
	real->name = "odoo/sfu";
	real->p = harness_real_sfu_up(FLEET_SFU_KEY, NULL);
	mock->name = "mock";
	mock->p = harness_mock_start(FLEET_SFU_KEY, mock_args);
	cr_assert_not_null(mock->p, "the mock did not start");
	for (size_t i = 0; i < n; i++) {
		imk_send(real, &cases[i], ra);
		imk_send(mock, &cases[i], ma);
		cr_expect(ra->status == ma->status && strcmp(ra->ctype, ma->ctype) == 0 &&
				  strcmp(ra->body, ma->body) == 0,
			  "%s: odoo/sfu answered %d (Content-Type %s) %s\n"
			  "      the mock answered %d (Content-Type %s) %s",
			  cases[i].name, ra->status, ra->ctype, ra->body, ma->status, ma->ctype,
			  ma->body);
	}
	free(real);
	free(mock);
	free(ra);
	free(ma);
}

Test(interop_mock, routes_and_methods, .fini = harness_cleanup, .timeout = 60)
{
	static const struct imk_case cases[] = {
		{ .name = "noop", .method = "GET", .path = "/v1/noop" },
		{ .name = "noop with a query", .method = "GET", .path = "/v1/noop?x=1" },
		{ .name = "stats, no channel", .method = "GET", .path = "/v1/stats" },
		{ .name = "unknown path", .method = "GET", .path = "/v1/nothing" },
		{ .name = "path with a trailing slash", .method = "GET", .path = "/v1/noop/" },
		{ .name = "POST to a GET route", .method = "POST", .path = "/v1/channel" },
		{ .name = "GET to a POST route", .method = "GET", .path = "/v1/disconnect" },
		{ .name = "DELETE", .method = "DELETE", .path = "/v1/channel" },
		{ .name = "PUT", .method = "PUT", .path = "/v1/stats" },
		{ .name = "HEAD", .method = "HEAD", .path = "/v1/noop" },
		{ .name = "OPTIONS", .method = "OPTIONS", .path = "/v1/channel" },
	};

	imk_compare(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(interop_mock, channel_answers, .fini = harness_cleanup, .timeout = 60)
{
	static const struct imk_case cases[] = {
		{ .name = "no Authorization", .method = "GET", .path = FLEET_CHANNEL_PATH },
		{ .name = "scheme without token", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt" },
		{ .name = "two spaces before the token", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt  %s",
		  .claims = "{\"iss\":\"a\",\"exp\":%EXP%}" },
		{ .name = "wrong key", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"a\",\"exp\":%EXP%}",
		  .key = FLEET_BAD_KEY },
		{ .name = "not a token", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt abc" },
		{ .name = "two parts", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt eyJhbGciOiJIUzI1NiJ9.e30" },
		{ .name = "alg none", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .hdr = "{\"alg\":\"none\"}", .sig = IMK_NONE,
		  .claims = "{\"iss\":\"a\",\"exp\":%EXP%}" },
		{ .name = "alg HS512", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .hdr = "{\"alg\":\"HS512\"}", .sig = IMK_SHA512,
		  .claims = "{\"iss\":\"a\",\"exp\":%EXP%}" },
		{ .name = "expired", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"a\",\"exp\":%OLD%}" },
		{ .name = "not valid yet", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"a\",\"nbf\":%LATER%}" },
		{ .name = "issued in the future", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"a\",\"iat\":%LATER%}" },
		{ .name = "claims null", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "null" },
		{ .name = "claims an array", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "[1]" },
		{ .name = "no iss", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"exp\":%EXP%}" },
		{ .name = "empty iss", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"\",\"exp\":%EXP%}" },
		{ .name = "iss 0", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":0}" },
		{ .name = "iss null", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":null}" },
		{ .name = "valid", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"a\",\"key\":\"k\",\"exp\":%EXP%}" },
		{ .name = "same issuer again", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"a\",\"exp\":%EXP%}" },
		{ .name = "Bearer scheme", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "Bearer %s", .claims = "{\"iss\":\"a\",\"exp\":%EXP%}" },
		{ .name = "same issuer, another client", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt %s",
		  .claims = "{\"iss\":\"a\",\"exp\":%EXP%}",
		  .extra = "X-Forwarded-For: 10.1.1.1, 127.0.0.1\r\n" },
		{ .name = "that client again", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"a\",\"exp\":%EXP%}",
		  .extra = "X-Forwarded-For: 10.1.1.1\r\n" },
		{ .name = "another issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"b\",\"exp\":%EXP%}" },
		{ .name = "numeric issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":123}" },
		{ .name = "the same issuer as a string", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt %s", .claims = "{\"iss\":\"123\"}" },
		{ .name = "object issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":{\"a\":1}}" },
		{ .name = "the object issuer as JavaScript prints it", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt %s",
		  .claims = "{\"iss\":\"[object Object]\"}" },
		{ .name = "array issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":[\"x\",2]}" },
		{ .name = "the array issuer as JavaScript prints it", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt %s", .claims = "{\"iss\":\"x,2\"}" },
		{ .name = "fractional issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":1.5}" },
		{ .name = "fractional issuer as text", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"1.5\"}" },
		{ .name = "huge issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":1e21}" },
		{ .name = "huge issuer as text", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"1e+21\"}" },
		{ .name = "tiny issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":0.0000001}" },
		{ .name = "tiny issuer as text", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"1e-7\"}" },
		{ .name = "small issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":0.000001}" },
		{ .name = "small issuer as text", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"0.000001\"}" },
		{ .name = "large issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":12e3}" },
		{ .name = "large issuer as text", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"12000\"}" },
		{ .name = "issuer true", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":true}" },
		{ .name = "issuer true as text", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"true\"}" },
		{ .name = "nested array issuer", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":[null,[1,2],{}]}" },
		{ .name = "nested array issuer as text", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt %s",
		  .claims = "{\"iss\":\",1,2,[object Object]\"}" },
		{ .name = "forwarded address with a space", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt %s", .claims = "{\"iss\":\"a\"}",
		  .extra = "X-Forwarded-For: 10.3.3.3 , 127.0.0.1\r\n" },
		{ .name = "that address without the space", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt %s", .claims = "{\"iss\":\"a\"}",
		  .extra = "X-Forwarded-For: 10.3.3.3\r\n" },
		{ .name = "two X-Forwarded-For headers", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt %s", .claims = "{\"iss\":\"a\"}",
		  .extra = "X-Forwarded-For: 10.3.3.3\r\nX-Forwarded-For: 10.4.4.4\r\n" },
		{ .name = "https with a space", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"c\"}",
		  .extra = "X-Forwarded-Proto: https , http\r\n" },
		{ .name = "https forwarded", .method = "GET", .path = FLEET_CHANNEL_PATH,
		  .auth = "jwt %s", .claims = "{\"iss\":\"c\"}",
		  .extra = "X-Forwarded-Proto: https\r\n" },
		{ .name = "recordingAddress without a key", .method = "GET",
		  .path = FLEET_CHANNEL_PATH "&recordingAddress=http://rec.example.test",
		  .auth = "jwt %s", .claims = "{\"iss\":\"d\"}" },
		{ .name = "stats", .method = "GET", .path = "/v1/stats" },
	};

	imk_compare(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(interop_mock, disconnect_answers, .fini = harness_cleanup, .timeout = 60)
{
	static const struct imk_case cases[] = {
		{ .name = "a channel to disconnect from", .method = "GET",
		  .path = FLEET_CHANNEL_PATH, .auth = "jwt %s", .claims = "{\"iss\":\"a\"}",
		  .extra = "X-Forwarded-For: 10.2.2.2\r\n" },
		{ .name = "empty body", .method = "POST", .path = "/v1/disconnect", .body = "" },
		{ .name = "not a token", .method = "POST", .path = "/v1/disconnect",
		  .body = "abc" },
		{ .name = "a JSON string", .method = "POST", .path = "/v1/disconnect",
		  .body = "\"%s\"", .claims = "{\"sessionIdsByChannel\":{}}" },
		{ .name = "key check, right key", .method = "POST", .path = "/v1/disconnect",
		  .body = "%s", .claims = "{\"sessionIdsByChannel\":{}}" },
		{ .name = "key check, wrong key", .method = "POST", .path = "/v1/disconnect",
		  .body = "%s", .claims = "{\"sessionIdsByChannel\":{}}", .key = FLEET_BAD_KEY },
		{ .name = "expired", .method = "POST", .path = "/v1/disconnect", .body = "%s",
		  .claims = "{\"sessionIdsByChannel\":{},\"exp\":%OLD%}" },
		{ .name = "no sessionIdsByChannel", .method = "POST", .path = "/v1/disconnect",
		  .body = "%s", .claims = "{\"exp\":%EXP%}" },
		{ .name = "sessionIdsByChannel null", .method = "POST", .path = "/v1/disconnect",
		  .body = "%s", .claims = "{\"sessionIdsByChannel\":null}" },
		{ .name = "sessionIdsByChannel a string", .method = "POST",
		  .path = "/v1/disconnect", .body = "%s",
		  .claims = "{\"sessionIdsByChannel\":\"abc\"}" },
		{ .name = "sessionIdsByChannel a number", .method = "POST",
		  .path = "/v1/disconnect", .body = "%s",
		  .claims = "{\"sessionIdsByChannel\":5}" },
		{ .name = "sessionIdsByChannel an array", .method = "POST",
		  .path = "/v1/disconnect", .body = "%s",
		  .claims = "{\"sessionIdsByChannel\":[[1]]}" },
		{ .name = "claims null", .method = "POST", .path = "/v1/disconnect", .body = "%s",
		  .claims = "null" },
		{ .name = "unknown channel", .method = "POST", .path = "/v1/disconnect",
		  .body = "%s",
		  .claims = "{\"sessionIdsByChannel\":"
			    "{\"00000000-0000-4000-8000-000000000000\":7}}" },
		{ .name = "a channel of another address (skipped)", .method = "POST",
		  .path = "/v1/disconnect", .body = "%s",
		  .claims = "{\"sessionIdsByChannel\":{\"%U1%\":7}}" },
		{ .name = "own channel, ids not a list", .method = "POST",
		  .path = "/v1/disconnect", .body = "%s",
		  .claims = "{\"sessionIdsByChannel\":{\"%U1%\":7}}",
		  .extra = "X-Forwarded-For: 10.2.2.2\r\n" },
		{ .name = "own channel, ids a string", .method = "POST",
		  .path = "/v1/disconnect", .body = "%s",
		  .claims = "{\"sessionIdsByChannel\":{\"%U1%\":\"12\"}}",
		  .extra = "X-Forwarded-For: 10.2.2.2\r\n" },
		{ .name = "own channel, unknown sessions", .method = "POST",
		  .path = "/v1/disconnect", .body = "%s",
		  .claims = "{\"sessionIdsByChannel\":{\"%U1%\":[1,2]}}",
		  .extra = "X-Forwarded-For: 10.2.2.2\r\n" },
	};

	imk_compare(cases, sizeof(cases) / sizeof(cases[0]));
}
