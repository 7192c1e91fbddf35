/* POST /v1/sfu: SFU self-registration heartbeats and sign-offs. */
#include "heartbeat.h"

#include <errno.h>
#include <json.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "addrpolicy.h"
#include "base64.h"
#include "clock.h"
#include "clusterq.h"
#include "log.h"
#include "region.h"
#include "registry.h"
#include "sfuload.h"
#include "tls.h"
#include "token.h"

/*
 * The heartbeat token (wire format v2, documented in sfu-gateway(8)): HS256 with
 * the registration key, claims address, iat, exp, sha256 and seq. A token is
 * accepted from HEARTBEAT_IAT_WINDOW_S before its iat to that long after it, and
 * while exp has not passed; exp may be at most HEARTBEAT_LIFETIME_MAX_S after
 * iat. So a captured token is good for at most twice the window, and the
 * registry remembers each address's last seq longer than that, after the SFU
 * left too.
 */
#define HEARTBEAT_IAT_WINDOW_S 60
#define HEARTBEAT_LIFETIME_MAX_S 120
_Static_assert(REGISTRY_TOMB_KEEP_MS >= 2 * HEARTBEAT_IAT_WINDOW_S * 1000,
	       "the registry must remember a seq as long as a token can be replayed");
/* base64url without padding of a SHA-256 digest. */
#define HEARTBEAT_SHA256_CHARS BASE64URL_ENCODED_LEN(SHA256_DIGEST_LENGTH)

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

/* A refused token: logged with the peer and the reason (never the token). */
static int heartbeat_bad_token(const struct http_request *req, const char *reason,
			       const char **why, const char *reply)
{
	log_info_limited("heartbeat: rejected tokens", "heartbeat: rejected token from %s: %s",
			 req->peer, reason);
	*why = reply;
	return 401;
}

/* Whether the token's sha256 claim is base64url(SHA-256(body)), in constant time. */
static bool heartbeat_body_matches(const struct token *t, const struct http_request *req)
{
	uint8_t digest[SHA256_DIGEST_LENGTH];
	char want[HEARTBEAT_SHA256_CHARS + 1];

	if (strlen(t->sha256) != HEARTBEAT_SHA256_CHARS ||
	    SHA256((const unsigned char *)req->body, req->body_len, digest) == NULL ||
	    base64url_encode(digest, sizeof(digest), want, sizeof(want)) !=
		    (ssize_t)HEARTBEAT_SHA256_CHARS)
		return false;
	return CRYPTO_memcmp(want, t->sha256, HEARTBEAT_SHA256_CHARS) == 0;
}

/*
 * Authenticates the request before its body is read: a Bearer token, HS256 with
 * the registration key, in wire format v2: iat within the window, exp at most
 * the lifetime after it, seq a positive integer not ahead of our clock, and
 * sha256 naming the exact body bytes. The address claim and the seq are checked
 * later, against the parsed body and the registry. 0 or 401 with *why.
 */
static int heartbeat_auth(struct handler_ctx *x, const struct http_request *req,
			  struct token *t, const char **why)
{
	const struct http_header *h = http_request_header(req, "Authorization");
	int64_t now = time(NULL);
	int rc;

	if (h == NULL || h->value_len < 8 || strncasecmp(h->value, "Bearer ", 7) != 0) {
		*why = "missing authorization";
		return 401;
	}
	rc = token_verify(h->value + 7, h->value_len - 7, x->live->registration_key,
			  x->live->registration_key_len, now, false, t);
	if (rc != TOKEN_OK)
		return heartbeat_bad_token(req, token_status_str(rc), why, "invalid token");
	if (!t->has_sha256 || !t->has_seq)
		return heartbeat_bad_token(
			req, "not a v2 heartbeat token (no sha256 or seq claim)", why,
			"not a v2 heartbeat token: the sha256 and seq claims are required "
			"(see 'Heartbeat wire format' in sfu-gateway(8))");
	if (!t->has_iat)
		return heartbeat_bad_token(req, "no iat claim", why, "token has no iat claim");
	if (!t->has_exp)
		return heartbeat_bad_token(req, "no exp claim", why, "token has no exp claim");
	/* token_verify refused an iat too far ahead and an exp gone by. */
	if (t->iat < now - HEARTBEAT_IAT_WINDOW_S)
		return heartbeat_bad_token(req, "iat too old", why,
					   "token too old: iat more than 60 s ago");
	if (t->exp < t->iat || t->exp - t->iat > HEARTBEAT_LIFETIME_MAX_S)
		return heartbeat_bad_token(req, "exp - iat out of bounds", why,
					   "token lifetime exp - iat must be 0 to 120 s");
	if (!t->seq_valid)
		return heartbeat_bad_token(req, "seq is not a positive integer", why,
					   "seq claim must be a positive integer");
	/* seq counts ms since the epoch: one far ahead would lock the SFU out. */
	if (t->seq > (uint64_t)(now + HEARTBEAT_IAT_WINDOW_S) * 1000)
		return heartbeat_bad_token(req, "seq ahead of the clock", why,
					   "seq claim is ahead of the gateway's clock (ms since "
					   "the epoch)");
	if (!heartbeat_body_matches(t, req))
		return heartbeat_bad_token(req, "sha256 does not match the body", why,
					   "token sha256 claim does not match the body");
	return 0;
}

