/* GET /v1/channel: verify Odoo's token, choose an SFU, re-sign, forward, relay the answer. */
#include "channel.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "affinity.h"
#include "budget.h"
#include "circuit.h"
#include "claim.h"
#include "clock.h"
#include "hex.h"
#include "jscan.h"
#include "log.h"
#include "select.h"
#include "tlsstate.h"
#include "token.h"

#define CHANNEL_MAX_TRIED 32 /* SFUs one request may try or skip (max_retries <= 16) */
#define CHANNEL_RETRY_AFTER "Retry-After: 5\r\n"
/* Less time than this left ends the request rather than start an attempt that
 * cannot be answered in it: an attempt that timed out at the deadline by its
 * loop's cached clock may leave a millisecond by the request's. */
#define CHANNEL_MIN_ATTEMPT_MS 10

/* How an attempt ended, for the answer when no SFU succeeds. */
enum channel_outcome {
	OUT_NONE,
	OUT_UNREACHABLE, /* connect error, timeout, reset: 502 "failed to contact SFU" */
	OUT_BAD_BODY, /* 2xx without uuid/url: 502 "invalid SFU response" */
	OUT_STATUS, /* 5xx, 1xx, 3xx: relayed with an empty body */
};

/*
 * One channel request between the client and the SFUs it tries. The request's
 * strings (token, query) stay valid in the connection until it is answered.
 */
struct channel_req {
	struct handler_ctx *x;
	struct http_conn *c;
	const char *tok; /* Odoo's token, in the request */
	size_t tok_len, signed_len;
	uint64_t affinity; /* affinity_key() of (client, iss) */
	int64_t deadline_ms; /* the whole request ends by then (Odoo waits 3 s) */
	uint32_t tried[CHANNEL_MAX_TRIED]; /* slots attempted or skipped */
	unsigned n_tried, attempts;
	bool pinned_checked;
	bool small; /* from the free list (see channel_alloc) */
	/* The issuer's claim in etcd (claim.h), tried once per request: tried,
	 * sent and decided by etcd (claimed), being replaced; the SFU proposed. */
	bool claim_tried, claimed, replacing;
	uint32_t claim_slot;
	uint64_t claim_gen;
	unsigned maybe_orphans; /* earlier attempts that may have created a channel */
	enum channel_outcome outcome;
	int last_status;
	/* The attempt in flight. */
	bool probing; /* it is the half-open circuit's one trial request */
	uint32_t slot;
	uint64_t generation;
	uint64_t sent_us;
	int64_t upstream_us; /* waiting on SFUs so far, for the access log */
	char address[CONFIG_ADDRESS_MAX];
	struct select_query q;
	char *region, *country, *target, *xff; /* point into buf */
	size_t target_len;
	char buf[]; /* region, country, target, xff */
};

static void channel_attempt(struct channel_req *cr);

