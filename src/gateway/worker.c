/* Worker: one libuv loop, created after fork, serving the HTTP API lock-free against the registry. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "accesslog.h"
#include "child.h"
#include "clock.h"
#include "log.h"
#include "route.h"
#include "select.h"
#include "tls.h"
#include "tlsstate.h"

#define WORKER_REQUEST_TIMEOUT_MS 10000 /* a whole request must arrive within this */
#define WORKER_IDLE_TIMEOUT_MS 60000 /* keep-alive connections idle longer are closed */
/* On stop, keep accepting this long: connections whose handshake began before
 * the master steered new ones away still land in our queue and are served. */
#define WORKER_LINGER_MS 250

/* The connection cap of this worker: the configured one, else what the
 * open-file limit allows. */
static size_t worker_max_connections(const struct worker *w)
{
	return w->live.max_connections != 0 ? w->live.max_connections : acceptor_default_cap();
}

/* True when the live config names the listener's TLS as last applied. */
static bool worker_tls_current(const struct worker *w)
{
	const struct config_tunables *t = &w->live;

	return w->tls_applied && strcmp(w->tls_cert, t->tls_cert) == 0 &&
	       strcmp(w->tls_key, t->tls_key) == 0 && strcmp(w->tls_client_ca, t->client_ca) == 0 &&
	       memcmp(w->tls_digest, t->tls_digest, sizeof(w->tls_digest)) == 0 &&
	       memcmp(w->tls_ticket_key, t->tls_ticket_key, sizeof(w->tls_ticket_key)) == 0;
}

/*
 * The listener's TLS from the live config. The master read and checked the
 * pair (a bad one never gets this far: the reload failed and the live config
 * still names the old one) and published its digest. A worker started with
 * that config builds its context from the bytes it inherited; a running one
 * reads the files again and takes them only if they still have the digest
 * the master checked, so every worker serves the very pair that was checked,
 * and files changed in between wait for the next reload. Connections open
 * keep their context; new ones take the new. 0, or -1 when no context could
 * be built (the previous one stays).
 */
static int worker_tls_listener(struct worker *w, const struct tls_pair *inherited)
{
	const struct config_tunables *t = &w->live;
	struct tls_pair fresh;
	const struct tls_pair *p = inherited;
	struct ssl_ctx_st *ctx = NULL;
	char err[TLS_PATH_MAX * 3 + 256];
	int rc = 0;

	if (worker_tls_current(w))
		return 0;
	memset(&fresh, 0, sizeof(fresh));
	if (t->tls_cert[0] == '\0') {
		http_server_set_tls(&w->server, NULL);
		goto applied;
	}
	if (p == NULL || p->cert == NULL || memcmp(p->digest, t->tls_digest, TLS_DIGEST_LEN) != 0) {
		p = &fresh;
		if (tls_pair_read(&fresh, t->tls_cert, t->tls_key, t->client_ca, err,
				  sizeof(err)) != 0) {
			log_warn("worker: TLS: %s; keeping the certificate in use", err);
			rc = -1;
			goto applied;
		}
		if (memcmp(fresh.digest, t->tls_digest, TLS_DIGEST_LEN) != 0) {
			log_warn("worker: TLS: %s or %s changed after the master checked them; "
				 "keeping the certificate in use until the next reload",
				 t->tls_cert, t->tls_key);
			rc = -1;
			goto applied;
		}
	}
	if (tls_server_ctx_new(&ctx, p, t->tls_ticket_key, err, sizeof(err)) != 0) {
		log_warn("worker: TLS: %s; keeping the certificate in use", err);
		rc = -1;
		goto applied;
	}
	http_server_set_tls(&w->server, ctx);
	tls_ctx_free(ctx);
	log_debug("worker: serving HTTPS with %s", t->tls_cert);
applied:
	/* Failed or not, this config has had its try: the next reload tries again. */
	tls_pair_free(&fresh);
	snprintf(w->tls_cert, sizeof(w->tls_cert), "%s", t->tls_cert);
	snprintf(w->tls_key, sizeof(w->tls_key), "%s", t->tls_key);
	snprintf(w->tls_client_ca, sizeof(w->tls_client_ca), "%s", t->client_ca);
	memcpy(w->tls_digest, t->tls_digest, sizeof(w->tls_digest));
	memcpy(w->tls_ticket_key, t->tls_ticket_key, sizeof(w->tls_ticket_key));
	w->tls_applied = true;
	return rc;
}

/* Refreshes the worker's copy of the live config when the master published a
 * new one: once per request, before dispatch, so every handler of the request
 * (and its upstream callbacks) reads one whole config, and once per accepted
 * connection, so that it starts with the listener's current certificate. */