/*
 * With [registration] client_ca, who is asking is also the connection's client
 * certificate: it must come from that CA (checked before the body is read,
 * like the token)...
 */
static int heartbeat_client_cert(struct http_conn *c, const struct http_request *req,
				 struct x509_st **cert, const char **why)
{
	static char text[160];
	const char *reason = NULL;

	switch (http_conn_client_cert(c, cert, &reason)) {
	case 0:
		return 0;
	case -EPROTO:
		*why = "client certificate required: send heartbeats over https";
		return 401;
	case -ENOENT:
		*why = "client certificate required";
		return 401;
	default:
		snprintf(text, sizeof(text), "client certificate refused: %s",
			 reason != NULL ? reason : "not verified");
		log_info_limited("heartbeat: refused client certificates", "heartbeat: %s from %s",
				 text, req->peer);
		*why = text;
		return 403;
	}
}

/* ... and name, in its subjectAltName (DNS, IP or URI), the host of the address
 * the heartbeat speaks for, so that one SFU's certificate cannot register or
 * sign off another. */
static bool heartbeat_cert_matches(struct x509_st *cert, const struct http_request *req,
				   const struct heartbeat *hb)
{
	char host[CONFIG_ADDRESS_MAX];

	if (address_host(hb->address, host, sizeof(host)) == 0 && tls_cert_names_host(cert, host))
		return true;
	log_info_limited("heartbeat: refused client certificates",
			 "heartbeat: the client certificate from %s does not name %s", req->peer,
			 hb->address);
	return false;
}

/* The token speaks for the SFU the body names (compared normalised). */
static bool heartbeat_claim_matches(const struct token *t, const struct heartbeat *hb)
{
	char claim[CONFIG_ADDRESS_MAX];

	return t->address[0] != '\0' && address_parse(t->address, claim, sizeof(claim)) == 0 &&
	       strcmp(claim, hb->address) == 0;
}

/* A replay (or heartbeats of one SFU overtaking each other): refused and logged, without
 * the token; whoever captured one can send it often, so the line is rate-limited. */
static void heartbeat_replayed(struct handler_ctx *x, struct http_conn *c,
			       const struct http_request *req, const char *address, uint64_t seq)
{
	log_info_limited("heartbeat: replayed heartbeats",
			 "heartbeat: refused sfu=%s from %s: seq %llu is not above the last accepted",
			 address, req->peer, (unsigned long long)seq);
	heartbeat_reject(x, c, 401,
			 "replayed heartbeat: seq is not above the last one accepted for this "
			 "address");
}

int heartbeat_apply(struct registry *r, const struct heartbeat *hb, uint64_t seq,
		    enum sfu_reporter reporter, int64_t now_ms, uint8_t *holder)
{
	struct sfu_record rec, cur;
	bool created = false;
	int slot, rc;

