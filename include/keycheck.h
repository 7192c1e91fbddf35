/* Key check: does each SFU accept tokens signed with the key the gateway holds for it? */
#ifndef SFU_KEYCHECK_H
#define SFU_KEYCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "metrics.h"
#include "registry.h"

/*
 * A wrong per-SFU key is invisible until channels fail: odoo/sfu answers a
 * token signed with another key with 500 and an empty body. Its
 * POST /v1/disconnect, given a token signed with its key whose claims are
 * {"sessionIdsByChannel": {}}, answers 200 and touches nothing; with a wrong
 * key it answers 422. The reaper sends that to every SFU when it enters the
 * registry (start, reload, registration) or its key changes, and again every
 * few probe intervals, and stores the verdict in the slot's key_check for
 * /v1/health and /metrics. Each change of verdict is logged once.
 */
struct keycheck;

/* m counts the TLS handshakes of its checks. */
int keycheck_new(struct keycheck **out, uv_loop_t *loop, struct registry *r,
		 struct metrics_proc *m);
/* Starts the checks that are due. */
void keycheck_tick(struct keycheck *k, const struct config_tunables *t, int64_t now_ms);
void keycheck_free(struct keycheck *k);

/* The claims of the check's token, with its expiry, into out. 0 or -ENOSPC. */
int keycheck_claims(char *out, size_t outlen, int64_t exp);
/* The verdict of an answer: 200 ok, 422 mismatch, anything else unknown. */
enum sfu_key_check keycheck_verdict(int error, int status);
/* Its name in /v1/health: "unchecked", "ok", "mismatch", "unknown". */
const char *keycheck_name(uint32_t verdict);

#endif
