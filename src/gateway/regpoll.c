/* Registry poller: the reaper fetches an external registry's SFU list and applies it in one batch. */
#include "regpoll.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "http_client.h"
#include "log.h"
#include "regdoc.h"
#include "tlsstate.h"

/* Initial size of a body buffer; it doubles up to [registry] max_bytes. */
#define REGPOLL_BODY_START 16384

struct regpoll {
	uv_timer_t timer;
	struct registry *r;
	struct regstatus *status;
	struct http_client *client;

	/* The settings in use (a copy of the live tunables' [registry] part). */
	struct config_tunables t;
	char origin[ADDRESS_MAX]; /* scheme://host[:port] of the URL */
	const char *target; /* its path and query, inside t.registry_url */
	uint64_t gen; /* bumped when the URL or token changes: older answers are dropped */
	bool in_flight;
	bool configured_once;

	/* The list in use, kept to apply again after a reload. */
	struct regdoc doc;
	char etag[REGSTATUS_ETAG_MAX]; /* sent as If-None-Match, "" = none */
	uint32_t failures; /* consecutive */
	struct regstatus_data st; /* what was last published */
	enum regstatus_state logged; /* the state the log last announced */

	/* Addresses of static SFUs the list names, already warned about (hashes). */
	uint64_t *warned;
	size_t n_warned, cap_warned;
};

struct regpoll_op {
	struct regpoll *p;
	uint64_t gen;
	bool conditional; /* If-None-Match was sent */
	char *body;
	size_t len, cap, max;
	bool too_large;
	char etag[REGSTATUS_ETAG_MAX];
	int64_t max_age_ms;
};

static void regpoll_schedule(struct regpoll *p, uint32_t delay_ms);

int64_t regpoll_max_age(const char *value, size_t len)
{
	size_t i = 0;

	/* Directives are comma-separated tokens, "max-age=N" among them
	 * (case-insensitive name, N decimal seconds, optionally quoted). */
	while (i < len) {
		size_t start, end;

		while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
			i++;
		start = i;
		while (i < len && value[i] != ',')
			i++;
		end = i;
		while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
			end--;
		if (end - start > 8 && strncasecmp(value + start, "max-age=", 8) == 0) {
			const char *d = value + start + 8, *e = value + end;
			int64_t secs = 0;

			if (d < e && *d == '"' && e[-1] == '"' && e - d >= 2) {
				d++;
				e--;
			}
			if (d == e)
				return -1;
			for (; d < e; d++) {
				if (*d < '0' || *d > '9')
					return -1;
				/* Past a year is "forever" for a poller: saturate. */
				if (secs < 366LL * 86400)
					secs = secs * 10 + (*d - '0');
			}
			return secs * 1000;
		}
	}
	return -1;
}

uint32_t regpoll_delay(const struct config_tunables *t, int64_t max_age_ms, uint32_t failures,
		       uint32_t rnd)
{
	uint64_t d = t->registry_poll_ms;

	if (failures == 0 && max_age_ms >= 0) {
		/* The registry says how long its answer stays fresh; we never wait
		 * so long that the list would be flagged stale meanwhile. */
		uint64_t cap = t->registry_stale_after_ms / 2;

		if (cap < t->registry_poll_ms)
			cap = t->registry_poll_ms;
		d = (uint64_t)max_age_ms < cap ? (uint64_t)max_age_ms : cap;
	} else if (failures > 0) {
		uint64_t top = REGPOLL_BACKOFF_MAX_MS > d ? REGPOLL_BACKOFF_MAX_MS : d;

		for (uint32_t k = 1; k < failures && d < top; k++)
			d *= 2;
		if (d > top)
			d = top;
		/* Full-ish jitter: many gateways failing together do not come
		 * back together. */
		d = d / 2 + rnd % (d / 2 + 1);
	}
	if (d < t->registry_min_poll_ms)
		d = t->registry_min_poll_ms;
	return (uint32_t)d;
}

