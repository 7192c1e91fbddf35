/* Access to the operators' routes (/metrics, /v1/health): allowed networks, and a bearer token when one is set. */
#ifndef SFU_ACCESS_H
#define SFU_ACCESS_H

#include "config.h"
#include "http_server.h"

/* What access_check found: allowed, or the status to refuse with. */
enum access_verdict {
	ACCESS_OK = 0,
	ACCESS_NO_TOKEN = 1, /* 401: a token is set and the request has none */
	ACCESS_BAD_TOKEN = 2, /* 401: it has another one */
	ACCESS_ADDRESS = 3, /* 403: the peer is in none of [observability] allow */
};

/*
 * The peer must fall in [observability] allow (an empty list allows any),
 * and when [observability] token is set the request must carry
 * "Authorization: Bearer <token>". The token is compared in constant time
 * (digests of both), so its length and contents do not show in the timing.
 */
enum access_verdict access_check(const struct config_tunables *t, const struct http_request *req);

#endif
