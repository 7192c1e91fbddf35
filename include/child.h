/* Child: what every process the master forks does first, and last before it serves. */
#ifndef SFU_CHILD_H
#define SFU_CHILD_H

#include <sys/types.h>
#include <uv.h>

/*
 * Right after fork(): names the process's role in its log lines, asks the
 * kernel for SIGTERM when the master dies (a child without its master would
 * serve a registry nobody maintains), checks that the master (master: its
 * pid, taken before fork()) did not die before that request took effect,
 * ignores SIGHUP (only the master reloads)
 * and restores SIGCHLD. Returns 0, or -ESRCH when the master is gone.
 * Signals stay blocked, as the master left them, until child_signals.
 */
int child_start(pid_t master, const char *role);

/* The signals every child handles on its own loop, in this order. */
enum { CHILD_SIGTERM, CHILD_SIGINT, CHILD_SIGQUIT, CHILD_SIGUSR1, CHILD_NSIGNALS };

/* Starts libuv handlers for TERM, INT, QUIT and USR1 on a loop created after
 * fork (libuv's rule), each handle's data set to data, then unblocks every
 * signal, so none ever reaches the master's flag handlers in a child.
 * 0 or a libuv error. */
int child_signals(uv_loop_t *loop, uv_signal_t sigs[CHILD_NSIGNALS], uv_signal_cb cb,
		  void *data);

#endif