/* The URL as health and logs show it: without its query, which may carry a secret. */
static void regpoll_display_url(const char *url, char *out, size_t outlen)
{
	size_t n = strcspn(url, "?");

	snprintf(out, outlen, "%.*s%s", (int)n, url, url[n] == '?' ? "?..." : "");
}

/* Splits [registry] url into the client's address and the request target. */
static int regpoll_split(struct regpoll *p)
{
	const char *scheme_end = strstr(p->t.registry_url, "://");
	const char *slash = scheme_end ? strchr(scheme_end + 3, '/') : NULL;
	size_t n;

	if (slash == NULL)
		return -EINVAL;
	n = (size_t)(slash - p->t.registry_url);
	if (n >= sizeof(p->origin))
		return -EINVAL;
	memcpy(p->origin, p->t.registry_url, n);
	p->origin[n] = '\0';
	p->target = slash;
	return 0;
}

static void regpoll_publish(struct regpoll *p)
{
	regstatus_publish(p->status, &p->st);
}

/* Logs the state when it changed since the last line about it. */
static void regpoll_log_state(struct regpoll *p, int64_t now_ms)
{
	enum regstatus_state s = regstatus_state(&p->st, now_ms, p->t.registry_stale_after_ms);

	if (s == p->logged)
		return;
	switch (s) {
	case REGSTATUS_OFF:
		log_info("registry: no registry configured");
		break;
	case REGSTATUS_PENDING:
		log_info("registry: polling %s", p->st.url);
		break;
	case REGSTATUS_OK:
		log_info("registry: %s ok: %u SFUs in the list%s%s%s", p->st.url, p->st.sfus,
			 p->st.etag[0] ? " (ETag " : "", p->st.etag, p->st.etag[0] ? ")" : "");
		break;
	case REGSTATUS_FAILING:
		log_warn("registry: %s failing: %s; keeping the last good list (%u SFUs)",
			 p->st.url, p->st.last_error, p->st.sfus);
		break;
	case REGSTATUS_STALE:
		log_warn("registry: %s stale: no good answer for %lld s; still using the last "
			 "good list (%u SFUs): %s",
			 p->st.url, (long long)((now_ms - p->st.last_success_ms) / 1000), p->st.sfus,
			 p->st.last_error[0] ? p->st.last_error : "no error recorded");
		break;
	}
	p->logged = s;
}

/* Warns once per address about list entries a static SFU holds. */
static void regpoll_warn_ignored(struct regpoll *p, const uint8_t *ignored)
{
	for (size_t k = 0; k < p->doc.n; k++) {
		uint64_t h;
		bool seen = false;

		if (!ignored[k])
			continue;
		h = registry_hash(p->doc.recs[k].cold.address);
		for (size_t i = 0; i < p->n_warned && !seen; i++)
			seen = p->warned[i] == h;
		if (seen)
			continue;
		if (p->n_warned == p->cap_warned) {
			size_t cap = p->cap_warned ? 2 * p->cap_warned : 16;
			uint64_t *w = realloc(p->warned, cap * sizeof(*w));

			if (w == NULL)
				return;
			p->warned = w;
			p->cap_warned = cap;
		}
		p->warned[p->n_warned++] = h;
		log_warn("registry: the list names %s, a static SFU: the config's entry wins and "
			 "the list's is ignored",
			 p->doc.recs[k].cold.address);
	}
}

/* Applies p->doc to the registry. 0, or a negative errno with why filled. */
static int regpoll_apply(struct regpoll *p, int64_t now_ms, struct registry_batch *b, char *why,
			 size_t whylen)
{
	uint8_t *ignored = calloc(p->doc.n ? p->doc.n : 1, 1);
	int rc;

	if (ignored == NULL) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	rc = registry_apply_source(p->r, p->doc.recs, p->doc.n, now_ms, p->t.stale_after_ms,
				   ignored, b);
	if (rc == -ENOSPC)
		snprintf(why, whylen,
			 "the list's SFUs do not fit in the registry with the others "
			 "([gateway] max_sfus = %u)",
			 p->r->capacity);
	else if (rc != 0)
		snprintf(why, whylen, "the registry could not take the list (%s)", strerror(-rc));
	if (rc == 0)
		regpoll_warn_ignored(p, ignored);
	free(ignored);
	return rc;
}

