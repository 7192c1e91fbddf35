/* Integration tests of the real binary: flags, environment, config files, signals, leftovers. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "instance.h"

/* base64 of the 32 bytes "sfu-gateway-test-key-0123456789!" */
#define CLI_KEY "c2Z1LWdhdGV3YXktdGVzdC1rZXktMDEyMzQ1Njc4OSE="
#define CLI_KEY_ENV "SFU_GATEWAY_KEY=" CLI_KEY
/* base64 of "node-key-for-the-mock-sfu-000001" (32 bytes) */
#define CLI_NODE_KEY "bm9kZS1rZXktZm9yLXRoZS1tb2NrLXNmdS0wMDAwMDE="
/* The same 32 bytes (fb ff bf ... fb ff), standard padded and url-safe unpadded. */
#define CLI_STD_KEY "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/8="
#define CLI_URL_KEY "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8"
/* base64 of "short-key-16byte" (16 bytes) and "short-sfu-key" (13 bytes) */
#define CLI_SHORT_KEY "c2hvcnQta2V5LTE2Ynl0ZQ=="
#define CLI_SHORT_SFU_KEY "c2hvcnQtc2Z1LWtleQ=="

extern char **environ;

/* Responses are big; a static one also leaks nothing when an assertion fails. */
static struct harness_resp cli_resp;

/* Gateways this file starts itself (without the harness's --port), killed at cleanup. */
static pid_t cli_pids[4];
static char cli_locks[4][512];
static int cli_npids;

/* Kills what cli_spawn_bare started, then the harness's own cleanup. */
static void cli_cleanup(void)
{
	for (int i = 0; i < cli_npids; i++) {
		if (cli_pids[i] > 0) {
			kill(cli_pids[i], SIGKILL);
			waitpid(cli_pids[i], NULL, 0);
		}
		unlink(cli_locks[i]);
	}
	cli_npids = 0;
	harness_cleanup();
}

