/* POST /v1/sfu: SFU self-registration heartbeats and sign-offs. */
#include "heartbeat.h"

#include <errno.h>
#include <json.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "registry.h"
#include "token.h"

bool heartbeat_allowed(const struct config_cidr *allow, size_t n, const char *ip)
{
	struct config_cidr peer;

	if (n == 0)
		return true;
	if (config_parse_cidr(ip, &peer) != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		const struct config_cidr *a = &allow[i];
		unsigned full = a->prefix / 8, rest = a->prefix % 8;

		if (a->family != peer.family)
			continue;
		if (memcmp(a->addr, peer.addr, full) != 0)
			continue;
		if (rest != 0 && ((a->addr[full] ^ peer.addr[full]) & (0xff00 >> rest) & 0xff) != 0)
			continue;
		return true;
	}
	return false;
}

static bool heartbeat_region_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > HEARTBEAT_REGION_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* A non-negative integer field that fits 32 bits. */
static int heartbeat_count(struct json_object *o, const char *name, bool required, uint32_t *out,
			   char *err, size_t errlen)
{
	struct json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null)) {
		if (!required)
			return 0;
		snprintf(err, errlen, "missing field '%s'", name);
		return -EINVAL;
	}
	if (!json_object_is_type(v, json_type_int)) {
		snprintf(err, errlen, "invalid field '%s': must be a non-negative integer", name);
		return -EINVAL;
	}
	errno = 0;
	n = json_object_get_int64(v);
	if (n < 0 || n > UINT32_MAX || errno != 0) {
		snprintf(err, errlen, "invalid field '%s': must be a non-negative integer", name);
		return -EINVAL;
	}
	*out = (uint32_t)n;
	return 0;
}

