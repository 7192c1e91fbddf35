/* Cluster: the reaper's side of a gateway cluster: accepted heartbeats to etcd, etcd mirrored into the registry, the leases. */
#include "cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrpolicy.h"
#include "affinity.h"
#include "clock.h"
#include "clusterq.h"
#include "clusterstatus.h"
#include "etcd.h"
#include "heartbeat.h"
#include "http_client.h"
#include "log.h"
#include "registry.h"
#include "strbuf.h"

/* Queue entries taken per pop. */
#define CLUSTER_POP 128
/* Largest JSON object of a watch stream (a batch of events after a reconnect). */
#define CLUSTER_WATCH_OBJECT_MAX ((size_t)16 << 20)

/* The latest unwritten news of one SFU. */
struct cluster_pending {
	struct clusterq_entry e;
	uint64_t hash; /* registry_hash(e.address) */
	uint64_t ver; /* changes whenever e is replaced by newer news */
};

enum cluster_op_kind { OP_RANGE, OP_WATCH, OP_TXN, OP_GRANT_REG, OP_GRANT_CLAIM, OP_PING };

/* One request in flight. Its answer is dropped when gen (or, for a watch,
 * watch_gen) moved since it was sent: it belongs to an older start. */
struct cluster_op {
	struct cluster *c;
	enum cluster_op_kind kind;
	uint64_t gen, watch_gen;
	unsigned endpoint;
	int64_t sent_ms;
	/* OP_RANGE: the answer, collected up to CLUSTER_RANGE_MAX; keys_only for
	 * a reconciliation (which registrations still exist) rather than a read. */
	bool keys_only;
	char *body;
	size_t len, cap;
	bool too_large;
	/* OP_WATCH: the stream's parser and state. */
	json_tokener *tok;
	size_t obj_bytes;
	bool created, aborted;
	/* OP_TXN: the writes it carries, (hash, ver) of each. */
	uint64_t *hashes, *vers;
	size_t n;
};

struct cluster {
	struct shm_layout *shm;
	struct http_client *client;
	struct config_tunables t;
	bool configured; /* t names endpoints */
	bool working; /* the reaper holds the reaper lease */
	uint64_t gen, watch_gen;

	unsigned cur; /* endpoint in use */
	unsigned fails; /* consecutive failures, across endpoints */
	int64_t retry_at_ms; /* no new connection attempt before */

	struct clusterstatus_data st; /* what is published */
	bool need_range; /* read the whole prefix before watching */
	bool need_keys; /* after a disconnection: which registrations still exist */
	int64_t rev; /* next revision to watch from */
	uint32_t sfus_seen; /* registrations in etcd at the last full read */

	bool range_busy, watch_busy, txn_busy, ping_busy, reg_grant_busy, claim_grant_busy;
	bool watch_created;
	int64_t watch_deadline_ms; /* the watch must say "created" by then (0: it did) */
	int64_t next_ping_ms;

	int64_t reg_lease, reg_lease_ms; /* the registration lease of the slice, its grant */
	int64_t last_txn_ms; /* when the last write transaction was sent */
	uv_timer_t flush; /* the next write transaction's turn (CLUSTER_FLUSH_MS) */
	bool flush_armed;
	int64_t claim_lease_ms; /* grant of the published claim lease */

	struct cluster_pending *pend;
	size_t n_pend, cap_pend, max_pend;
	uint64_t next_ver;

	uv_poll_t wake;
};

static void cluster_step(struct cluster *c, int64_t now_ms);

/* ---- pure decisions */

bool cluster_delete_applies(uint64_t prev_seq, uint64_t hb_seq)
{
	return prev_seq == 0 || hb_seq <= prev_seq;
}

uint32_t cluster_claim_period_ms(uint32_t affinity_ttl_ms)
{
	uint32_t p = affinity_ttl_ms / 4;

	if (p < CLUSTER_LEASE_SLICE_MS)
		p = CLUSTER_LEASE_SLICE_MS;
	if (p > 30000)
		p = 30000;
	return p;
}

int64_t cluster_lease_ttl_s(uint32_t ms, uint32_t slice_ms)
{
	/* Whole seconds, rounded up: etcd's TTLs are seconds (at least 2 with its
	 * default timings; it raises smaller ones itself). */
	return ((int64_t)ms + slice_ms + 999) / 1000;
}

/* ---- state, status and endpoints */

static const char *cluster_endpoint(const struct cluster *c)
{
	return c->t.cluster_etcd[c->cur % (c->t.cluster_n_etcd ? c->t.cluster_n_etcd : 1)];
}

static void cluster_publish(struct cluster *c)
{
	c->st.endpoint = c->cur;
	snprintf(c->st.endpoint_url, sizeof(c->st.endpoint_url), "%s", cluster_endpoint(c));
	c->st.revision = c->rev > 0 ? c->rev - 1 : 0;
	clusterstatus_publish(&c->shm->clusterstatus, &c->st);
}

/* SFUs the registry holds, for the log lines about the view kept. */
static uint32_t cluster_sfus(const struct cluster *c)
{
	return atomic_load(&c->shm->registry.count);
}

static void cluster_set_state(struct cluster *c, enum cluster_state s, int64_t now_ms)
{
	enum cluster_state was = (enum cluster_state)c->st.state;

	if (was == s)
		return;
	c->st.state = s;
	c->st.since_ms = now_ms;
	cluster_publish(c);
	/* Once per change of state, whatever the number of failures behind it. */
	switch (s) {
	case CLUSTER_OFF:
		log_info("cluster: no [cluster] etcd: this gateway runs alone");
		break;
	case CLUSTER_CONNECTING:
		log_info("cluster: connecting to etcd at %s (prefix %s)", cluster_endpoint(c),
			 c->t.cluster_prefix);
		break;
	case CLUSTER_OK:
		if (was == CLUSTER_DEGRADED)
			log_info("cluster: etcd at %s is back: caught up to revision %lld; %u SFUs",
				 cluster_endpoint(c), (long long)(c->rev - 1), cluster_sfus(c));
		else
			log_info("cluster: in sync with etcd at %s: revision %lld, %u SFUs "
				 "registered there",
				 cluster_endpoint(c), (long long)(c->rev - 1), c->sfus_seen);
		break;
	case CLUSTER_DEGRADED:
		log_warn("cluster: etcd unreachable (%s); serving from the last view (%u SFUs) "
			 "and this gateway's own heartbeats until it is back",
			 c->st.last_error, cluster_sfus(c));
		break;
	}
}