/* Everything a finished process wrote to stdout (static buffer). */
static const char *cli_stdout(const struct harness_proc *p)
{
	static char out[16384];
	size_t n = 0;
	int64_t deadline = harness_now_ms() + 2000;

	while (n < sizeof(out) - 1 && harness_now_ms() < deadline) {
		struct pollfd pf = { p->out_fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		r = read(p->out_fd, out + n, sizeof(out) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	out[n] = '\0';
	return out;
}

/* Runs the binary (through the harness: --port, --bind, --config added unless
 * given) and expects it to exit within timeout_ms; returns the exit code. */
static int cli_run(const char *const *env, const char *const *args, int timeout_ms,
		   struct harness_proc **out)
{
	int rc = harness_gateway_run(env, args, timeout_ms, out);

	cr_assert_not_null(*out, "could not start the gateway");
	cr_assert_neq(rc, -1, "still running after %d ms:\n%s", timeout_ms, harness_all_logs());
	return rc;
}

/* The instance lock file of port (instance.c's rule, same environment). */
static const char *cli_lock_path(int port)
{
	static char path[512];
	char err[256];

	cr_assert_eq(instance_lock_path((uint16_t)port, path, sizeof(path), err, sizeof(err)), 0,
		     "%s", err);
	return path;
}

/* Something named an instance on port leaves behind: its lock file, or a segment
 * under the name older versions gave it. */
static bool cli_leftover(int port)
{
	char legacy[128];

	snprintf(legacy, sizeof(legacy), "/dev/shm/sfu-gateway.%u.%d", (unsigned)getuid(), port);
	return access(legacy, F_OK) == 0 || access(cli_lock_path(port), F_OK) == 0;
}

/* A running instance on port: it holds its lock file, and its master maps a segment
 * that has no name (whose path is put in seg when not NULL). */
static void cli_assert_instance(pid_t master, int port, char *seg, size_t seglen)
{
	char path[512];
	bool deleted = false;

	cr_assert(harness_segment(master, path, sizeof(path), &deleted),
		  "the master maps no shared memory segment");
	cr_assert(deleted, "the segment %s has a name while the gateway runs", path);
	cr_assert_neq(access(path, F_OK), 0, "%s exists", path);
	cr_assert(access(cli_lock_path(port), F_OK) == 0, "no lock file %s", cli_lock_path(port));
	if (seg != NULL)
		snprintf(seg, seglen, "%s", path);
}

/* The number in "(N static SFUs)" of --check-config's output, or -1. */
static int cli_sfu_count(const char *out)
{
	const char *p = strstr(out, " static SFU");

	if (p == NULL)
		return -1;
	while (p > out && p[-1] >= '0' && p[-1] <= '9')
		p--;
	return atoi(p);
}

/* Reads /proc/<pid>/stat: state and parent; false when the process is gone. */
static bool cli_proc_stat(pid_t pid, char *state, pid_t *ppid)
{
	char path[64], buf[512];
	const char *rp;
	ssize_t n;
	int fd, pp = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
	rp = strrchr(buf, ')');
	if (rp == NULL || sscanf(rp + 2, "%c %d", state, &pp) != 2)
		return false;
	*ppid = pp;
	return true;
}

/* A zombie is as good as gone: it holds no socket, no mapping, no CPU. */
static bool cli_alive(pid_t pid)
{
	char state;
	pid_t ppid;

	return cli_proc_stat(pid, &state, &ppid) && state != 'Z' && state != 'X';
}

/* Live children of parent, found by scanning /proc. */
static int cli_children(pid_t parent, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL && n < max) {
		pid_t pid = (pid_t)atoi(e->d_name), ppid;
		char state;

		if (pid > 0 && cli_proc_stat(pid, &state, &ppid) && ppid == parent &&
		    state != 'Z' && state != 'X')
			out[n++] = pid;
	}
	closedir(d);
	return n;
}

/* Waits until the master has `want` children (workers + reaper). */
static int cli_wait_children(pid_t master, pid_t *out, int want)
{
	int64_t deadline = harness_now_ms() + 5000;
	int n = 0;

	while (harness_now_ms() < deadline) {
		n = cli_children(master, out, 16);
		if (n >= want)
			break;
		poll(NULL, 0, 20);
	}
	return n;
}

static bool cli_wait_gone(const pid_t *pids, int n, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	for (;;) {
		int alive = 0;

		for (int i = 0; i < n; i++)
			alive += cli_alive(pids[i]);
		if (alive == 0)
			return true;
		if (harness_now_ms() >= deadline)
			return false;
		poll(NULL, 0, 20);
	}
}

/* True when some line of the log holds all of a, b and c. */
static bool cli_log_line_has(const char *log, const char *a, const char *b, const char *c)
{
	const char *line = log;

	while (*line != '\0') {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		char buf[2048];

		snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
		if (strstr(buf, a) && strstr(buf, b) && strstr(buf, c))
			return true;
		if (eol == NULL)
			break;
		line = eol + 1;
	}
	return false;
}

static int cli_count_lines(const char *text)
{
	int n = 0;

	for (; *text != '\0'; text++)
		n += *text == '\n';
	return n;
}

Test(cli, version, .fini = harness_cleanup, .timeout = 20)
{
	static const char *const args[] = { "--version", NULL };
	struct harness_proc *p;
	const char *out;

	cr_assert_eq(cli_run(NULL, args, 5000, &p), 0);
	out = cli_stdout(p);
#ifdef SFU_VERSION
	cr_assert_str_eq(out, "sfu-gateway " SFU_VERSION "\n");
#else
	cr_assert(strncmp(out, "sfu-gateway ", 12) == 0 && out[12] >= '0' && out[12] <= '9',
		  "--version printed: %s", out);
#endif
	/* The short form, and no key needed for either. */
	{
		static const char *const shrt[] = { "-V", NULL };

		cr_assert_eq(cli_run(NULL, shrt, 5000, &p), 0);
		cr_assert(strncmp(cli_stdout(p), "sfu-gateway ", 12) == 0);
	}
}

Test(cli, help, .fini = harness_cleanup, .timeout = 20)
{
	static const char *const args[] = { "--help", NULL };
	static const char *const flags[] = {
		"--config", "--secrets", "--bind", "--port", "--workers", "--daemon",
		"--pid-file", "--user", "--log-level", "--log-file", "--syslog",
		"--check-config", "--version", "--help",
	};
	struct harness_proc *p;
	const char *out;

	cr_assert_eq(cli_run(NULL, args, 5000, &p), 0);
	out = cli_stdout(p);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		cr_assert_not_null(strstr(out, flags[i]), "--help does not mention %s:\n%s",
				   flags[i], out);
	cr_assert_not_null(strstr(out, "SFU_GATEWAY_KEY"), "%s", out);
}

Test(cli, bad_arguments, .fini = harness_cleanup, .timeout = 20)
{
	static const char *const unknown[] = { "--frobnicate", NULL };
	static const char *const unknown_short[] = { "-Z", NULL };
	static const char *const missing_value[] = { "--workers", NULL };
	static const char *const stray[] = { "stray-argument", NULL };
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	struct harness_proc *p;

	cr_assert_eq(cli_run(env, unknown, 5000, &p), 2);
	cr_assert_not_null(strstr(harness_log(p), "frobnicate"), "%s", harness_log(p));
	cr_assert_eq(cli_run(env, unknown_short, 5000, &p), 2);
	cr_assert_eq(cli_run(env, missing_value, 5000, &p), 2);
	cr_assert_eq(cli_run(env, stray, 5000, &p), 2);
	cr_assert_not_null(strstr(harness_log(p), "stray-argument"), "%s", harness_log(p));
	cr_assert_not(cli_leftover(p->port));
}

Test(cli, missing_key, .fini = harness_cleanup, .timeout = 20)
{
	static const char *const args[] = { "--workers", "1", NULL };
	struct harness_proc *p;
	int64_t t0 = harness_now_ms();
	const char *log;

	cr_assert_eq(cli_run(NULL, args, 5000, &p), 1);
	cr_assert_lt(harness_now_ms() - t0, 2000, "took %lld ms to refuse",
		     (long long)(harness_now_ms() - t0));
	log = harness_log(p);
	cr_assert_eq(cli_count_lines(log), 1, "want one line on stderr, got:\n%s", log);
	cr_assert_not_null(strstr(log, "SFU_GATEWAY_KEY"), "%s", log);
	cr_assert_not(cli_leftover(p->port), "a lock or segment was left behind");

	/* An empty variable counts as unset. */
	{
		static const char *const empty[] = { "SFU_GATEWAY_KEY=", NULL };

		cr_assert_eq(cli_run(empty, args, 5000, &p), 1);
		cr_assert_not_null(strstr(harness_log(p), "SFU_GATEWAY_KEY"));
	}
}

Test(cli, check_config_valid, .fini = harness_cleanup, .timeout = 20)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	const char *path = harness_write_file(
		"valid.toml",
		"# a valid configuration\n"
		"[gateway]\n"
		"workers = 1\n"
		"log_level = \"info\"\n"
		"shutdown_timeout_ms = 5000\n"
		"\n"
		"[balancing]\n"
		"strategy = \"round-robin\"\n"
		"max_sessions = 50\n"
		"\n"
		"[balancing.weights]\n"
		"cpu = 0.5\n"
		"\n"
		"[failover]\n"
		"max_retries = 2\n"
		"\n"
		"[[sfu]]\n"
		"address = \"http://127.0.0.1:8070\"\n"
		"region = \"eu-west\"\n"
		"key = \"" CLI_NODE_KEY "\"\n");
	const char *args[] = { "--config", path, "--check-config", NULL };
	struct harness_proc *p;
	const char *out;

	cr_assert_eq(cli_run(env, args, 5000, &p), 0, "%s", harness_log(p));
	out = cli_stdout(p);
	cr_assert_not_null(strstr(out, "ok"), "--check-config printed: %s", out);
	cr_assert_eq(cli_sfu_count(out), 1, "%s", out);
	/* A check starts nothing. */
	cr_assert_not(cli_leftover(p->port));
}

Test(cli, check_config_errors, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	struct harness_proc *p;
	const char *path, *log;
	char want[600];

	/* A syntax error: path:line: reason. */
	path = harness_write_file("syntax.toml", "[gateway]\nworkers = 1\nport = = 3\n");
	{
		const char *args[] = { "--config", path, "--check-config", NULL };

		cr_assert_eq(cli_run(env, args, 5000, &p), 1);
	}
	log = harness_log(p);
	snprintf(want, sizeof(want), "%s:3:", path);
	cr_assert_not_null(strstr(log, want), "want '%s' in:\n%s", want, log);

	/* An unknown key, then an unknown section: both named. */
	path = harness_write_file("unknown.toml", "[gateway]\nworkers = 1\nfrobnicate = 1\n");
	{
		const char *args[] = { "--config", path, "--check-config", NULL };

		cr_assert_eq(cli_run(env, args, 5000, &p), 1);
	}
	log = harness_log(p);
	cr_assert_not_null(strstr(log, "frobnicate"), "%s", log);
	snprintf(want, sizeof(want), "%s:3:", path);
	cr_assert_not_null(strstr(log, want), "want '%s' in:\n%s", want, log);

	path = harness_write_file("section.toml", "[gateway]\nworkers = 1\n[wibble]\nx = 1\n");
	{
		const char *args[] = { "--config", path, "--check-config", NULL };

		cr_assert_eq(cli_run(env, args, 5000, &p), 1);
	}
	cr_assert_not_null(strstr(harness_log(p), "wibble"), "%s", harness_log(p));

	/* A missing config file. */
	{
		const char *args[] = { "--config", "/nonexistent/sfu.toml", "--check-config",
				       NULL };

		cr_assert_eq(cli_run(env, args, 5000, &p), 1);
		cr_assert_not_null(strstr(harness_log(p), "/nonexistent/sfu.toml"), "%s",
				   harness_log(p));
	}
}

Test(cli, check_config_bad_sfu_key, .fini = harness_cleanup, .timeout = 20)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	const char *path = harness_write_file(
		"secrets.toml",
		"[[sfu]]\n"
		"address = \"http://127.0.0.1:8070\"\n"
		"key = \"" CLI_NODE_KEY "\"\n"
		"\n"
		"[[sfu]]\n"
		"address = \"http://10.1.2.3:8070\"\n"
		"region = \"eu-west\"\n"
		"key = \"not*valid*base64!\"\n");
	const char *args[] = { "--secrets", path, "--check-config", NULL };
	struct harness_proc *p;
	const char *log;

	cr_assert_eq(cli_run(env, args, 5000, &p), 1);
	log = harness_log(p);
	cr_assert(cli_log_line_has(log, "sfu", "1", "http://10.1.2.3:8070"),
		  "the message does not name the SFU's index and address:\n%s", log);
	cr_assert_null(strstr(log, "not*valid*base64"), "the key text was echoed:\n%s", log);
}

