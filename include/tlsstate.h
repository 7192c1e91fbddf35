/* TLS state of the SFUs: each one's last handshake verdict, logged once per change, and the client's options. */
#ifndef SFU_TLSSTATE_H
#define SFU_TLSSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "http_client.h"
#include "metrics.h"
#include "registry.h"

/*
 * After an attempt on the SFU in slot (still holding generation) that made a
 * TLS handshake, keeps its verdict in the slot; the process that changes the
 * verdict logs it, so the log gets one line per change across all processes,
 * not one per request. Attempts without a handshake change nothing.
 */
void tlsstate_record(struct registry *r, uint32_t slot, uint64_t generation, const char *address,
		     const struct http_client_result *res);
/* Why the SFU's last handshake failed, or NULL when it did not (or none was made). */
const char *tlsstate_failure(const struct registry_slot *sl);
/* Whether the client verifies this SFU's certificate. */
static inline bool tlsstate_verified(const struct sfu_cold *c)
{
	return (c->flags & SFU_FLAG_TLS_NOVERIFY) == 0;
}
/* The HTTP client's TLS options from the live config ([tls] ca_file, ca_path). */
void tlsstate_client_opts(const struct config_tunables *t, struct http_client_tls *o);
/* Applies them to cl when they changed; logs a failure (the old ones stay). */
void tlsstate_apply(struct http_client *cl, const struct config_tunables *t, const char *who);
/* Counts a handshake of an HTTP client (its on_tls hook; ctx is a struct metrics_proc). */
void tlsstate_count(void *ctx, enum http_client_tls_event ev);

#endif