/* Whether op answers the current start (not an abandoned one). */
static bool cluster_current(const struct cluster_op *op)
{
	const struct cluster *c = op->c;

	return c->working && c->configured && op->gen == c->gen &&
	       (op->kind != OP_WATCH || op->watch_gen == c->watch_gen);
}

static uint32_t cluster_backoff_ms(const struct cluster *c)
{
	unsigned n = c->t.cluster_n_etcd ? c->t.cluster_n_etcd : 1, rounds = c->fails / n;
	uint32_t d = 250;

	if (rounds == 0)
		return 0;
	for (unsigned i = 1; i < rounds && d < CLUSTER_BACKOFF_MAX_MS; i++)
		d *= 2;
	return d < CLUSTER_BACKOFF_MAX_MS ? d : CLUSTER_BACKOFF_MAX_MS;
}

/* The endpoint a request went to failed: move to the next one, and make the
 * watch again there. A whole round of failures is "degraded". */
static void cluster_fail(struct cluster *c, unsigned endpoint, const char *why, int64_t now_ms)
{
	const char *was;

	if (endpoint != c->cur)
		return; /* moved on already */
	was = cluster_endpoint(c);
	snprintf(c->st.last_error, sizeof(c->st.last_error), "%s: %s", was, why);
	c->fails++;
	if (c->t.cluster_n_etcd > 1) {
		c->cur = (c->cur + 1) % c->t.cluster_n_etcd;
		clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_ENDPOINT_SWITCHES, 1);
		log_info_limited("cluster: etcd endpoint failures",
				 "cluster: etcd at %s failed (%s); trying %s", was, why,
				 cluster_endpoint(c));
	}
	c->watch_gen++;
	c->watch_busy = false;
	c->watch_created = false;
	c->watch_deadline_ms = 0;
	c->retry_at_ms = now_ms + cluster_backoff_ms(c);
	/* The watch resumes from the next revision, which brings every change
	 * since, except deletions a compaction erased meanwhile (a compaction
	 * keeps no tombstones): the keys that still exist tell those. */
	c->need_keys = true;
	if (c->fails >= c->t.cluster_n_etcd)
		cluster_set_state(c, CLUSTER_DEGRADED, now_ms);
	cluster_publish(c);
}

static void cluster_ok(struct cluster *c, int64_t now_ms)
{
	c->fails = 0;
	c->st.last_ok_ms = now_ms;
}

/* ---- requests */

static void cluster_op_free(struct cluster_op *op)
{
	if (op->tok != NULL)
		json_tokener_free(op->tok);
	if (op->body != NULL)
		explicit_bzero(op->body, op->len);
	free(op->body);
	free(op->hashes);
	free(op->vers);
	free(op);
}

/* Sends op's request to the endpoint in use. On failure op is freed and the
 * endpoint counted as failed; returns 0 or the error. */
static int cluster_send(struct cluster *c, struct cluster_op *op, const char *target,
			const struct strbuf *body, uint32_t timeout_ms, http_client_cb cb,
			int (*on_body)(void *, const char *, size_t))
{
	static const char headers[] = "Content-Type: application/json\r\n";
	struct http_client_req req;
	int rc;

	op->c = c;
	op->gen = c->gen;
	op->watch_gen = c->watch_gen;
	op->endpoint = c->cur;
	op->sent_ms = clock_ms();
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.target = target;
	req.target_len = strlen(target);
	req.headers = headers;
	req.headers_len = sizeof(headers) - 1;
	req.body = body->buf != NULL ? body->buf : "";
	req.body_len = body->len;
	req.timeout_ms = timeout_ms;
	req.connect_timeout_ms = c->t.cluster_timeout_ms;
	req.on_body = on_body;
	rc = http_client_request(c->client, cluster_endpoint(c), &req, cb, op);
	if (rc != 0) {
		cluster_op_free(op);
		cluster_fail(c, c->cur, "the request could not be made", clock_ms());
	}
	return rc;
}

/* The JSON answer of a finished request, or NULL with why filled. */
static struct json_object *cluster_answer(const struct http_client_result *res, char *why,
					  size_t whylen)
{
	struct json_object *o;

	if (res->error != 0) {
		snprintf(why, whylen, "%s", http_client_strerror(res));
		return NULL;
	}
	o = json_tokener_parse(res->body);
	if (res->status != 200) {
		const char *e = etcd_error(o);

		snprintf(why, whylen, "status %d%s%.120s", res->status, e[0] ? ": " : "", e);
		json_object_put(o);
		return NULL;
	}
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		snprintf(why, whylen, "an answer that is not a JSON object");
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* ---- the mirror: etcd's registrations into the registry */

static void cluster_refused(struct cluster *c, const char *address, const char *why)
{
	clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_REFUSED, 1);
	log_warn_limited("cluster: etcd entries refused",
			 "cluster: refused the registration of %s found in etcd: %s", address, why);
}

/* A registration put in etcd (by any gateway): applied as that gateway's
 * heartbeat would be, under this gateway's own address policy. */
