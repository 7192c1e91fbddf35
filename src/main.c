/* sfu-gateway entry point: command line, --help/--version/--check-config, then the master. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master.h"

static const char main_usage[] =
	"Usage: sfu-gateway [OPTIONS]\n"
	"Routes Odoo's video-call channel requests to the best of many odoo/sfu servers.\n"
	"\n"
	"  -c, --config FILE      TOML configuration (default " CONFIG_DEFAULT_FILE ")\n"
	"  -s, --secrets FILE     existing gateway's secrets file with [[sfu]] tables\n"
	"                         (default secrets.toml, when present)\n"
	"  -b, --bind ADDR        listen address (default 0.0.0.0)\n"
	"  -p, --port N           listen port (default 8071)\n"
	"  -w, --workers N        worker processes (default: online CPUs)\n"
	"  -d, --daemon           detach and run in the background\n"
	"  -P, --pid-file FILE    write the master's pid to FILE\n"
	"  -u, --user NAME        drop privileges to NAME after binding\n"
	"  -l, --log-level LEVEL  error, warn, info or debug (default info)\n"
	"  -L, --log-file FILE    log to FILE (reopened on SIGUSR1) instead of stderr\n"
	"  -S, --syslog           log to syslog (daemon facility)\n"
	"  -t, --check-config     validate the configuration and exit (0 valid, 1 not)\n"
	"  -V, --version          print the version and exit\n"
	"  -h, --help             print this help and exit\n"
	"\n"
	"Environment: SFU_GATEWAY_KEY (required unless [gateway] key), SFU_GATEWAY_BIND,\n"
	"SFU_GATEWAY_PORT, SFU_GATEWAY_NODES, SFU_GATEWAY_TRUST_PROXY,\n"
	"SFU_GATEWAY_REGISTRATION_KEY, SFU_GATEWAY_WORKERS, SFU_GATEWAY_LOG_LEVEL.\n"
	"Signals: HUP reload, TERM/INT graceful stop, QUIT immediate stop, USR1 reopen logs.\n";

static const struct option main_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "secrets", required_argument, NULL, 's' },
	{ "bind", required_argument, NULL, 'b' },
	{ "port", required_argument, NULL, 'p' },
	{ "workers", required_argument, NULL, 'w' },
	{ "daemon", no_argument, NULL, 'd' },
	{ "pid-file", required_argument, NULL, 'P' },
	{ "user", required_argument, NULL, 'u' },
	{ "log-level", required_argument, NULL, 'l' },
	{ "log-file", required_argument, NULL, 'L' },
	{ "syslog", no_argument, NULL, 'S' },
	{ "check-config", no_argument, NULL, 't' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

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
	bool check = false;
	int opt, rc, ready_fd = -1;
	enum log_level lvl;

	log_set_role("main");
	while ((opt = getopt_long(argc, argv, "c:s:b:p:w:dP:u:l:L:StVh", main_options, NULL)) !=
	       -1) {
		switch (opt) {
		case 'c': cli.config_path = optarg; break;
		case 's': cli.secrets_path = optarg; break;
		case 'b': cli.bind = optarg; break;
		case 'p': cli.port = optarg; break;
		case 'w': cli.workers = optarg; break;
		case 'd': cli.daemonize = true; break;
		case 'P': cli.pid_file = optarg; break;
		case 'u': cli.user = optarg; break;
		case 'l': cli.log_level = optarg; break;
		case 'L': cli.log_file = optarg; break;
		case 'S': cli.use_syslog = true; break;
		case 't': check = true; break;
		case 'V': printf("sfu-gateway %s\n", SFU_VERSION); return 0;
		case 'h': fputs(main_usage, stdout); return 0;
		default:
			fputs("Try 'sfu-gateway --help'.\n", stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sfu-gateway: unexpected argument '%s'\nTry 'sfu-gateway --help'.\n",
			argv[optind]);
		return 2;
	}
	if (cli.log_level != NULL && log_level_parse(cli.log_level, &lvl) == 0)
		log_set_level(lvl);
	rc = config_load(&cfg, &cli, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "sfu-gateway: %s\n", err);
		return 1;
	}
	if (check) {
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