Test(cli, check_config_bad_port, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	static const char *const big[] = { "--port", "70000", "--check-config", NULL };
	static const char *const zero[] = { "--port", "0", "--check-config", NULL };
	static const char *const junk[] = { "--port", "80x", "--check-config", NULL };
	static const char *const neg[] = { "--port", "-1", "--check-config", NULL };
	static const char *const env_big[] = { CLI_KEY_ENV, "SFU_GATEWAY_PORT=65536", NULL };
	static const char *const check[] = { "--check-config", NULL };
	struct harness_proc *p;
	const char *path;

	cr_assert_eq(cli_run(env, big, 5000, &p), 1);
	cr_assert_not_null(strstr(harness_log(p), "port"), "%s", harness_log(p));
	cr_assert_eq(cli_run(env, zero, 5000, &p), 1);
	cr_assert_eq(cli_run(env, junk, 5000, &p), 1);
	cr_assert_eq(cli_run(env, neg, 5000, &p), 1);
	path = harness_write_file("port.toml", "[gateway]\nport = 70000\n");
	{
		const char *args[] = { "--config", path, "--check-config", NULL };

		cr_assert_eq(cli_run(env, args, 5000, &p), 1);
		cr_assert_not_null(strstr(harness_log(p), "port"), "%s", harness_log(p));
	}
	/* The environment is checked too, even when --port would override it:
	 * the harness adds --port, so this also shows a bad variable is not hidden. */
	cr_assert_eq(cli_run(env_big, check, 5000, &p), 1);
	cr_assert_not_null(strstr(harness_log(p), "SFU_GATEWAY_PORT"), "%s", harness_log(p));
}