static void cluster_mirror_put(struct cluster *c, const char *address, const char *value,
			       size_t len, int64_t now_ms)
{
	struct heartbeat hb;
	struct json_object *o;
	char err[300];
	uint8_t holder;
	int64_t seq;
	int rc;

	if (heartbeat_parse(value, len, &hb, err, sizeof(err)) != 0) {
		cluster_refused(c, address, err);
		goto out;
	}
	if (!hb.up || strcmp(hb.address, address) != 0) {
		cluster_refused(c, address, "its value names another SFU or is not \"up\"");
		goto out;
	}
	o = json_tokener_parse(value);
	seq = etcd_int(o, "seq");
	json_object_put(o);
	if (seq <= 0) {
		cluster_refused(c, address, "no seq");
		goto out;
	}
	if (addrpolicy_check(&c->t, hb.address, err, sizeof(err)) != 0) {
		cluster_refused(c, address, err);
		goto out;
	}
	rc = heartbeat_apply(&c->shm->registry, &hb, (uint64_t)seq, SFU_REPORTER_CLUSTER, now_ms,
			     &holder);
	switch (rc) {
	case HEARTBEAT_REGISTERED:
		log_info("cluster: sfu=%s region=%s registered (learned from etcd)", hb.address,
			 hb.region);
		/* fall through */
	case HEARTBEAT_UPDATED:
		clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_MIRRORED, 1);
		break;
	case HEARTBEAT_STALE:
		break; /* this gateway has it already (its own write coming back) or newer */
	case HEARTBEAT_KEY_HELD:
		cluster_refused(c, address,
				holder == SFU_SOURCE_STATIC
					? "the config holds another key for it"
					: "the external registry holds another key for it");
		break;
	case HEARTBEAT_FULL:
		cluster_refused(c, address, "the registry is full ([gateway] max_sfus)");
		break;
	default:
		break; /* listed meanwhile, or the lock: the next heartbeat brings it again */
	}
out:
	explicit_bzero(&hb, sizeof(hb));
}

/* A registration deleted in etcd (a sign-off, or its lease lapsed). */
static void cluster_mirror_delete(struct cluster *c, const char *address, const char *prev,
				  size_t prev_len, int64_t now_ms)
{
	struct registry *r = &c->shm->registry;
	int64_t prev_seq = 0;
	struct sfu_record rec;
	int slot = registry_find(r, address);

	(void)now_ms;
	if (slot < 0 || registry_read(r, (uint32_t)slot, &rec) != 0)
		return;
	if (prev != NULL && prev_len > 0) {
		struct json_object *o = json_tokener_parse(prev);

		prev_seq = etcd_int(o, "seq");
		json_object_put(o);
	}
	if (rec.hot.source == SFU_SOURCE_REGISTERED &&
	    cluster_delete_applies(prev_seq > 0 ? (uint64_t)prev_seq : 0, rec.cold.hb_seq) &&
	    registry_remove_slot(r, (uint32_t)slot, rec.hot.generation, SFU_SOURCE_REGISTERED) ==
		    0) {
		clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_REMOVED, 1);
		log_info("cluster: sfu=%s removed: etcd no longer holds it (signed off or lease "
			 "lapsed)",
			 address);
	}
	explicit_bzero(&rec, sizeof(rec));
}

/* An issuer claimed at any gateway: this gateway's workers follow it too. */
static void cluster_mirror_claim(struct cluster *c, uint64_t key, const char *address,
				 int64_t now_ms)
{
	struct sfu_hot h;
	int slot;

	if (c->t.affinity_ttl_ms == 0)
		return;
	slot = registry_find(&c->shm->registry, address);
	if (slot < 0 || registry_read_hot(&c->shm->registry, (uint32_t)slot, &h) != 0)
		return;
	affinity_record(&c->shm->affinity, key, (uint32_t)slot, h.generation, now_ms,
			c->t.affinity_ttl_ms);
}

/* One kv of etcd (a range's, or an event's) applied; prev is the deleted
 * value (NULL for a put). del says it was deleted. */
static void cluster_apply_kv(struct cluster *c, struct json_object *kv, struct json_object *prev_kv,
			     bool del, int64_t now_ms)
{
	char key[ETCD_KEY_MAX], address[CONFIG_ADDRESS_MAX];
	char *value = NULL, *prev = NULL;
	int klen, vlen = 0, plen = 0;
	uint64_t aff = 0;
	struct json_object *v;

	klen = etcd_bytes(kv, "key", key, sizeof(key) - 1);
	if (klen <= 0)
		return;
	switch (etcd_key_parse(c->t.cluster_prefix, key, (size_t)klen, address, sizeof(address),
			       &aff)) {
	case ETCD_KEY_SFU:
		if (del) {
			if (prev_kv != NULL && json_object_object_get_ex(prev_kv, "value", &v)) {
				size_t cap = (size_t)json_object_get_string_len(v) + 1;

				prev = malloc(cap);
				plen = prev ? etcd_bytes(prev_kv, "value", prev, cap) : -1;
			}
			cluster_mirror_delete(c, address, plen > 0 ? prev : NULL,
					      plen > 0 ? (size_t)plen : 0, now_ms);
			break;
		}
		if (json_object_object_get_ex(kv, "value", &v)) {
			size_t cap = (size_t)json_object_get_string_len(v) + 1;

			value = malloc(cap);
			vlen = value ? etcd_bytes(kv, "value", value, cap) : -1;
		}
		if (vlen <= 0)
			cluster_refused(c, address, "an empty or invalid value");
		else
			cluster_mirror_put(c, address, value, (size_t)vlen, now_ms);
		break;
	case ETCD_KEY_AFFINITY:
		if (del) {
			affinity_forget(&c->shm->affinity, aff);
			break;
		}
		vlen = etcd_bytes(kv, "value", address, sizeof(address) - 1);
		if (vlen > 0) {
			address[vlen] = '\0';
			cluster_mirror_claim(c, aff, address, now_ms);
		}
		break;
	case ETCD_KEY_OTHER:
		break;
	}
	if (value != NULL) {
		explicit_bzero(value, vlen > 0 ? (size_t)vlen : 0);
		free(value);
	}
	if (prev != NULL) {
		explicit_bzero(prev, plen > 0 ? (size_t)plen : 0);
		free(prev);
	}
	clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_EVENTS, 1);
}

static int cluster_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * After a full read: registered SFUs etcd no longer holds left while this
 * gateway was not watching (their lease lapsed, or they signed off), unless
 * this gateway heard them itself lately (its own write is on its way).
 */
