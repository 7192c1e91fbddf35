/* POST /v1/sfu: SFU self-registration heartbeats and sign-offs. */
#include "heartbeat.h"

#include <errno.h>
#include <json.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "region.h"
#include "registry.h"
#include "sfuload.h"
#include "token.h"

/* What a valid heartbeat body says. */
struct heartbeat {
	bool up;
	char address[CONFIG_ADDRESS_MAX];
	char region[CONFIG_REGION_MAX];
	uint8_t key[CONFIG_KEY_MAX];
	size_t key_len;
	struct sfu_hot load; /* channels, sessions, max_sessions, cpu, memory */
};

/* A string field: *out NULL when absent or null (an error only when required:
 * "missing field"), -EINVAL with "invalid field" when it is not a string. */
static int heartbeat_string(struct json_object *o, const char *name, bool required,
			    const char **out, const char *rule, char *err, size_t errlen)
{
	struct json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null)) {
		if (!required)
			return 0;
		snprintf(err, errlen, "missing field '%s'", name);
		return -EINVAL;
	}
	if (!json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "invalid field '%s': %s", name, rule);
		return -EINVAL;
	}
	*out = json_object_get_string(v);
	return 0;
}

/* What each field must be, for the error that names it (the load fields'
 * rules are sfuload.h's). */
#define HEARTBEAT_RULE_ADDRESS "must be http(s)://host[:port] without path, query or credentials"
#define HEARTBEAT_RULE_REGION "must match [a-z0-9-]{1,63}"
#define HEARTBEAT_RULE_KEY "must be base64 of 1 to 128 bytes"

/* Parses and validates the body; err names the offending field. */
static int heartbeat_parse(const char *body, size_t len, struct heartbeat *hb, char *err,
			   size_t errlen)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL;
	const char *s;
	int rc = -EINVAL;

	memset(hb, 0, sizeof(*hb));
	if (tok == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	o = json_tokener_parse_ex(tok, body, (int)len);
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "body is not a JSON object");
		goto out;
	}
	if (sfuload_status(o, true, &hb->up, err, errlen) != 0)
		goto out;
	if (heartbeat_string(o, "address", true, &s, HEARTBEAT_RULE_ADDRESS, err, errlen) != 0)
		goto out;
	if (address_parse(s, hb->address, sizeof(hb->address)) != 0) {
		snprintf(err, errlen, "invalid field 'address': %s", HEARTBEAT_RULE_ADDRESS);
		goto out;
	}
	if (!hb->up) {
		rc = 0;
		goto out;
	}
	/* No region: the SFU matches no region hint and serves when none matches. */
	if (heartbeat_string(o, "region", false, &s, HEARTBEAT_RULE_REGION, err, errlen) != 0)
		goto out;
	if (s != NULL && !region_name_valid(s)) {
		snprintf(err, errlen, "invalid field 'region': %s", HEARTBEAT_RULE_REGION);
		goto out;
	}
	snprintf(hb->region, sizeof(hb->region), "%s", s ? s : "");
	if (heartbeat_string(o, "key", true, &s, HEARTBEAT_RULE_KEY, err, errlen) != 0)
		goto out;
	rc = base64_decode_key(s, hb->key, sizeof(hb->key));
	if (rc < 0) {
		rc = -EINVAL;
		snprintf(err, errlen, "invalid field 'key': %s", HEARTBEAT_RULE_KEY);
		goto out;
	}
	hb->key_len = (size_t)rc;
	rc = sfuload_parse(o, &hb->load, err, errlen);
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

static void heartbeat_reject(struct handler_ctx *x, struct http_conn *c, int status, const char *why)
{
	metrics_add(x->metrics, M_HEARTBEATS_REJECTED, 1);
	http_respond_error(c, status, why, NULL);
}

static void heartbeat_reply(struct http_conn *c, const char *status)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "{\"status\":\"%s\"}", status);

	http_respond_json(c, 200, body, (size_t)n);
}

/* Checks the Bearer token: HS256 with the registration key, exp required,
 * and an address claim naming the SFU the body speaks for. */
static int heartbeat_auth(struct handler_ctx *x, const struct http_request *req,
			  const struct heartbeat *hb, const char **why)
{
	const struct http_header *h = http_request_header(req, "Authorization");
	struct token t;
	char claim[CONFIG_ADDRESS_MAX];
	int rc;

	if (h == NULL || h->value_len < 8 || strncasecmp(h->value, "Bearer ", 7) != 0) {
		*why = "missing authorization";
		return 401;
	}
	rc = token_verify(h->value + 7, h->value_len - 7, x->live->registration_key,
			  x->live->registration_key_len, time(NULL), false, &t);
	if (rc != TOKEN_OK) {
		log_info_limited("heartbeat: rejected tokens", "heartbeat: rejected token from %s: %s",
				 req->peer, token_status_str(rc));
		*why = "invalid token";
		return 401;
	}
	if (!t.has_exp) {
		*why = "token has no exp claim";
		return 401;
	}
	if (t.address[0] == '\0' || address_parse(t.address, claim, sizeof(claim)) != 0 ||
	    strcmp(claim, hb->address) != 0) {
		*why = "token address claim does not match the body's address";
		return 403;
	}
	return 0;
}

