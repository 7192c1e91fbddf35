/* Operations: install, init script, log rotation, manuals, start-up failures, no secrets logged. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"
#include "instance.h"

/* Keys whose decoded bytes are printable, so a leak of the raw bytes is found too. */
#define OPS_GW_RAW "ops-test-gateway-key-0123456789abcdef"
#define OPS_GW_KEY "b3BzLXRlc3QtZ2F0ZXdheS1rZXktMDEyMzQ1Njc4OWFiY2RlZg=="
#define OPS_REG_RAW "ops-test-registration-key-0123456789ab"
#define OPS_REG_KEY "b3BzLXRlc3QtcmVnaXN0cmF0aW9uLWtleS0wMTIzNDU2Nzg5YWI="
#define OPS_ONE_RAW "ops-test-sfu-one-key-0123456789abcdefgh"
#define OPS_ONE_KEY "b3BzLXRlc3Qtc2Z1LW9uZS1rZXktMDEyMzQ1Njc4OWFiY2RlZmdo"
#define OPS_TWO_KEY "b3BzLXRlc3Qtc2Z1LXR3by1rZXktMDEyMzQ1Njc4OWFiY2RlZmdo"
#define OPS_HB_RAW "ops-test-heartbeat-sfu-key-0123456789a"
#define OPS_HB_KEY "b3BzLXRlc3QtaGVhcnRiZWF0LXNmdS1rZXktMDEyMzQ1Njc4OWE="
#define OPS_WRONG_KEY "b3BzLXRlc3Qtd3Jvbmcta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGlq"

#define OPS_MAX_PIDS 64
#define OPS_ROTATE_SFUS 20 /* heartbeats before and after a rotation */

/* Daemons started through --daemon or the init script: the harness does not
 * know them, so the suite's fini kills what a failed assertion left. */
static pid_t ops_daemons[8];
static int ops_daemon_ports[8];
static int ops_n_daemons;
static char ops_pid_file[512];

static void ops_fini(void)
{
	for (int i = 0; i < ops_n_daemons; i++) {
		char lock[512], err[256];

		if (ops_daemons[i] > 0 && kill(ops_daemons[i], SIGKILL) == 0 &&
		    instance_lock_path((uint16_t)ops_daemon_ports[i], lock, sizeof(lock), err,
				       sizeof(err)) == 0)
			/* Killed, it cannot remove its instance lock: do it for it. */
			unlink(lock);
	}
	if (ops_pid_file[0] != '\0') {
		FILE *f = fopen(ops_pid_file, "r");
		int pid = 0;

		if (f != NULL) {
			if (fscanf(f, "%d", &pid) == 1 && pid > 1)
				kill(pid, SIGKILL);
			fclose(f);
		}
	}
	ops_n_daemons = 0;
	ops_pid_file[0] = '\0';
	harness_cleanup();
}

static void ops_track_daemon(pid_t pid, int port)
{
	if (ops_n_daemons < (int)(sizeof(ops_daemons) / sizeof(ops_daemons[0]))) {
		ops_daemon_ports[ops_n_daemons] = port;
		ops_daemons[ops_n_daemons++] = pid;
	}
}

TestSuite(ops, .fini = ops_fini);

/* ---- small tools */

/* The binary under test, as an absolute path. */
static const char *ops_bin(void)
{
	static char path[PATH_MAX];
	const char *bin = getenv("SFU_GATEWAY_BIN");

	if (bin == NULL)
		bin = "build/sfu-gateway";
	if (realpath(bin, path) == NULL)
		snprintf(path, sizeof(path), "%s", bin);
	return path;
}

/* The BUILD directory the binary under test came from, so "make install"
 * installs exactly that binary. */
static const char *ops_build_dir(void)
{
	static char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", ops_bin());
	return dirname(dir);
}

/* Set by ops_subreaper: this test adopts orphaned daemons and must reap them. */
static bool ops_reaping;

/*
 * Runs a shell command; returns its exit status (128 + signal when killed).
 * While it runs, a subreaper reaps the daemons it adopts, as init would:
 * "start-stop-daemon --stop" waits until the pid is really gone.
 */
static int ops_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ops_sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	pid_t child, pid;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	child = fork();
	if (child < 0)
		return -1;
	if (child == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		pid = waitpid(ops_reaping ? -1 : child, &st, ops_reaping ? WNOHANG : 0);
		if (pid == child)
			break;
		if (pid < 0 && errno != EINTR)
			return -1;
		if (pid == 0)
			poll(NULL, 0, 5);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The first 16 KiB of a file in a static buffer, for assertion messages. */
static const char *ops_text(const char *path)
{
	static char buf[16384];
	char *text = harness_read_file(path);

	snprintf(buf, sizeof(buf), "%s", text ? text : "");
	free(text);
	return buf;
}

static void ops_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0, "%s", path);
}

static bool ops_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* A running process: a zombie has finished (in a container nobody may reap it). */
static bool ops_alive(pid_t pid)
{
	char path[64], *stat, *p;
	bool alive;

	/* A daemon orphaned to this test (see ops_subreaper) is reaped here. */
	waitpid(pid, NULL, WNOHANG);
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	stat = harness_read_file(path);
	if (stat == NULL)
		return false;
	p = strrchr(stat, ')');
	alive = p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	free(stat);
	return alive;
}

static bool ops_wait_gone(pid_t pid, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (ops_alive(pid)) {
		if (harness_now_ms() > deadline)
			return false;
		poll(NULL, 0, 20);
	}
	return true;
}

/*
 * Daemons detach from their parent and are adopted by init, which in a
 * container may never reap them: a crashed master would stay a zombie whose
 * pid still answers kill(pid, 0). Adopting them here lets ops_alive reap them.
 */
static void ops_subreaper(void)
{
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	ops_reaping = true;
}

/* True when pid is the keeper of a master (its name, keeper.c). */
static bool ops_is_keeper(pid_t pid)
{
	char path[64], *comm;
	bool keeper;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	comm = harness_read_file(path);
	keeper = comm != NULL && strcmp(comm, "sfu-gw-keeper\n") == 0;
	free(comm);
	return keeper;
}

/* Living children of pid (workers and reaper of a master, not its keeper). */
static int ops_children(pid_t pid, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < max) {
		char path[300], *stat, *p;
		int ppid;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		stat = harness_read_file(path);
		if (stat == NULL)
			continue;
		p = strrchr(stat, ')');
		if (p != NULL && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == pid &&
		    p[2] != 'Z' && !ops_is_keeper((pid_t)atoi(e->d_name)))
			out[n++] = (pid_t)atoi(e->d_name);
		free(stat);
	}
	closedir(d);
	return n;
}

static int ops_read_pid(const char *path)
{
	char *text = harness_read_file(path);
	int pid = 0;

	if (text != NULL) {
		pid = atoi(text);
		free(text);
	}
	return pid;
}

/* True when a GET of path answers status and its body holds needle (or needle is NULL). */
static bool ops_get_has(int port, const char *path, int status, const char *needle)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	bool ok;

	cr_assert_not_null(r);
	ok = harness_get(port, path, NULL, r) == 0 && r->status == status &&
	     (needle == NULL || strstr(r->body, needle) != NULL);
	free(r);
	return ok;
}

static bool ops_poll_get(int port, const char *path, int status, const char *needle,
			 int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (harness_now_ms() < deadline) {
		if (ops_get_has(port, path, status, needle))
			return true;
		poll(NULL, 0, 50);
	}
	return false;
}

/* What a stopped instance on port must not leave: its instance lock, or a segment
 * under the name older versions gave it. NULL when nothing is left. */
static const char *ops_leftover(int port)
{
	static char path[512];
	char err[256];

	snprintf(path, sizeof(path), "/dev/shm/sfu-gateway.%u.%d", (unsigned)getuid(), port);
	if (access(path, F_OK) == 0)
		return path;
	cr_assert_eq(instance_lock_path((uint16_t)port, path, sizeof(path), err, sizeof(err)), 0,
		     "%s", err);
	return access(path, F_OK) == 0 ? path : NULL;
}

/* ---- make install and the init script */

struct ops_inst {
	char root[256]; /* DESTDIR */
	char var[256]; /* pid file and logs, outside DESTDIR */
	char defaults[512];
	char config[512];
	char script[512];
	char pid_file[512];
	char log_file[512];
	char out[512]; /* what make and the init script printed */
};