static void cluster_drop_missing(struct cluster *c, uint64_t *hashes, size_t n, int64_t now_ms)
{
	struct registry *r = &c->shm->registry;
	uint32_t end = registry_scan_end(r);

	qsort(hashes, n, sizeof(*hashes), cluster_u64_cmp);
	for (uint32_t i = 0; i < end; i++) {
		struct sfu_record rec;
		bool mine;

		if (registry_read(r, i, &rec) != 0 || rec.hot.source != SFU_SOURCE_REGISTERED)
			continue;
		mine = rec.hot.reported_by == SFU_REPORTER_HEARTBEAT &&
		       now_ms - rec.hot.last_report_ms <= (int64_t)c->t.stale_after_ms;
		if (!mine && bsearch(&rec.hot.address_hash, hashes, n, sizeof(*hashes),
				     cluster_u64_cmp) == NULL &&
		    registry_remove_slot(r, i, rec.hot.generation, SFU_SOURCE_REGISTERED) == 0) {
			clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_REMOVED, 1);
			log_info("cluster: sfu=%s removed: etcd no longer holds it", rec.cold.address);
		}
		explicit_bzero(&rec, sizeof(rec));
	}
}

/* ---- the full read */

static int cluster_range_body(void *ctx, const char *at, size_t len)
{
	struct cluster_op *op = ctx;

	if (len > CLUSTER_RANGE_MAX - op->len) {
		op->too_large = true;
		return -1;
	}
	if (op->len + len + 1 > op->cap) {
		size_t cap = op->cap ? op->cap : 65536;
		char *nb;

		while (cap < op->len + len + 1)
			cap *= 2;
		nb = realloc(op->body, cap);
		if (nb == NULL)
			return -1;
		op->body = nb;
		op->cap = cap;
	}
	memcpy(op->body + op->len, at, len);
	op->len += len;
	op->body[op->len] = '\0';
	return 0;
}

static void cluster_on_range(const struct http_client_result *res, void *ctx)
{
	struct cluster_op *op = ctx;
	struct cluster *c = op->c;
	int64_t now_ms = clock_ms();
	struct json_object *o = NULL, *kvs, *hdr;
	char why[CLUSTERSTATUS_ERROR_MAX];
	uint64_t *hashes = NULL;
	size_t n = 0;

	if (!cluster_current(op))
		goto out;
	c->range_busy = false;
	if (res->error == 0 && res->status == 200 && op->body != NULL) {
		o = json_tokener_parse(op->body);
		if (o == NULL)
			snprintf(why, sizeof(why), "an answer that is not JSON");
	} else if (op->too_large) {
		snprintf(why, sizeof(why), "the registrations are larger than %zu bytes",
			 CLUSTER_RANGE_MAX);
	} else {
		json_object_put(cluster_answer(res, why, sizeof(why)));
		if (res->error == 0 && res->status == 200)
			snprintf(why, sizeof(why), "an empty answer");
	}
	if (o == NULL) {
		cluster_fail(c, op->endpoint, why, now_ms);
		goto out;
	}
	cluster_ok(c, now_ms);
	if (json_object_object_get_ex(o, "kvs", &kvs) && json_object_is_type(kvs, json_type_array))
		n = json_object_array_length(kvs);
	hashes = calloc(n ? n : 1, sizeof(*hashes));
	if (hashes == NULL) {
		cluster_fail(c, op->endpoint, "out of memory", now_ms);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *kv = json_object_array_get_idx(kvs, i);
		char key[ETCD_KEY_MAX], address[CONFIG_ADDRESS_MAX];
		uint64_t aff;
		int klen = etcd_bytes(kv, "key", key, sizeof(key) - 1);

		if (klen > 0 && etcd_key_parse(c->t.cluster_prefix, key, (size_t)klen, address,
					       sizeof(address), &aff) == ETCD_KEY_SFU)
			hashes[i] = registry_hash(address);
		if (!op->keys_only)
			cluster_apply_kv(c, kv, NULL, false, now_ms);
	}
	cluster_drop_missing(c, hashes, n, now_ms);
	if (op->keys_only) {
		/* Registrations stay the watch's to apply; this only removed
		 * what no longer exists. */
		c->need_keys = false;
		cluster_step(c, now_ms);
		goto out;
	}
	c->sfus_seen = (uint32_t)n;
	c->need_keys = false;
	json_object_object_get_ex(o, "header", &hdr);
	c->rev = etcd_int(hdr, "revision") + 1;
	c->need_range = false;
	clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_RESYNCS, 1);
	cluster_publish(c);
	cluster_step(c, now_ms);
out:
	free(hashes);
	json_object_put(o);
	cluster_op_free(op);
}

static void cluster_send_range(struct cluster *c, bool keys_only)
{
	struct cluster_op *op = calloc(1, sizeof(*op));
	struct strbuf b = { 0 };
	char sfus[ETCD_KEY_MAX];

	if (op == NULL)
		return;
	op->kind = OP_RANGE;
	op->keys_only = keys_only;
	snprintf(sfus, sizeof(sfus), "%s" ETCD_SFUS, c->t.cluster_prefix);
	STRBUF_LIT(&b, "{\"key\":");
	etcd_b64(&b, sfus, strlen(sfus));
	STRBUF_LIT(&b, ",\"range_end\":");
	etcd_b64_prefix_end(&b, sfus);
	if (keys_only)
		STRBUF_LIT(&b, ",\"keys_only\":true");
	STRBUF_LIT(&b, "}");
	if (b.failed)
		cluster_op_free(op);
	else if (cluster_send(c, op, "/v3/kv/range", &b, c->t.cluster_timeout_ms, cluster_on_range,
			      cluster_range_body) == 0)
		c->range_busy = true;
	strbuf_free(&b);
}

/* ---- the watch */

