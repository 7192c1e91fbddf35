/* Child: what every process the master forks does first, and last before it serves. */
#include "child.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"

int child_start(pid_t master, const char *role)
{
	log_set_role(role);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* The master may have died between fork() and prctl(): then no signal
	 * would ever come, so look. */
	if (getppid() != master)
		return -ESRCH;
	signal(SIGHUP, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	return 0;
}

static void child_unblock_signals(void)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

int child_signals(uv_loop_t *loop, uv_signal_t sigs[CHILD_NSIGNALS], uv_signal_cb cb,
		  void *data)
{
	static const int nums[CHILD_NSIGNALS] = { SIGTERM, SIGINT, SIGQUIT, SIGUSR1 };

	for (int i = 0; i < CHILD_NSIGNALS; i++) {
		int rc = uv_signal_init(loop, &sigs[i]);

		if (rc == 0) {
			sigs[i].data = data;
			rc = uv_signal_start(&sigs[i], cb, nums[i]);
		}
		if (rc != 0)
			return rc;
	}
	/* Signals stay blocked (inherited from the master) until these handlers
	 * are in place, so none reaches the master's flag handlers here. */
	child_unblock_signals();
	return 0;
}