static void regpoll_failed(struct regpoll *p, const char *why, int64_t now_ms)
{
	p->failures++;
	p->st.last_ok = 0;
	p->st.last_error_ms = now_ms;
	snprintf(p->st.last_error, sizeof(p->st.last_error), "%s", why);
	atomic_fetch_add(&p->status->polls[REGSTATUS_POLL_FAILED], 1);
	regpoll_publish(p);
	regpoll_log_state(p, now_ms);
	regpoll_schedule(p, regpoll_delay(&p->t, -1, p->failures, (uint32_t)rand()));
}

static void regpoll_succeeded(struct regpoll *p, int64_t max_age_ms, int64_t now_ms)
{
	p->failures = 0;
	p->st.last_ok = 1;
	p->st.last_success_ms = now_ms;
	regpoll_publish(p);
	regpoll_log_state(p, now_ms);
	regpoll_schedule(p, regpoll_delay(&p->t, max_age_ms, 0, 0));
}

/* A 200: parse, apply, and make it the list in use. */
static void regpoll_on_list(struct regpoll *p, struct regpoll_op *op, int64_t now_ms)
{
	struct regdoc doc, old = p->doc;
	struct registry_batch b;
	char why[REGSTATUS_ERROR_MAX];
	int64_t t0 = clock_us();

	if (regdoc_parse(op->body ? op->body : "", op->len, p->t.registry_max_sfus, &doc, why,
			 sizeof(why)) != 0) {
		regpoll_failed(p, why, now_ms);
		return;
	}
	p->doc = doc;
	if (regpoll_apply(p, now_ms, &b, why, sizeof(why)) != 0) {
		p->doc = old;
		regdoc_free(&doc);
		regpoll_failed(p, why, now_ms);
		return;
	}
	regdoc_free(&old);
	atomic_store(&p->status->last_apply_us, (uint64_t)(clock_us() - t0));
	atomic_store(&p->status->last_window_us, b.window_us);
	atomic_fetch_add(&p->status->polls[REGSTATUS_POLL_OK], 1);
	/* Without an ETag there is nothing to revalidate: every fetch is whole. */
	snprintf(p->etag, sizeof(p->etag), "%s", op->etag);
	snprintf(p->st.etag, sizeof(p->st.etag), "%s", op->etag);
	p->st.list_ms = now_ms;
	p->st.sfus = (uint32_t)p->doc.n;
	p->st.ignored = b.ignored;
	if (b.added || b.removed)
		log_info("registry: applied the list: %u added, %u updated, %u removed, %u "
			 "unchanged, %u ignored",
			 b.added, b.updated, b.removed, b.unchanged, b.ignored);
	else
		log_debug("registry: applied the list: %u updated, %u unchanged", b.updated,
			  b.unchanged);
	regpoll_succeeded(p, op->max_age_ms, now_ms);
}

static void regpoll_on_response(const struct http_client_result *res, void *ctx)
{
	struct regpoll_op *op = ctx;
	struct regpoll *p = op->p;
	int64_t now_ms = clock_ms();
	char why[REGSTATUS_ERROR_MAX];

	if (op->gen != p->gen) {
		/* An answer from a source no longer configured: not ours to apply. */
		goto out;
	}
	p->in_flight = false;
	if (res->error != 0) {
		if (op->too_large)
			snprintf(why, sizeof(why),
				 "the list is larger than [registry] max_bytes = %zu", op->max);
		else if (res->error == UV_EMSGSIZE)
			snprintf(why, sizeof(why), "the error answer is too large");
		else
			snprintf(why, sizeof(why), "GET: %s", http_client_strerror(res));
		regpoll_failed(p, why, now_ms);
	} else if (res->status == 304 && op->conditional) {
		atomic_fetch_add(&p->status->polls[REGSTATUS_POLL_NOT_MODIFIED], 1);
		regpoll_succeeded(p, op->max_age_ms, now_ms);
	} else if (res->status == 200) {
		regpoll_on_list(p, op, now_ms);
	} else {
		snprintf(why, sizeof(why), "GET answered %d%s", res->status,
			 res->status == 304 ? " to a request without If-None-Match" : "");
		regpoll_failed(p, why, now_ms);
	}
out:
	free(op->body);
	free(op);
}