static int ops_make(const struct ops_inst *in, const char *target)
{
	const char *b = ops_build_dir();

	/* -o: install the binary under test as it is, never rebuild it here. */
	return ops_sh("make -s BUILD='%s' -o '%s/sfu-gateway' %s DESTDIR='%s' PREFIX=/usr "
		      ">>'%s' 2>&1",
		      b, b, target, in->root, in->out);
}

static void ops_install(struct ops_inst *in)
{
	const char *tmp = harness_tmpdir();
	int rc;

	cr_assert_neq(tmp[0], '\0');
	/* A daemon running as another user must still reach its config. */
	chmod(tmp, 0755);
	snprintf(in->root, sizeof(in->root), "%s/root", tmp);
	snprintf(in->var, sizeof(in->var), "%s/var", tmp);
	snprintf(in->out, sizeof(in->out), "%s/ops.out", tmp);
	snprintf(in->defaults, sizeof(in->defaults), "%s/etc/default/sfu-gateway", in->root);
	snprintf(in->config, sizeof(in->config), "%s/etc/sfu-gateway/sfu-gateway.toml", in->root);
	snprintf(in->script, sizeof(in->script), "%s/etc/init.d/sfu-gateway", in->root);
	snprintf(in->pid_file, sizeof(in->pid_file), "%s/sfu-gateway.pid", in->var);
	snprintf(in->log_file, sizeof(in->log_file), "%s/sfu-gateway.log", in->var);
	cr_assert_eq(mkdir(in->var, 0755), 0);
	snprintf(ops_pid_file, sizeof(ops_pid_file), "%s", in->pid_file);
	rc = ops_make(in, "install");
	cr_assert_eq(rc, 0, "make install failed (%d): %s", rc, ops_text(in->out));
}

/* The test's settings for the installed init script, in the installed defaults file. */
static void ops_write_defaults(const struct ops_inst *in, const char *user)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "DAEMON=%s/usr/sbin/sfu-gateway\n"
		 "CONFIG=%s\n"
		 "PIDFILE=%s\n"
		 "LOG_FILE=%s\n"
		 "USER=%s\n"
		 "STOP_TIMEOUT=15\n"
		 "DAEMON_ARGS=\"--workers 2\"\n"
		 "SFU_GATEWAY_KEY=%s\n",
		 in->root, in->config, in->pid_file, in->log_file, user, OPS_GW_KEY);
	ops_write(in->defaults, text);
}

/* Runs an action of the installed init script; returns its exit status. */
static int ops_init(const struct ops_inst *in, const char *env, const char *action)
{
	return ops_sh("env SFU_GATEWAY_DEFAULTS='%s' %s '%s' %s >>'%s' 2>&1", in->defaults,
		      env, in->script, action, in->out);
}

/* What make and the init script printed so far (for assertion messages). */
static const char *ops_out(const struct ops_inst *in)
{
	static char buf[16384];
	char *text = harness_read_file(in->out);
	size_t n = text ? strlen(text) : 0;

	/* The end matters most. */
	snprintf(buf, sizeof(buf), "%s", text ? text + (n > 8000 ? n - 8000 : 0) : "");
	free(text);
	return buf;
}

static void ops_write_config(const struct ops_inst *in, int port, const int *mocks,
			     const char *const *keys, int n)
{
	char text[4096];
	int len;

	len = snprintf(text, sizeof(text),
		       "# written by test_ops\n[gateway]\nbind = \"127.0.0.1\"\nport = %d\n"
		       "\n[probe]\ninterval_ms = 200\n",
		       port);
	for (int i = 0; i < n; i++)
		len += snprintf(text + len, sizeof(text) - (size_t)len,
				"\n[[sfu]]\naddress = \"http://127.0.0.1:%d\"\n"
				"region = \"eu-west\"\nkey = \"%s\"\n",
				mocks[i], keys[i]);
	ops_write(in->config, text);
}

/* Every file under dir, one path per line (caller frees). */
static char *ops_files(const char *dir)
{
	char list[PATH_MAX + 32];

	snprintf(list, sizeof(list), "%s.files", dir);
	ops_sh("cd '%s' && find . -type f | sort > '%s'", dir, list);
	return harness_read_file(list);
}

Test(ops, install_and_init_script_lifecycle, .timeout = 120)
{
	struct ops_inst in;
	struct harness_proc *one, *two;
	char addr_one[64], addr_two[64], path[PATH_MAX + 64];
	const char *keys[2] = { OPS_ONE_KEY, OPS_TWO_KEY };
	int port = harness_free_port(), mocks[2], rc, master, n_kids;
	pid_t kids[OPS_MAX_PIDS];
	struct passwd *nobody = getpwnam("nobody");
	bool as_nobody = geteuid() == 0 && nobody != NULL;
	struct stat st;
	char *text, *files;

	ops_subreaper();

	ops_install(&in);
	/* Everything the issue lists is where an operator looks for it. */
	snprintf(path, sizeof(path), "%s/usr/sbin/sfu-gateway", in.root);
	cr_assert(stat(path, &st) == 0 && (st.st_mode & 0777) == 0755, "%s", path);
	snprintf(path, sizeof(path), "%s/usr/share/man/man8/sfu-gateway.8", in.root);
	cr_assert(ops_exists(path), "%s", path);
	snprintf(path, sizeof(path), "%s/usr/share/man/man5/sfu-gateway.toml.5", in.root);
	cr_assert(ops_exists(path), "%s", path);
	cr_assert(stat(in.script, &st) == 0 && (st.st_mode & 0777) == 0755, "%s", in.script);
	snprintf(path, sizeof(path), "%s.example", in.config);
	cr_assert(ops_exists(path), "%s", path);
	cr_assert(ops_exists(in.config), "%s", in.config);
	cr_assert(ops_exists(in.defaults), "%s", in.defaults);
	text = harness_read_file(in.script);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "\nDAEMON=/usr/sbin/sfu-gateway\n"),
			   "the installed init script must point at $(PREFIX)/sbin");
	free(text);
	/* The installed example is a valid configuration as it stands. */
	rc = ops_sh("SFU_GATEWAY_KEY=%s '%s/usr/sbin/sfu-gateway' --check-config --config '%s' "
		    ">>'%s' 2>&1",
		    OPS_GW_KEY, in.root, in.config, in.out);
	cr_assert_eq(rc, 0, "installed config rejected: %s", ops_out(&in));

	one = harness_mock_start(OPS_ONE_KEY, NULL);
	two = harness_mock_start(OPS_TWO_KEY, NULL);
	cr_assert(one != NULL && two != NULL, "mock SFUs did not start");
	mocks[0] = one->port;
	mocks[1] = two->port;
	snprintf(addr_one, sizeof(addr_one), "\"http://127.0.0.1:%d\"", one->port);
	snprintf(addr_two, sizeof(addr_two), "\"http://127.0.0.1:%d\"", two->port);
	ops_write_config(&in, port, mocks, keys, 1);
	ops_write_defaults(&in, as_nobody ? "nobody" : "");

	cr_assert_eq(ops_init(&in, "", "status"), 3, "status before start: %s", ops_out(&in));
	rc = ops_init(&in, "", "start");
	cr_assert_eq(rc, 0, "start: %d: %s", rc, ops_out(&in));
	master = ops_read_pid(in.pid_file);
	cr_assert_gt(master, 1, "no pid in %s", in.pid_file);
	ops_track_daemon(master, port);
	cr_assert_eq(ops_init(&in, "", "status"), 0, "status: %s", ops_out(&in));
	/* A second start finds it running and changes nothing. */
	cr_assert_eq(ops_init(&in, "", "start"), 0, "%s", ops_out(&in));
	cr_assert_eq(ops_read_pid(in.pid_file), master);

	cr_assert(ops_poll_get(port, "/v1/health", 200, addr_one, 5000),
		  "/v1/health does not list the SFU");
	n_kids = ops_children(master, kids, OPS_MAX_PIDS);
	cr_assert_eq(n_kids, 3, "expected 2 workers and the reaper, found %d", n_kids);
	if (as_nobody) {
		char status_path[64], *status, *uid;

		snprintf(status_path, sizeof(status_path), "/proc/%d/status", (int)kids[0]);
		status = harness_read_file(status_path);
		cr_assert_not_null(status);
		uid = strstr(status, "\nUid:\t");
		cr_assert_not_null(uid);
		cr_assert_eq(atoi(uid + 6), (int)nobody->pw_uid, "children must run as nobody");
		free(status);
	}

	/* A broken file is refused at the terminal and the gateway keeps running. */
	ops_write(in.config, "[gateway]\nport = \"not a number\"\n");
	rc = ops_init(&in, "", "reload");
	cr_assert_neq(rc, 0, "reload of a broken config must fail: %s", ops_out(&in));
	cr_assert_not_null(strstr(ops_out(&in), "sfu-gateway.toml:2:"),
			   "the reason must name file:line: %s", ops_out(&in));
	cr_assert(ops_get_has(port, "/v1/health", 200, addr_one));

	/* Add a second SFU: after reload /v1/health lists it, same master. */
	ops_write_config(&in, port, mocks, keys, 2);
	rc = ops_init(&in, "", "reload");
	cr_assert_eq(rc, 0, "reload: %s", ops_out(&in));
	cr_assert(ops_poll_get(port, "/v1/health", 200, addr_two, 5000),
		  "the second SFU is not live after reload");
	cr_assert_eq(ops_init(&in, "", "status"), 0);
	cr_assert_eq(ops_read_pid(in.pid_file), master);
	n_kids = ops_children(master, kids, OPS_MAX_PIDS);

	rc = ops_init(&in, "", "stop");
	cr_assert_eq(rc, 0, "stop: %s", ops_out(&in));
	cr_assert_eq(ops_init(&in, "", "status"), 3, "status after stop: %s", ops_out(&in));
	cr_assert(!ops_alive(master), "master %d still runs", master);
	for (int i = 0; i < n_kids; i++)
		cr_assert(ops_wait_gone(kids[i], 3000), "child %d still runs", (int)kids[i]);
	cr_assert(!ops_exists(in.pid_file), "pid file left behind");
	cr_assert_null(ops_leftover(port), "%s left behind", ops_leftover(port));
	/* Stopping a stopped service succeeds (LSB). */
	cr_assert_eq(ops_init(&in, "", "stop"), 0);

	/* Installing again keeps the operator's files. */
	cr_assert_eq(ops_make(&in, "install"), 0, "%s", ops_out(&in));
	text = harness_read_file(in.config);
	cr_assert(text != NULL && strstr(text, "# written by test_ops") == text,
		  "make install overwrote the config");
	free(text);
	text = harness_read_file(in.defaults);
	cr_assert(text != NULL && strstr(text, "STOP_TIMEOUT=15") != NULL,
		  "make install overwrote the defaults file");
	free(text);

	cr_assert_eq(ops_make(&in, "uninstall"), 0, "%s", ops_out(&in));
	files = ops_files(in.root);
	cr_assert_not_null(files);
	cr_assert_str_eq(files, "./etc/default/sfu-gateway\n./etc/sfu-gateway/sfu-gateway.toml\n",
			 "uninstall must leave only the config files");
	free(files);
}