/* Starts the gateway with exactly these args (no --port or --bind added) and
 * env entries over the test's environment minus SFU_GATEWAY_*; stderr goes to
 * a log in the test's directory. The segment name is derived from port. */
static pid_t cli_spawn_bare(const char *const *env, const char *const *args, int port,
			    char *log_path, size_t log_len)
{
	const char *bin = getenv("SFU_GATEWAY_BIN");
	const char *argv[32];
	char *envp[512];
	int n = 0, ne = 0;
	pid_t pid;

	cr_assert_lt(cli_npids, 4);
	if (bin == NULL)
		bin = "build/sfu-gateway";
	argv[n++] = bin;
	for (int i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	for (char **e = environ; *e != NULL && ne < 400; e++)
		if (strncmp(*e, "SFU_GATEWAY_", 12) != 0)
			envp[ne++] = *e;
	for (int i = 0; env[i] != NULL && ne < 510; i++)
		envp[ne++] = (char *)env[i];
	envp[ne] = NULL;
	snprintf(log_path, log_len, "%s/bare%d.log", harness_tmpdir(), cli_npids);
	snprintf(cli_locks[cli_npids], sizeof(cli_locks[0]), "%s", cli_lock_path(port));
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int nul = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0)
			dup2(fd, STDERR_FILENO);
		if (nul >= 0)
			dup2(nul, STDOUT_FILENO);
		execve(argv[0], (char *const *)argv, envp);
		_exit(127);
	}
	cli_pids[cli_npids++] = pid;
	return pid;
}

static bool cli_wait_noop(int port, pid_t pid, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	struct harness_resp *r = &cli_resp;
	bool ok = false;

	while (!ok && harness_now_ms() < deadline) {
		ok = harness_get(port, "/noop", NULL, r) == 0 && r->status == 200;
		if (!ok && waitpid(pid, NULL, WNOHANG) == pid)
			break;
		if (!ok)
			poll(NULL, 0, 20);
	}
	return ok;
}

/* Is something listening on addr:port (hex as in /proc/net/tcp)? */
static bool cli_listening(const char *hex_addr, int port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[512], want[64];
	bool found = false;

	cr_assert_not_null(f);
	snprintf(want, sizeof(want), ": %s:%04X 00000000:0000 0A ", hex_addr, port);
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = strstr(line, want) != NULL;
	fclose(f);
	return found;
}

static int cli_wait_exit(pid_t pid, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	int status;

	while (harness_now_ms() < deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			for (int i = 0; i < cli_npids; i++)
				if (cli_pids[i] == pid)
					cli_pids[i] = 0;
			return status;
		}
		poll(NULL, 0, 10);
	}
	return -1;
}

Test(cli, env_port_and_bind, .fini = cli_cleanup, .timeout = 30)
{
	int port = harness_free_port();
	char port_env[64], log_path[512];
	const char *env[] = { CLI_KEY_ENV, port_env, "SFU_GATEWAY_BIND=127.0.0.1", NULL };
	const char *args[] = { "--config", harness_write_file("empty.toml", "# empty\n"),
			       "--workers", "1", NULL };
	pid_t pid;
	int status;

	snprintf(port_env, sizeof(port_env), "SFU_GATEWAY_PORT=%d", port);
	pid = cli_spawn_bare(env, args, port, log_path, sizeof(log_path));
	cr_assert(cli_wait_noop(port, pid, 10000), "no /noop on SFU_GATEWAY_PORT=%d:\n%s", port,
		  harness_all_logs());
	/* Bound to 127.0.0.1 only, not to every address. */
	cr_assert(cli_listening("0100007F", port), "not listening on 127.0.0.1:%d", port);
	cr_assert_not(cli_listening("00000000", port), "listening on 0.0.0.0:%d", port);
	cli_assert_instance(pid, port, NULL, 0);
	kill(pid, SIGTERM);
	status = cli_wait_exit(pid, 12000);
	cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "status %d after SIGTERM", status);
	cr_assert_not(cli_leftover(port));
}

