/* Worker: one libuv loop that accepts connections and serves the HTTP API against the shared registry. */
#ifndef SFU_WORKER_H
#define SFU_WORKER_H

#include <stdint.h>
#include <uv.h>

#include "child.h"
#include "config.h"
#include "handler.h"
#include "http_client.h"
#include "http_server.h"
#include "metrics.h"
#include "shm.h"

struct worker {
	uv_loop_t loop;
	struct shm_layout *shm;
	struct config_tunables live; /* this worker's copy of the live config */
	uint64_t live_version;
	struct http_server server;
	struct http_client *client;
	uv_signal_t sigs[CHILD_NSIGNALS]; /* TERM, INT, QUIT, USR1 (child.h) */
	uv_timer_t stop_timer;
	uv_timer_t linger_timer;
	uv_timer_t log_timer; /* writes the summaries of rate-limited log lines */
	uv_timer_t access_timer; /* writes the access log's buffer (accesslog.h) */
	struct metrics_proc *metrics; /* this worker's block in shared memory */
	struct handler_ctx hctx; /* what handlers see of this worker */
	uint32_t shutdown_timeout_ms;
	unsigned index;
	bool stopping;
	/* The listener's TLS as last applied from the live config, so that a
	 * reload rebuilds the context only when the pair or its ticket key moved. */
	char tls_cert[TLS_PATH_MAX], tls_key[TLS_PATH_MAX], tls_client_ca[TLS_PATH_MAX];
	uint8_t tls_digest[TLS_DIGEST_LEN];
	uint8_t tls_ticket_key[TLS_TICKET_KEY_LEN];
	bool tls_applied;
};

/* Entry point of a worker process, called right after fork(); master is the
 * forking master's pid (child_start). Once it accepts connections on
 * listen_fd it writes its index on serving_fd (-1: none) and closes it.
 * Never returns to the master's code: the caller _exit()s with the code. */
int worker_run(struct shm_layout *shm, pid_t master, int listen_fd, unsigned index,
	       const struct config *cfg, int serving_fd);

#endif
