/* Acceptor: takes connections off a listening socket, pausing at the cap or out of descriptors. */
#include "acceptor.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/* Connections taken per wake-up: the loop also has requests to serve. The
 * poll is level-triggered, so what is left wakes it again at once. */
#define ACCEPTOR_BATCH 64

static void acceptor_on_readable(uv_poll_t *h, int status, int events);
static void acceptor_on_retry(uv_timer_t *t);

static void acceptor_poll(struct acceptor *a, bool on)
{
	if (a->fd < 0 || a->polling == on)
		return;
	if (on) {
		int rc = uv_poll_start(&a->poll, UV_READABLE, acceptor_on_readable);

		if (rc != 0) {
			log_warn("http: uv_poll_start() failed: %s", uv_strerror(rc));
			return;
		}
	} else {
		uv_poll_stop(&a->poll);
	}
	a->polling = on;
}

/*
 * Stops reading the socket, counts the pause, and logs it at most once per
 * ACCEPTOR_LOG_MS per cause: a cap that holds pauses again at every close,
 * hundreds of times a second under load, so the per-request limit of
 * log_limited (a burst every second) would still flood the log.
 */
static void acceptor_pause(struct acceptor *a, enum acceptor_pause why, int err)
{
	uint64_t now = uv_now(a->loop);

	acceptor_poll(a, false);
	if (why == ACCEPTOR_PAUSE_EMFILE)
		uv_timer_start(&a->retry, acceptor_on_retry, ACCEPTOR_RETRY_MS, 0);
	if (a->on_pause != NULL)
		a->on_pause(why, a->pause_ctx);
	if (a->logged_at[why] != 0 && now - a->logged_at[why] < ACCEPTOR_LOG_MS) {
		a->unlogged[why]++;
		return;
	}
	if (why == ACCEPTOR_PAUSE_CAP)
		log_warn("http: at max_connections (%zu open): accepting again when one closes "
			 "(%llu more pauses since the last line)",
			 *a->n_open, (unsigned long long)a->unlogged[why]);
	else
		log_warn("http: accept() failed: %s (%zu connections open): accepting again when "
			 "one closes or in %d ms (%llu more pauses since the last line)",
			 strerror(err), *a->n_open, ACCEPTOR_RETRY_MS,
			 (unsigned long long)a->unlogged[why]);
	a->logged_at[why] = now;
	a->unlogged[why] = 0;
}

static bool acceptor_at_cap(const struct acceptor *a)
{
	return a->max_conns > 0 && *a->n_open >= a->max_conns;
}

static void acceptor_on_readable(uv_poll_t *h, int status, int events)
{
	struct acceptor *a = h->data;

	(void)events;
	if (status < 0) {
		log_warn("http: poll of the listening socket failed: %s", uv_strerror(status));
		return;
	}
	for (int i = 0; i < ACCEPTOR_BATCH && a->fd >= 0; i++) {
		int fd;

		if (acceptor_at_cap(a)) {
			acceptor_pause(a, ACCEPTOR_PAUSE_CAP, 0);
			return;
		}
		fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			a->on_fd(a, fd, a->ctx);
			continue;
		}
		switch (errno) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			return;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			acceptor_pause(a, ACCEPTOR_PAUSE_EMFILE, errno);
			return;
		case EINTR:
		case ECONNABORTED:
		/* Linux hands pending network errors of the new socket to accept(). */
		case EPROTO:
		case ENOPROTOOPT:
		case EHOSTDOWN:
		case ENONET:
		case EHOSTUNREACH:
		case EOPNOTSUPP:
		case ENETDOWN:
		case ENETUNREACH:
			continue;
		default:
			/* Unexpected and maybe lasting: the poll is level-triggered, so
			 * going on would spin. Retry later, as out of descriptors. */
			log_warn_limited("http: accepts failed", "http: accept() failed: %s",
					 strerror(errno));
			acceptor_poll(a, false);
			uv_timer_start(&a->retry, acceptor_on_retry, ACCEPTOR_RETRY_MS, 0);
			return;
		}
	}
}

static void acceptor_on_retry(uv_timer_t *t)
{
	acceptor_resume(t->data);
}

int acceptor_start(struct acceptor *a, uv_loop_t *loop, int listen_fd, const size_t *n_open,
		   acceptor_fd_cb on_fd, void *ctx)
{
	int rc;

	memset(a, 0, sizeof(*a));
	a->loop = loop;
	a->fd = listen_fd;
	a->n_open = n_open;
	a->on_fd = on_fd;
	a->ctx = ctx;
	rc = uv_poll_init(loop, &a->poll, listen_fd);
	if (rc != 0)
		return rc;
	a->poll.data = a;
	uv_timer_init(loop, &a->retry);
	a->retry.data = a;
	rc = uv_poll_start(&a->poll, UV_READABLE, acceptor_on_readable);
	if (rc != 0) {
		uv_close((uv_handle_t *)&a->poll, NULL);
		uv_close((uv_handle_t *)&a->retry, NULL);
		a->fd = -1;
		return rc;
	}
	a->polling = true;
	return 0;
}

void acceptor_resume(struct acceptor *a)
{
	if (a->fd < 0 || a->polling || acceptor_at_cap(a))
		return;
	uv_timer_stop(&a->retry);
	acceptor_poll(a, true);
}

void acceptor_stop(struct acceptor *a)
{
	if (a->fd < 0)
		return;
	acceptor_poll(a, false);
	uv_close((uv_handle_t *)&a->poll, NULL);
	uv_close((uv_handle_t *)&a->retry, NULL);
	close(a->fd);
	a->fd = -1;
}

size_t acceptor_default_cap(void)
{
	struct rlimit rl;
	rlim_t n;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return 1000000;
	n = rl.rlim_cur > 2 * ACCEPTOR_FD_RESERVE + 32 ? (rl.rlim_cur - ACCEPTOR_FD_RESERVE) / 2
						       : 16;
	return n > 1000000 ? 1000000 : (size_t)n;
}
