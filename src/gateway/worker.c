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

/* Refreshes the worker's copy of the live config when the master published a
 * new one: once per request, before dispatch, so every handler of the request
 * (and its upstream callbacks) reads one whole config. */
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
		}
	}
}

static void worker_on_accept(void *ctx)
{
	struct worker *w = ctx;

	metrics_add(w->metrics, M_CONNECTIONS, 1);
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
	w->server.on_accept = worker_on_accept;
	w->server.on_response = worker_on_response;
	w->server.acceptor.on_pause = worker_on_accept_paused;
	w->server.acceptor.pause_ctx = w;
	w->server.acceptor.max_conns = worker_max_connections(w);
	log_debug("worker: %u serving", index);
	worker_say_serving(serving_fd, index);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	return 0;
}
