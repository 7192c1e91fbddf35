/* POST /v1/sfu: SFU self-registration heartbeats and sign-offs. */
#ifndef SFU_HEARTBEAT_H
#define SFU_HEARTBEAT_H

#include "http_server.h"
#include "handler.h"
#include "registry.h"

void heartbeat_handle(struct handler_ctx *x, struct http_conn *c, const struct http_request *req);

/* What a valid heartbeat body says. */
struct heartbeat {
	bool up;
	char address[CONFIG_ADDRESS_MAX];
	char region[CONFIG_REGION_MAX];
	uint8_t key[CONFIG_KEY_MAX];
	size_t key_len;
	struct sfu_hot load; /* channels, sessions, max_sessions, cpu, memory */
};

/* Parses and validates a POST /v1/sfu body (len bytes, need not be NUL-terminated):
 * 0, or -EINVAL/-ENOMEM with a one-line reason naming the offending field in err.
 * Public for the fuzz target; heartbeat_handle is its only caller in the daemon. */
int heartbeat_parse(const char *body, size_t len, struct heartbeat *hb, char *err,
		    size_t errlen);

/* What heartbeat_apply did with an "up" heartbeat. */
enum heartbeat_outcome {
	HEARTBEAT_REGISTERED = 0, /* a new SFU */
	HEARTBEAT_UPDATED = 1, /* a known one: its load, region, key */
	HEARTBEAT_STALE = 2, /* seq not above the last one accepted: nothing changed */
	HEARTBEAT_KEY_HELD = 3, /* the config or the registry list holds another key for it */
	HEARTBEAT_LISTED = 4, /* the config or the list took it over meanwhile */
	HEARTBEAT_FULL = 5, /* no slot left */
	HEARTBEAT_BUSY = 6, /* the registry lock could not be had */
};

/*
 * Applies an "up" heartbeat with token seq to the registry, as the sources'
 * precedence (registry_right) says: all of it to an SFU heartbeats hold, its
 * load alone (same key only) to one the config or the list holds. reporter
 * is SFU_REPORTER_HEARTBEAT for one this gateway received, CLUSTER for one
 * another gateway received (learned from etcd): the same rules apply to both,
 * and the larger seq wins whichever way it came. *holder gets the holder's
 * source when that is not the heartbeats. Returns an enum heartbeat_outcome.
 */
int heartbeat_apply(struct registry *r, const struct heartbeat *hb, uint64_t seq,
		    enum sfu_reporter reporter, int64_t now_ms, uint8_t *holder);

#endif
