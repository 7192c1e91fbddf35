/* Claim: an issuer's first channel request claims its SFU in the cluster's etcd, asynchronously from the worker's loop. */
#ifndef SFU_CLAIM_H
#define SFU_CLAIM_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "handler.h"

/*
 * Two Odoo workers starting one call through two gateways must reach one SFU.
 * The first request of an issuer (no live entry in the local affinity table)
 * proposes the SFU this gateway chose with one etcd transaction: create
 * P "affinity/" key with the SFU's address, under the claim lease the reaper
 * keeps ([affinity] ttl_ms and a little more), if it does not exist; else
 * read it. Whoever's transaction etcd orders first wins; the others get the
 * winner's address in the same answer. One round trip, and only for an
 * issuer's first request: repeats find the local table filled (by the claim,
 * or by the reaper's watch of the prefix).
 *
 * When the winner's SFU cannot take the channel here (unknown to this
 * gateway, or unusable), the claim is replaced with a transaction on the
 * winner's mod_revision, so that concurrent replacers agree too.
 *
 * The worker never blocks: the transaction is a request on its loop, bounded
 * by [cluster] claim_timeout_ms; on any failure (a timeout, etcd unreachable
 * or degraded, no claim lease yet) the caller chooses alone, as a gateway
 * without a cluster does.
 */
enum claim_result {
	CLAIM_WON = 0, /* our proposal is the issuer's SFU */
	CLAIM_LOST = 1, /* another gateway's is: answer.address, answer.mod_revision */
	CLAIM_FAILED = 2, /* no answer: choose alone */
};

struct claim_answer {
	enum claim_result result;
	char address[CONFIG_ADDRESS_MAX]; /* CLAIM_LOST: the winner's SFU ("" when the
					   * claim vanished meanwhile) */
	int64_t mod_revision; /* CLAIM_LOST: the winner's claim, for a replacement */
	const char *why; /* CLAIM_FAILED: for the log */
};

typedef void (*claim_cb)(const struct claim_answer *a, void *ctx);

/* Whether a claim can be made now: a cluster configured and in sync, and a
 * claim lease to attach it to. */
bool claim_possible(const struct handler_ctx *x, int64_t now_ms);

/*
 * Proposes address as the SFU of affinity key key (affinity_key()): creates
 * the claim if absent, or, with replace_rev > 0, replaces the claim whose
 * mod_revision is replace_rev. cb runs once, from the loop, never inside this
 * call. 0, or -ENOTCONN (no claim possible now) / -ENOMEM: then cb never runs.
 */
int claim_start(struct handler_ctx *x, uint64_t key, const char *address, int64_t replace_rev,
		claim_cb cb, void *ctx);

/* The answer of a claim transaction (body of a 200), for tests. */
void claim_parse(const char *body, size_t len, struct claim_answer *out);

#endif
