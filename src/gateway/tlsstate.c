/* TLS state of the SFUs: each one's last handshake verdict, logged once per change, and the client's options. */
#include "tlsstate.h"

#include <stdatomic.h>

#include "log.h"
#include "tls.h"

void tlsstate_record(struct registry *r, uint32_t slot, uint64_t generation, const char *address,
		     const struct http_client_result *res)
{
	struct registry_slot *sl = &r->slots[slot];
	struct sfu_hot h;
	int64_t old;

	if (!res->tls_handshake)
		return;
	/* The slot may have gone to another SFU meanwhile: not its verdict. */
	if (registry_read_hot(r, slot, &h) != 0 || !h.in_use || h.generation != generation)
		return;
	old = atomic_exchange_explicit(&sl->tls_failure, res->tls_failure, memory_order_relaxed);
	if (old == res->tls_failure)
		return;
	if (res->tls_failure != 0)
		log_warn("tls: sfu=%s: TLS handshake failed: %s", address,
			 tls_failure_text(res->tls_failure));
	else
		log_info("tls: sfu=%s: TLS handshake succeeds again (was: %s)", address,
			 tls_failure_text(old));
}

const char *tlsstate_failure(const struct registry_slot *sl)
{
	return tls_failure_text(atomic_load_explicit(&sl->tls_failure, memory_order_relaxed));
}

void tlsstate_client_opts(const struct config_tunables *t, struct http_client_tls *o)
{
	o->ca_file = t->tls_ca_file;
	o->ca_path = t->tls_ca_path;
	o->cert_file = NULL;
	o->key_file = NULL;
}

void tlsstate_apply(struct http_client *cl, const struct config_tunables *t, const char *who)
{
	struct http_client_tls o;
	char err[TLS_PATH_MAX + 160];

	tlsstate_client_opts(t, &o);
	if (http_client_set_tls(cl, &o, err, sizeof(err)) != 0)
		log_warn("%s: TLS to SFUs keeps its previous CAs: %s", who, err);
}

void tlsstate_count(void *ctx, enum http_client_tls_event ev)
{
	struct metrics_proc *m = ctx;

	switch (ev) {
	case HTTP_CLIENT_TLS_FULL: metrics_add(m, M_TLS_UPSTREAM_FULL, 1); break;
	case HTTP_CLIENT_TLS_RESUMED: metrics_add(m, M_TLS_UPSTREAM_RESUMED, 1); break;
	default: metrics_add(m, M_TLS_UPSTREAM_FAILED, 1); break;
	}
}