/* One message of the watch stream. 0 to go on, -1 to end the stream. */
static int cluster_watch_message(struct cluster_op *op, struct json_object *m, int64_t now_ms)
{
	struct cluster *c = op->c;
	struct json_object *res, *events;
	char why[CLUSTERSTATUS_ERROR_MAX];

	if (!json_object_object_get_ex(m, "result", &res)) {
		struct json_object *e;

		if (json_object_object_get_ex(m, "error", &e))
			snprintf(why, sizeof(why), "the watch failed: %.120s",
				 json_object_is_type(e, json_type_object) ? etcd_error(e)
									    : etcd_error(m));
		else
			snprintf(why, sizeof(why), "the watch sent an unexpected message");
		op->aborted = true;
		cluster_fail(c, op->endpoint, why, now_ms);
		return -1;
	}
	if (etcd_bool(res, "canceled")) {
		op->aborted = true;
		c->watch_busy = false;
		c->watch_created = false;
		if (etcd_int(res, "compact_revision") > 0) {
			/* The revisions we missed are gone: read everything again. */
			log_info("cluster: etcd compacted revision %lld away; reading the "
				 "registrations again",
				 (long long)c->rev);
			c->need_range = true;
			cluster_step(c, now_ms);
			return -1;
		}
		snprintf(why, sizeof(why), "the watch was canceled: %.120s",
			 json_object_get_string(json_object_object_get(res, "cancel_reason")));
		cluster_fail(c, op->endpoint, why, now_ms);
		return -1;
	}
	if (etcd_bool(res, "created")) {
		op->created = true;
		c->watch_created = true;
		c->watch_deadline_ms = 0;
		cluster_ok(c, now_ms);
		if (!c->need_range)
			cluster_set_state(c, CLUSTER_OK, now_ms);
	}
	if (json_object_object_get_ex(res, "events", &events) &&
	    json_object_is_type(events, json_type_array)) {
		size_t n = json_object_array_length(events);

		for (size_t i = 0; i < n; i++) {
			struct json_object *ev = json_object_array_get_idx(events, i), *kv, *prev = NULL,
					   *type;
			bool del = json_object_object_get_ex(ev, "type", &type) &&
				   strcmp(json_object_get_string(type), "DELETE") == 0;
			int64_t mod;

			if (!json_object_object_get_ex(ev, "kv", &kv))
				continue;
			json_object_object_get_ex(ev, "prev_kv", &prev);
			cluster_apply_kv(c, kv, prev, del, now_ms);
			mod = etcd_int(kv, "mod_revision");
			if (mod + 1 > c->rev)
				c->rev = mod + 1;
		}
		c->st.last_ok_ms = now_ms;
	}
	return 0;
}

static int cluster_watch_body(void *ctx, const char *at, size_t len)
{
	struct cluster_op *op = ctx;
	int64_t now_ms = clock_ms();

	if (!cluster_current(op)) {
		op->aborted = true;
		return -1; /* an abandoned watch: close it */
	}
	while (len > 0) {
		struct json_object *m = json_tokener_parse_ex(op->tok, at, (int)len);
		enum json_tokener_error e = json_tokener_get_error(op->tok);
		size_t used;

		if (m == NULL && e == json_tokener_continue) {
			op->obj_bytes += len;
			if (op->obj_bytes > CLUSTER_WATCH_OBJECT_MAX) {
				op->aborted = true;
				cluster_fail(op->c, op->endpoint, "a watch message is too large",
					     now_ms);
				return -1;
			}
			return 0;
		}
		if (m == NULL) {
			op->aborted = true;
			cluster_fail(op->c, op->endpoint, "the watch stream is not JSON", now_ms);
			return -1;
		}
		used = json_tokener_get_parse_end(op->tok);
		json_tokener_reset(op->tok);
		op->obj_bytes = 0;
		if (cluster_watch_message(op, m, now_ms) != 0) {
			json_object_put(m);
			return -1;
		}
		json_object_put(m);
		if (used == 0 || used > len)
			break;
		at += used;
		len -= used;
		/* Skip the newline between messages. */
		while (len > 0 && (*at == '\n' || *at == '\r' || *at == ' ')) {
			at++;
			len--;
		}
	}
	return 0;
}

static void cluster_on_watch(const struct http_client_result *res, void *ctx)
{
	struct cluster_op *op = ctx;
	struct cluster *c = op->c;
	int64_t now_ms = clock_ms();
	char why[CLUSTERSTATUS_ERROR_MAX];

	if (!cluster_current(op) || op->aborted)
		goto out;
	c->watch_busy = false;
	c->watch_created = false;
	if (op->created && (res->error == 0 || res->error == UV_ETIMEDOUT) &&
	    (res->error != 0 || res->status == 200)) {
		/* The watch's time is up (CLUSTER_WATCH_MAX_MS), or etcd ended it:
		 * watch again from the next revision. */
		cluster_step(c, now_ms);
		goto out;
	}
	json_object_put(cluster_answer(res, why, sizeof(why)));
	if (res->error == 0 && res->status == 200)
		snprintf(why, sizeof(why), "the watch ended before it was created");
	cluster_fail(c, op->endpoint, why, now_ms);
	cluster_step(c, now_ms);
out:
	cluster_op_free(op);
}

static void cluster_send_watch(struct cluster *c, int64_t now_ms)
{
	struct cluster_op *op = calloc(1, sizeof(*op));
	struct strbuf b = { 0 };

	if (op == NULL)
		return;
	op->kind = OP_WATCH;
	op->tok = json_tokener_new();
	if (op->tok == NULL) {
		cluster_op_free(op);
		return;
	}
	STRBUF_LIT(&b, "{\"create_request\":{\"key\":");
	etcd_b64(&b, c->t.cluster_prefix, strlen(c->t.cluster_prefix));
	STRBUF_LIT(&b, ",\"range_end\":");
	etcd_b64_prefix_end(&b, c->t.cluster_prefix);
	/* prev_kv: a deletion then says which heartbeat it removes (its seq). */
	strbuf_printf(&b, ",\"start_revision\":\"%lld\",\"prev_kv\":true}}", (long long)c->rev);
	if (b.failed) {
		cluster_op_free(op);
	} else if (cluster_send(c, op, "/v3/watch", &b, CLUSTER_WATCH_MAX_MS, cluster_on_watch,
				cluster_watch_body) == 0) {
		c->watch_busy = true;
		c->watch_created = false;
		c->watch_deadline_ms = now_ms + c->t.cluster_timeout_ms;
	}
	strbuf_free(&b);
}