Test(cli, cli_port_wins, .fini = harness_cleanup, .timeout = 30)
{
	int env_port = harness_free_port(), cli_port = harness_free_port();
	char port_env[64], cli_port_s[16];
	const char *env[] = { CLI_KEY_ENV, port_env, NULL };
	const char *args[] = { "--port", cli_port_s, "--bind", "127.0.0.1", "--workers", "1",
			       NULL };
	struct harness_resp *r = &cli_resp;

	for (int i = 0; env_port == cli_port && i < 10; i++)
		cli_port = harness_free_port();
	cr_assert_neq(env_port, cli_port);
	snprintf(port_env, sizeof(port_env), "SFU_GATEWAY_PORT=%d", env_port);
	snprintf(cli_port_s, sizeof(cli_port_s), "%d", cli_port);
	harness_gateway_up(env, args);
	cr_assert_eq(harness_get(env_port, "/noop", NULL, r), -ECONNREFUSED,
		     "something answers on SFU_GATEWAY_PORT although --port was given");
	cr_assert_not(cli_leftover(env_port));
}

Test(cli, trust_proxy_values, .fini = harness_cleanup, .timeout = 20)
{
	static const char *const maybe[] = { CLI_KEY_ENV, "SFU_GATEWAY_TRUST_PROXY=maybe", NULL };
	static const char *const yes[] = { CLI_KEY_ENV, "SFU_GATEWAY_TRUST_PROXY=true", NULL };
	static const char *const one[] = { CLI_KEY_ENV, "SFU_GATEWAY_TRUST_PROXY=1", NULL };
	static const char *const args[] = { "--workers", "1", NULL };
	static const char *const check[] = { "--check-config", NULL };
	struct harness_proc *p;

	cr_assert_eq(cli_run(maybe, args, 5000, &p), 1);
	cr_assert_not_null(strstr(harness_log(p), "SFU_GATEWAY_TRUST_PROXY"), "%s",
			   harness_log(p));
	cr_assert_not(cli_leftover(p->port));
	cr_assert_eq(cli_run(yes, check, 5000, &p), 0, "%s", harness_log(p));
	cr_assert_eq(cli_run(one, check, 5000, &p), 0, "%s", harness_log(p));
}

/* A GET /v1/channel with an Odoo token signed by the gateway key. */
static void cli_channel(int port, struct harness_resp *r)
{
	char auth[16384 + 64];

	snprintf(auth, sizeof(auth), "Authorization: jwt %s\r\n",
		 harness_odoo_token("http://odoo.test", CLI_KEY));
	cr_assert_eq(harness_get(port, "/v1/channel", auth, r), 0);
}

Test(cli, nodes_win_over_secrets, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const mock_args[] = { NULL };
	struct harness_proc *mock = harness_mock_start(CLI_NODE_KEY, mock_args);
	int dead = harness_free_port();
	char nodes[512], secrets[1024];
	const char *env[] = { CLI_KEY_ENV, nodes, NULL };
	const char *path;
	struct harness_proc *p;
	struct harness_resp *r = &cli_resp;
	const char *out;

	cr_assert_not_null(mock, "the mock SFU did not start");
	snprintf(nodes, sizeof(nodes),
		 "SFU_GATEWAY_NODES={\"sfu\":[{\"address\":\"http://127.0.0.1:%d\","
		 "\"region\":\"eu-west\",\"key\":\"%s\"}]}",
		 mock->port, CLI_NODE_KEY);
	/* The file names two other SFUs, neither reachable. */
	snprintf(secrets, sizeof(secrets),
		 "[[sfu]]\naddress = \"http://127.0.0.1:%d\"\nkey = \"%s\"\n\n"
		 "[[sfu]]\naddress = \"http://127.0.0.2:%d\"\nkey = \"%s\"\n",
		 dead, CLI_NODE_KEY, dead, CLI_NODE_KEY);
	path = harness_write_file("secrets.toml", secrets);
	{
		const char *args[] = { "--secrets", path, "--check-config", NULL };

		cr_assert_eq(cli_run(env, args, 5000, &p), 0, "%s", harness_log(p));
		out = cli_stdout(p);
		cr_assert_eq(cli_sfu_count(out), 1, "want the 1 SFU of SFU_GATEWAY_NODES: %s", out);
	}
	{
		/* Without the variable, the file's two count. */
		static const char *const key_only[] = { CLI_KEY_ENV, NULL };
		const char *args[] = { "--secrets", path, "--check-config", NULL };

		cr_assert_eq(cli_run(key_only, args, 5000, &p), 0, "%s", harness_log(p));
		out = cli_stdout(p);
		cr_assert_eq(cli_sfu_count(out), 2, "%s", out);
	}
	{
		const char *args[] = { "--secrets", path, "--workers", "1", NULL };

		p = harness_gateway_up(env, args);
	}
	cli_channel(p->port, r);
	cr_assert_eq(r->status, 200, "the request did not reach the mock of SFU_GATEWAY_NODES:"
		     " %d %s\n%s", r->status, r->body, harness_log(p));
	cr_assert_neq(harness_json_str(r->body, "uuid")[0], '\0', "%s", r->body);
}

