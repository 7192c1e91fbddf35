/* Access to the operators' routes (/metrics, /v1/health): allowed networks, and a bearer token when one is set. */
#include "access.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

#include "cidr.h"

/* SHA-256 of n bytes; false when OpenSSL fails (then nothing matches). */
static bool access_digest(const void *data, size_t n, unsigned char out[32])
{
	unsigned int len = 0;

	return EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32;
}

enum access_verdict access_check(const struct config_tunables *t, const struct http_request *req)
{
	const struct http_header *h;
	unsigned char want[32], got[32];
	const char *tok;
	size_t len;

	if (t->n_obs_allow > 0 && !cidr_match(t->obs_allow, t->n_obs_allow, req->peer))
		return ACCESS_ADDRESS;
	if (t->obs_token[0] == '\0')
		return ACCESS_OK;
	h = http_request_header(req, "Authorization");
	if (h == NULL || h->value_len < 7 || strncasecmp(h->value, "Bearer ", 7) != 0)
		return ACCESS_NO_TOKEN;
	tok = h->value + 7;
	len = h->value_len - 7;
	while (len > 0 && *tok == ' ') {
		tok++;
		len--;
	}
	/* Digests of both make the comparison's time independent of where the
	 * strings differ and of their lengths. */
	if (!access_digest(t->obs_token, strlen(t->obs_token), want) ||
	    !access_digest(tok, len, got) || CRYPTO_memcmp(want, got, sizeof(want)) != 0)
		return ACCESS_BAD_TOKEN;
	return ACCESS_OK;
}
