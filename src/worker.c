/* Worker: one libuv loop, created after fork, serving the HTTP API lock-free against the registry. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "health.h"
#include "heartbeat.h"
#include "log.h"
#include <llhttp.h>

#define WORKER_REQUEST_TIMEOUT_MS 10000 /* a whole request must arrive within this */
#define WORKER_IDLE_TIMEOUT_MS 60000 /* keep-alive connections idle longer are closed */
/* On stop, keep accepting this long: connections whose handshake began before
 * the master steered new ones away still land in our queue and are served. */
#define WORKER_LINGER_MS 250

int64_t worker_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void worker_refresh_config(struct worker *w)
{
	/* One relaxed-cost atomic load per request when nothing changed. */
	int rc = shm_live_refresh(w->shm, &w->live, &w->live_version);

	if (rc < 0)
		log_warn("worker: live config torn too often; keeping the previous one");
	else if (rc > 0)
		log_set_level((enum log_level)w->live.log_level);
}

static void worker_noop(struct http_conn *c, const char *body)
{
	http_respond_json(c, 200, body, strlen(body));
}

static void worker_method_not_allowed(struct http_conn *c, const char *allow)
{
	char hdr[64];

	snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
	http_respond_error(c, 405, "method not allowed", hdr);
}

static bool worker_path_is(const struct http_request *req, const char *path)
{
	size_t n = strlen(path);

	return req->path_len == n && memcmp(req->target, path, n) == 0;
}

static enum metrics_route worker_route(const struct http_request *req)
{
	static const struct {
		const char *path;
		enum metrics_route route;
	} routes[] = {
		{ "/v1/channel", ROUTE_CHANNEL }, { "/v1/sfu", ROUTE_SFU },
		{ "/v1/health", ROUTE_HEALTH }, { "/metrics", ROUTE_METRICS },
		{ "/noop", ROUTE_NOOP }, { "/v1/noop", ROUTE_V1_NOOP },
	};

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (worker_path_is(req, routes[i].path))
			return routes[i].route;
	return ROUTE_OTHER;
}

static void worker_on_accept(void *ctx)
{
	struct worker *w = ctx;

	metrics_add(w->metrics, M_CONNECTIONS, 1);
}

static void worker_on_response(void *ctx, const struct http_request *req, int status)
{
	struct worker *w = ctx;

	metrics_request(w->metrics, worker_route(req), status);
}

/* GET /metrics: Prometheus text, summed over every process at this instant. */
static void worker_metrics(struct worker *w, struct http_conn *c)
{
	size_t cap = 65536;

	for (;;) {
		char *buf = malloc(cap);
		int n;

		if (buf == NULL) {
			http_respond_error(c, 503, "out of memory", NULL);
			return;
		}
		n = metrics_render(&w->shm->metrics, &w->shm->registry, &w->live,
				   atomic_load(&w->shm->n_workers), worker_now_ms(), buf, cap);
		if (n >= 0) {
			http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, buf,
				     (size_t)n);
			free(buf);
			return;
		}
		free(buf);
		if (cap >= (64u << 20)) {
			http_respond_error(c, 503, "metrics too large", NULL);
			return;
		}
		cap *= 4;
	}
}

