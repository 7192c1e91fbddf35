/* POST /v1/sfu: SFU self-registration heartbeats and sign-offs. */
#ifndef SFU_HEARTBEAT_H
#define SFU_HEARTBEAT_H

#include "http_server.h"
#include "handler.h"

void heartbeat_handle(struct handler_ctx *x, struct http_conn *c, const struct http_request *req);


#endif