Test(ops, init_script_without_start_stop_daemon, .timeout = 90)
{
	struct ops_inst in;
	struct harness_proc *one;
	const char *keys[1] = { OPS_ONE_KEY };
	const char *no_ssd = "SFU_GATEWAY_NO_SSD=1";
	int port = harness_free_port(), mocks[1], rc, master;

	ops_subreaper();

	ops_install(&in);
	one = harness_mock_start(OPS_ONE_KEY, NULL);
	cr_assert_not_null(one);
	mocks[0] = one->port;
	ops_write_config(&in, port, mocks, keys, 1);
	ops_write_defaults(&in, "");

	rc = ops_init(&in, no_ssd, "start");
	cr_assert_eq(rc, 0, "start: %s", ops_out(&in));
	master = ops_read_pid(in.pid_file);
	ops_track_daemon(master, port);
	cr_assert_eq(ops_init(&in, no_ssd, "status"), 0, "%s", ops_out(&in));
	cr_assert(ops_poll_get(port, "/noop", 200, NULL, 3000));

	/* A master that died leaves its pid file: LSB status 1. */
	kill(master, SIGKILL);
	cr_assert(ops_wait_gone(master, 3000));
	cr_assert_eq(ops_init(&in, no_ssd, "status"), 1, "%s", ops_out(&in));
	/* Its children follow it (PDEATHSIG); start replaces the stale pid file
	 * and the stale shared memory. */
	{
		int64_t deadline = harness_now_ms() + 10000;

		while (ops_get_has(port, "/noop", 200, NULL) && harness_now_ms() < deadline)
			poll(NULL, 0, 50);
		cr_assert(!ops_get_has(port, "/noop", 200, NULL),
			  "children of a killed master still serve");
	}
	rc = ops_init(&in, no_ssd, "start");
	cr_assert_eq(rc, 0, "start after a crash: %s", ops_out(&in));
	master = ops_read_pid(in.pid_file);
	ops_track_daemon(master, port);
	cr_assert(ops_poll_get(port, "/noop", 200, NULL, 3000));

	rc = ops_init(&in, no_ssd, "restart");
	cr_assert_eq(rc, 0, "restart: %s", ops_out(&in));
	cr_assert(!ops_alive(master), "restart kept the old master");
	master = ops_read_pid(in.pid_file);
	ops_track_daemon(master, port);
	cr_assert(ops_alive(master));
	cr_assert(ops_poll_get(port, "/noop", 200, NULL, 3000));

	rc = ops_init(&in, no_ssd, "stop");
	cr_assert_eq(rc, 0, "stop: %s", ops_out(&in));
	cr_assert(!ops_alive(master));
	cr_assert_eq(ops_init(&in, no_ssd, "status"), 3, "%s", ops_out(&in));
	cr_assert(!ops_exists(in.pid_file));
	/* Bad usage is 2; reload of a stopped service is 7 (LSB). */
	cr_assert_eq(ops_init(&in, no_ssd, "frobnicate"), 2);
	cr_assert_eq(ops_init(&in, no_ssd, "reload"), 7);
}

/* ---- logs */

static void ops_heartbeat(int port, const char *address, const char *sfu_key)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	char auth[4096], body[1024];

	cr_assert_not_null(r);
	snprintf(body, sizeof(body),
		 "{\"status\": \"up\", \"address\": \"%s\", \"region\": \"eu-west\", "
		 "\"key\": \"%s\", \"channels\": 1, \"sessions\": 2, \"cpuUsage\": 0.1, "
		 "\"memoryUsage\": 0.2}",
		 address, sfu_key);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n",
		 harness_sfu_token(address, OPS_REG_KEY, body));
	cr_assert_eq(harness_post(port, "/v1/sfu", auth, body, r), 0);
	cr_assert_eq(r->status, 200, "heartbeat of %s: %d %s", address, r->status, r->body);
	free(r);
}

/* The pids of the master's children have the log file open under its new name. */
static bool ops_children_reopened(pid_t master, const char *log_path, const char *old_path)
{
	pid_t kids[OPS_MAX_PIDS];
	int n = ops_children(master, kids, OPS_MAX_PIDS);

	for (int i = 0; i < n; i++) {
		char dir[64], link[PATH_MAX], target[PATH_MAX];
		bool new_one = false;
		DIR *d;
		struct dirent *e;

		snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)kids[i]);
		d = opendir(dir);
		if (d == NULL)
			return false;
		while ((e = readdir(d)) != NULL) {
			ssize_t len;

			snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
			len = readlink(link, target, sizeof(target) - 1);
			if (len <= 0)
				continue;
			target[len] = '\0';
			if (strcmp(target, old_path) == 0) {
				closedir(d);
				return false;
			}
			new_one = new_one || strcmp(target, log_path) == 0;
		}
		closedir(d);
		if (!new_one)
			return false;
	}
	return n > 0;
}