	*holder = SFU_SOURCE_NONE;
	slot = registry_find(r, hb->address);
	if (slot >= 0 && registry_read(r, (uint32_t)slot, &cur) != 0)
		slot = -1;
	memset(&rec, 0, sizeof(rec));
	rec.hot.source = SFU_SOURCE_REGISTERED;
	rec.hot.has_load = 1;
	rec.hot.sessions = hb->load.sessions;
	rec.hot.channels = hb->load.channels;
	rec.hot.max_sessions = hb->load.max_sessions;
	rec.hot.cpu = hb->load.cpu;
	rec.hot.memory = hb->load.memory;
	rec.hot.last_report_ms = now_ms;
	rec.hot.reported_by = (uint8_t)reporter;
	memcpy(rec.cold.address, hb->address, sizeof(rec.cold.address));
	memcpy(rec.cold.region, hb->region, sizeof(rec.cold.region));
	memcpy(rec.cold.key, hb->key, hb->key_len);
	rec.cold.key_len = (uint32_t)hb->key_len;
	rec.cold.hb_seq = seq;
	if (slot >= 0 &&
	    registry_right(cur.hot.source, SFU_SOURCE_REGISTERED) == REGISTRY_RIGHT_LOAD) {
		/* The config or the registry list owns this SFU's key and region;
		 * its heartbeat may only report its load. */
		*holder = cur.hot.source;
		if (cur.cold.key_len != hb->key_len ||
		    CRYPTO_memcmp(cur.cold.key, hb->key, hb->key_len) != 0)
			rc = HEARTBEAT_KEY_HELD;
		else
			rc = registry_update_load(r, (uint32_t)slot, cur.hot.generation, &rec.hot, true,
						  seq);
		rc = rc == 0 ? HEARTBEAT_UPDATED : rc == -ESTALE ? HEARTBEAT_STALE
			       : rc == HEARTBEAT_KEY_HELD ? rc : HEARTBEAT_BUSY;
		goto out;
	}
	switch (registry_upsert(r, &rec, true, NULL, &created)) {
	case 0:
		rc = created ? HEARTBEAT_REGISTERED : HEARTBEAT_UPDATED;
		break;
	case -ESTALE:
		rc = HEARTBEAT_STALE;
		break;
	case -ENOSPC:
		rc = HEARTBEAT_FULL;
		break;
	case -EPERM:
		rc = HEARTBEAT_LISTED;
		break;
	default:
		rc = HEARTBEAT_BUSY;
		break;
	}
out:
	explicit_bzero(&rec, sizeof(rec));
	if (slot >= 0)
		explicit_bzero(&cur, sizeof(cur));
	return rc;
}

/* Whether the registry holds exactly this heartbeat already, learned from
 * etcd: its seq, and the SFU's load as last reported through the cluster. */
static bool heartbeat_known(const struct registry *r, const struct heartbeat *hb, uint64_t seq)
{
	int slot = registry_find(r, hb->address);
	struct sfu_record cur;
	bool known;

	if (slot < 0 || registry_read(r, (uint32_t)slot, &cur) != 0)
		return false;
	known = cur.cold.hb_seq == seq && cur.hot.reported_by == SFU_REPORTER_CLUSTER;
	explicit_bzero(&cur, sizeof(cur));
	return known;
}

/* In a cluster, what this gateway accepted goes to etcd through the reaper
 * (clusterq.h): the worker only copies it into the queue. */
static void heartbeat_to_cluster(struct handler_ctx *x, enum clusterq_op op,
				 const struct heartbeat *hb, uint64_t seq)
{
	struct clusterq_entry e;

	if (x->live->cluster_n_etcd == 0)
		return;
	memset(&e, 0, sizeof(e));
	e.op = op;
	e.seq = seq;
	e.at_ms = clock_ms();
	memcpy(e.address, hb->address, sizeof(e.address));
	if (op == CLUSTERQ_PUT) {
		memcpy(e.region, hb->region, sizeof(e.region));
		memcpy(e.key, hb->key, hb->key_len);
		e.key_len = (uint32_t)hb->key_len;
		e.sessions = hb->load.sessions;
		e.channels = hb->load.channels;
		e.max_sessions = hb->load.max_sessions;
		e.cpu = hb->load.cpu;
		e.memory = hb->load.memory;
	}
	if (clusterq_push(&x->shm->clusterq, &e) != 0)
		log_warn_limited("heartbeat: cluster queue full",
				 "heartbeat: sfu=%s not passed on to etcd: the cluster queue is full",
				 hb->address);
	explicit_bzero(&e, sizeof(e));
}

