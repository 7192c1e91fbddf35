/* Key check: does each SFU accept tokens signed with the key the gateway holds for it? */
#include "keycheck.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_client.h"
#include "log.h"
#include "tlsstate.h"
#include "token.h"

/* A verdict is confirmed this many probe intervals later (an SFU restarted
 * with another AUTH_KEY keeps its address); a check that could not conclude
 * is tried again after one interval. */
#define KEYCHECK_RECHECK_INTERVALS 12
#define KEYCHECK_TOKEN_TTL_S 60

struct keycheck_state {
	uint64_t generation; /* of the occupant checked */
	uint64_t key_hash; /* of the key checked (never the key itself) */
	uint32_t logged; /* the verdict last logged for this occupant and key */
	int64_t next_ms; /* when to check again */
	bool in_flight;
};

struct keycheck {
	struct registry *r;
	struct http_client *client;
	struct keycheck_state *st; /* one per registry slot */
};

struct keycheck_op {
	struct keycheck *k;
	uint32_t slot;
	uint64_t generation, key_hash;
	char address[CONFIG_ADDRESS_MAX];
};

int keycheck_claims(char *out, size_t outlen, int64_t exp)
{
	int n = snprintf(out, outlen, "{\"sessionIdsByChannel\":{},\"exp\":%lld}", (long long)exp);

	return n < 0 || (size_t)n >= outlen ? -ENOSPC : 0;
}

enum sfu_key_check keycheck_verdict(int error, int status)
{
	if (error != 0)
		return SFU_KEY_UNKNOWN;
	if (status == 200)
		return SFU_KEY_OK;
	if (status == 422)
		return SFU_KEY_MISMATCH;
	return SFU_KEY_UNKNOWN;
}

const char *keycheck_name(uint32_t verdict)
{
	switch (verdict) {
	case SFU_KEY_OK: return "ok";
	case SFU_KEY_MISMATCH: return "mismatch";
	case SFU_KEY_UNKNOWN: return "unknown";
	default: return "unchecked";
	}
}

/* FNV-1a over the key bytes: tells a changed key apart, reveals nothing. */
static uint64_t keycheck_key_hash(const struct sfu_record *rec)
{
	uint64_t h = 1469598103934665603ULL;

	for (uint32_t i = 0; i < rec->cold.key_len && i < sizeof(rec->cold.key); i++)
		h = (h ^ rec->cold.key[i]) * 1099511628211ULL;
	return h ^ rec->cold.key_len;
}

static void keycheck_log(struct keycheck_state *ks, const char *address, uint32_t verdict,
			 const struct http_client_result *res)
{
	if (ks->logged == verdict)
		return;
	ks->logged = verdict;
	switch (verdict) {
	case SFU_KEY_OK:
		log_info("keycheck: sfu=%s key ok", address);
		break;
	case SFU_KEY_MISMATCH:
		log_warn("keycheck: sfu=%s key mismatch: it refused a token signed with the key "
			 "configured for it (POST /v1/disconnect answered 422); its channel "
			 "requests will fail until the keys agree",
			 address);
		break;
	default:
		if (res->error != 0)
			log_info("keycheck: sfu=%s key not checked: %s", address,
				 http_client_strerror(res));
		else
			log_info("keycheck: sfu=%s key not checked: POST /v1/disconnect answered %d",
				 address, res->status);
		break;
	}
}

static void keycheck_on_response(const struct http_client_result *res, void *ctx)
{
	struct keycheck_op *op = ctx;
	struct keycheck *k = op->k;
	struct keycheck_state *ks = &k->st[op->slot];
	uint32_t verdict = keycheck_verdict(res->error, res->status);
	struct sfu_record rec;

	ks->in_flight = false;
	if (res->tls_handshake)
		tlsstate_record(k->r, op->slot, op->generation, op->address, res);
	/* Store only if the slot still holds the SFU and key that were checked;
	 * otherwise the next tick checks the new ones. */
	if (registry_read(k->r, op->slot, &rec) == 0 && rec.hot.in_use &&
	    rec.hot.generation == op->generation && keycheck_key_hash(&rec) == op->key_hash &&
	    ks->generation == op->generation && ks->key_hash == op->key_hash) {
		atomic_store_explicit(&k->r->slots[op->slot].key_check, verdict,
				      memory_order_relaxed);
		keycheck_log(ks, op->address, verdict, res);
	}
	free(op);
}