Test(cli, secrets_key_forms, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	static const char *const mock_args[] = { NULL };
	struct harness_proc *mock = harness_mock_start(CLI_STD_KEY, mock_args);
	struct harness_proc *p;
	struct harness_resp *r = &cli_resp;
	char secrets[1024];
	const char *path;

	cr_assert_not_null(mock, "the mock SFU did not start");
	path = harness_write_file("both.toml",
				  "[[sfu]]\naddress = \"http://10.0.0.1:8070\"\n"
				  "key = \"" CLI_STD_KEY "\"\n\n"
				  "[[sfu]]\naddress = \"http://10.0.0.2:8070\"\n"
				  "key = \"" CLI_URL_KEY "\"\n");
	{
		const char *args[] = { "--secrets", path, "--check-config", NULL };

		cr_assert_eq(cli_run(env, args, 5000, &p), 0, "%s", harness_log(p));
		cr_assert_eq(cli_sfu_count(cli_stdout(p)), 2);
	}
	/* The url-safe unpadded form decodes to the bytes the mock knows in the
	 * standard form: the re-signed token passes the mock's check. */
	snprintf(secrets, sizeof(secrets),
		 "[[sfu]]\naddress = \"http://127.0.0.1:%d\"\nkey = \"%s\"\n", mock->port,
		 CLI_URL_KEY);
	path = harness_write_file("url.toml", secrets);
	{
		const char *args[] = { "--secrets", path, "--workers", "1", NULL };

		p = harness_gateway_up(env, args);
	}
	cli_channel(p->port, r);
	cr_assert_eq(r->status, 200, "%d %s\n%s", r->status, r->body, harness_log(p));
}

Test(cli, short_keys_warn_without_leaking, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" CLI_SHORT_KEY, NULL };
	const char *path = harness_write_file("short.toml",
					      "[[sfu]]\naddress = \"http://10.0.0.9:8070\"\n"
					      "key = \"" CLI_SHORT_SFU_KEY "\"\n");
	const char *args[] = { "--secrets", path, "--workers", "1", NULL };
	struct harness_proc *p = harness_gateway_up(env, args);
	const char *log = harness_log(p);

	cr_assert(cli_log_line_has(log, "warn", "key", "16"),
		  "no warning about the 16-byte gateway key:\n%s", log);
	cr_assert(cli_log_line_has(log, "warn", "sfu[0]", "13"),
		  "no warning about the 13-byte key of sfu[0]:\n%s", log);
	cr_assert_null(strstr(log, CLI_SHORT_KEY), "%s", log);
	cr_assert_null(strstr(log, "c2hvcnQta2V5"), "%s", log);
	cr_assert_null(strstr(log, "short-key-16byte"), "%s", log);
	cr_assert_null(strstr(log, CLI_SHORT_SFU_KEY), "%s", log);
	cr_assert_null(strstr(log, "short-sfu-key"), "%s", log);
}

/* A listening socket on 127.0.0.1:port without SO_REUSEPORT. */
static int cli_occupy(int *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 8), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

Test(cli, port_in_use, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	int port, fd = cli_occupy(&port);
	char port_s[16], want[32];
	const char *args[] = { "--port", port_s, "--bind", "127.0.0.1", "--workers", "1", NULL };
	struct harness_proc *p;
	const char *log;

	snprintf(port_s, sizeof(port_s), "%d", port);
	cr_assert_eq(cli_run(env, args, 5000, &p), 1);
	log = harness_log(p);
	snprintf(want, sizeof(want), "%d", port);
	cr_assert(cli_log_line_has(log, "bind", want, ""), "want 'bind' and %d in:\n%s", port,
		  log);
	cr_assert_not(cli_leftover(port), "a lock or segment was left behind");
	close(fd);
}

Test(cli, second_instance_refused, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	static const char *const first_args[] = { "--workers", "1", NULL };
	struct harness_proc *first = harness_gateway_up(env, first_args), *p;
	char port_s[16];
	const char *args[] = { "--port", port_s, "--bind", "127.0.0.1", "--workers", "1", NULL };
	struct harness_resp *r = &cli_resp;

	snprintf(port_s, sizeof(port_s), "%d", first->port);
	/* SO_REUSEPORT would let the same user bind twice: the instance lock
	 * must refuse, and must not remove the running instance's lock. */
	cr_assert_eq(cli_run(env, args, 5000, &p), 1);
	cr_assert(cli_log_line_has(harness_log(p), "another sfu-gateway is running", port_s, ""),
		  "%s", harness_log(p));
	cli_assert_instance(first->pid, first->port, NULL, 0);
	cr_assert_eq(harness_get(first->port, "/noop", NULL, r), 0);
	cr_assert_eq(r->status, 200);
}

