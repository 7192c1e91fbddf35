/* Claim: an issuer's first channel request claims its SFU in the cluster's etcd, asynchronously from the worker's loop. */
#include "claim.h"

#include <errno.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "clusterstatus.h"
#include "etcd.h"
#include "http_client.h"
#include "strbuf.h"

struct claim_op {
	claim_cb cb;
	void *ctx;
};

bool claim_possible(const struct handler_ctx *x, int64_t now_ms)
{
	struct clusterstatus_data d;

	if (x->live->cluster_n_etcd == 0 ||
	    clusterstatus_read(&x->shm->clusterstatus, &d) != 0)
		return false;
	return d.state == CLUSTER_OK && d.claim_lease != 0 && now_ms < d.claim_lease_until_ms &&
	       d.endpoint < x->live->cluster_n_etcd;
}

void claim_parse(const char *body, size_t len, struct claim_answer *out)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL, *resps, *range, *kvs, *kv;

	memset(out, 0, sizeof(*out));
	out->result = CLAIM_FAILED;
	out->why = "an answer that is not JSON";
	if (tok != NULL)
		o = json_tokener_parse_ex(tok, body, (int)len);
	if (o == NULL || !json_object_is_type(o, json_type_object))
		goto out;
	if (etcd_bool(o, "succeeded")) {
		out->result = CLAIM_WON;
		out->why = NULL;
		goto out;
	}
	/* Lost: the failure branch read the winner's claim. */
	out->result = CLAIM_LOST;
	out->why = NULL;
	if (json_object_object_get_ex(o, "responses", &resps) &&
	    json_object_is_type(resps, json_type_array) && json_object_array_length(resps) > 0 &&
	    json_object_object_get_ex(json_object_array_get_idx(resps, 0), "response_range",
				      &range) &&
	    json_object_object_get_ex(range, "kvs", &kvs) &&
	    json_object_is_type(kvs, json_type_array) && json_object_array_length(kvs) > 0) {
		int n;

		kv = json_object_array_get_idx(kvs, 0);
		n = etcd_bytes(kv, "value", out->address, sizeof(out->address) - 1);
		if (n > 0)
			out->address[n] = '\0';
		else
			out->address[0] = '\0';
		out->mod_revision = etcd_int(kv, "mod_revision");
	}
out:
	json_object_put(o);
	if (tok != NULL)
		json_tokener_free(tok);
}

static void claim_on_response(const struct http_client_result *res, void *ctx)
{
	struct claim_op *op = ctx;
	struct claim_answer a;

	if (res->error != 0) {
		memset(&a, 0, sizeof(a));
		a.result = CLAIM_FAILED;
		a.why = http_client_strerror(res);
	} else if (res->status != 200) {
		memset(&a, 0, sizeof(a));
		a.result = CLAIM_FAILED;
		a.why = "etcd refused the transaction";
	} else {
		claim_parse(res->body, res->body_len, &a);
	}
	op->cb(&a, op->ctx);
	free(op);
}

int claim_start(struct handler_ctx *x, uint64_t key, const char *address, int64_t replace_rev,
		claim_cb cb, void *ctx)
{
	static const char headers[] = "Content-Type: application/json\r\n";
	struct clusterstatus_data d;
	struct http_client_req req;
	struct strbuf b = { 0 };
	struct claim_op *op;
	char k[ETCD_KEY_MAX];
	int klen, rc;

	if (x->live->cluster_n_etcd == 0 || clusterstatus_read(&x->shm->clusterstatus, &d) != 0 ||
	    d.claim_lease == 0 || d.endpoint >= x->live->cluster_n_etcd)
		return -ENOTCONN;
	klen = etcd_affinity_key(x->live->cluster_prefix, key, k, sizeof(k));
	if (klen < 0)
		return -ENOTCONN;
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		return -ENOMEM;
	op->cb = cb;
	op->ctx = ctx;
	STRBUF_LIT(&b, "{\"compare\":[{\"key\":");
	etcd_b64(&b, k, (size_t)klen);
	if (replace_rev > 0)
		strbuf_printf(&b, ",\"target\":\"MOD\",\"mod_revision\":\"%lld\"}]",
			      (long long)replace_rev);
	else
		STRBUF_LIT(&b, ",\"target\":\"CREATE\",\"create_revision\":\"0\"}]");
	STRBUF_LIT(&b, ",\"success\":[{\"request_put\":{\"key\":");
	etcd_b64(&b, k, (size_t)klen);
	STRBUF_LIT(&b, ",\"value\":");
	etcd_b64(&b, address, strlen(address));
	strbuf_printf(&b, ",\"lease\":\"%lld\"}}],\"failure\":[{\"request_range\":{\"key\":",
		      (long long)d.claim_lease);
	etcd_b64(&b, k, (size_t)klen);
	STRBUF_LIT(&b, "}}]}");
	if (b.failed) {
		strbuf_free(&b);
		free(op);
		return -ENOMEM;
	}
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.target = "/v3/kv/txn";
	req.target_len = sizeof("/v3/kv/txn") - 1;
	req.headers = headers;
	req.headers_len = sizeof(headers) - 1;
	req.body = b.buf;
	req.body_len = b.len;
	req.timeout_ms = x->live->cluster_claim_timeout_ms;
	req.connect_timeout_ms = x->live->cluster_claim_timeout_ms;
	rc = http_client_request(x->client, x->live->cluster_etcd[d.endpoint], &req,
				 claim_on_response, op);
	strbuf_free(&b);
	if (rc != 0) {
		free(op);
		return rc == -ENOMEM ? -ENOMEM : -ENOTCONN;
	}
	return 0;
}
