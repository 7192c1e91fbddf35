/* sfu-gateway entry point: command line, --help/--version/--check-config, then the master. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master.h"

/*
 * Detaches from the terminal: fork, setsid, fork again. The first parent
 * stays until the daemon says it is ready (listening, pid file written) or
 * dies, so "sfu-gateway --daemon" exits 0 only when the gateway really runs
 * and with 1 (and the daemon's own message on stderr) when it could not start.
 * Returns, in the daemon, the write end of the readiness pipe.
 */
static int main_daemonize(void)
{
	int pfd[2];
	pid_t pid;

	if (pipe(pfd) != 0)
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
	enum log_level lvl;

	log_set_role("main");
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
	if (cli.log_level != NULL && log_level_parse(cli.log_level, &lvl) == 0)
		log_set_level(lvl);
	rc = config_load(&cfg, &cli, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "sfu-gateway: %s\n", err);
		return 1;
	}
	if (cli.check_config) {
		printf("sfu-gateway: configuration ok (%zu static SFUs)\n", cfg.n_sfus);
		config_free(&cfg);
		return 0;
	}
	log_set_level((enum log_level)cfg.t.log_level);
	rc = log_open(cfg.log_file, cfg.use_syslog);
	if (rc != 0) {
		fprintf(stderr, "sfu-gateway: cannot open log file %s: %s\n", cfg.log_file,
			strerror(-rc));
		return 1;
	}
	if (cfg.daemonize) {
		ready_fd = main_daemonize();
		if (ready_fd < 0)
			fatal("main: daemonize failed: %s", strerror(-ready_fd));
	}
	rc = master_run(&cfg, &cli, ready_fd);
	config_free(&cfg);
	return rc;
}