void heartbeat_handle(struct handler_ctx *x, struct http_conn *c, const struct http_request *req)
{
	struct heartbeat hb;
	struct sfu_record rec, cur;
	char err[160];
	const char *why;
	int status, slot;
	bool created = false;

	/* An empty allow-list allows any address. */
	if (x->live->n_allow > 0 && !cidr_match(x->live->allow, x->live->n_allow, req->peer)) {
		heartbeat_reject(x, c, 403, "address not allowed");
		return;
	}
	if (heartbeat_parse(req->body, req->body_len, &hb, err, sizeof(err)) != 0) {
		heartbeat_reject(x, c, 400, err);
		return;
	}
	status = heartbeat_auth(x, req, &hb, &why);
	if (status != 0) {
		heartbeat_reject(x, c, status, why);
		return;
	}
	slot = registry_find(&x->shm->registry, hb.address);
	if (slot >= 0 && registry_read(&x->shm->registry, (uint32_t)slot, &cur) != 0)
		slot = -1;

	if (!hb.up) {
		if (slot >= 0 && !registry_may_remove(cur.hot.source, SFU_SOURCE_REGISTERED)) {
			heartbeat_reject(x, c, 409, cur.hot.source == SFU_SOURCE_STATIC
						    ? "a static SFU cannot sign off; remove it from the config"
						    : "an SFU the registry lists cannot sign off; remove it "
						      "from the registry");
			return;
		}
		if (slot >= 0 &&
		    registry_remove_slot(&x->shm->registry, (uint32_t)slot, cur.hot.generation,
					 SFU_SOURCE_REGISTERED) == -EPERM) {
			heartbeat_reject(x, c, 409, "the SFU is now listed by the config or the registry");
			return;
		}
		metrics_add(x->metrics, M_HEARTBEATS_REMOVED, 1);
		log_info("heartbeat: sfu=%s signed off", hb.address);
		heartbeat_reply(c, "removed");
		return;
	}

	memset(&rec, 0, sizeof(rec));
	rec.hot.source = SFU_SOURCE_REGISTERED;
	rec.hot.has_load = 1;
	rec.hot.sessions = hb.load.sessions;
	rec.hot.channels = hb.load.channels;
	rec.hot.max_sessions = hb.load.max_sessions;
	rec.hot.cpu = hb.load.cpu;
	rec.hot.memory = hb.load.memory;
	rec.hot.last_report_ms = clock_ms();
	memcpy(rec.cold.address, hb.address, sizeof(rec.cold.address));
	memcpy(rec.cold.region, hb.region, sizeof(rec.cold.region));
	memcpy(rec.cold.key, hb.key, hb.key_len);
	rec.cold.key_len = (uint32_t)hb.key_len;
	rec.hot.reported_by = SFU_REPORTER_HEARTBEAT;
	if (slot >= 0 &&
	    registry_right(cur.hot.source, SFU_SOURCE_REGISTERED) == REGISTRY_RIGHT_LOAD) {
		/* The config or the registry list owns this SFU's key and region;
		 * its heartbeat may only report its load. */
		if (cur.cold.key_len != hb.key_len ||
		    CRYPTO_memcmp(cur.cold.key, hb.key, hb.key_len) != 0) {
			heartbeat_reject(x, c, 409, cur.hot.source == SFU_SOURCE_STATIC
						    ? "the key of a static SFU cannot be changed"
						    : "the key of an SFU the registry lists cannot be "
						      "changed");
			return;
		}
		if (registry_update_load(&x->shm->registry, (uint32_t)slot, cur.hot.generation,
					 &rec.hot, true) != 0) {
			heartbeat_reject(x, c, 503, "registry busy");
			return;
		}
		metrics_add(x->metrics, M_HEARTBEATS_UPDATED, 1);
		heartbeat_reply(c, "updated");
		return;
	}
	switch (registry_upsert(&x->shm->registry, &rec, true, NULL, &created)) {
	case 0:
		break;
	case -ENOSPC:
		heartbeat_reject(x, c, 503, "registry full");
		return;
	case -EPERM:
		/* Listed by the config or the registry since we looked. */
		heartbeat_reject(x, c, 409, "the SFU is now listed by the config or the registry");
		return;
	default:
		heartbeat_reject(x, c, 503, "registry busy");
		return;
	}
	if (created) {
		metrics_add(x->metrics, M_HEARTBEATS_REGISTERED, 1);
		log_info("heartbeat: sfu=%s region=%s registered", hb.address, hb.region);
		heartbeat_reply(c, "registered");
	} else {
		metrics_add(x->metrics, M_HEARTBEATS_UPDATED, 1);
		log_debug("heartbeat: sfu=%s updated sessions=%u", hb.address, hb.load.sessions);
		heartbeat_reply(c, "updated");
	}
}
