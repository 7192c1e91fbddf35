/* Keeper: a process that stays root after --user, only to remove the pid and lock files. */
#include "keeper.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"

static void keeper_signals(void)
{
	static const int ignored[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2 };
	sigset_t none;

	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
		signal(ignored[i], SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static void keeper_remove(struct lockfile *lf, pid_t pid)
{
	int rc = lockfile_remove(lf, pid);

	if (rc != 0)
		log_warn("keeper: unlink() of %s failed: %s", lf->path, strerror(-rc));
}

void keeper_run(int fd, struct lockfile *pid_file, struct lockfile *lock, pid_t master,
		bool detach)
{
	char c = 0;
	ssize_t n;

	log_set_role("keeper");
	prctl(PR_SET_NAME, "sfu-gw-keeper");
	keeper_signals();
	if (detach) {
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (nul >= 0) {
			dup2(nul, STDIN_FILENO);
			dup2(nul, STDOUT_FILENO);
			dup2(nul, STDERR_FILENO);
			if (nul > STDERR_FILENO)
				close(nul);
		}
	}
	for (;;) {
		int32_t pid;

		do
			n = read(fd, &c, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			break;
		if (c == KEEPER_BYE) {
			keeper_remove(pid_file, master);
			keeper_remove(lock, 0);
			break;
		}
		/* The five bytes of this message were written at once. */
		if (c == KEEPER_MASTER && read(fd, &pid, sizeof(pid)) == (ssize_t)sizeof(pid) &&
		    pid > 1)
			master = (pid_t)pid;
	}
	_exit(0);
}
