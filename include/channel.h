/* GET /v1/channel: verify Odoo's token, choose an SFU, re-sign, forward, relay the answer. */
#ifndef SFU_CHANNEL_H
#define SFU_CHANNEL_H

#include "http_server.h"
#include "handler.h"

void channel_handle(struct handler_ctx *x, struct http_conn *c, const struct http_request *req);

/*
 * Splits a raw query string: the values of "region" and "country" are
 * percent-decoded into region/country (NUL-terminated, "" when absent; the
 * last occurrence wins), and every other parameter is copied to fwd raw and
 * in order, joined by '&' (empty segments dropped). Returns the length of fwd,
 * or -ENOSPC. fwd, region and country must hold query_len + 1 bytes.
 */
int channel_split_query(const char *query, size_t query_len, char *fwd, char *region,
			char *country);

#endif