Test(ops, log_rotation_reopens_on_usr1, .timeout = 60)
{
	char log_path[PATH_MAX], old_path[PATH_MAX + 8], line[160];
	char *before_text, *after_text;
	const char *env[] = { "SFU_GATEWAY_KEY=" OPS_GW_KEY,
			      "SFU_GATEWAY_REGISTRATION_KEY=" OPS_REG_KEY, NULL };
	const char *args[] = { "--workers", "2", "--log-file", log_path, NULL };
	struct harness_proc *gw;
	regex_t re;
	int64_t deadline;

	snprintf(log_path, sizeof(log_path), "%s/gw.log", harness_tmpdir());
	snprintf(old_path, sizeof(old_path), "%s.1", log_path);
	gw = harness_gateway_start(env, args);
	cr_assert_not_null(gw, "gateway did not start");
	for (int i = 0; i < OPS_ROTATE_SFUS; i++) {
		char addr[64];

		snprintf(addr, sizeof(addr), "http://10.9.0.%d:8070", i + 1);
		ops_heartbeat(gw->port, addr, OPS_HB_KEY);
	}
	/* logrotate without copytruncate: move the file, then signal. */
	cr_assert_eq(rename(log_path, old_path), 0);
	cr_assert_eq(kill(gw->pid, SIGUSR1), 0);
	deadline = harness_now_ms() + 5000;
	while (!ops_children_reopened(gw->pid, log_path, old_path) &&
	       harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert(ops_children_reopened(gw->pid, log_path, old_path),
		  "the workers did not reopen %s", log_path);
	for (int i = 0; i < OPS_ROTATE_SFUS; i++) {
		char addr[64];

		snprintf(addr, sizeof(addr), "http://10.9.1.%d:8070", i + 1);
		ops_heartbeat(gw->port, addr, OPS_HB_KEY);
	}
	cr_assert_eq(harness_stop(gw, SIGTERM, 10000) >= 0, 1, "the gateway did not stop");

	before_text = harness_read_file(old_path);
	after_text = harness_read_file(log_path);
	cr_assert_not_null(before_text);
	cr_assert_not_null(after_text, "no new log file after USR1");
	for (int i = 0; i < OPS_ROTATE_SFUS; i++) {
		snprintf(line, sizeof(line), "sfu=http://10.9.0.%d:8070 region=eu-west registered",
			 i + 1);
		cr_assert_not_null(strstr(before_text, line), "lost before rotation: %s", line);
		snprintf(line, sizeof(line), "sfu=http://10.9.1.%d:8070 region=eu-west registered",
			 i + 1);
		cr_assert_not_null(strstr(after_text, line), "not in the new file: %s", line);
		cr_assert_null(strstr(before_text, line), "written to the old file: %s", line);
	}
	cr_assert_not_null(strstr(after_text, "master: stopped"));

	/* Every line of both files: "ts level role[pid] message". */
	cr_assert_eq(regcomp(&re,
			     "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
			     "(error|warn|info|debug) (main|master|worker|reaper)\\[[0-9]+\\] [^ ]",
			     REG_EXTENDED | REG_NOSUB),
		     0);
	for (int f = 0; f < 2; f++) {
		char *text = f == 0 ? before_text : after_text, *save = NULL;

		for (char *l = strtok_r(text, "\n", &save); l != NULL;
		     l = strtok_r(NULL, "\n", &save))
			cr_assert_eq(regexec(&re, l, 0, NULL, 0), 0, "malformed log line: %s", l);
	}
	regfree(&re);
	free(before_text);
	free(after_text);
}

static void ops_assert_absent(const char *text, const char *secret, const char *what)
{
	cr_assert_null(strstr(text, secret), "the log contains %s", what);
}

Test(ops, no_keys_or_tokens_in_logs, .timeout = 60)
{
	char log_path[PATH_MAX], nodes[512], claims[256], auth[4096], ok_tok[2048];
	char resigned[2048], bad_tok[2048], hb_tok[2048], addr[64];
	const char *env[] = { "SFU_GATEWAY_KEY=" OPS_GW_KEY,
			      "SFU_GATEWAY_REGISTRATION_KEY=" OPS_REG_KEY, nodes, NULL };
	const char *args[] = { "--workers", "2", "--log-level", "debug", "--log-file", log_path,
			       NULL };
	const char *hdr = "{\"alg\": \"HS256\", \"typ\": \"JWT\"}";
	struct harness_resp *r = calloc(1, sizeof(*r));
	struct harness_proc *one, *gw;
	char *text;

	cr_assert_not_null(r);
	snprintf(log_path, sizeof(log_path), "%s/gw.log", harness_tmpdir());
	one = harness_mock_start(OPS_ONE_KEY, NULL);
	cr_assert_not_null(one);
	snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", one->port);
	snprintf(nodes, sizeof(nodes),
		 "SFU_GATEWAY_NODES={\"sfu\": [{\"address\": \"%s\", \"region\": \"eu-west\", "
		 "\"key\": \"%s\"}]}",
		 addr, OPS_ONE_KEY);
	gw = harness_gateway_start(env, args);
	cr_assert_not_null(gw, "gateway did not start: %s", gw ? harness_log(gw) : "");

	/* A channel: Odoo's token in, the token re-signed with the SFU's key out. */
	snprintf(claims, sizeof(claims), "{\"iss\": \"https://odoo.example\", \"exp\": %lld}",
		 (long long)time(NULL) + 60);
	snprintf(ok_tok, sizeof(ok_tok), "%s", harness_token(hdr, claims, OPS_GW_KEY));
	snprintf(resigned, sizeof(resigned), "%s", harness_token(hdr, claims, OPS_ONE_KEY));
	snprintf(auth, sizeof(auth), "Authorization: jwt %s\r\n", ok_tok);
	cr_assert_eq(harness_get(gw->port, "/v1/channel", auth, r), 0);
	cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
	/* A forged token and a failing SFU produce log lines too. */
	snprintf(bad_tok, sizeof(bad_tok), "%s", harness_token(hdr, claims, OPS_WRONG_KEY));
	snprintf(auth, sizeof(auth), "Authorization: jwt %s\r\n", bad_tok);
	cr_assert_eq(harness_get(gw->port, "/v1/channel", auth, r), 0);
	cr_assert_eq(r->status, 401);
	/* Heartbeats: new, updated (logged at debug), refused. */
	ops_heartbeat(gw->port, "http://10.9.2.1:8070", OPS_HB_KEY);
	ops_heartbeat(gw->port, "http://10.9.2.1:8070", OPS_HB_KEY);
	{
		char body[1024];

		/* A static SFU may not change its key: 409, and a log line. */
		snprintf(body, sizeof(body),
			 "{\"status\": \"up\", \"address\": \"%s\", \"region\": \"eu-west\", "
			 "\"key\": \"%s\", \"channels\": 0, \"sessions\": 0, \"cpuUsage\": 0, "
			 "\"memoryUsage\": 0}",
			 addr, OPS_HB_KEY);
		snprintf(hb_tok, sizeof(hb_tok), "%s", harness_sfu_token(addr, OPS_REG_KEY, body));
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", hb_tok);
		cr_assert_eq(harness_post(gw->port, "/v1/sfu", auth, body, r), 0);
		cr_assert_eq(r->status, 409, "%d %s", r->status, r->body);
	}
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", bad_tok);
	cr_assert_eq(harness_post(gw->port, "/v1/sfu", auth, "{\"status\": \"up\"}", r), 0);
	cr_assert_geq(r->status, 400);
	/* The health document carries none of them either. */
	cr_assert_eq(harness_get(gw->port, "/v1/health", NULL, r), 0);
	ops_assert_absent(r->body, OPS_ONE_KEY, "the SFU key (health)");
	ops_assert_absent(r->body, OPS_HB_KEY, "the heartbeat key (health)");
	cr_assert_geq(harness_stop(gw, SIGTERM, 10000), 0);

	text = harness_read_file(log_path);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "debug "), "--log-level debug logged nothing at debug");
	cr_assert_not_null(strstr(text, "sfu=http://10.9.2.1:8070"));
	{
		const char *secrets[][2] = {
			{ OPS_GW_KEY, "the gateway key" },
			{ OPS_GW_RAW, "the gateway key bytes" },
			{ OPS_REG_KEY, "the registration key" },
			{ OPS_REG_RAW, "the registration key bytes" },
			{ OPS_ONE_KEY, "the SFU key" },
			{ OPS_ONE_RAW, "the SFU key bytes" },
			{ OPS_HB_KEY, "the heartbeat key" },
			{ OPS_HB_RAW, "the heartbeat key bytes" },
			{ ok_tok, "Odoo's token" },
			{ strrchr(ok_tok, '.') + 1, "the signature of Odoo's token" },
			{ strrchr(resigned, '.') + 1, "the signature of the re-signed token" },
			{ strrchr(bad_tok, '.') + 1, "the forged signature" },
			{ strrchr(hb_tok, '.') + 1, "the heartbeat token's signature" },
		};

		for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
			ops_assert_absent(text, secrets[i][0], secrets[i][1]);
		/* Nor the stderr of the process. */
		for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
			ops_assert_absent(harness_log(gw), secrets[i][0], secrets[i][1]);
	}
	free(text);
	free(r);
}

/* ---- manual pages and scripts */