void heartbeat_handle(struct handler_ctx *x, struct http_conn *c, const struct http_request *req)
{
	struct heartbeat hb;
	struct sfu_record cur;
	struct x509_st *cert = NULL;
	struct token t;
	char err[300];
	const char *why;
	int status, slot, rc;
	uint8_t holder = SFU_SOURCE_NONE;
	bool created = false;

	/* An empty allow-list allows any address. */
	if (x->live->n_allow > 0 && !cidr_match(x->live->allow, x->live->n_allow, req->peer)) {
		heartbeat_reject(x, c, 403, "address not allowed");
		return;
	}
	/* Who is asking first, what they say next: a request without a good token
	 * (or client certificate) learns nothing about the body's rules. */
	if (x->live->client_ca[0] != '\0') {
		status = heartbeat_client_cert(c, req, &cert, &why);
		if (status != 0) {
			heartbeat_reject(x, c, status, why);
			return;
		}
	}
	memset(&t, 0, sizeof(t));
	if (cert == NULL || x->live->require_token) {
		status = heartbeat_auth(x, req, &t, &why);
		if (status != 0) {
			heartbeat_reject(x, c, status, why);
			return;
		}
	} else {
		/* The certificate alone: replays need the client's private key, so
		 * the gateway's clock orders its heartbeats (ms, as senders count). */
		t.seq = (uint64_t)clock_wall_ms();
	}
	if (heartbeat_parse(req->body, req->body_len, &hb, err, sizeof(err)) != 0) {
		heartbeat_reject(x, c, 400, err);
		return;
	}
	if ((cert == NULL || x->live->require_token) && !heartbeat_claim_matches(&t, &hb)) {
		heartbeat_reject(x, c, 403, "token address claim does not match the body's address");
		return;
	}
	if (cert != NULL && !heartbeat_cert_matches(cert, req, &hb)) {
		heartbeat_reject(x, c, 403, "client certificate does not name the heartbeat's address");
		return;
	}
	/* Where the gateway may be sent. A sign-off is always heard: it only removes. */
	if (hb.up) {
		char reason[240];

		if (addrpolicy_check(x->live, hb.address, reason, sizeof(reason)) != 0) {
			log_info_limited("heartbeat: refused addresses", "heartbeat: refused sfu=%s: %s",
					 hb.address, reason);
			snprintf(err, sizeof(err), "address not allowed for an SFU: %s", reason);
			heartbeat_reject(x, c, 403, err);
			return;
		}
	}
	if (!hb.up) {
		/* Who holds the address decides whether it may sign off (an up
		 * heartbeat's holder is checked by heartbeat_apply, under the lock). */
		slot = registry_find(&x->shm->registry, hb.address);
		if (slot >= 0 && registry_read(&x->shm->registry, (uint32_t)slot, &cur) != 0)
			slot = -1;
		if (slot >= 0 && !registry_may_remove(cur.hot.source, SFU_SOURCE_REGISTERED)) {
			heartbeat_reject(x, c, 409, cur.hot.source == SFU_SOURCE_STATIC
						    ? "a static SFU cannot sign off; remove it from the config"
						    : "an SFU the registry lists cannot sign off; remove it "
						      "from the registry");
			return;
		}
		rc = registry_signoff(&x->shm->registry, hb.address, t.seq);
		if (rc == -ESTALE) {
			heartbeat_replayed(x, c, req, hb.address, t.seq);
			return;
		}
		if (rc == -EPERM) {
			heartbeat_reject(x, c, 409, "the SFU is now listed by the config or the registry");
			return;
		}
		if (rc != 0 && rc != -ENOENT) {
			heartbeat_reject(x, c, 503, "registry busy");
			return;
		}
		metrics_add(x->metrics, M_HEARTBEATS_REMOVED, 1);
		heartbeat_to_cluster(x, CLUSTERQ_DELETE, &hb, t.seq);
		log_info("heartbeat: sfu=%s signed off", hb.address);
		heartbeat_reply(c, "removed");
		return;
	}

	rc = heartbeat_apply(&x->shm->registry, &hb, t.seq, SFU_REPORTER_HEARTBEAT, clock_ms(),
			     &holder);
	switch (rc) {
	case HEARTBEAT_REGISTERED:
	case HEARTBEAT_UPDATED:
		break;
	case HEARTBEAT_STALE:
		/* The same heartbeat another gateway of the cluster accepted first
		 * (an SFU may send each heartbeat to every gateway): already applied,
		 * so there is nothing to refuse and nothing to write. */
		if (x->live->cluster_n_etcd > 0 && heartbeat_known(&x->shm->registry, &hb, t.seq)) {
			metrics_add(x->metrics, M_HEARTBEATS_UPDATED, 1);
			heartbeat_reply(c, "updated");
			return;
		}
		heartbeat_replayed(x, c, req, hb.address, t.seq);
		return;
	case HEARTBEAT_KEY_HELD:
		heartbeat_reject(x, c, 409, holder == SFU_SOURCE_STATIC
					    ? "the key of a static SFU cannot be changed"
					    : "the key of an SFU the registry lists cannot be "
					      "changed");
		return;
	case HEARTBEAT_LISTED:
		/* Listed by the config or the registry since we looked. */
		heartbeat_reject(x, c, 409, "the SFU is now listed by the config or the registry");
		return;
	case HEARTBEAT_FULL:
		heartbeat_reject(x, c, 503, "registry full");
		return;
	default:
		heartbeat_reject(x, c, 503, "registry busy");
		return;
	}
	heartbeat_to_cluster(x, CLUSTERQ_PUT, &hb, t.seq);
	created = rc == HEARTBEAT_REGISTERED;
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