static void worker_refresh_config(struct worker *w)
{
	/* One relaxed-cost atomic load per request when nothing changed. */
	int rc = shm_live_refresh(w->shm, &w->live, &w->live_version);

	if (rc < 0)
		log_warn_limited("worker: torn live configs",
				 "worker: live config torn too often; keeping the previous one");
	else if (rc > 0) {
		log_set_level((enum log_level)w->live.log_level);
		/* A larger cap may let a paused acceptor go on. */
		if (w->server.listening) {
			w->server.acceptor.max_conns = worker_max_connections(w);
			acceptor_resume(&w->server.acceptor);
			worker_tls_listener(w, NULL);
		}
		if (w->client != NULL)
			tlsstate_apply(w->client, &w->live, "worker");
	}
}

static void worker_on_accept(void *ctx)
{
	struct worker *w = ctx;

	worker_refresh_config(w);
	metrics_add(w->metrics, M_CONNECTIONS, 1);
}

static void worker_on_tls(void *ctx, enum http_server_tls_event ev)
{
	struct worker *w = ctx;

	metrics_add(w->metrics, ev == HTTP_SERVER_TLS_FULL      ? M_TLS_LISTENER_FULL
				: ev == HTTP_SERVER_TLS_RESUMED ? M_TLS_LISTENER_RESUMED
								: M_TLS_LISTENER_FAILED,
		    1);
}

static void worker_on_accept_paused(enum acceptor_pause why, void *ctx)
{
	struct worker *w = ctx;

	metrics_add(w->metrics, why == ACCEPTOR_PAUSE_CAP ? M_ACCEPT_PAUSED_CAP
							  : M_ACCEPT_PAUSED_EMFILE, 1);
}

static void worker_on_response(void *ctx, const struct http_request *req, int status)
{
	struct worker *w = ctx;

	metrics_request(w->metrics, route_index(req), status);
	if (accesslog_enabled()) {
		const struct handler_upstream *u = &w->hctx.upstream;
		struct accesslog_entry e = {
			.wall_ms = clock_wall_ms(),
			.client = req->peer,
			.method = req->method,
			.target = req->target,
			.target_len = req->target_len,
			.status = status,
			.sfu = u->sfu,
			.attempts = u->attempts,
			.upstream_us = u->upstream_us,
			.total_us = req->start_us > 0 ? clock_us() - req->start_us : 0,
		};

		accesslog_write(&e);
	}
	/* The note described this response only (handler.h). */
	memset(&w->hctx.upstream, 0, sizeof(w->hctx.upstream));
}

static void worker_handle(struct http_conn *c, const struct http_request *req, void *ctx)
{
	struct worker *w = ctx;

	worker_refresh_config(w);
	route_dispatch(&w->hctx, c, req);
}

/* Ends the loop; worker_run returns and the process exits. Nothing is closed
 * by hand: this may run inside a callback of the very connection that was
 * the last to finish, and the process keeps no state that needs flushing. */
static void worker_finish(struct worker *w)
{
	/* Counts of rate-limited log lines must not die with the worker, nor
	 * the access log's buffered lines. */
	log_limit_flush(1);
	accesslog_flush();
	uv_stop(&w->loop);
}

/* Writes the access log's buffered lines: a quiet worker's lines reach the
 * file within ACCESSLOG_FLUSH_MS, a busy worker's when its buffer fills. */
static void worker_on_access_tick(uv_timer_t *t)
{
	(void)t;
	accesslog_flush();
}

/* Sums up the log lines a flood had rate-limited once it stopped (log.h). */
static void worker_on_log_tick(uv_timer_t *t)
{
	(void)t;
	log_limit_flush(0);
}

static void worker_on_drained(struct http_server *s)
{
	struct worker *w = (struct worker *)((char *)s - offsetof(struct worker, server));

	log_info("worker: drained, exiting");
	worker_finish(w);
}

static void worker_on_stop_timeout(uv_timer_t *t)
{
	struct worker *w = t->data;

	log_warn("worker: shutdown timeout: closing %zu connections", w->server.n_conns);
	http_server_close_all(&w->server);
	worker_finish(w);
}

static void worker_on_linger_done(uv_timer_t *t)
{
	struct worker *w = t->data;

	http_server_drain(&w->server, worker_on_drained);
}