/* ---- health */

static void cluster_on_ping(const struct http_client_result *res, void *ctx)
{
	struct cluster_op *op = ctx;
	struct cluster *c = op->c;
	int64_t now_ms = clock_ms();
	char why[CLUSTERSTATUS_ERROR_MAX];
	struct json_object *o;

	if (!cluster_current(op))
		goto out;
	c->ping_busy = false;
	o = cluster_answer(res, why, sizeof(why));
	/* A member cut off from the others answers, but without a leader it
	 * can neither write nor tell what the others wrote. */
	if (o != NULL && !etcd_nonzero(o, "leader")) {
		snprintf(why, sizeof(why), "the member has no leader");
		json_object_put(o);
		o = NULL;
	}
	if (o == NULL)
		cluster_fail(c, op->endpoint, why, now_ms);
	else
		cluster_ok(c, now_ms);
	json_object_put(o);
	cluster_step(c, now_ms);
out:
	cluster_op_free(op);
}

static void cluster_send_ping(struct cluster *c, int64_t now_ms)
{
	struct cluster_op *op = calloc(1, sizeof(*op));
	struct strbuf b = { 0 };

	if (op == NULL)
		return;
	op->kind = OP_PING;
	STRBUF_LIT(&b, "{}");
	c->next_ping_ms = now_ms + CLUSTER_PING_MS;
	if (cluster_send(c, op, "/v3/maintenance/status", &b, c->t.cluster_timeout_ms,
			 cluster_on_ping, NULL) == 0)
		c->ping_busy = true;
	strbuf_free(&b);
}

/* ---- leases */

static void cluster_on_grant(const struct http_client_result *res, void *ctx)
{
	struct cluster_op *op = ctx;
	struct cluster *c = op->c;
	int64_t now_ms = clock_ms(), id;
	char why[CLUSTERSTATUS_ERROR_MAX];
	struct json_object *o;

	if (!cluster_current(op))
		goto out;
	if (op->kind == OP_GRANT_REG)
		c->reg_grant_busy = false;
	else
		c->claim_grant_busy = false;
	o = cluster_answer(res, why, sizeof(why));
	id = etcd_int(o, "ID");
	json_object_put(o);
	if (o == NULL || id == 0) {
		cluster_fail(c, op->endpoint, o == NULL ? why : "a lease without an ID", now_ms);
		goto out;
	}
	cluster_ok(c, now_ms);
	clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_LEASES, 1);
	/* The lease's life counts from the request: it was granted no earlier. */
	if (op->kind == OP_GRANT_REG) {
		c->reg_lease = id;
		c->reg_lease_ms = op->sent_ms;
	} else {
		c->st.claim_lease = id;
		c->claim_lease_ms = op->sent_ms;
		c->st.claim_lease_until_ms =
			op->sent_ms + cluster_claim_period_ms(c->t.affinity_ttl_ms);
		cluster_publish(c);
	}
	cluster_step(c, now_ms);
out:
	cluster_op_free(op);
}

static void cluster_send_grant(struct cluster *c, enum cluster_op_kind kind)
{
	struct cluster_op *op = calloc(1, sizeof(*op));
	struct strbuf b = { 0 };
	int64_t ttl = kind == OP_GRANT_REG
			      ? cluster_lease_ttl_s(c->t.stale_after_ms, CLUSTER_LEASE_SLICE_MS)
			      : cluster_lease_ttl_s(c->t.affinity_ttl_ms,
						    cluster_claim_period_ms(c->t.affinity_ttl_ms));

	if (op == NULL)
		return;
	op->kind = kind;
	strbuf_printf(&b, "{\"TTL\":%lld}", (long long)ttl);
	if (cluster_send(c, op, "/v3/lease/grant", &b, c->t.cluster_timeout_ms, cluster_on_grant,
			 NULL) == 0)
		*(kind == OP_GRANT_REG ? &c->reg_grant_busy : &c->claim_grant_busy) = true;
	strbuf_free(&b);
}

/* ---- writes */

static struct cluster_pending *cluster_pending_find(struct cluster *c, uint64_t hash,
						    const char *address)
{
	for (size_t i = 0; i < c->n_pend; i++)
		if (c->pend[i].hash == hash && strcmp(c->pend[i].e.address, address) == 0)
			return &c->pend[i];
	return NULL;
}

/* Keeps e as the SFU's latest news unless newer news is pending already. */
static void cluster_pending_put(struct cluster *c, const struct clusterq_entry *e)
{
	uint64_t hash = registry_hash(e->address);
	struct cluster_pending *p = cluster_pending_find(c, hash, e->address);

	if (p != NULL) {
		if (e->seq < p->e.seq)
			return;
		p->e = *e;
		p->ver = ++c->next_ver;
		return;
	}
	if (c->n_pend == c->cap_pend) {
		size_t cap = c->cap_pend ? 2 * c->cap_pend : 64;
		struct cluster_pending *np;

		if (cap > c->max_pend || (np = realloc(c->pend, cap * sizeof(*np))) == NULL) {
			clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_STALE_DROPPED, 1);
			return;
		}
		c->pend = np;
		c->cap_pend = cap;
	}
	p = &c->pend[c->n_pend++];
	p->e = *e;
	p->hash = hash;
	p->ver = ++c->next_ver;
}

/* Removes the entries for which drop[i] is set, keeping the order. */
static void cluster_pending_compact(struct cluster *c, const uint8_t *drop)
{
	size_t o = 0;

	for (size_t i = 0; i < c->n_pend; i++) {
		if (drop[i]) {
			explicit_bzero(&c->pend[i], sizeof(c->pend[i]));
			continue;
		}
		if (o != i) {
			c->pend[o] = c->pend[i];
			explicit_bzero(&c->pend[i], sizeof(c->pend[i]));
		}
		o++;
	}
	c->n_pend = o;
}

