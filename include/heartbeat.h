/* POST /v1/sfu: SFU self-registration heartbeats and sign-offs. */
#ifndef SFU_HEARTBEAT_H
#define SFU_HEARTBEAT_H

#include "http_server.h"
#include "worker.h"

#define HEARTBEAT_REGION_MAX 63

/* What a valid heartbeat body says. */
struct heartbeat {
	bool up;
	char address[CONFIG_ADDRESS_MAX];
	char region[CONFIG_REGION_MAX];
	uint8_t key[CONFIG_KEY_MAX];
	size_t key_len;
	uint32_t channels, sessions, max_sessions;
	double cpu, memory;
};

void heartbeat_handle(struct worker *w, struct http_conn *c, const struct http_request *req);

/* Parses and validates a POST /v1/sfu body (len bytes, need not be NUL-terminated):
 * 0, or -EINVAL/-ENOMEM with a one-line reason naming the offending field in err.
 * Public for the fuzz target; heartbeat_handle is its only caller in the daemon. */
int heartbeat_parse(const char *body, size_t len, struct heartbeat *hb, char *err,
		    size_t errlen);

/* True when ip (text) falls in one of the n CIDRs; true when n == 0. */
bool heartbeat_allowed(const struct config_cidr *allow, size_t n, const char *ip);

#endif