static void worker_on_signal(uv_signal_t *s, int signum)
{
	struct worker *w = s->data;

	if (signum == SIGUSR1) {
		if (log_reopen() != 0)
			log_warn("worker: log_reopen() failed");
		if (accesslog_reopen() != 0)
			log_warn("worker: accesslog_reopen() failed");
		return;
	}
	if (signum == SIGQUIT) {
		/* Immediate stop: no draining; what the access log holds is one write. */
		accesslog_flush();
		_exit(0);
	}
	if (w->stopping)
		return;
	w->stopping = true;
	log_info("worker: stopping, %zu connections open", w->server.n_conns);
	uv_timer_start(&w->stop_timer, worker_on_stop_timeout, w->shutdown_timeout_ms, 0);
	uv_timer_start(&w->linger_timer, worker_on_linger_done, WORKER_LINGER_MS, 0);
}

/* Tells the master this worker accepts connections (its readiness, notify.h):
 * its index, in one write, on the pipe the master gave it. */
static void worker_say_serving(int fd, unsigned index)
{
	uint32_t v = index;
	ssize_t n;

	if (fd < 0)
		return;
	do
		n = write(fd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(v))
		log_warn("worker: write() to the master's readiness pipe failed: %s",
			 n < 0 ? strerror(errno) : "short write");
	close(fd);
}

int worker_run(struct shm_layout *shm, pid_t master, int listen_fd, unsigned index,
	       const struct config *cfg, int serving_fd)
{
	static struct worker wk;
	struct worker *w = &wk;
	struct http_limits lim = { WORKER_REQUEST_TIMEOUT_MS, WORKER_IDLE_TIMEOUT_MS };
	int rc;

	if (child_start(master, "worker") != 0)
		return 1;
	memset(w, 0, sizeof(*w));
	w->shm = shm;
	w->index = index;
	w->shutdown_timeout_ms = cfg->shutdown_timeout_ms;
	worker_refresh_config(w);
	rc = uv_loop_init(&w->loop);
	if (rc != 0) {
		log_error("worker: uv_loop_init() failed: %s", uv_strerror(rc));
		return 1;
	}
	rc = http_client_new(&w->client, &w->loop);
	if (rc != 0) {
		log_error("worker: http_client_new() failed: %s", strerror(-rc));
		return 1;
	}
	w->metrics = metrics_proc_claim(&shm->metrics, index);
	http_client_on_tls(w->client, tlsstate_count, w->metrics);
	tlsstate_apply(w->client, &w->live, "worker");
	w->hctx.shm = shm;
	w->hctx.live = &w->live;
	w->hctx.metrics = w->metrics;
	w->hctx.client = w->client;
	w->hctx.snap = select_snapshot_new(true);
	if (w->hctx.snap == NULL) {
		log_error("worker: select_snapshot_new() failed: out of memory");
		return 1;
	}
	uv_timer_init(&w->loop, &w->stop_timer);
	w->stop_timer.data = w;
	uv_timer_init(&w->loop, &w->linger_timer);
	w->linger_timer.data = w;
	uv_timer_init(&w->loop, &w->log_timer);
	uv_timer_start(&w->log_timer, worker_on_log_tick, LOG_LIMIT_WINDOW_MS, LOG_LIMIT_WINDOW_MS);
	/* It must not keep the loop alive on its own. */
	uv_unref((uv_handle_t *)&w->log_timer);
	uv_timer_init(&w->loop, &w->access_timer);
	if (accesslog_enabled()) {
		uv_timer_start(&w->access_timer, worker_on_access_tick, ACCESSLOG_FLUSH_MS,
			       ACCESSLOG_FLUSH_MS);
		uv_unref((uv_handle_t *)&w->access_timer);
	}
	rc = child_signals(&w->loop, w->sigs, worker_on_signal, w);
	if (rc != 0) {
		log_error("worker: uv_signal_start() failed: %s", uv_strerror(rc));
		return 1;
	}
	rc = http_server_start(&w->server, &w->loop, listen_fd, &lim, worker_handle, w);
	if (rc != 0) {
		log_error("worker: uv_listen() failed: %s", uv_strerror(rc));
		return 1;
	}
	/* HTTPS from the first connection on, or not at all: a worker that
	 * cannot build the checked pair must not serve plain HTTP instead. */
	if (worker_tls_listener(w, &cfg->tls_pair) != 0) {
		log_error("worker: the TLS listener cannot start");
		return 1;
	}
	w->server.on_accept = worker_on_accept;
	w->server.on_response = worker_on_response;
	w->server.on_tls = worker_on_tls;
	w->server.acceptor.on_pause = worker_on_accept_paused;
	w->server.acceptor.pause_ctx = w;
	w->server.acceptor.max_conns = worker_max_connections(w);
	log_debug("worker: %u serving", index);
	worker_say_serving(serving_fd, index);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	return 0;
}