Test(cli, secrets_never_logged, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const claims =
		"{\"iss\": \"http://odoo.test\", \"key\": \"k\", \"exp\": 4102444800}";
	static const char *const hdr = "{\"typ\": \"JWT\", \"alg\": \"HS256\"}";
	static const char *const wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXkhIQ==";
	int dead = harness_free_port();
	char nodes[512], tokens[6][1024], auth[1100];
	const char *sig[6];
	const char *env[] = { CLI_KEY_ENV, nodes, NULL };
	static const char *const args[] = { "--workers", "1", "--log-level", "debug", NULL };
	struct harness_resp *r = &cli_resp;
	struct harness_proc *p;
	const char *log;

	snprintf(nodes, sizeof(nodes),
		 "SFU_GATEWAY_NODES={\"sfu\":[{\"address\":\"http://127.0.0.1:%d\","
		 "\"key\":\"%s\"}]}",
		 dead, CLI_NODE_KEY);
	p = harness_gateway_up(env, args);

	/* A token signed with another key, one with alg none, one garbled, one
	 * without iss; then a valid one (the dead SFU makes it a 502) and its
	 * re-signed form, which the gateway computed but must not log either. */
	snprintf(tokens[0], sizeof(tokens[0]), "%s", harness_token(hdr, claims, wrong_key));
	snprintf(tokens[1], sizeof(tokens[1]), "%s",
		 harness_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, CLI_KEY));
	snprintf(tokens[2], sizeof(tokens[2]), "eyJhbGciOiJIUzI1NiJ9.garbledpayload.c2lnbmF0dXJl");
	snprintf(tokens[3], sizeof(tokens[3]), "%s",
		 harness_token(hdr, "{\"exp\": 4102444800}", CLI_KEY));
	snprintf(tokens[4], sizeof(tokens[4]), "%s", harness_token(hdr, claims, CLI_KEY));
	snprintf(tokens[5], sizeof(tokens[5]), "%s", harness_token(hdr, claims, CLI_NODE_KEY));
	for (int i = 0; i < 5; i++) {
		int n = snprintf(auth, sizeof(auth), "Authorization: jwt %.1000s\r\n", tokens[i]);

		cr_assert_lt(n, (int)sizeof(auth));
		cr_assert_eq(harness_get(p->port, "/v1/channel", auth, r), 0);
		cr_assert_geq(r->status, 400, "token %d: status %d", i, r->status);
		n = snprintf(auth, sizeof(auth), "Authorization: Bearer %.1000s\r\n", tokens[i]);
		cr_assert_lt(n, (int)sizeof(auth));
		cr_assert_eq(harness_get(p->port, "/v1/channel", auth, r), 0);
	}
	for (int i = 0; i < 6; i++) {
		const char *dot = strrchr(tokens[i], '.');

		sig[i] = dot != NULL ? dot + 1 : tokens[i];
	}
	log = harness_log(p);
	cr_assert_not_null(strstr(log, "listening"), "the log is not where it is expected:\n%s",
			   log);
	cr_assert_null(strstr(log, CLI_KEY), "the gateway key is in the log:\n%s", log);
	/* Also a prefix, in case a key is cut or logged without padding. */
	cr_assert_null(strstr(log, "c2Z1LWdhdGV3YXkt"), "%s", log);
	cr_assert_null(strstr(log, "sfu-gateway-test-key"), "%s", log);
	cr_assert_null(strstr(log, "bm9kZS1rZXktZm9y"), "the SFU key is in the log:\n%s", log);
	cr_assert_null(strstr(log, "node-key-for-the-mock"), "%s", log);
	for (int i = 0; i < 6; i++) {
		cr_assert_null(strstr(log, tokens[i]), "token %d is in the log:\n%s", i, log);
		if (strlen(sig[i]) >= 8)
			cr_assert_null(strstr(log, sig[i]), "signature %d is in the log:\n%s", i,
				       log);
	}
}

/* Stops a two-worker gateway with sig; checks the exit, the children and the segment. */
static void cli_assert_stop_with(int sig, int max_ms, bool want_zero)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	static const char *const args[] = { "--workers", "2", NULL };
	struct harness_proc *p = harness_gateway_up(env, args);
	pid_t kids[16], master = p->pid;
	int n = cli_wait_children(master, kids, 3), status, port = p->port;
	int64_t t0;

	/* Two workers and the reaper. */
	cr_assert_geq(n, 3, "the master has %d children, want at least 3", n);
	cli_assert_instance(master, port, NULL, 0);
	t0 = harness_now_ms();
	status = harness_stop(p, sig, max_ms);
	cr_assert_neq(status, -1, "still running %d ms after signal %d:\n%s", max_ms, sig,
		      harness_log(p));
	if (want_zero)
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			  "signal %d: exit status %#x:\n%s", sig, status, harness_log(p));
	cr_assert(cli_wait_gone(kids, n, 2000), "children left after signal %d (took %lld ms)",
		  sig, (long long)(harness_now_ms() - t0));
	cr_assert_not(cli_leftover(port), "lock or segment left after signal %d", sig);
}

Test(cli, sigterm, .fini = harness_cleanup, .timeout = 30)
{
	/* shutdown_timeout_ms defaults to 10 s; an idle gateway stops at once. */
	cli_assert_stop_with(SIGTERM, 11000, true);
}

Test(cli, sigint, .fini = harness_cleanup, .timeout = 30)
{
	cli_assert_stop_with(SIGINT, 11000, true);
}

Test(cli, sigquit, .fini = harness_cleanup, .timeout = 30)
{
	cli_assert_stop_with(SIGQUIT, 2000, false);
}

Test(cli, sigterm_with_open_connection, .fini = harness_cleanup, .timeout = 30)
{
	/* An idle keep-alive connection does not hold up a graceful stop. */
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	static const char *const args[] = { "--workers", "1", NULL };
	struct harness_proc *p = harness_gateway_up(env, args);
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), status;
	int64_t t0;

	cr_assert_geq(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)p->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	t0 = harness_now_ms();
	status = harness_stop(p, SIGTERM, 11000);
	cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x",
		  status);
	cr_assert_lt(harness_now_ms() - t0, 5000, "an idle connection delayed the stop");
	close(fd);
}