/* Percent-decodes (and '+' to space) a form value; invalid escapes stay as is. */
static void channel_decode(const char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '%' && i + 2 < len && hex_digit(in[i + 1]) >= 0 &&
		    hex_digit(in[i + 2]) >= 0) {
			out[o++] = (char)(hex_digit(in[i + 1]) * 16 + hex_digit(in[i + 2]));
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

/* The last "uuid" and "url" members of the SFU's answer (last wins, as in
 * JSON.parse): both must be strings for the answer to be usable. */
struct channel_body {
	bool uuid, url;
};

static int channel_body_member(const struct jscan_member *m, void *ctx)
{
	struct channel_body *b = ctx;

	if (jscan_key_is(m, "uuid"))
		b->uuid = m->type == JSCAN_STRING;
	else if (jscan_key_is(m, "url"))
		b->url = m->type == JSCAN_STRING;
	return 0;
}

static bool channel_body_valid(const char *body, size_t len)
{
	struct channel_body b = { false, false };

	return jscan_object(body, len, channel_body_member, &b) == 0 && b.uuid && b.url;
}

/* Builds the X-Forwarded-For value the SFU must see (odoo/sfu with PROXY=1 takes
 * its first entry as the client, and Odoo later calls it from that address):
 * the direct peer, or with trust_proxy the incoming chain plus the peer. */
static int channel_xff(const struct handler_ctx *x, const struct http_request *req, char *out,
		       size_t outlen)
{
	size_t n = 0;

	if (x->live->trust_proxy) {
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

/*
 * Requests whose strings fit CHANNEL_SMALL bytes (nearly all: a query of a
 * few parameters) reuse blocks from a per-process free list instead of
 * malloc() per request; workers are single-threaded, so no locking.
 */
#define CHANNEL_SMALL 1024
#define CHANNEL_FREE_MAX 256

static struct channel_req *channel_free_list[CHANNEL_FREE_MAX];
static unsigned channel_n_free;

static struct channel_req *channel_alloc(size_t strings)
{
	struct channel_req *cr;

	if (strings > CHANNEL_SMALL)
		cr = malloc(sizeof(*cr) + strings);
	else if (channel_n_free > 0)
		cr = channel_free_list[--channel_n_free];
	else
		cr = malloc(sizeof(*cr) + CHANNEL_SMALL);
	if (cr != NULL) {
		memset(cr, 0, sizeof(*cr));
		cr->small = strings <= CHANNEL_SMALL;
	}
	return cr;
}

/* Tells the access log, for the response about to be sent, which SFU the
 * request went to (handler.h). channel_done clears it. */
static void channel_note(struct channel_req *cr)
{
	struct handler_upstream *u = &cr->x->upstream;

	u->sfu = cr->attempts > 0 ? cr->address : NULL;
	u->attempts = cr->attempts;
	u->upstream_us = cr->upstream_us;
}

/* Releases the request (its answer was sent). */
static void channel_done(struct channel_req *cr)
{
	memset(&cr->x->upstream, 0, sizeof(cr->x->upstream));
	if (cr->small && channel_n_free < CHANNEL_FREE_MAX)
		channel_free_list[channel_n_free++] = cr;
	else
		free(cr);
}

/*
 * No SFU created the channel. When only one SFU was tried, the answer is the
 * existing gateway's (502 or the SFU's status), so deployments see what they
 * know; after a failover across several SFUs it is 503.
 */
static void channel_fail(struct channel_req *cr)
{
	struct http_conn *c = cr->c;

	channel_note(cr);
	if (cr->attempts >= 2) {
		http_respond_error(c, 503, "no SFU could create the channel", NULL);
	} else {
		switch (cr->outcome) {
		case OUT_BAD_BODY:
			http_respond_error(c, 502, "invalid SFU response", NULL);
			break;
		case OUT_STATUS:
			http_respond(c, cr->last_status, NULL, NULL, NULL, 0);
			break;
		case OUT_UNREACHABLE:
		case OUT_NONE:
		default:
			http_respond_error(c, 502, "failed to contact SFU", NULL);
			break;
		}
	}
	channel_done(cr);
}

/*
 * Counts the channel against the SFU the moment it is sent, so a burst in
 * flight spreads instead of herding onto the SFU that looked idlest; a
 * failed attempt takes its count back. The slot may meanwhile have been
 * given to another SFU, or a report may have reset the count: never go
 * below zero, never touch another occupant's count.
 */
static void channel_assign(struct handler_ctx *x, struct channel_req *cr)
{
	atomic_fetch_add_explicit(&x->shm->registry.slots[cr->slot].assigned, 1,
				  memory_order_relaxed);
}

static void channel_unassign(struct handler_ctx *x, struct channel_req *cr)
{
	struct registry_slot *sl = &x->shm->registry.slots[cr->slot];
	uint64_t v = atomic_load_explicit(&sl->assigned, memory_order_relaxed);
	struct sfu_hot h;

	if (registry_read_hot(&x->shm->registry, cr->slot, &h) != 0 ||
	    h.generation != cr->generation)
		return;
	while (v > 0 && !atomic_compare_exchange_weak_explicit(&sl->assigned, &v, v - 1,
							       memory_order_relaxed,
							       memory_order_relaxed))
		;
}

/* Classifies one SFU answer and moves on: answer, or next SFU. */
static void channel_on_response(const struct http_client_result *res, void *ctx)
{
	struct channel_req *cr = ctx;
	struct handler_ctx *x = cr->x;
	struct registry_slot *slot = &x->shm->registry.slots[cr->slot];
	struct metrics_proc *m = x->metrics;
	int64_t now = clock_ms();
	bool ok2xx = res->error == 0 && res->status >= 200 && res->status < 300;
	int64_t took_us = clock_us() - (int64_t)cr->sent_us;

	metrics_latency(m, (uint64_t)took_us);
	cr->upstream_us += took_us;
	if (res->tls_handshake)
		tlsstate_record(&x->shm->registry, cr->slot, cr->generation, cr->address, res);
	if (ok2xx && channel_body_valid(res->body, res->body_len)) {
		circuit_success(&slot->cb, &x->shm->registry.health_epoch, m);
		/* A pin of this gateway alone slides with every success. A claim's
		 * lasts as long as its key in etcd, which no success renews: the next
		 * request after it claims again (and proposes this SFU). */
		if (!cr->claimed || cr->n_tried > 1 || !claim_possible(x, now))
			affinity_record(&x->shm->affinity, cr->affinity, cr->slot, cr->generation,
					now, x->live->affinity_ttl_ms);
		atomic_fetch_add_explicit(&slot->requests_ok, 1, memory_order_relaxed);
		if (cr->attempts > 1) {
			metrics_add(m, M_FAILOVERS, 1);
			/* A retry that worked costs the budget nothing: only retries
			 * that keep failing (an outage) drain it. */
			budget_refund(&x->shm->budget);
		}
		if (cr->maybe_orphans > 0)
			metrics_add(m, M_ORPHAN_CHANNELS, cr->maybe_orphans);
		channel_note(cr);
		http_respond_json(cr->c, res->status, res->body, res->body_len);
		channel_done(cr);
		return;
	}
	if (res->error == 0 && res->status >= 400 && res->status < 500) {
		/* The SFU is alive and refused this request: any SFU would answer
		 * the same token so, so there is nothing to retry, and the answer
		 * says nothing against the SFU's health. (The gateway refuses up
		 * front what every SFU refuses, such as an empty issuer; a wrong
		 * per-SFU key shows as a 5xx on odoo/sfu, handled below.) */
		circuit_success(&slot->cb, &x->shm->registry.health_epoch, m);
		channel_unassign(x, cr);
		log_info_limited("channel: SFU statuses relayed",
				 "channel: sfu=%s status=%d relayed", cr->address, res->status);
		channel_note(cr);
		http_respond(cr->c, res->status, NULL, NULL, NULL, 0);
		channel_done(cr);
		return;
	}
	if (res->stalled) {
		/* The attempt timed out while this worker was not running (stopped,
		 * frozen): the SFU may have answered in time, so nothing is held
		 * against it. Try the next SFU while the request's time lasts. */
		channel_unassign(x, cr);
		if (cr->probing)
			circuit_release_probe(&slot->cb, &x->shm->registry.health_epoch);
		cr->outcome = OUT_UNREACHABLE;
		cr->maybe_orphans++;
		log_warn_limited("channel: attempts cut short by a stalled worker",
				 "channel: sfu=%s timed out while this worker was stalled; "
				 "not counted against it",
				 cr->address);
		channel_attempt(cr);
		return;
	}
	/* A failure: connect error, timeout, reset, 5xx, 1xx/3xx, or a 2xx
	 * without uuid/url. */
	metrics_add(m, M_UPSTREAM_FAILURES, 1);
	atomic_fetch_add_explicit(&slot->requests_failed, 1, memory_order_relaxed);
	channel_unassign(x, cr);
	circuit_failure(&slot->cb, &x->shm->registry.health_epoch, x->live, now, m);
	if (res->error != 0) {
		cr->outcome = OUT_UNREACHABLE;
		log_warn_limited("channel: SFU attempts failed", "channel: sfu=%s failed: %s",
				 cr->address, http_client_strerror(res));
		/* Only a request that may have reached the SFU can leave a channel. */
		if (!res->connect_failed)
			cr->maybe_orphans++;
	} else if (ok2xx) {
		cr->outcome = OUT_BAD_BODY;
		cr->maybe_orphans++;
		log_warn_limited("channel: SFU answers without uuid/url",
				 "channel: sfu=%s status=%d answered without uuid/url", cr->address,
				 res->status);
	} else {
		cr->outcome = OUT_STATUS;
		cr->last_status = res->status;
		if (res->status >= 500)
			cr->maybe_orphans++;
		log_warn_limited("channel: SFU error statuses", "channel: sfu=%s status=%d",
				 cr->address, res->status);
	}
	channel_attempt(cr);
}

static bool channel_tried(const struct channel_req *cr, uint32_t slot)
{
	for (unsigned i = 0; i < cr->n_tried; i++)
		if (cr->tried[i] == slot)
			return true;
	return false;
}

/*
 * Pins the choice here at once, not when the SFU answers: a second
 * participant starting the same call meanwhile must reach the same SFU. If
 * one beat us to it, follow its pin (*choice becomes it); a pin whose SFU
 * cannot take the channel (gone, or its slot reused) is replaced by ours.
 * Always 0.
 */
static int channel_pin_local(struct channel_req *cr, int64_t now, struct select_choice *choice)
{
	struct handler_ctx *x = cr->x;
	struct registry *r = &x->shm->registry;
	uint32_t pin_slot = choice->slot, ttl = x->live->affinity_ttl_ms;
	uint64_t pin_gen = choice->rec.hot.generation;

	if (ttl == 0)
		return 0;
	if (affinity_pin(&x->shm->affinity, cr->affinity, &pin_slot, &pin_gen, now, ttl) &&
	    (pin_slot != choice->slot || pin_gen != choice->rec.hot.generation)) {
		uint32_t mine = choice->slot;
		uint64_t mine_gen = choice->rec.hot.generation;

		if (select_pinned(r, x->live, pin_slot, pin_gen, now, choice) != 0) {
			if (select_pinned(r, x->live, mine, mine_gen, now, choice) == 0)
				affinity_record(&x->shm->affinity, cr->affinity, mine, mine_gen, now,
						ttl);
		}
	}
	return 0;
}

/*
 * The half-open circuit's one trial: an SFU whose circuit is not closed may
 * take the attempt only with the probe claim. 0 (go), -EAGAIN (another
 * worker has the probe: the SFU is skipped, choose again), -EHOSTDOWN.
 */
static int channel_admit(struct channel_req *cr, const struct select_choice *choice, int64_t now,
			 uint32_t hold_ms)
{
	struct handler_ctx *x = cr->x;
	struct registry *r = &x->shm->registry;

	cr->probing = false;
	if (circuit_closed(&r->slots[choice->slot].cb))
		return 0;
	if (circuit_claim_probe(&r->slots[choice->slot].cb, &r->health_epoch, now, hold_ms,
				x->metrics)) {
		cr->probing = true;
		return 0;
	}
	if (cr->n_tried >= CHANNEL_MAX_TRIED)
		return -EHOSTDOWN;
	cr->tried[cr->n_tried++] = choice->slot;
	return -EAGAIN;
}

static void channel_on_claim(const struct claim_answer *a, void *ctx);

/*
 * In a cluster, the issuer's first request proposes an SFU to etcd (claim.h)
 * instead of pinning it here alone: the last SFU this gateway sent the
 * issuer to, while it can still take the channel (a call going on stays
 * where it is), else the best one. -EINPROGRESS when the claim is under way
 * (channel_on_claim goes on), else the choice to pin locally.
 */
static int channel_propose(struct channel_req *cr, int64_t now, struct select_choice *choice)
{
	struct handler_ctx *x = cr->x;
	struct registry *r = &x->shm->registry;
	uint32_t slot;
	uint64_t gen;
	int rc = -ENOENT;

	if (affinity_last(&x->shm->affinity, cr->affinity, &slot, &gen) &&
	    !channel_tried(cr, slot))
		rc = select_pinned(r, x->live, slot, gen, now, choice);
	if (rc != 0)
		rc = select_best(x->snap, r, x->live, &cr->q, cr->tried, cr->n_tried, now, choice);
	if (rc != 0)
		return rc;
	cr->claim_slot = choice->slot;
	cr->claim_gen = choice->rec.hot.generation;
	if (claim_start(x, cr->affinity, choice->rec.cold.address, 0, channel_on_claim, cr) == 0) {
		cr->claimed = true;
		return -EINPROGRESS;
	}
	metrics_add(x->metrics, M_CLAIMS_FALLBACK, 1);
	return 0;
}

/* Picks the SFU for the next attempt: the affinity pin first, then the best
 * one not tried yet. Half-open SFUs need the probe claim. 0, -EINPROGRESS (an
 * etcd claim decides: channel_on_claim goes on) or -errno. */
static int channel_choose(struct channel_req *cr, int64_t now, uint32_t hold_ms,
			  struct select_choice *choice)
{
	struct handler_ctx *x = cr->x;
	struct registry *r = &x->shm->registry;

	for (;;) {
		int rc = -ENOENT;
		uint32_t pin_slot;
		uint64_t pin_gen;

		if (!cr->pinned_checked) {
			cr->pinned_checked = true;
			if (x->live->affinity_ttl_ms > 0 &&
			    affinity_lookup(&x->shm->affinity, cr->affinity, now, &pin_slot, &pin_gen))
				rc = select_pinned(r, x->live, pin_slot, pin_gen, now, choice);
			if (rc == 0)
				metrics_add(x->metrics, M_AFFINITY_HITS, 1);
		}
		if (rc != 0 && cr->attempts == 0 && !cr->claim_tried &&
		    x->live->affinity_ttl_ms > 0 && claim_possible(x, now)) {
			cr->claim_tried = true;
			rc = channel_propose(cr, now, choice);
			if (rc == -EINPROGRESS || rc < 0)
				return rc;
			/* No claim could be sent: the proposal is pinned here alone. */
			rc = channel_pin_local(cr, now, choice);
		}
		if (rc != 0) {
			rc = select_best(x->snap, r, x->live, &cr->q, cr->tried, cr->n_tried, now,
					 choice);
			if (rc != 0)
				return rc;
			if (cr->attempts == 0 && !cr->claimed)
				rc = channel_pin_local(cr, now, choice);
		}
		rc = channel_admit(cr, choice, now, hold_ms);
		if (rc != -EAGAIN)
			return rc;
	}
}

static void channel_send(struct channel_req *cr, int rc, struct select_choice *choice);

static void channel_attempt(struct channel_req *cr)
{
	struct handler_ctx *x = cr->x;
	struct select_choice choice;
	int64_t now = clock_ms(), left = cr->deadline_ms - now;
	uint32_t timeout;
	int rc;

	if (cr->attempts >= x->live->max_retries || cr->n_tried >= CHANNEL_MAX_TRIED ||
	    left < (cr->attempts > 0 ? CHANNEL_MIN_ATTEMPT_MS : 1)) {
		channel_fail(cr);
		return;
	}
	timeout = x->live->retry_timeout_ms < (uint32_t)left ? x->live->retry_timeout_ms
							   : (uint32_t)left;
	rc = channel_choose(cr, now, timeout + 1000, &choice);
	if (rc == -EINPROGRESS)
		return;
	channel_send(cr, rc, &choice);
}

/*
 * The claim's answer: the SFU etcd holds for the issuer is the one this
 * request goes to, and the local table learns it. When the winner's SFU cannot
 * take the channel here, the claim is replaced (once per request, on the
 * winner's revision so that concurrent replacers agree); when etcd did not
 * answer, this gateway chooses alone and pins it locally.
 */
static void channel_on_claim(const struct claim_answer *a, void *ctx)
{
	struct channel_req *cr = ctx;
	struct handler_ctx *x = cr->x;
	struct registry *r = &x->shm->registry;
	struct select_choice choice;
	int64_t now = clock_ms(), left = cr->deadline_ms - now;
	uint32_t timeout, ttl = x->live->affinity_ttl_ms;
	int rc = -ENOENT, slot;

	switch (a->result) {
	case CLAIM_WON:
		metrics_add(x->metrics, cr->replacing ? M_CLAIMS_REPLACED : M_CLAIMS_WON, 1);
		rc = select_pinned(r, x->live, cr->claim_slot, cr->claim_gen, now, &choice);
		if (rc == 0 && ttl > 0)
			affinity_record(&x->shm->affinity, cr->affinity, choice.slot,
					choice.rec.hot.generation, now, ttl);
		break;
	case CLAIM_LOST:
		slot = a->address[0] != '\0' ? registry_find(r, a->address) : -ENOENT;
		if (slot >= 0) {
			struct sfu_hot h;

			if (registry_read_hot(r, (uint32_t)slot, &h) == 0)
				rc = select_pinned(r, x->live, (uint32_t)slot, h.generation, now, &choice);
		}
		if (rc == 0) {
			metrics_add(x->metrics, M_CLAIMS_LOST, 1);
			if (ttl > 0)
				affinity_record(&x->shm->affinity, cr->affinity, choice.slot,
						choice.rec.hot.generation, now, ttl);
			break;
		}
		if (!cr->replacing && left > 0 &&
		    select_pinned(r, x->live, cr->claim_slot, cr->claim_gen, now, &choice) == 0) {
			/* The winner's SFU cannot take it here: put ours in its place. */
			cr->replacing = true;
			if (claim_start(x, cr->affinity, choice.rec.cold.address,
					a->address[0] != '\0' ? a->mod_revision : 0, channel_on_claim,
					cr) == 0)
				return;
		}
		/* Nothing else to follow or replace: choose alone. */
		/* fall through */
	case CLAIM_FAILED:
	default:
		cr->claimed = false; /* the pin is this gateway's alone */
		metrics_add(x->metrics, M_CLAIMS_FALLBACK, 1);
		if (a->result == CLAIM_FAILED)
			log_info_limited("channel: etcd claims failed",
					 "channel: the issuer's claim in etcd failed (%s); chose alone",
					 a->why ? a->why : "no answer");
		rc = select_pinned(r, x->live, cr->claim_slot, cr->claim_gen, now, &choice);
		if (rc == 0)
			channel_pin_local(cr, now, &choice);
		break;
	}
	if (left <= 0) {
		channel_fail(cr);
		return;
	}
	timeout = x->live->retry_timeout_ms < (uint32_t)left ? x->live->retry_timeout_ms
							   : (uint32_t)left;
	/* The chosen SFU may have gone meanwhile, or its one half-open probe be
	 * taken: then the best other one, as any attempt would. */
	if (rc == 0)
		rc = channel_admit(cr, &choice, now, timeout + 1000);
	if (rc != 0)
		rc = channel_choose(cr, now, timeout + 1000, &choice);
	if (rc == -EINPROGRESS)
		return;
	channel_send(cr, rc, &choice);
}

/* Sends the attempt to the SFU chosen (rc 0), or answers why none was. */
static void channel_send(struct channel_req *cr, int rc, struct select_choice *choice)
{
	struct handler_ctx *x = cr->x;
	struct http_client_req creq;
	char headers[TOKEN_MAX_LEN + HTTP_HEAD_MAX + 128];
	int64_t now = clock_ms(), left = cr->deadline_ms - now;
	uint32_t timeout;
	int hn;
	ssize_t sl;

	if (rc != 0) {
		if (cr->attempts > 0) {
			channel_fail(cr);
			return;
		}
		channel_note(cr);
		switch (rc) {
		case -EBUSY:
			metrics_add(x->metrics, M_OVERLOAD_REJECTED, 1);
			http_respond_error(cr->c, 503, "all SFUs are overloaded", CHANNEL_RETRY_AFTER);
			break;
		case -EHOSTDOWN:
			http_respond_error(cr->c, 503, "no healthy SFU available", CHANNEL_RETRY_AFTER);
			break;
		default:
			http_respond_error(cr->c, 503, "no SFU instances available", NULL);
			break;
		}
		channel_done(cr);
		return;
	}
	if (left <= 0) {
		circuit_release_probe(&x->shm->registry.slots[choice->slot].cb,
				      &x->shm->registry.health_epoch);
		channel_fail(cr);
		return;
	}
	timeout = x->live->retry_timeout_ms < (uint32_t)left ? x->live->retry_timeout_ms
							   : (uint32_t)left;
	if (cr->attempts > 0) {
		/* A fleet-wide outage must not turn into a retry storm. */
		if (!budget_spend(&x->shm->budget)) {
			metrics_add(x->metrics, M_RETRY_BUDGET_EXHAUSTED, 1);
			circuit_release_probe(&x->shm->registry.slots[choice->slot].cb,
					      &x->shm->registry.health_epoch);
			channel_fail(cr);
			return;
		}
		metrics_add(x->metrics, M_RETRIES, 1);
	}
	cr->tried[cr->n_tried++] = choice->slot;
	cr->attempts++;
	cr->slot = choice->slot;
	cr->generation = choice->rec.hot.generation;
	memcpy(cr->address, choice->rec.cold.address, sizeof(cr->address));

	hn = snprintf(headers, sizeof(headers), "Authorization: jwt ");
	sl = token_resign(cr->tok, cr->signed_len, choice->rec.cold.key, choice->rec.cold.key_len,
			  headers + hn, sizeof(headers) - (size_t)hn);
	if (sl < 0) {
		channel_note(cr);
		http_respond_error(cr->c, 431, "request headers too large", NULL);
		channel_done(cr);
		return;
	}
	hn += (int)sl;
	hn += snprintf(headers + hn, sizeof(headers) - (size_t)hn,
		       "\r\nX-Forwarded-For: %s\r\nAccept: application/json\r\n", cr->xff);
	memset(&creq, 0, sizeof(creq));
	creq.method = "GET";
	creq.target = cr->target;
	creq.target_len = cr->target_len;
	creq.headers = headers;
	creq.headers_len = (size_t)hn < sizeof(headers) ? (size_t)hn : sizeof(headers) - 1;
	creq.connect_timeout_ms = x->live->connect_timeout_ms < timeout ? x->live->connect_timeout_ms
									: timeout;
	creq.timeout_ms = timeout;
	creq.tls_insecure = !tlsstate_verified(&choice->rec.cold);
	cr->sent_us = (uint64_t)clock_us();
	channel_assign(x, cr);
	metrics_add(x->metrics, M_UPSTREAM_REQUESTS, 1);
	rc = http_client_request(x->client, cr->address, &creq, channel_on_response, cr);
	if (rc != 0) {
		struct http_client_result res = { .error = UV_EINVAL, .connect_failed = true };

		log_warn_limited("channel: SFUs not contacted", "channel: sfu=%s cannot be contacted: %s",
				 cr->address, strerror(-rc));
		channel_on_response(&res, cr);
	}
}

void channel_handle(struct handler_ctx *x, struct http_conn *c, const struct http_request *req)
{
	const struct http_header *auth = http_request_header(req, "Authorization");
	const char *tok, *end, *sp;
	size_t tok_len, ql = req->query_len + 1;
	struct token t;
	struct channel_req *cr;
	char xff[HTTP_HEAD_MAX + HTTP_PEER_MAX + 4];
	int rc, n;

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
	rc = token_verify(tok, tok_len, x->live->key, x->live->key_len, time(NULL), true, &t);
	if (rc == TOKEN_NO_ISS) {
		http_respond_error(c, 403, "missing iss claim", NULL);
		return;
	}
	if (rc != TOKEN_OK) {
		log_info_limited("channel: rejected tokens", "channel: rejected token from %s: %s",
				 req->peer, token_status_str(rc));
		http_respond_error(c, 401, "invalid token", NULL);
		return;
	}
	if (channel_xff(x, req, xff, sizeof(xff)) != 0) {
		http_respond_error(c, 431, "request headers too large", NULL);
		return;
	}
	/* One allocation per request holds everything its attempts need. */
	cr = channel_alloc(3 * ql + 16 + strlen(xff) + 1);
	if (cr == NULL) {
		http_respond_error(c, 503, "out of memory", NULL);
		return;
	}
	cr->x = x;
	cr->c = c;
	cr->tok = tok;
	cr->tok_len = tok_len;
	cr->signed_len = t.signed_len;
	cr->region = cr->buf;
	cr->country = cr->region + ql;
	cr->target = cr->country + ql;
	cr->xff = cr->target + ql + 16;
	memcpy(cr->xff, xff, strlen(xff) + 1);
	memcpy(cr->target, "/v1/channel?", 12);
	n = channel_split_query(req->query, req->query_len, cr->target + 12, cr->region,
				cr->country);
	cr->target_len = n > 0 ? 12 + (size_t)n : 11;
	cr->target[cr->target_len] = '\0';
	cr->q.region = cr->region;
	cr->q.region_len = strlen(cr->region);
	cr->q.country = cr->country;
	cr->q.country_len = strlen(cr->country);
	/* Issuer affinity keys on the address the SFU will see as the creator:
	 * the first X-Forwarded-For entry we send. */
	cr->affinity = affinity_key(xff, strcspn(xff, ","), t.iss, t.iss_len);
	cr->deadline_ms = clock_ms() + x->live->deadline_ms;
	budget_earn(&x->shm->budget);
	channel_attempt(cr);
}
