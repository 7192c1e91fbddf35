/* GET /v1/health: the gateway's and every SFU's state as JSON, for people and dashboards. */
#ifndef SFU_HEALTH_H
#define SFU_HEALTH_H

#include "http_server.h"
#include "handler.h"

/* Answers 200 while at least one SFU can take a channel, else 503. Never
 * contains key or token material. */
void health_handle(struct handler_ctx *x, struct http_conn *c, const struct http_request *req);

#endif