static int keycheck_send(struct keycheck *k, const struct sfu_record *rec, uint32_t slot,
			 const struct config_tunables *t)
{
	struct keycheck_op *op;
	struct http_client_req req;
	char claims[96], token[512];
	ssize_t n;
	int rc;

	if (keycheck_claims(claims, sizeof(claims), (int64_t)time(NULL) + KEYCHECK_TOKEN_TTL_S) != 0)
		return -ENOSPC;
	n = token_sign(claims, rec->cold.key, rec->cold.key_len, token, sizeof(token));
	if (n < 0)
		return (int)n;
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		explicit_bzero(token, sizeof(token));
		return -ENOMEM;
	}
	op->k = k;
	op->slot = slot;
	op->generation = rec->hot.generation;
	op->key_hash = keycheck_key_hash(rec);
	memcpy(op->address, rec->cold.address, sizeof(op->address));
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.target = "/v1/disconnect";
	req.target_len = strlen(req.target);
	/* odoo/sfu reads the body as a bare token string, as Odoo sends it. */
	req.headers = "Content-Type: text/plain\r\n";
	req.headers_len = strlen(req.headers);
	req.body = token;
	req.body_len = (size_t)n;
	req.timeout_ms = t->probe_timeout_ms;
	req.connect_timeout_ms = t->connect_timeout_ms < t->probe_timeout_ms
					 ? t->connect_timeout_ms
					 : t->probe_timeout_ms;
	req.tls_insecure = !tlsstate_verified(&rec->cold);
	rc = http_client_request(k->client, op->address, &req, keycheck_on_response, op);
	/* The client copied the request: the token lives nowhere else. */
	explicit_bzero(token, sizeof(token));
	if (rc != 0)
		free(op);
	return rc;
}

void keycheck_tick(struct keycheck *k, const struct config_tunables *t, int64_t now_ms)
{
	uint32_t end = registry_scan_end(k->r);

	tlsstate_apply(k->client, t, "keycheck");
	for (uint32_t i = 0; i < end && i < k->r->capacity; i++) {
		struct keycheck_state *ks = &k->st[i];
		struct sfu_record rec;
		uint64_t hash;
		uint32_t verdict;

		if (ks->in_flight || registry_read(k->r, i, &rec) != 0 || !rec.hot.in_use)
			continue;
		hash = keycheck_key_hash(&rec);
		if (ks->generation != rec.hot.generation || ks->key_hash != hash) {
			/* A new SFU in the slot, or a new key: check it now. */
			ks->generation = rec.hot.generation;
			ks->key_hash = hash;
			ks->logged = SFU_KEY_UNCHECKED;
			ks->next_ms = 0;
		}
		if (now_ms < ks->next_ms)
			continue;
		verdict = atomic_load_explicit(&k->r->slots[i].key_check, memory_order_relaxed);
		ks->next_ms = now_ms + (int64_t)t->probe_interval_ms *
					       (verdict == SFU_KEY_OK || verdict == SFU_KEY_MISMATCH
							? KEYCHECK_RECHECK_INTERVALS
							: 1);
		if (keycheck_send(k, &rec, i, t) == 0)
			ks->in_flight = true;
	}
}

int keycheck_new(struct keycheck **out, uv_loop_t *loop, struct registry *r,
		 struct metrics_proc *m)
{
	struct keycheck *k = calloc(1, sizeof(*k));
	int rc = -ENOMEM;

	if (k == NULL)
		return -ENOMEM;
	k->r = r;
	k->st = calloc(r->capacity, sizeof(*k->st));
	if (k->st == NULL)
		goto fail;
	rc = http_client_new(&k->client, loop);
	if (rc != 0)
		goto fail;
	http_client_on_tls(k->client, tlsstate_count, m);
	*out = k;
	return 0;
fail:
	free(k->st);
	free(k);
	return rc;
}

void keycheck_free(struct keycheck *k)
{
	if (k == NULL)
		return;
	http_client_free(k->client);
	/* Checks in flight still reference k->st; the process exits right after. */
}
