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

#endif