static int heartbeat_usage(struct json_object *o, const char *name, double *out, char *err,
			   size_t errlen)
{
	struct json_object *v;
	double d;

	if (!json_object_object_get_ex(o, name, &v)) {
		snprintf(err, errlen, "missing field '%s'", name);
		return -EINVAL;
	}
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
		snprintf(err, errlen, "invalid field '%s': must be a number in [0, 1]", name);
		return -EINVAL;
	}
	d = json_object_get_double(v);
	if (!(d >= 0.0 && d <= 1.0)) { /* also rejects NaN */
		snprintf(err, errlen, "invalid field '%s': must be a number in [0, 1]", name);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

static const char *heartbeat_string(struct json_object *o, const char *name)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int heartbeat_parse(const char *body, size_t len, struct heartbeat *hb, char *err,
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
	s = heartbeat_string(o, "status");
	if (s == NULL || (strcmp(s, "up") != 0 && strcmp(s, "down") != 0)) {
		snprintf(err, errlen, "invalid field 'status': must be \"up\" or \"down\"");
		goto out;
	}
	hb->up = strcmp(s, "up") == 0;
	s = heartbeat_string(o, "address");
	if (s == NULL || config_parse_address(s, hb->address, sizeof(hb->address)) != 0) {
		snprintf(err, errlen,
			 "invalid field 'address': must be http(s)://host[:port] without path, "
			 "query or credentials");
		goto out;
	}
	if (!hb->up) {
		rc = 0;
		goto out;
	}
	s = heartbeat_string(o, "region");
	if (s == NULL || !heartbeat_region_ok(s)) {
		snprintf(err, errlen, "invalid field 'region': must match [a-z0-9-]{1,63}");
		goto out;
	}
	snprintf(hb->region, sizeof(hb->region), "%s", s);
	s = heartbeat_string(o, "key");
	if (s == NULL) {
		snprintf(err, errlen, "invalid field 'key': must be base64 of 1 to %d bytes",
			 CONFIG_KEY_MAX);
		goto out;
	}
	rc = config_decode_key(s, hb->key, sizeof(hb->key));
	if (rc < 0) {
		snprintf(err, errlen, "invalid field 'key': must be base64 of 1 to %d bytes",
			 CONFIG_KEY_MAX);
		goto out;
	}
	hb->key_len = (size_t)rc;
	rc = -EINVAL;
	if (heartbeat_count(o, "channels", true, &hb->channels, err, errlen) != 0 ||
	    heartbeat_count(o, "sessions", true, &hb->sessions, err, errlen) != 0 ||
	    heartbeat_count(o, "maxSessions", false, &hb->max_sessions, err, errlen) != 0 ||
	    heartbeat_usage(o, "cpuUsage", &hb->cpu, err, errlen) != 0 ||
	    heartbeat_usage(o, "memoryUsage", &hb->memory, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

static void heartbeat_reject(struct worker *w, struct http_conn *c, int status, const char *why)
{
	metrics_add(w->metrics, M_HEARTBEATS_REJECTED, 1);
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
static int heartbeat_auth(struct worker *w, const struct http_request *req,
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
	rc = token_verify(h->value + 7, h->value_len - 7, w->live.registration_key,
			  w->live.registration_key_len, time(NULL), false, &t);
	if (rc != TOKEN_OK) {
		log_info("heartbeat: rejected token from %s: %s", req->peer, token_status_str(rc));
		*why = "invalid token";
		return 401;
	}
	if (!t.has_exp) {
		*why = "token has no exp claim";
		return 401;
	}
	if (t.address[0] == '\0' || config_parse_address(t.address, claim, sizeof(claim)) != 0 ||
	    strcmp(claim, hb->address) != 0) {
		*why = "token address claim does not match the body's address";
		return 403;
	}
	return 0;
}

void heartbeat_handle(struct worker *w, struct http_conn *c, const struct http_request *req)
{
	struct heartbeat hb;
	struct sfu_record rec, cur;
	char err[160];
	const char *why;
	int status, slot;
	bool created = false;

	worker_refresh_config(w);
	if (!heartbeat_allowed(w->live.allow, w->live.n_allow, req->peer)) {
		heartbeat_reject(w, c, 403, "address not allowed");
		return;
	}
	if (heartbeat_parse(req->body, req->body_len, &hb, err, sizeof(err)) != 0) {
		heartbeat_reject(w, c, 400, err);
		return;
	}
	status = heartbeat_auth(w, req, &hb, &why);
	if (status != 0) {
		heartbeat_reject(w, c, status, why);
		return;
	}
	slot = registry_find(&w->shm->registry, hb.address);
	if (slot >= 0 && registry_read(&w->shm->registry, (uint32_t)slot, &cur) != 0)
		slot = -1;

	if (!hb.up) {
		if (slot >= 0 && cur.hot.source == SFU_SOURCE_STATIC) {
			heartbeat_reject(w, c, 409, "a static SFU cannot sign off; remove it from the config");
			return;
		}
		if (slot >= 0)
			registry_remove_slot(&w->shm->registry, (uint32_t)slot, cur.hot.generation);
		metrics_add(w->metrics, M_HEARTBEATS_REMOVED, 1);
		log_info("heartbeat: sfu=%s signed off", hb.address);
		heartbeat_reply(c, "removed");
		return;
	}

	memset(&rec, 0, sizeof(rec));
	rec.hot.source = SFU_SOURCE_REGISTERED;
	rec.hot.has_load = 1;
	rec.hot.sessions = hb.sessions;
	rec.hot.channels = hb.channels;
	rec.hot.max_sessions = hb.max_sessions;
	rec.hot.cpu = hb.cpu;
	rec.hot.memory = hb.memory;
	rec.hot.last_report_ms = worker_now_ms();
	memcpy(rec.cold.address, hb.address, sizeof(rec.cold.address));
	memcpy(rec.cold.region, hb.region, sizeof(rec.cold.region));
	memcpy(rec.cold.key, hb.key, hb.key_len);
	rec.cold.key_len = (uint32_t)hb.key_len;
	rec.hot.reported_by = SFU_REPORTER_HEARTBEAT;
	if (slot >= 0 && cur.hot.source == SFU_SOURCE_STATIC) {
		/* The config owns a static SFU's key and region; a heartbeat may
		 * only report its load. */
		if (cur.cold.key_len != hb.key_len ||
		    CRYPTO_memcmp(cur.cold.key, hb.key, hb.key_len) != 0) {
			heartbeat_reject(w, c, 409, "the key of a static SFU cannot be changed");
			return;
		}
		if (registry_update_load(&w->shm->registry, (uint32_t)slot, cur.hot.generation,
					 &rec.hot, true) != 0) {
			heartbeat_reject(w, c, 503, "registry busy");
			return;
		}
		metrics_add(w->metrics, M_HEARTBEATS_UPDATED, 1);
		heartbeat_reply(c, "updated");
		return;
	}
	switch (registry_upsert(&w->shm->registry, &rec, true, NULL, &created)) {
	case 0:
		break;
	case -ENOSPC:
		heartbeat_reject(w, c, 503, "registry full");
		return;
	default:
		heartbeat_reject(w, c, 503, "registry busy");
		return;
	}
	if (created) {
		metrics_add(w->metrics, M_HEARTBEATS_REGISTERED, 1);
		log_info("heartbeat: sfu=%s region=%s registered", hb.address, hb.region);
		heartbeat_reply(c, "registered");
	} else {
		metrics_add(w->metrics, M_HEARTBEATS_UPDATED, 1);
		log_debug("heartbeat: sfu=%s updated sessions=%u", hb.address, hb.sessions);
		heartbeat_reply(c, "updated");
	}
}