static int regpoll_on_body(void *ctx, const char *at, size_t len)
{
	struct regpoll_op *op = ctx;

	if (len > op->max - op->len) {
		op->too_large = true;
		return -1;
	}
	if (op->len + len > op->cap) {
		size_t cap = op->cap ? op->cap : REGPOLL_BODY_START;
		char *nb;

		while (cap < op->len + len)
			cap *= 2;
		if (cap > op->max)
			cap = op->max;
		nb = realloc(op->body, cap);
		if (nb == NULL)
			return -1;
		op->body = nb;
		op->cap = cap;
	}
	memcpy(op->body + op->len, at, len);
	op->len += len;
	return 0;
}

/* An entity tag as a header value may hold it: printable ASCII, bounded. */
static bool regpoll_etag_ok(const char *v, size_t len)
{
	if (len == 0 || len >= REGSTATUS_ETAG_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f)
			return false;
	return true;
}

static int regpoll_on_header(void *ctx, const char *name, size_t nlen, const char *value,
			     size_t vlen)
{
	struct regpoll_op *op = ctx;

	if (nlen == 4 && strncasecmp(name, "ETag", 4) == 0) {
		if (regpoll_etag_ok(value, vlen)) {
			memcpy(op->etag, value, vlen);
			op->etag[vlen] = '\0';
		}
	} else if (nlen == 13 && strncasecmp(name, "Cache-Control", 13) == 0) {
		op->max_age_ms = regpoll_max_age(value, vlen);
	} else if (nlen == 14 && strncasecmp(name, "Content-Length", 14) == 0) {
		unsigned long long n = 0;
		size_t i;

		/* Refused before a byte of it is read. */
		for (i = 0; i < vlen && value[i] >= '0' && value[i] <= '9' && n <= op->max; i++)
			n = n * 10 + (unsigned long long)(value[i] - '0');
		if (n > op->max) {
			op->too_large = true;
			return -1;
		}
	}
	return 0;
}

static void regpoll_send(struct regpoll *p)
{
	struct regpoll_op *op;
	struct http_client_req req;
	char headers[CONFIG_REGISTRY_TOKEN_MAX + REGSTATUS_ETAG_MAX + 128];
	int n, rc;

	if (p->in_flight || p->t.registry_url[0] == '\0')
		return;
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		regpoll_failed(p, "out of memory", clock_ms());
		return;
	}
	op->p = p;
	op->gen = p->gen;
	op->max = p->t.registry_max_bytes;
	op->max_age_ms = -1;
	op->conditional = p->etag[0] != '\0';
	n = snprintf(headers, sizeof(headers), "Accept: application/json\r\n");
	if (op->conditional)
		n += snprintf(headers + n, sizeof(headers) - (size_t)n, "If-None-Match: %s\r\n",
			      p->etag);
	if (p->t.registry_token[0] != '\0')
		n += snprintf(headers + n, sizeof(headers) - (size_t)n,
			      "Authorization: Bearer %s\r\n", p->t.registry_token);
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.target = p->target;
	req.target_len = strlen(p->target);
	req.headers = headers;
	req.headers_len = (size_t)n;
	req.timeout_ms = p->t.registry_timeout_ms;
	req.connect_timeout_ms = p->t.registry_timeout_ms;
	req.on_body = regpoll_on_body;
	req.on_header = regpoll_on_header;
	rc = http_client_request(p->client, p->origin, &req, regpoll_on_response, op);
	/* The client copied the request: the token lives nowhere else now. */
	explicit_bzero(headers, sizeof(headers));
	if (rc != 0) {
		free(op);
		regpoll_failed(p, rc == -EINVAL ? "the URL cannot be used" : "out of memory",
			       clock_ms());
		return;
	}
	p->in_flight = true;
}