Test(ops, manual_pages_are_lint_clean, .timeout = 30)
{
	char out[PATH_MAX + 32];
	int rc;

	snprintf(out, sizeof(out), "%s/mandoc.out", harness_tmpdir());
	rc = ops_sh("mandoc -Tlint -Wwarning man/sfu-gateway.8 man/sfu-gateway.toml.5 >'%s' 2>&1",
		    out);
	cr_assert_eq(rc, 0, "mandoc -Tlint: %s", ops_text(out));
}

Test(ops, shell_scripts_are_shellcheck_clean, .timeout = 60)
{
	char out[PATH_MAX + 32];
	int rc;

	snprintf(out, sizeof(out), "%s/shellcheck.out", harness_tmpdir());
	rc = ops_sh("shellcheck scripts/*.sh scripts/sfu-gateway.init bench/*.sh .ci/run "
		    ">'%s' 2>&1",
		    out);
	cr_assert_eq(rc, 0, "shellcheck: %s", ops_text(out));
}

/* Adds every "-x, --long" pair found in text to list (as "x long\n"). */
static void ops_flag_pairs_help(const char *text, char *list, size_t cap)
{
	const char *p = text;

	list[0] = '\0';
	while ((p = strstr(p, "\n  -")) != NULL) {
		char s, name[64];

		p += 4;
		if (sscanf(p, "%c, --%63[a-z-]", &s, name) == 2) {
			size_t n = strlen(list);

			snprintf(list + n, cap - n, "%c %s\n", s, name);
		}
	}
}

/* The same from the OPTIONS section of the page: ".It Fl x , -long". */
static void ops_flag_pairs_man(const char *text, char *list, size_t cap)
{
	const char *p = strstr(text, "\n.Sh OPTIONS\n"), *end;

	list[0] = '\0';
	cr_assert_not_null(p, "no OPTIONS section");
	end = strstr(p + 1, "\n.Sh ");
	while ((p = strstr(p, "\n.It Fl ")) != NULL && (end == NULL || p < end)) {
		char s, name[64];

		p += 8;
		if (sscanf(p, "%c , -%63[a-z-]", &s, name) == 2) {
			size_t n = strlen(list);

			snprintf(list + n, cap - n, "%c %s\n", s, name);
		}
	}
}

