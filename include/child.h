/* Child: what every process the master forks does first, and last before it serves. */
#ifndef SFU_CHILD_H
#define SFU_CHILD_H

#include "shm.h"

/*
 * Right after fork(): names the process's role in its log lines, asks the
 * kernel for SIGTERM when the master dies (a child without its master would
 * serve a registry nobody maintains), checks that the master did not die
 * before that request took effect, ignores SIGHUP (only the master reloads)
 * and restores SIGCHLD. Returns 0, or -ESRCH when the master is gone.
 * Signals stay blocked, as the master left them, until child_unblock_signals.
 */
int child_start(struct shm_layout *shm, const char *role);

/* Once the child's own libuv signal handlers are in place: unblocks every
 * signal, so none ever reaches the master's flag handlers in a child. */
void child_unblock_signals(void);

#endif