static void regpoll_on_timer(uv_timer_t *t)
{
	regpoll_send(t->data);
}

static void regpoll_schedule(struct regpoll *p, uint32_t delay_ms)
{
	uv_timer_start(&p->timer, regpoll_on_timer, delay_ms, 0);
}

/* The URL or the token changed (or the first configuration). */
static void regpoll_switch(struct regpoll *p, bool new_url, int64_t now_ms)
{
	struct registry_batch b;

	p->gen++;
	p->in_flight = false;
	p->failures = 0;
	if (new_url) {
		/* A new source: nothing to revalidate, no history; the list in use
		 * (the old source's) stays until the new one answers. */
		p->etag[0] = '\0';
		p->st.etag[0] = '\0';
		p->st.last_ok = 0;
		p->st.last_success_ms = 0;
		p->st.last_error_ms = 0;
		p->st.last_error[0] = '\0';
		p->n_warned = 0;
	}
	if (p->t.registry_url[0] == '\0') {
		uv_timer_stop(&p->timer);
		regdoc_free(&p->doc);
		if (registry_apply_source(p->r, NULL, 0, now_ms, 0, NULL, &b) == 0 && b.removed)
			log_info("registry: removed the %u SFUs of the registry", b.removed);
		memset(&p->st, 0, sizeof(p->st));
		regpoll_publish(p);
		regpoll_log_state(p, now_ms);
		return;
	}
	p->st.configured = 1;
	regpoll_display_url(p->t.registry_url, p->st.url, sizeof(p->st.url));
	if (regpoll_split(p) != 0) {
		/* config_load accepted it, so this cannot happen; say so if it does. */
		regpoll_failed(p, "the URL cannot be used", now_ms);
		return;
	}
	regpoll_publish(p);
	regpoll_log_state(p, now_ms);
	regpoll_schedule(p, 0);
}

void regpoll_configure(struct regpoll *p, const struct config_tunables *t, int64_t now_ms)
{
	bool new_url = !p->configured_once || strcmp(p->t.registry_url, t->registry_url) != 0;
	bool new_token = CRYPTO_memcmp(p->t.registry_token, t->registry_token,
				       sizeof(t->registry_token)) != 0;
	struct registry_batch b;
	char why[REGSTATUS_ERROR_MAX];

	p->configured_once = true;
	p->t = *t;
	/* An https registry is verified against the CAs SFUs are. */
	tlsstate_apply(p->client, t, "registry");
	if (new_url || new_token) {
		regpoll_switch(p, new_url, now_ms);
		return;
	}
	/* Same source: the list in use is applied again, since a reload may have
	 * freed an address the config held; a no-op otherwise. */
	if (p->t.registry_url[0] != '\0' && p->doc.recs != NULL &&
	    regpoll_apply(p, now_ms, &b, why, sizeof(why)) == 0 && (b.added || b.removed))
		log_info("registry: applied the list again after a reload: %u added, %u removed",
			 b.added, b.removed);
}

void regpoll_tick(struct regpoll *p, int64_t now_ms)
{
	regpoll_log_state(p, now_ms);
}

int regpoll_new(struct regpoll **out, uv_loop_t *loop, struct registry *r,
		struct regstatus *status)
{
	struct regpoll *p = calloc(1, sizeof(*p));
	int rc;

	if (p == NULL)
		return -ENOMEM;
	rc = http_client_new(&p->client, loop);
	if (rc != 0) {
		free(p);
		return rc;
	}
	p->r = r;
	p->status = status;
	p->logged = REGSTATUS_OFF;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	*out = p;
	return 0;
}

void regpoll_free(struct regpoll *p)
{
	if (p == NULL)
		return;
	uv_timer_stop(&p->timer);
	http_client_free(p->client);
	regdoc_free(&p->doc);
	explicit_bzero(p->t.registry_token, sizeof(p->t.registry_token));
	free(p->warned);
	/* The timer handle and requests in flight still reference p; the
	 * process exits right after. */
}