/*
 * The segment holds every SFU key: it has no name from its first instant, so a kill -9
 * of the master leaves nothing in /dev/shm, and the next start on the port needs
 * nothing cleaned up.
 */
Test(cli, killed_master_leaves_no_segment, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	static const char *const args[] = { "--workers", "2", NULL };
	struct harness_proc *p = harness_gateway_up(env, args), *again;
	pid_t kids[16];
	int n = cli_wait_children(p->pid, kids, 3), port = p->port, status;
	char port_s[16], seg[512], kid_seg[512];
	const char *args2[] = { "--port", port_s, "--bind", "127.0.0.1", "--workers", "1", NULL };
	bool deleted = false;

	cr_assert_geq(n, 3);
	cli_assert_instance(p->pid, port, seg, sizeof(seg));
	/* The children share that same unnamed segment. */
	for (int i = 0; i < n; i++) {
		cr_assert(harness_segment(kids[i], kid_seg, sizeof(kid_seg), &deleted),
			  "child %d maps no segment", (int)kids[i]);
		cr_assert_str_eq(kid_seg, seg);
		cr_assert(deleted);
	}
	/* A crash of the master: its children follow it out (PDEATHSIG). */
	harness_stop(p, SIGKILL, 2000);
	cr_assert(cli_wait_gone(kids, n, 5000), "children outlived a killed master");
	cr_assert_neq(access(seg, F_OK), 0, "%s outlived its processes", seg);
	{
		char legacy[128];

		snprintf(legacy, sizeof(legacy), "/dev/shm/sfu-gateway.%u.%d", (unsigned)getuid(),
			 port);
		cr_assert_neq(access(legacy, F_OK), 0, "%s outlived its processes", legacy);
	}
	snprintf(port_s, sizeof(port_s), "%d", port);
	again = harness_gateway_up(env, args2);
	cli_assert_instance(again->pid, port, NULL, 0);
	status = harness_stop(again, SIGTERM, 11000);
	cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x",
		  status);
	cr_assert_not(cli_leftover(port));
}

/*
 * Another user cannot stop the gateway from starting by holding a lock on a name it
 * can predict: the old segment name, the lock file (in a directory only root or the
 * gateway's user may write) or an abstract socket. Run as root, the squatter is
 * nobody; otherwise it is the test's own user and only the old segment name counts.
 */
Test(cli, squatter_cannot_block_start, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { CLI_KEY_ENV, NULL };
	int port = harness_free_port(), go[2], ready[2];
	char port_s[16], c;
	const char *args[] = { "--port", port_s, "--bind", "127.0.0.1", "--workers", "1", NULL };
	struct passwd *nobody = getpwnam("nobody");
	bool other_user = geteuid() == 0 && nobody != NULL;
	const char *lock = cli_lock_path(port);
	struct harness_proc *p;
	pid_t squatter;
	char name[128], abstract[64];

	/* Names of the gateway's user (the test's), not of the squatter. */
	snprintf(name, sizeof(name), "/sfu-gateway.%u.%d", (unsigned)getuid(), port);
	snprintf(abstract, sizeof(abstract), "sfu-gateway.%u.%d", (unsigned)getuid(), port);

	snprintf(port_s, sizeof(port_s), "%d", port);
	/* Close-on-exec: the gateway must not hold the squatter's pipes. */
	cr_assert_eq(pipe2(go, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	squatter = fork();
	cr_assert_geq(squatter, 0);
	if (squatter == 0) {
		struct sockaddr_un sun;
		int fd, s;

		close(go[1]);
		close(ready[0]);
		if (other_user && (setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0))
			_exit(2);
		/* After setuid(), which clears it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* The segment name of older versions, created and locked. */
		fd = shm_open(name, O_RDWR | O_CREAT, 0644);
		if (fd < 0 || flock(fd, LOCK_EX) != 0)
			_exit(3);
		/* The lock file, where it can (it must not be able to). */
		if (other_user) {
			int lfd = open(lock, O_RDWR | O_CREAT, 0644);

			if (lfd >= 0)
				_exit(4);
		}
		/* An abstract socket named after the port. */
		s = socket(AF_UNIX, SOCK_STREAM, 0);
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "%s", abstract);
		if (s >= 0)
			(void)!bind(s, (struct sockaddr *)&sun, sizeof(sun));
		(void)!write(ready[1], "r", 1);
		(void)!read(go[0], &c, 1);
		shm_unlink(name);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	cr_assert_eq(read(ready[0], &c, 1), 1, "the squatter failed (exit %d)",
		     harness_wait_exit(squatter, 2000));
	p = harness_gateway_start(env, args);
	cr_assert_not_null(p, "a squatter of uid %u stopped the gateway:\n%s",
			   other_user ? (unsigned)nobody->pw_uid : (unsigned)getuid(),
			   harness_all_logs());
	cli_assert_instance(p->pid, port, NULL, 0);
	close(go[1]);
	cr_assert_eq(harness_wait_exit(squatter, 5000), 0);
	close(ready[0]);
}