/* Takes what the workers queued. */
static void cluster_drain(struct cluster *c)
{
	struct clusterq_entry batch[CLUSTER_POP];
	size_t n;

	do {
		n = clusterq_pop(&c->shm->clusterq, batch, CLUSTER_POP);
		for (size_t i = 0; i < n; i++)
			cluster_pending_put(c, &batch[i]);
	} while (n == CLUSTER_POP);
	explicit_bzero(batch, sizeof(batch));
}

/* News older than stale_after_ms is no news: its lease would have lapsed. */
static void cluster_drop_old(struct cluster *c, int64_t now_ms)
{
	uint8_t *drop;
	size_t n = 0;

	for (size_t i = 0; i < c->n_pend; i++)
		n += now_ms - c->pend[i].e.at_ms > (int64_t)c->t.stale_after_ms;
	if (n == 0)
		return;
	drop = calloc(c->n_pend, 1);
	if (drop == NULL)
		return;
	for (size_t i = 0; i < c->n_pend; i++)
		drop[i] = now_ms - c->pend[i].e.at_ms > (int64_t)c->t.stale_after_ms;
	cluster_pending_compact(c, drop);
	free(drop);
	clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_STALE_DROPPED, n);
	log_warn_limited("cluster: writes dropped",
			 "cluster: %zu registration(s) dropped unwritten: etcd was unreachable "
			 "for longer than [registration] stale_after_ms",
			 n);
}

static void cluster_on_txn(const struct http_client_result *res, void *ctx)
{
	struct cluster_op *op = ctx;
	struct cluster *c = op->c;
	int64_t now_ms = clock_ms();
	char why[CLUSTERSTATUS_ERROR_MAX];
	struct json_object *o;
	size_t puts = 0, dels = 0;
	uint8_t *drop;

	if (!cluster_current(op))
		goto out;
	c->txn_busy = false;
	o = cluster_answer(res, why, sizeof(why));
	if (o == NULL) {
		clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_TXN_FAILURES, 1);
		if (strstr(why, "lease not found") != NULL) {
			/* etcd lost the lease (restored from an older state): a new one. */
			c->reg_lease = 0;
			cluster_step(c, now_ms);
		} else {
			cluster_fail(c, op->endpoint, why, now_ms);
		}
		goto out;
	}
	json_object_put(o);
	cluster_ok(c, now_ms);
	clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_TXNS, 1);
	drop = calloc(c->n_pend ? c->n_pend : 1, 1);
	if (drop != NULL) {
		for (size_t k = 0; k < op->n; k++)
			for (size_t i = 0; i < c->n_pend; i++)
				if (c->pend[i].hash == op->hashes[k] && c->pend[i].ver == op->vers[k]) {
					drop[i] = 1;
					if (c->pend[i].e.op == CLUSTERQ_PUT)
						puts++;
					else
						dels++;
				}
		cluster_pending_compact(c, drop);
		free(drop);
	}
	clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_PUTS, puts);
	clusterstatus_count(&c->shm->clusterstatus, CLUSTER_C_DELETES, dels);
	cluster_step(c, now_ms);
out:
	cluster_op_free(op);
}

static void cluster_send_txn(struct cluster *c)
{
	struct cluster_op *op = calloc(1, sizeof(*op));
	size_t n = c->n_pend < CLUSTER_TXN_OPS ? c->n_pend : CLUSTER_TXN_OPS;
	struct strbuf b = { 0 }, v = { 0 };

	if (op == NULL || (op->hashes = calloc(n, sizeof(uint64_t))) == NULL ||
	    (op->vers = calloc(n, sizeof(uint64_t))) == NULL) {
		if (op != NULL)
			cluster_op_free(op);
		return;
	}
	op->kind = OP_TXN;
	STRBUF_LIT(&b, "{\"success\":[");
	for (size_t i = 0; i < n; i++) {
		const struct cluster_pending *p = &c->pend[i];
		char key[ETCD_KEY_MAX];
		int klen = etcd_sfu_key(c->t.cluster_prefix, p->e.address, key, sizeof(key));

		if (klen < 0)
			continue;
		if (op->n > 0)
			STRBUF_LIT(&b, ",");
		if (p->e.op == CLUSTERQ_PUT) {
			strbuf_reset(&v);
			etcd_reg_value(&v, &p->e);
			STRBUF_LIT(&b, "{\"request_put\":{\"key\":");
			etcd_b64(&b, key, (size_t)klen);
			STRBUF_LIT(&b, ",\"value\":");
			etcd_b64(&b, v.buf != NULL ? v.buf : "", v.len);
			strbuf_printf(&b, ",\"lease\":\"%lld\"}}", (long long)c->reg_lease);
		} else {
			STRBUF_LIT(&b, "{\"request_delete_range\":{\"key\":");
			etcd_b64(&b, key, (size_t)klen);
			STRBUF_LIT(&b, "}}");
		}
		op->hashes[op->n] = p->hash;
		op->vers[op->n] = p->ver;
		op->n++;
	}
	STRBUF_LIT(&b, "]}");
	if (v.buf != NULL)
		explicit_bzero(v.buf, v.cap);
	strbuf_free(&v);
	if (b.failed)
		cluster_op_free(op);
	else if (cluster_send(c, op, "/v3/kv/txn", &b, c->t.cluster_timeout_ms, cluster_on_txn,
			      NULL) == 0)
		c->txn_busy = true;
	/* The values carry the SFUs' keys. */
	if (b.buf != NULL)
		explicit_bzero(b.buf, b.cap);
	strbuf_free(&b);
}

/* ---- the schedule */

static void cluster_on_flush(uv_timer_t *t)
{
	struct cluster *c = t->data;

	c->flush_armed = false;
	cluster_kick(c, clock_ms());
}

