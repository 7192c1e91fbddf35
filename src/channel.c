/* GET /v1/channel: verify Odoo's token, choose an SFU, re-sign, forward, relay the answer. */
#include "channel.h"

#include <errno.h>
#include <json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "affinity.h"
#include "log.h"
#include "select.h"
#include "token.h"

/* What survives between forwarding and the SFU's answer. */
struct channel_req {
	struct worker *w;
	struct http_conn *c;
	uint32_t slot;
	uint64_t generation;
	uint64_t sent_us; /* when the attempt started, for the latency histogram */
	uint64_t affinity; /* affinity_key() of (client, iss) */
	char address[CONFIG_ADDRESS_MAX];
};

static uint64_t channel_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes (and '+' to space) a form value; invalid escapes stay as is. */
static void channel_decode(const char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '%' && i + 2 < len && hexval(in[i + 1]) >= 0 &&
		    hexval(in[i + 2]) >= 0) {
			out[o++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
			i += 2;
		} else if (in[i] == '+') {
			out[o++] = ' ';
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
}

int channel_split_query(const char *query, size_t query_len, char *fwd, char *region,
			char *country)
{
	size_t f = 0, i = 0;

	region[0] = country[0] = '\0';
	while (i < query_len) {
		const char *seg = query + i;
		const char *amp = memchr(seg, '&', query_len - i);
		size_t len = amp ? (size_t)(amp - seg) : query_len - i;
		const char *eq = memchr(seg, '=', len);
		size_t nlen = eq ? (size_t)(eq - seg) : len;
		char name[16];

		i += len + 1;
		if (len == 0)
			continue;
		/* Names are compared decoded so "regio%6E" cannot slip a hint past us. */
		if (nlen < sizeof(name) * 3 && nlen > 0) {
			char tmp[sizeof(name) * 3 + 1];

			channel_decode(seg, nlen, tmp);
			if (strcmp(tmp, "region") == 0 || strcmp(tmp, "country") == 0) {
				char *dst = tmp[0] == 'r' ? region : country;

				if (eq != NULL)
					channel_decode(eq + 1, len - nlen - 1, dst);
				else
					dst[0] = '\0';
				continue;
			}
		}
		if (f > 0)
			fwd[f++] = '&';
		memcpy(fwd + f, seg, len);
		f += len;
	}
	fwd[f] = '\0';
	return (int)f;
}

/* The SFU's 2xx body must carry "uuid" and "url" strings to be usable. */
static bool channel_body_valid(const char *body, size_t len)
{
	struct json_tokener *tok;
	struct json_object *o, *uuid, *url;
	bool ok = false;

	if (len == 0)
		return false;
	tok = json_tokener_new();
	if (tok == NULL)
		return false;
	o = json_tokener_parse_ex(tok, body, (int)len);
	if (o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
	    json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "uuid", &uuid) &&
	    json_object_is_type(uuid, json_type_string) &&
	    json_object_object_get_ex(o, "url", &url) && json_object_is_type(url, json_type_string))
		ok = true;
	json_object_put(o);
	json_tokener_free(tok);
	return ok;
}

