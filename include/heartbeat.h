/* POST /v1/sfu: SFU self-registration heartbeats and sign-offs. */
#ifndef SFU_HEARTBEAT_H
#define SFU_HEARTBEAT_H

#include "http_server.h"
#include "worker.h"

#define HEARTBEAT_REGION_MAX 63

void heartbeat_handle(struct worker *w, struct http_conn *c, const struct http_request *req);

/* True when ip (text) falls in one of the n CIDRs; true when n == 0. */
bool heartbeat_allowed(const struct config_cidr *allow, size_t n, const char *ip);

#endif
