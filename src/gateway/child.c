/* Child: what every process the master forks does first, and last before it serves. */
#include "child.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"

int child_start(struct shm_layout *shm, const char *role)
{
	log_set_role(role);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* The master may have died between fork() and prctl(): then no signal
	 * would ever come, so look. */
	if (getppid() != (pid_t)atomic_load(&shm->master_pid))
		return -ESRCH;
	signal(SIGHUP, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	return 0;
}

void child_unblock_signals(void)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}