static void channel_on_response(const struct http_client_result *res, void *ctx)
{
	struct channel_req *cr = ctx;
	struct registry_slot *slot = &cr->w->shm->registry.slots[cr->slot];
	struct metrics_proc *m = cr->w->metrics;
	bool failed = res->error != 0 || res->status >= 500 ||
		      (res->status >= 200 && res->status < 300 &&
		       !channel_body_valid(res->body, res->body_len));

	metrics_latency(m, channel_now_us() - cr->sent_us);
	if (failed)
		metrics_add(m, M_UPSTREAM_FAILURES, 1);
	if (res->error != 0) {
		log_warn("channel: sfu=%s failed: %s", cr->address, uv_strerror(res->error));
		atomic_fetch_add_explicit(&slot->requests_failed, 1, memory_order_relaxed);
		http_respond_error(cr->c, 502, "failed to contact SFU", NULL);
	} else if (res->status >= 200 && res->status < 300) {
		if (!failed) {
			affinity_record(&cr->w->shm->affinity, cr->affinity, cr->slot, cr->generation,
					worker_now_ms(), cr->w->live.affinity_ttl_ms);
			atomic_fetch_add_explicit(&slot->requests_ok, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&slot->assigned, 1, memory_order_relaxed);
			http_respond_json(cr->c, res->status, res->body, res->body_len);
		} else {
			log_warn("channel: sfu=%s status=%d answered without uuid/url", cr->address,
				 res->status);
			atomic_fetch_add_explicit(&slot->requests_failed, 1, memory_order_relaxed);
			http_respond_error(cr->c, 502, "invalid SFU response", NULL);
		}
	} else {
		/* The existing gateway relays the SFU's status with an empty body. */
		log_info("channel: sfu=%s status=%d", cr->address, res->status);
		if (res->status >= 500)
			atomic_fetch_add_explicit(&slot->requests_failed, 1, memory_order_relaxed);
		http_respond(cr->c, res->status, NULL, NULL, NULL, 0);
	}
	free(cr);
}

/* Builds the X-Forwarded-For value the SFU must see (see the contract note):
 * the direct peer, or with trust_proxy the incoming chain plus the peer. */
static int channel_xff(const struct worker *w, const struct http_request *req, char *out,
		       size_t outlen)
{
	size_t n = 0;

	if (w->live.trust_proxy) {
		for (size_t i = 0; i < req->n_headers; i++) {
			const struct http_header *h = &req->headers[i];

			if (h->name_len != 15 || strncasecmp(h->name, "X-Forwarded-For", 15) != 0 ||
			    h->value_len == 0)
				continue;
			if (n + h->value_len + 2 >= outlen)
				return -ENOSPC;
			memcpy(out + n, h->value, h->value_len);
			n += h->value_len;
			memcpy(out + n, ", ", 2);
			n += 2;
		}
	}
	if (n + strlen(req->peer) + 1 > outlen)
		return -ENOSPC;
	memcpy(out + n, req->peer, strlen(req->peer) + 1);
	return 0;
}