static bool ops_has_line(const char *list, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = list; (p = strstr(p, line)) != NULL; p++)
		if ((p == list || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

Test(ops, help_and_manual_list_the_same_flags, .timeout = 30)
{
	char out[PATH_MAX + 32], help_pairs[4096], man_pairs[4096], *help, *man, *save = NULL;
	int rc, n = 0;

	snprintf(out, sizeof(out), "%s/help.out", harness_tmpdir());
	rc = ops_sh("'%s' --help >'%s' 2>&1", ops_bin(), out);
	cr_assert_eq(rc, 0);
	help = harness_read_file(out);
	man = harness_read_file("man/sfu-gateway.8");
	cr_assert(help != NULL && man != NULL);
	ops_flag_pairs_help(help, help_pairs, sizeof(help_pairs));
	ops_flag_pairs_man(man, man_pairs, sizeof(man_pairs));
	cr_assert_gt(strlen(help_pairs), 0);
	{
		char copy[4096], *l;

		snprintf(copy, sizeof(copy), "%s", help_pairs);
		for (l = strtok_r(copy, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
			cr_assert(ops_has_line(man_pairs, l), "--help has '%s', the manual not", l);
			n++;
		}
		snprintf(copy, sizeof(copy), "%s", man_pairs);
		for (l = strtok_r(copy, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save))
			cr_assert(ops_has_line(help_pairs, l), "the manual has '%s', --help not",
				  l);
	}
	/* The fixed set of flags is all there. */
	cr_assert_eq(n, 14, "expected the 14 documented flags, --help lists %d", n);
	/* Every environment variable of --help is in ENVIRONMENT. */
	for (const char *p = help; (p = strstr(p, "SFU_GATEWAY_")) != NULL; p++) {
		char var[64], item[80];

		sscanf(p, "%63[A-Z_]", var);
		snprintf(item, sizeof(item), "\n.It Ev %s\n", var);
		cr_assert_not_null(strstr(man, item), "%s is not in ENVIRONMENT", var);
	}
	free(help);
	free(man);
}

static const char *ops_type_word(enum config_type t)
{
	switch (t) {
	case CONFIG_T_INT: return "integer";
	case CONFIG_T_FLOAT: return "number";
	case CONFIG_T_BOOL: return "boolean";
	case CONFIG_T_KEY: return "base64 key";
	case CONFIG_T_CIDR_LIST:
	case CONFIG_T_STRING_LIST: return "array of strings";
	case CONFIG_T_STRING:
	case CONFIG_T_ENUM: break;
	}
	return "string";
}

/*
 * The text of ".It Ic name" in ".Ss [section]" up to the next item, or NULL.
 * The [[sfu]] rows are under ".Ss [[sfu]]". Caller frees.
 */
static char *ops_man_item(const char *man, const char *section, const char *name)
{
	char head[96], item[96];
	const char *s, *end, *p, *next;

	if (strcmp(section, "sfu") == 0)
		snprintf(head, sizeof(head), "\n.Ss [[sfu]]\n");
	else
		snprintf(head, sizeof(head), "\n.Ss [%s]\n", section);
	s = strstr(man, head);
	if (s == NULL)
		return NULL;
	s += strlen(head);
	end = strstr(s, "\n.S");
	snprintf(item, sizeof(item), "\n.It Ic %s ", name);
	p = strstr(s, item);
	if (p == NULL || (end != NULL && p > end))
		return NULL;
	next = strstr(p + 1, "\n.It ");
	if (next == NULL || (end != NULL && next > end))
		next = end != NULL ? end : p + strlen(p);
	return strndup(p + 1, (size_t)(next - p - 1));
}

Test(ops, every_option_is_in_the_manual, .timeout = 30)
{
	char *man = harness_read_file("man/sfu-gateway.toml.5");
	const char *p;
	int items = 0, rows = 0;

	cr_assert_not_null(man);
	for (const struct config_option *o = config_options; o->name != NULL; o++, rows++) {
		char *item = ops_man_item(man, o->section, o->name);
		char want[224], *eol;

		cr_assert_not_null(item, "[%s] %s is not in sfu-gateway.toml(5)", o->section,
				   o->name);
		eol = strchr(item, '\n');
		cr_assert_not_null(eol);
		*eol = '\0';
		snprintf(want, sizeof(want), "Pq %s", ops_type_word(o->type));
		cr_assert_not_null(strstr(item, want), "[%s] %s: type must read '%s': %s",
				   o->section, o->name, want, item);
		*eol = '\n';
		/* The default, as the table gives it without the quotes. */
		if (o->default_text[0] != '\0' && strcmp(o->default_text, "\"\"") != 0 &&
		    strcmp(o->default_text, "[]") != 0) {
			char value[192];
			size_t n = strlen(o->default_text);

			if (o->default_text[0] == '"')
				snprintf(value, sizeof(value), "%.*s", (int)n - 2,
					 o->default_text + 1);
			else
				snprintf(value, sizeof(value), "%s", o->default_text);
			snprintf(want, sizeof(want), "Default: %s.", value);
			cr_assert_not_null(strstr(item, want), "[%s] %s: no '%s' in: %s",
					   o->section, o->name, want, item);
		}
		/* Numbers carry their bounds. */
		if (o->type == CONFIG_T_INT || o->type == CONFIG_T_FLOAT) {
			if (o->type == CONFIG_T_INT)
				snprintf(want, sizeof(want), "%.0f to", o->min);
			else
				snprintf(want, sizeof(want), "%g to", o->min);
			cr_assert_not_null(strstr(item, want), "[%s] %s: no bounds '%s' in: %s",
					   o->section, o->name, want, item);
			if (o->type == CONFIG_T_INT)
				snprintf(want, sizeof(want), "%.0f", o->max);
			else
				snprintf(want, sizeof(want), "%g", o->max);
			cr_assert_not_null(strstr(item, want), "[%s] %s: no bound %s in: %s",
					   o->section, o->name, want, item);
		}
		free(item);
	}
	/* And nothing the table does not have. */
	for (p = man; (p = strstr(p, "\n.It Ic ")) != NULL; p++)
		items++;
	cr_assert_eq(items, rows, "the page has %d keys, config_options[] %d rows", items, rows);
	free(man);
}

/* ---- start-up failures: exit 1 and a message, in the foreground and with --daemon */

static void ops_assert_failure(const char *const *env, const char *const *args, bool daemon,
			       const char *needle, const char *needle2)
{
	const char *argv[32];
	struct harness_proc *p = NULL;
	int n = 0, rc;
	const char *log;

	for (int i = 0; args != NULL && args[i] != NULL && n < 30; i++)
		argv[n++] = args[i];
	if (daemon)
		argv[n++] = "--daemon";
	argv[n] = NULL;
	ops_subreaper();
	rc = harness_gateway_run(env, argv, 10000, &p);
	cr_assert_not_null(p);
	log = harness_log(p);
	cr_assert_eq(rc, 1, "%s: exit %d, want 1: %s", daemon ? "daemon" : "foreground", rc, log);
	cr_assert_not_null(strstr(log, needle), "%s: no '%s' in: %s",
			   daemon ? "daemon" : "foreground", needle, log);
	if (needle2 != NULL)
		cr_assert_not_null(strstr(log, needle2), "%s: no '%s' in: %s",
				   daemon ? "daemon" : "foreground", needle2, log);
}

Test(ops, bad_config_exits_1_naming_file_and_line, .timeout = 30)
{
	const char *env[] = { "SFU_GATEWAY_KEY=" OPS_GW_KEY, NULL };
	const char *path = harness_write_file("bad.toml", "[gateway]\nport = 8071\n\n"
							  "[failover]\nmax_retries = 99\n");
	const char *args[] = { "--config", path, NULL };
	char where[PATH_MAX];

	snprintf(where, sizeof(where), "%s:5:", path);
	for (int d = 0; d < 2; d++)
		ops_assert_failure(env, args, d, where, "max_retries");
	/* No key at all is a configuration error too. */
	for (int d = 0; d < 2; d++)
		ops_assert_failure(NULL, NULL, d, "no gateway key", NULL);
}

Test(ops, port_in_use_exits_1_saying_bind, .timeout = 30)
{
	const char *env[] = { "SFU_GATEWAY_KEY=" OPS_GW_KEY, NULL };
	struct sockaddr_in sa;
	char port_text[16];
	const char *args[] = { "--port", port_text, "--bind", "127.0.0.1", "--workers", "1",
			       NULL };
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = harness_free_port();

	/* A foreign listener, without SO_REUSEPORT. */
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		  listen(fd, 4) == 0);
	snprintf(port_text, sizeof(port_text), "%d", port);
	for (int d = 0; d < 2; d++)
		ops_assert_failure(env, args, d, "bind", "Address already in use");
	close(fd);
	cr_assert_null(ops_leftover(port), "a failed start left %s", ops_leftover(port));
}

Test(ops, unwritable_pid_file_exits_1_naming_it, .timeout = 30)
{
	const char *env[] = { "SFU_GATEWAY_KEY=" OPS_GW_KEY, NULL };
	/* /sys refuses new files, to root as well. */
	const char *pid_file = "/sys/sfu-gateway-test-ops.pid";
	const char *args[] = { "--pid-file", pid_file, "--workers", "1", NULL };

	for (int d = 0; d < 2; d++)
		ops_assert_failure(env, args, d,
				   "cannot write pid file /sys/sfu-gateway-test-ops.pid", NULL);
	cr_assert(!ops_exists(pid_file));
}

Test(ops, unwritable_log_file_exits_1_naming_it, .timeout = 30)
{
	const char *env[] = { "SFU_GATEWAY_KEY=" OPS_GW_KEY, NULL };
	const char *args[] = { "--log-file", "/sys/sfu-gateway-test-ops.log", NULL };

	for (int d = 0; d < 2; d++)
		ops_assert_failure(env, args, d, "/sys/sfu-gateway-test-ops.log", NULL);
}

Test(ops, unknown_user_exits_1_and_leaves_no_pid_file, .timeout = 30)
{
	const char *env[] = { "SFU_GATEWAY_KEY=" OPS_GW_KEY, NULL };
	char pid_file[PATH_MAX];
	const char *args[] = { "--user", "no-such-user-sfu-ops", "--pid-file", pid_file,
			       "--workers", "1", NULL };

	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", harness_tmpdir());
	for (int d = 0; d < 2; d++) {
		ops_assert_failure(env, args, d, "no-such-user-sfu-ops", NULL);
		cr_assert(!ops_exists(pid_file), "%s: a failed start left its pid file",
			  d ? "daemon" : "foreground");
	}
}

Test(ops, daemon_detaches_once_listening, .timeout = 30)
{
	const char *env[] = { "SFU_GATEWAY_KEY=" OPS_GW_KEY, NULL };
	char pid_file[PATH_MAX], link[64], target[PATH_MAX], port_text[16];
	const char *args[] = { "--daemon", "--pid-file", pid_file, "--workers", "1", "--port",
			       port_text, "--bind", "127.0.0.1", NULL };
	struct harness_proc *p = NULL;
	int port = harness_free_port(), rc, master;

	ops_subreaper();

	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", harness_tmpdir());
	snprintf(port_text, sizeof(port_text), "%d", port);
	rc = harness_gateway_run(env, args, 10000, &p);
	cr_assert_eq(rc, 0, "--daemon exited %d: %s", rc, p ? harness_log(p) : "");
	/* The parent returned: the pid file is there and the port answers, no polling. */
	master = ops_read_pid(pid_file);
	cr_assert_gt(master, 1, "no pid file when --daemon returned");
	ops_track_daemon(master, port);
	cr_assert(ops_get_has(port, "/noop", 200, NULL), "not listening when --daemon returned");
	cr_assert(ops_alive(master));
	/* Double fork: a new session, and not its leader (it can never get a terminal). */
	cr_assert_neq(getsid(master), getsid(0), "still in the caller's session");
	cr_assert_neq(getsid(master), master, "the daemon is a session leader");
	for (int fd = 0; fd < 3; fd++) {
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/%d/fd/%d", master, fd);
		n = readlink(link, target, sizeof(target) - 1);
		cr_assert_gt(n, 0);
		target[n] = '\0';
		cr_assert_str_eq(target, "/dev/null", "fd %d of the daemon is %s", fd, target);
	}
	cr_assert_eq(kill(master, SIGTERM), 0);
	cr_assert(ops_wait_gone(master, 10000), "the daemon did not stop on TERM");
	cr_assert(!ops_exists(pid_file), "the daemon left its pid file");
}

/* ---- the daemon lets go of its caller */

/* "pipe:[inode]" of a pipe descriptor, as /proc/PID/fd shows it. */
static void ops_pipe_name(int fd, char *out, size_t outlen)
{
	struct stat st;

	cr_assert_eq(fstat(fd, &st), 0);
	snprintf(out, outlen, "pipe:[%llu]", (unsigned long long)st.st_ino);
}

/*
 * What is wrong with the descriptors of pid, or NULL: one of the caller's named pipes,
 * a pipe of which pid holds only one end (the pipes libuv makes for itself come with
 * both ends; a lone end is a parent's), or a standard descriptor not on /dev/null.
 * Static buffer.
 */
static const char *ops_foreign_fd(pid_t pid, const char *const *caller, int n_caller)
{
	static char why[512];
	char dir[64], link[PATH_MAX], target[PATH_MAX], pipes[64][64];
	int n_pipes = 0, count[64] = { 0 };
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (d == NULL) {
		snprintf(why, sizeof(why), "pid %d is gone", (int)pid);
		return why;
	}
	why[0] = '\0';
	while (why[0] == '\0' && (e = readdir(d)) != NULL) {
		ssize_t len;
		int fd = atoi(e->d_name), k;

		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
		len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (fd <= STDERR_FILENO && strcmp(target, "/dev/null") != 0)
			snprintf(why, sizeof(why), "fd %d of pid %d is %.200s", fd, (int)pid, target);
		for (int i = 0; i < n_caller; i++)
			if (strcmp(target, caller[i]) == 0)
				snprintf(why, sizeof(why), "pid %d keeps the caller's %.200s as fd %d",
					 (int)pid, target, fd);
		if (strncmp(target, "pipe:", 5) != 0)
			continue;
		for (k = 0; k < n_pipes && strcmp(pipes[k], target) != 0; k++)
			;
		if (k == n_pipes && n_pipes < 64)
			snprintf(pipes[n_pipes++], sizeof(pipes[0]), "%.63s", target);
		if (k < 64)
			count[k]++;
	}
	closedir(d);
	for (int k = 0; why[0] == '\0' && k < n_pipes; k++)
		if (count[k] != 2)
			snprintf(why, sizeof(why), "pid %d holds one end of %.63s: a pipe of its parent's",
				 (int)pid, pipes[k]);
	return why[0] != '\0' ? why : NULL;
}

/* ops_foreign_fd must come out clean; a process still setting up its loop (a pipe
 * half made when /proc was read) gets until the deadline to settle. */
static void ops_assert_own_fds(pid_t pid, const char *const *caller, int n_caller)
{
	int64_t deadline = harness_now_ms() + 3000;
	const char *why;

	while ((why = ops_foreign_fd(pid, caller, n_caller)) != NULL &&
	       harness_now_ms() < deadline)
		poll(NULL, 0, 50);
	cr_assert_null(why, "%s", why);
}

/*
 * "sfu-gateway --daemon | cat", or an ssh session, waits for the end of the output:
 * once --daemon returns, no process of the daemon may hold the caller's stdout or
 * stderr, nor any other descriptor the caller left open (a shell's fd 251), nor the
 * readiness pipe.
 */
Test(ops, daemon_lets_go_of_its_caller, .timeout = 30)
{
	char pid_file[PATH_MAX], port_text[16], out_name[64], extra_name[64], key[128];
	const char *bin = ops_bin(), *config = harness_write_file("empty.toml", "# empty\n");
	const char *argv[] = { bin, "--daemon", "--pid-file", pid_file, "--workers", "2",
			       "--port", port_text, "--bind", "127.0.0.1", "--config", config,
			       NULL };
	const char *caller[2] = { out_name, extra_name };
	char *envp[512];
	int port = harness_free_port(), out[2], extra[2], rc, master, n = 0, ne = 0;
	bool out_eof = false, extra_eof = false;
	pid_t kids[OPS_MAX_PIDS], launcher;
	int64_t deadline;
	extern char **environ;

	ops_subreaper();
	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", harness_tmpdir());
	snprintf(port_text, sizeof(port_text), "%d", port);
	snprintf(key, sizeof(key), "SFU_GATEWAY_KEY=%s", OPS_GW_KEY);
	for (char **e = environ; *e != NULL && ne < 500; e++)
		if (strncmp(*e, "SFU_GATEWAY_", 12) != 0)
			envp[ne++] = *e;
	envp[ne++] = key;
	envp[ne] = NULL;
	/* Inherited as a shell leaves them: not close-on-exec. */
	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(pipe(extra), 0);
	ops_pipe_name(out[0], out_name, sizeof(out_name));
	ops_pipe_name(extra[0], extra_name, sizeof(extra_name));
	launcher = fork();
	cr_assert_geq(launcher, 0);
	if (launcher == 0) {
		dup2(out[1], STDOUT_FILENO);
		dup2(out[1], STDERR_FILENO);
		dup2(extra[1], 251);
		close(out[0]);
		close(out[1]);
		close(extra[0]);
		close(extra[1]);
		execve(bin, (char *const *)argv, envp);
		_exit(127);
	}
	close(out[1]);
	close(extra[1]);
	rc = harness_wait_exit(launcher, 10000);
	cr_assert_eq(rc, 0, "--daemon exited %d", rc);
	master = ops_read_pid(pid_file);
	cr_assert_gt(master, 1, "no pid file when --daemon returned");
	ops_track_daemon(master, port);

	/* Both pipes end: nobody of the daemon holds a write end. */
	deadline = harness_now_ms() + 5000;
	while ((!out_eof || !extra_eof) && harness_now_ms() < deadline) {
		struct pollfd pf[2] = { { out[0], POLLIN, 0 }, { extra[0], POLLIN, 0 } };
		char buf[4096];

		if (poll(pf, 2, 50) <= 0)
			continue;
		if (!out_eof && pf[0].revents != 0)
			out_eof = read(out[0], buf, sizeof(buf)) <= 0;
		if (!extra_eof && pf[1].revents != 0)
			extra_eof = read(extra[0], buf, sizeof(buf)) <= 0;
	}
	cr_assert(out_eof, "the caller's stdout never ends: a process of the daemon holds it");
	cr_assert(extra_eof, "the caller's fd 251 never ends: a process of the daemon holds it");

	/* And none of the tree keeps anything of the caller's. */
	deadline = harness_now_ms() + 5000;
	while ((n = ops_children(master, kids, OPS_MAX_PIDS)) < 3 && harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_eq(n, 3, "want 2 workers and the reaper, found %d", n);
	ops_assert_own_fds(master, caller, 2);
	for (int i = 0; i < n; i++)
		ops_assert_own_fds(kids[i], caller, 2);
	close(out[0]);
	close(extra[0]);
	cr_assert_eq(kill(master, SIGTERM), 0);
	cr_assert(ops_wait_gone(master, 10000), "the daemon did not stop on TERM");
}

/* ---- pid file and log file: no links followed, no other instance's file clobbered */

static const char *const ops_gw_env[] = { "SFU_GATEWAY_KEY=" OPS_GW_KEY, NULL };

/* A file only root (or the test's user) may read, that the gateway must never touch. */
static const char *ops_precious(void)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/precious", harness_tmpdir());
	ops_write(path, "precious\n");
	cr_assert_eq(chmod(path, 0600), 0);
	return path;
}

Test(ops, pid_file_symlink_refused, .timeout = 30)
{
	const char *precious = ops_precious();
	char pid_file[PATH_MAX];
	const char *args[] = { "--pid-file", pid_file, "--workers", "1", NULL };
	struct stat st;

	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", harness_tmpdir());
	cr_assert_eq(symlink(precious, pid_file), 0);
	for (int d = 0; d < 2; d++)
		ops_assert_failure(ops_gw_env, args, d, pid_file, "symbolic link");
	cr_assert_str_eq(ops_text(precious), "precious\n", "the link's target was written");
	cr_assert(lstat(pid_file, &st) == 0 && S_ISLNK(st.st_mode), "the link was replaced");
}

Test(ops, pid_file_of_a_running_instance_is_kept, .timeout = 40)
{
	char pid_file[PATH_MAX], want[128];
	const char *args[] = { "--pid-file", pid_file, "--workers", "1", NULL };
	struct harness_proc *first, *second = NULL;
	struct stat st;
	int rc;

	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", harness_tmpdir());
	first = harness_gateway_up(ops_gw_env, args);
	cr_assert_eq(ops_read_pid(pid_file), first->pid);
	cr_assert_eq(stat(pid_file, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0644, "pid file mode %o", st.st_mode & 07777);
	/* Another instance, on another port, with the same pid file: refused. */
	rc = harness_gateway_run(ops_gw_env, args, 10000, &second);
	cr_assert_not_null(second);
	cr_assert_eq(rc, 1, "a second instance with the same pid file: exit %d:\n%s", rc,
		     harness_log(second));
	snprintf(want, sizeof(want), "locked by a running sfu-gateway (pid %d)", (int)first->pid);
	cr_assert_not_null(strstr(harness_log(second), want), "no '%s' in:\n%s", want,
			   harness_log(second));
	cr_assert_eq(ops_read_pid(pid_file), first->pid, "the running instance's pid file changed");
	rc = harness_stop(first, SIGTERM, 11000);
	cr_assert(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "status %#x", rc);
	cr_assert(!ops_exists(pid_file), "the pid file stayed after a clean stop");
}

Test(ops, pid_file_removed_only_while_ours, .timeout = 40)
{
	char pid_file[PATH_MAX], other[PATH_MAX + 8];
	const char *args[] = { "--pid-file", pid_file, "--workers", "1", NULL };
	struct harness_proc *gw;
	int rc;

	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", harness_tmpdir());
	snprintf(other, sizeof(other), "%s.new", pid_file);
	gw = harness_gateway_up(ops_gw_env, args);
	/* Someone else's pid file now sits at the path (another instance, an operator). */
	ops_write(other, "1\n");
	cr_assert_eq(rename(other, pid_file), 0);
	rc = harness_stop(gw, SIGTERM, 11000);
	cr_assert(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "status %#x", rc);
	cr_assert_str_eq(ops_text(pid_file), "1\n", "a pid file that was not ours was removed");
}

/* The instance lock file of port (instance.c's rule, same environment). */
static const char *ops_lock_path(int port)
{
	static char path[512];
	char err[256];

	cr_assert_eq(instance_lock_path((uint16_t)port, path, sizeof(path), err, sizeof(err)), 0,
		     "%s", err);
	return path;
}

/* pid has no descriptor of absent, and none of readonly open for writing. */
static void ops_assert_no_writable(pid_t pid, const char *absent, const char *readonly)
{
	char dir[64], link[PATH_MAX], target[PATH_MAX];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	cr_assert_not_null(d, "pid %d is gone", (int)pid);
	while ((e = readdir(d)) != NULL) {
		ssize_t len;

		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
		len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		cr_assert_str_neq(target, absent, "pid %d holds %s as fd %s", (int)pid, absent,
				  e->d_name);
		if (strcmp(target, readonly) == 0) {
			char info[PATH_MAX], *text, *flags;

			snprintf(info, sizeof(info), "/proc/%d/fdinfo/%s", (int)pid, e->d_name);
			text = harness_read_file(info);
			cr_assert_not_null(text);
			flags = strstr(text, "flags:");
			cr_assert_not_null(flags);
			cr_assert_eq(strtol(flags + 6, NULL, 8) & O_ACCMODE, O_RDONLY,
				     "pid %d holds %s open for writing", (int)pid, readonly);
			free(text);
		}
	}
	closedir(d);
}

/*
 * After --user the master cannot remove a file from a root directory: its keeper,
 * still root, does at a clean stop. Run as another user the test has no user to
 * switch to and checks the same without --user.
 */
Test(ops, pid_file_removed_after_switching_user, .timeout = 40)
{
	struct passwd *nobody = getpwnam("nobody");
	bool as_nobody = geteuid() == 0 && nobody != NULL;
	char dir[PATH_MAX], pid_file[PATH_MAX + 16];
	const char *args[] = { "--pid-file", pid_file, "--workers", "1",
			       as_nobody ? "--user" : NULL, "nobody", NULL };
	struct harness_proc *gw;
	pid_t kids[OPS_MAX_PIDS];
	int64_t deadline;
	int rc, n;
	const char *left;

	snprintf(dir, sizeof(dir), "%s/run", harness_tmpdir());
	cr_assert_eq(mkdir(dir, 0755), 0);
	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", dir);
	gw = harness_gateway_up(ops_gw_env, args);
	cr_assert_eq(ops_read_pid(pid_file), gw->pid);
	n = ops_children(gw->pid, kids, OPS_MAX_PIDS);
	cr_assert_geq(n, 2);
	if (as_nobody) {
		char path[64], *status;

		snprintf(path, sizeof(path), "/proc/%d/status", (int)kids[0]);
		status = harness_read_file(path);
		cr_assert(status != NULL && strstr(status, "\nUid:\t") != NULL);
		cr_assert_eq(atoi(strstr(status, "\nUid:\t") + 6), (int)nobody->pw_uid);
		free(status);
	}
	/* The children hold no descriptor of the pid file, and only a read-only one of
	 * the instance lock: as nobody they could not write into root's files. */
	for (int i = 0; i < n; i++)
		ops_assert_no_writable(kids[i], pid_file, ops_lock_path(gw->port));
	rc = harness_stop(gw, SIGTERM, 11000);
	cr_assert(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "status %#x:\n%s", rc,
		  harness_log(gw));
	deadline = harness_now_ms() + 5000;
	while ((ops_exists(pid_file) || ops_leftover(gw->port) != NULL) &&
	       harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert(!ops_exists(pid_file), "the pid file stayed after a clean stop%s:\n%s",
		  as_nobody ? " as nobody" : "", harness_log(gw));
	left = ops_leftover(gw->port);
	cr_assert_null(left, "%s stayed after a clean stop", left);
}

/*
 * Any user who can read the pid file can flock() it: a stale pid file locked by
 * another user is replaced, not taken for a running gateway. (Run as another user
 * than root the test has no other user; it checks the stale file alone.)
 */
Test(ops, stale_pid_file_locked_by_another_user_is_replaced, .timeout = 40)
{
	struct passwd *nobody = getpwnam("nobody");
	bool as_nobody = geteuid() == 0 && nobody != NULL;
	char pid_file[PATH_MAX], c;
	const char *args[] = { "--pid-file", pid_file, "--workers", "1", NULL };
	struct harness_proc *gw;
	int go[2], ready[2];
	pid_t squatter = -1;

	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", harness_tmpdir());
	cr_assert_eq(chmod(harness_tmpdir(), 0755), 0);
	ops_write(pid_file, "99999\n");
	cr_assert_eq(chmod(pid_file, 0644), 0);
	cr_assert_eq(pipe2(go, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	if (as_nobody) {
		squatter = fork();
		cr_assert_geq(squatter, 0);
		if (squatter == 0) {
			int fd;

			close(go[1]);
			close(ready[0]);
			if (setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0)
				_exit(2);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			fd = open(pid_file, O_RDONLY);
			if (fd < 0 || flock(fd, LOCK_SH) != 0)
				_exit(3);
			(void)!write(ready[1], "r", 1);
			(void)!read(go[0], &c, 1);
			_exit(0);
		}
		cr_assert_eq(read(ready[0], &c, 1), 1, "the squatter failed (exit %d)",
			     harness_wait_exit(squatter, 2000));
	}
	gw = harness_gateway_up(ops_gw_env, args);
	cr_assert_eq(ops_read_pid(pid_file), gw->pid);
	if (as_nobody)
		cr_assert_not_null(strstr(harness_log(gw), "replacing it"), "%s", harness_log(gw));
	close(go[1]);
	close(go[0]);
	close(ready[0]);
	close(ready[1]);
	if (squatter > 0)
		cr_assert_eq(harness_wait_exit(squatter, 5000), 0);
}

/*
 * The log directory may belong to the service user, who could plant a link to a file
 * only root may write: a symbolic link or a hard link at the log path is refused, at
 * start and when SIGUSR1 reopens the file.
 */
Test(ops, log_file_links_refused, .timeout = 40)
{
	struct passwd *nobody = getpwnam("nobody");
	bool as_nobody = geteuid() == 0 && nobody != NULL;
	const char *precious = ops_precious();
	char dir[PATH_MAX], log[PATH_MAX + 16];
	const char *args[] = { "--log-file", log, "--workers", "1", NULL };
	const char *user_args[] = { "--log-file", log, "--workers", "1", "--user", "nobody",
				    NULL };

	snprintf(dir, sizeof(dir), "%s/log", harness_tmpdir());
	cr_assert_eq(mkdir(dir, 0755), 0);
	if (as_nobody) {
		cr_assert_eq(chmod(harness_tmpdir(), 0755), 0);
		cr_assert_eq(chown(dir, nobody->pw_uid, nobody->pw_gid), 0);
	}
	snprintf(log, sizeof(log), "%s/gw.log", dir);
	cr_assert_eq(symlink(precious, log), 0);
	for (int d = 0; d < 2; d++)
		ops_assert_failure(ops_gw_env, as_nobody ? user_args : args, d, log,
				   "symbolic link");
	cr_assert_str_eq(ops_text(precious), "precious\n", "the link's target was written");
	/* A hard link (fs.protected_hardlinks would stop the user, not root). */
	cr_assert_eq(unlink(log), 0);
	cr_assert_eq(link(precious, log), 0);
	for (int d = 0; d < 2; d++)
		ops_assert_failure(ops_gw_env, as_nobody ? user_args : args, d, log, "hard link");
	cr_assert_str_eq(ops_text(precious), "precious\n", "the link's target was written");
	/* A FIFO would block the start: refused as well. */
	cr_assert_eq(unlink(log), 0);
	cr_assert_eq(mkfifo(log, 0600), 0);
	ops_assert_failure(ops_gw_env, args, false, log, "not a regular file");
}

Test(ops, log_reopen_refuses_a_link, .timeout = 40)
{
	const char *precious = ops_precious();
	char log[PATH_MAX], old[PATH_MAX + 8];
	const char *args[] = { "--log-file", log, "--workers", "1", NULL };
	struct harness_proc *gw;
	int64_t deadline;

	snprintf(log, sizeof(log), "%s/gw.log", harness_tmpdir());
	snprintf(old, sizeof(old), "%s.1", log);
	gw = harness_gateway_up(ops_gw_env, args);
	cr_assert_eq(rename(log, old), 0);
	cr_assert_eq(symlink(precious, log), 0);
	cr_assert_eq(kill(gw->pid, SIGUSR1), 0);
	deadline = harness_now_ms() + 5000;
	while (strstr(ops_text(old), "master: log_reopen() failed") == NULL &&
	       harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_not_null(strstr(ops_text(old), "master: log_reopen() failed"),
			   "no warning in the file still in use:\n%s", ops_text(old));
	cr_assert_not_null(strstr(ops_text(old), "symbolic link"), "%s", ops_text(old));
	cr_assert_str_eq(ops_text(precious), "precious\n", "the link's target was written");
}
