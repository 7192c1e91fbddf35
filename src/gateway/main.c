/* sfu-gateway entry point: command line, --help/--version/--check-config, then the master. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "runas.h"
#include "safefile.h"
#include "upgrade.h"

/*
 * --daemon: closes every descriptor above stderr that the caller left open
 * (a shell's saved descriptors, an ssh session's pipes...): a daemon that
 * kept one would keep its caller waiting for an end-of-file forever. Runs
 * before anything of ours is opened.
 */
static void main_close_inherited(void)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
#endif
	for (int fd = 3; fd < 65536; fd++)
		close(fd);
}

/*
 * Detaches from the terminal: fork, setsid, fork again. The first parent
 * stays until the daemon says it is ready (listening, pid file written) or
 * dies, so "sfu-gateway --daemon" exits 0 only when the gateway really runs
 * and with 1 (and the daemon's own message on stderr) when it could not start.
 * The daemon lets the caller's stdin and stdout go at once; stderr carries
 * start-up errors to the caller until the master is ready (master_run).
 * Returns, in the daemon, the write end of the readiness pipe.
 */
static int main_daemonize(void)
{
	int pfd[2], nul;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		char ok;

		close(pfd[1]);
		_exit(read(pfd[0], &ok, 1) == 1 ? 0 : 1);
	}
	close(pfd[0]);
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul < 0)
		return -errno;
	dup2(nul, STDIN_FILENO);
	dup2(nul, STDOUT_FILENO);
	close(nul);
	if (setsid() < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	return pfd[1];
}

int main(int argc, char **argv)
{
	static struct config cfg;
	static struct config_cli cli;
	char err[512];
	int rc, ready_fd = -1;
	bool upgrading;
	enum log_level lvl;

	log_set_role("main");
	/* Before anything opens a descriptor or touches argv: a binary upgrade
	 * execs this same path with this same argv (upgrade.h). */
	upgrade_init(argv);
	rc = upgrade_read_env(err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "sfu-gateway: %s\n", err);
		upgrade_refuse("%s", err);
		return 1;
	}
	upgrading = rc == 1;
	if (config_cli_parse(argc, argv, &cli) != 0) {
		fputs("Try 'sfu-gateway --help'.\n", stderr);
		return 2;
	}
	if (cli.help) {
		config_usage(stdout);
		return 0;
	}
	if (cli.version) {
		printf("sfu-gateway %s\n", SFU_VERSION);
		return 0;
	}
	/* A new binary of an upgrade keeps what the old master handed it, and is
	 * already detached: its parent is that master. */
	if (cli.daemonize && !upgrading)
		main_close_inherited();
	if (cli.log_level != NULL && log_level_parse(cli.log_level, &lvl) == 0)
		log_set_level(lvl);
	rc = config_load(&cfg, &cli, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "sfu-gateway: %s\n", err);
		upgrade_refuse("%s", err);
		return 1;
	}
	if (cli.check_config) {
		printf("sfu-gateway: configuration ok (%zu static SFUs)\n", cfg.n_sfus);
		config_free(&cfg);
		return 0;
	}
	log_set_level((enum log_level)cfg.t.log_level);
	/* The log file is opened here, as root when started as root; after
	 * --user the processes reopen it (SIGUSR1) as the user. Its directory
	 * may belong to the user: log_open refuses links and foreign files. */
	if (cfg.user[0] != '\0') {
		uid_t uid;
		gid_t gid;

		rc = runas_lookup(cfg.user, &uid, &gid);
		if (rc != 0) {
			fprintf(stderr, "sfu-gateway: cannot switch to user %s: %s\n", cfg.user,
				rc == -ENOENT ? "no such user" : strerror(-rc));
			upgrade_refuse("cannot switch to user %s: %s", cfg.user,
				       rc == -ENOENT ? "no such user" : strerror(-rc));
			return 1;
		}
		log_set_owner(uid);
	}
	rc = log_open(cfg.log_file, cfg.use_syslog);
	if (rc != 0) {
		fprintf(stderr, "sfu-gateway: cannot open log file %s: %s\n", cfg.log_file,
			safefile_strerror(rc));
		upgrade_refuse("cannot open log file %s: %s", cfg.log_file, safefile_strerror(rc));
		return 1;
	}
	if (cfg.daemonize && !upgrading) {
		ready_fd = main_daemonize();
		if (ready_fd < 0)
			fatal("main: daemonize failed: %s", strerror(-ready_fd));
	}
	rc = master_run(&cfg, &cli, ready_fd);
	config_free(&cfg);
	return rc;
}