/* Routes one request. GET also answers HEAD-less clients; other methods 405. */
static void worker_handle(struct http_conn *c, const struct http_request *req, void *ctx)
{
	struct worker *w = ctx;
	/* HEAD is GET without the body (http_respond drops it), except for
	 * /v1/channel, where it would create a channel nobody reads. */
	bool get = req->method == HTTP_GET || req->method == HTTP_HEAD;

	if (worker_path_is(req, "/v1/channel")) {
		if (req->method != HTTP_GET)
			worker_method_not_allowed(c, "GET");
		else
			channel_handle(w, c, req);
	} else if (worker_path_is(req, "/v1/sfu")) {
		if (req->method != HTTP_POST)
			worker_method_not_allowed(c, "POST");
		else
			heartbeat_handle(w, c, req);
	} else if (worker_path_is(req, "/v1/health")) {
		if (!get)
			worker_method_not_allowed(c, "GET, HEAD");
		else
			health_handle(w, c);
	} else if (worker_path_is(req, "/metrics")) {
		if (!get)
			worker_method_not_allowed(c, "GET, HEAD");
		else
			worker_metrics(w, c);
	} else if (worker_path_is(req, "/noop")) {
		if (!get)
			worker_method_not_allowed(c, "GET, HEAD");
		else
			worker_noop(c, "{\"status\":\"ok\"}");
	} else if (worker_path_is(req, "/v1/noop")) {
		if (!get)
			worker_method_not_allowed(c, "GET, HEAD");
		else
			worker_noop(c, "{\"result\":\"ok\"}");
	} else {
		http_respond_error(c, 404, "not found", NULL);
	}
}

/* Ends the loop; worker_run returns and the process exits. Nothing is closed
 * by hand: this may run inside a callback of the very connection that was
 * the last to finish, and the process keeps no state that needs flushing. */
static void worker_finish(struct worker *w)
{
	uv_stop(&w->loop);
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
		return;
	}
	if (signum == SIGQUIT) {
		/* Immediate stop: no draining. */
		_exit(0);
	}
	if (w->stopping)
		return;
	w->stopping = true;
	log_info("worker: stopping, %zu connections open", w->server.n_conns);
	uv_timer_start(&w->stop_timer, worker_on_stop_timeout, w->shutdown_timeout_ms, 0);
	uv_timer_start(&w->linger_timer, worker_on_linger_done, WORKER_LINGER_MS, 0);
}

int worker_run(struct shm_layout *shm, int listen_fd, unsigned index, const struct config *cfg)
{
	static struct worker wk;
	struct worker *w = &wk;
	struct http_limits lim = { WORKER_REQUEST_TIMEOUT_MS, WORKER_IDLE_TIMEOUT_MS };
	sigset_t none;
	int rc;

	log_set_role("worker");
	/* The master blocks signals and installs flag handlers; a worker takes
	 * its own through libuv on a loop created here, after fork. */
	/* A worker without its master would serve a registry nobody maintains:
	 * follow the master out. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != (pid_t)atomic_load(&shm->master_pid))
		return 1;
	signal(SIGHUP, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);

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
	w->metrics = &shm->metrics.procs[index < METRICS_REAPER_SLOT ? index : 0];
	uv_timer_init(&w->loop, &w->stop_timer);
	w->stop_timer.data = w;
	uv_timer_init(&w->loop, &w->linger_timer);
	w->linger_timer.data = w;
	uv_signal_init(&w->loop, &w->sig_term);
	uv_signal_init(&w->loop, &w->sig_int);
	uv_signal_init(&w->loop, &w->sig_quit);
	uv_signal_init(&w->loop, &w->sig_usr1);
	w->sig_term.data = w->sig_int.data = w->sig_quit.data = w->sig_usr1.data = w;
	uv_signal_start(&w->sig_term, worker_on_signal, SIGTERM);
	uv_signal_start(&w->sig_int, worker_on_signal, SIGINT);
	uv_signal_start(&w->sig_quit, worker_on_signal, SIGQUIT);
	uv_signal_start(&w->sig_usr1, worker_on_signal, SIGUSR1);

	/* Signals stay blocked (inherited from the master) until libuv's handlers
	 * are in place, so none reaches the master's flag handler in this process. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	rc = http_server_start(&w->server, &w->loop, listen_fd, &lim, worker_handle, w);
	if (rc != 0) {
		log_error("worker: uv_listen() failed: %s", uv_strerror(rc));
		return 1;
	}
	w->server.on_accept = worker_on_accept;
	w->server.on_response = worker_on_response;
	log_debug("worker: %u serving", index);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	return w->exit_code;
}
