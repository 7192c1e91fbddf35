/* Acceptor: takes connections off a listening socket, pausing at the cap or out of descriptors. */
#ifndef SFU_ACCEPTOR_H
#define SFU_ACCEPTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Why accepting paused: the connection cap, or no descriptor left (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM). */
enum acceptor_pause { ACCEPTOR_PAUSE_CAP, ACCEPTOR_PAUSE_EMFILE, ACCEPTOR_PAUSE__COUNT };

/* Descriptors kept for everything but client connections (upstream
 * connections count separately: see acceptor_default_cap). */
#define ACCEPTOR_FD_RESERVE 64

struct acceptor;
/* A new connection's socket (non-blocking, close-on-exec); the callee owns it. */
typedef void (*acceptor_fd_cb)(struct acceptor *a, int fd, void *ctx);
/* Each time accepting pauses (for metrics). */
typedef void (*acceptor_pause_cb)(enum acceptor_pause why, void *ctx);

/*
 * Accepting pauses, rather than accepting and closing, so that nobody gets an
 * empty answer: new connections wait in the kernel's accept queue (the
 * listen backlog) until the worker takes them. At the cap it stops reading
 * the listening socket until a connection closes (acceptor_resume). Out of
 * descriptors it does the same, and also retries after ACCEPTOR_RETRY_MS,
 * since descriptors may come back without a client connection closing (an
 * upstream connection). Each pause is counted (on_pause) and logged at most
 * once per ACCEPTOR_LOG_MS per cause, with the number of pauses not logged.
 */
#define ACCEPTOR_RETRY_MS 100
#define ACCEPTOR_LOG_MS 10000
struct acceptor {
	uv_loop_t *loop;
	uv_poll_t poll;
	uv_timer_t retry;
	int fd; /* the listening socket; -1 once stopped */
	bool polling;
	size_t max_conns; /* 0: no cap; the owner may change it at any time */
	const size_t *n_open; /* the owner's count of open connections */
	acceptor_fd_cb on_fd;
	void *ctx; /* of on_fd */
	acceptor_pause_cb on_pause; /* may be NULL */
	void *pause_ctx;
	uint64_t logged_at[ACCEPTOR_PAUSE__COUNT]; /* loop ms of the last log line */
	uint64_t unlogged[ACCEPTOR_PAUSE__COUNT]; /* pauses since that line */
};

/* Starts accepting on listen_fd (already listening). 0 or a libuv error. */
int acceptor_start(struct acceptor *a, uv_loop_t *loop, int listen_fd, const size_t *n_open,
		   acceptor_fd_cb on_fd, void *ctx);
/* A connection closed (or the cap grew): accepts again when paused and allowed. */
void acceptor_resume(struct acceptor *a);
/* Stops for good and closes the listening socket (the master keeps its own). */
void acceptor_stop(struct acceptor *a);

/* max_connections when the configuration says 0: half of the open-file
 * limit, after ACCEPTOR_FD_RESERVE, since each request in flight also holds
 * an upstream connection; at least 16. */
size_t acceptor_default_cap(void);

#endif