/* Whatever is due now: connecting, watching, pinging, leases, writes. */
static void cluster_step(struct cluster *c, int64_t now_ms)
{
	if (!c->working || !c->configured)
		return;
	if (c->watch_busy && !c->watch_created && c->watch_deadline_ms != 0 &&
	    now_ms > c->watch_deadline_ms)
		cluster_fail(c, c->cur, "the watch was not created in time", now_ms);
	if (now_ms < c->retry_at_ms)
		return;
	if (c->need_range) {
		if (!c->range_busy)
			cluster_send_range(c, false);
	} else if (!c->watch_busy && !c->range_busy) {
		cluster_send_watch(c, now_ms);
	} else if (c->need_keys && c->watch_created && !c->range_busy) {
		cluster_send_range(c, true);
	}
	if (!c->ping_busy && now_ms >= c->next_ping_ms)
		cluster_send_ping(c, now_ms);
	if (c->t.affinity_ttl_ms > 0 && !c->claim_grant_busy &&
	    (c->st.claim_lease == 0 ||
	     now_ms - c->claim_lease_ms >= cluster_claim_period_ms(c->t.affinity_ttl_ms) * 3 / 4))
		cluster_send_grant(c, OP_GRANT_CLAIM);
	cluster_drop_old(c, now_ms);
	if (c->n_pend == 0 || c->txn_busy)
		return;
	if (c->reg_lease == 0 || now_ms - c->reg_lease_ms >= CLUSTER_LEASE_SLICE_MS) {
		c->reg_lease = 0;
		if (!c->reg_grant_busy)
			cluster_send_grant(c, OP_GRANT_REG);
		return;
	}
	/* One transaction per CLUSTER_FLUSH_MS at most: what arrives meanwhile
	 * rides in the next one, so a busy fleet costs etcd a few proposals a
	 * second, and a lone heartbeat after a quiet spell goes at once. */
	if (now_ms - c->last_txn_ms < CLUSTER_FLUSH_MS) {
		if (!c->flush_armed) {
			c->flush_armed = true;
			uv_timer_start(&c->flush, cluster_on_flush,
				       (uint64_t)(CLUSTER_FLUSH_MS - (now_ms - c->last_txn_ms)), 0);
		}
		return;
	}
	c->last_txn_ms = now_ms;
	cluster_send_txn(c);
}

/* A new start: everything in flight is abandoned, the prefix read afresh. */
static void cluster_restart(struct cluster *c, int64_t now_ms)
{
	c->gen++;
	c->watch_gen++;
	c->range_busy = c->watch_busy = c->txn_busy = c->ping_busy = false;
	c->reg_grant_busy = c->claim_grant_busy = false;
	c->watch_created = false;
	c->watch_deadline_ms = 0;
	c->need_range = true;
	c->need_keys = false;
	c->rev = 0;
	c->fails = 0;
	c->retry_at_ms = 0;
	c->next_ping_ms = now_ms + CLUSTER_PING_MS;
	c->reg_lease = 0;
	c->st.claim_lease = 0;
	c->st.claim_lease_until_ms = 0;
	c->st.last_error[0] = '\0';
	c->st.config_gen++;
	cluster_set_state(c, CLUSTER_CONNECTING, now_ms);
	cluster_publish(c);
	cluster_step(c, now_ms);
}

static void cluster_on_wake(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	clusterq_wake_clear();
	cluster_kick(h->data, clock_ms());
}

int cluster_new(struct cluster **out, uv_loop_t *loop, struct shm_layout *shm)
{
	struct cluster *c = calloc(1, sizeof(*c));
	int rc;

	if (c == NULL)
		return -ENOMEM;
	rc = http_client_new(&c->client, loop);
	if (rc != 0) {
		free(c);
		return rc;
	}
	c->shm = shm;
	uv_timer_init(loop, &c->flush);
	c->flush.data = c;
	uv_unref((uv_handle_t *)&c->flush);
	c->max_pend = 2 * (size_t)shm->registry.capacity;
	if (c->max_pend < 1024)
		c->max_pend = 1024;
	if (clusterq_wake_fd() >= 0 && uv_poll_init(loop, &c->wake, clusterq_wake_fd()) == 0) {
		c->wake.data = c;
		if (uv_poll_start(&c->wake, UV_READABLE, cluster_on_wake) != 0)
			log_warn("cluster: uv_poll_start() failed: queued writes wait for the "
				 "reaper's next tick");
		/* The reaper's loop does not live for it. */
		uv_unref((uv_handle_t *)&c->wake);
	}
	*out = c;
	return 0;
}

void cluster_configure(struct cluster *c, const struct config_tunables *t, int64_t now_ms)
{
	bool same = c->configured == (t->cluster_n_etcd > 0) &&
		    c->t.cluster_n_etcd == t->cluster_n_etcd &&
		    memcmp(c->t.cluster_etcd, t->cluster_etcd, sizeof(t->cluster_etcd)) == 0 &&
		    strcmp(c->t.cluster_prefix, t->cluster_prefix) == 0;
	bool was = c->configured;

	c->t = *t;
	c->configured = t->cluster_n_etcd > 0;
	if (!c->configured) {
		if (was || c->st.state != CLUSTER_OFF) {
			c->gen++;
			c->watch_gen++;
			memset(&c->st, 0, sizeof(c->st));
			cluster_set_state(c, CLUSTER_OFF, now_ms);
		}
		cluster_publish(c);
		return;
	}
	if (!same) {
		c->cur = 0;
		cluster_restart(c, now_ms);
	}
}

void cluster_tick(struct cluster *c, bool working, int64_t now_ms)
{
	if (!c->configured) {
		/* Nothing reads the queue when the cluster is off: keep it empty. */
		if (working)
			cluster_drain(c);
		c->n_pend = 0;
		return;
	}
	if (working != c->working) {
		c->working = working;
		if (working) {
			cluster_restart(c, now_ms);
		} else {
			/* Another reaper works now: leave etcd to it. */
			c->gen++;
			c->watch_gen++;
		}
	}
	if (!working)
		return;
	cluster_drain(c);
	cluster_step(c, now_ms);
	/* The revision moves with every event: published at the tick's pace. */
	cluster_publish(c);
}

void cluster_kick(struct cluster *c, int64_t now_ms)
{
	if (!c->working || !c->configured)
		return;
	cluster_drain(c);
	cluster_step(c, now_ms);
}