void channel_handle(struct worker *w, struct http_conn *c, const struct http_request *req)
{
	const struct http_header *auth = http_request_header(req, "Authorization");
	const char *tok, *end, *sp;
	size_t tok_len;
	struct token t;
	int rc;
	char fwd[HTTP_HEAD_MAX + 1], region[HTTP_HEAD_MAX + 1], country[HTTP_HEAD_MAX + 1];
	char target[HTTP_HEAD_MAX + 32];
	char headers[TOKEN_MAX_LEN + HTTP_HEAD_MAX + 128];
	char xff[HTTP_HEAD_MAX + HTTP_PEER_MAX + 4];
	struct select_query q;
	struct select_choice choice;
	struct channel_req *cr;
	struct http_client_req creq;
	int n, hn;
	ssize_t sl;
	uint64_t akey, pin_gen;
	uint32_t pin_slot;
	int64_t now_ms;

	worker_refresh_config(w);
	/* Like the SFU: the token is the second space-separated word. */
	if (auth == NULL) {
		http_respond_error(c, 401, "missing authorization", NULL);
		return;
	}
	end = auth->value + auth->value_len;
	sp = memchr(auth->value, ' ', auth->value_len);
	if (sp == NULL) {
		http_respond_error(c, 401, "missing authorization", NULL);
		return;
	}
	tok = sp + 1;
	while (tok < end && *tok == ' ')
		tok++;
	sp = memchr(tok, ' ', (size_t)(end - tok));
	tok_len = (size_t)((sp ? sp : end) - tok);
	if (tok_len == 0) {
		http_respond_error(c, 401, "missing authorization", NULL);
		return;
	}
	rc = token_verify(tok, tok_len, w->live.key, w->live.key_len, time(NULL), true, &t);
	if (rc == TOKEN_NO_ISS) {
		http_respond_error(c, 403, "missing iss claim", NULL);
		return;
	}
	if (rc != TOKEN_OK) {
		log_info("channel: rejected token from %s: %s", req->peer, token_status_str(rc));
		http_respond_error(c, 401, "invalid token", NULL);
		return;
	}

	n = channel_split_query(req->query, req->query_len, fwd, region, country);
	q.region = region;
	q.region_len = strlen(region);
	q.country = country;
	q.country_len = strlen(country);
	/* Issuer affinity keys on the address the SFU will see as the creator:
	 * the first X-Forwarded-For entry we send. */
	if (channel_xff(w, req, xff, sizeof(xff)) != 0) {
		http_respond_error(c, 431, "request headers too large", NULL);
		return;
	}
	akey = affinity_key(xff, strcspn(xff, ","), t.iss, t.iss_len);
	now_ms = worker_now_ms();
	rc = -ENOENT;
	if (w->live.affinity_ttl_ms > 0 &&
	    affinity_lookup(&w->shm->affinity, akey, now_ms, &pin_slot, &pin_gen)) {
		rc = select_pinned(&w->shm->registry, &w->live, pin_slot, pin_gen, now_ms, &choice);
		if (rc == 0)
			metrics_add(w->metrics, M_AFFINITY_HITS, 1);
	}
	if (rc != 0)
		rc = select_best(&w->shm->registry, &w->live, &q, NULL, 0, now_ms, &choice);
	if (rc != 0) {
		http_respond_error(c, 503, "no SFU instances available", NULL);
		return;
	}

	hn = snprintf(headers, sizeof(headers), "Authorization: jwt ");
	sl = token_resign(tok, t.signed_len, choice.rec.cold.key, choice.rec.cold.key_len,
			  headers + hn, sizeof(headers) - (size_t)hn);
	if (sl < 0) {
		http_respond_error(c, 431, "request headers too large", NULL);
		return;
	}
	hn += (int)sl;
	hn += snprintf(headers + hn, sizeof(headers) - (size_t)hn,
		       "\r\nX-Forwarded-For: %s\r\nAccept: application/json\r\n", xff);
	if ((size_t)hn >= sizeof(headers)) {
		http_respond_error(c, 431, "request headers too large", NULL);
		return;
	}

	cr = malloc(sizeof(*cr));
	if (cr == NULL) {
		http_respond_error(c, 503, "out of memory", NULL);
		return;
	}
	cr->w = w;
	cr->c = c;
	cr->slot = choice.slot;
	cr->generation = choice.rec.hot.generation;
	memcpy(cr->address, choice.rec.cold.address, sizeof(cr->address));
	cr->sent_us = channel_now_us();
	cr->affinity = akey;
	metrics_add(w->metrics, M_UPSTREAM_REQUESTS, 1);

	memset(&creq, 0, sizeof(creq));
	creq.method = "GET";
	creq.target = target;
	creq.target_len = (size_t)snprintf(target, sizeof(target), "/v1/channel%s%s",
					   n > 0 ? "?" : "", fwd);
	creq.headers = headers;
	creq.headers_len = (size_t)hn;
	creq.connect_timeout_ms = w->live.connect_timeout_ms;
	creq.timeout_ms = w->live.retry_timeout_ms < w->live.deadline_ms ? w->live.retry_timeout_ms
									  : w->live.deadline_ms;
	rc = http_client_request(w->client, cr->address, &creq, channel_on_response, cr);
	if (rc != 0) {
		log_warn("channel: sfu=%s cannot be contacted: %s", cr->address, strerror(-rc));
		free(cr);
		http_respond_error(c, 502, "failed to contact SFU", NULL);
	}
}
