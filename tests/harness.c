/* Test harness: start the real daemon and mock SFUs on loopback, talk HTTP to them, clean up. */
#include "harness.h"

#include "instance.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <json.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static struct harness_proc harness_procs[HARNESS_MAX_PROCS];
static int harness_nprocs;
static char harness_dir[256];

int64_t harness_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool harness_valgrind(void)
{
	const char *v = getenv("SFU_TEST_VALGRIND");

	return v != NULL && v[0] == '1';
}

/* Deadlines stretch under valgrind, which runs the daemon ~20x slower. */
static int harness_scale(int ms)
{
	return harness_valgrind() ? ms * 10 : ms;
}

void harness_absent(const char *what)
{
	const char *ci = getenv("CI");

	if (ci != NULL && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0))
		cr_assert_fail("%s", what);
	/* Criterion shows skips only when verbose: the line goes to stderr too. */
	fprintf(stderr, "skipped: %s\n", what);
	cr_skip_test("%s", what);
}

int harness_slow_ms(int ms)
{
	return harness_scale(ms);
}

const char *harness_slow_failover(const char *toml)
{
	static char buf[8192];

	if (!harness_valgrind() || (toml != NULL && strstr(toml, "[failover]") != NULL))
		return toml;
	if (toml == NULL)
		toml = "";
	snprintf(buf, sizeof(buf), "%s\n[failover]\nconnect_timeout_ms = %d\n"
		 "retry_timeout_ms = %d\ndeadline_ms = %d\n", toml, harness_scale(800),
		 harness_scale(1600), harness_scale(4000));
	return buf;
}

int harness_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

const char *harness_tmpdir(void)
{
	if (harness_dir[0] == '\0') {
		snprintf(harness_dir, sizeof(harness_dir), "/tmp/sfu-test.XXXXXX");
		if (mkdtemp(harness_dir) == NULL)
			harness_dir[0] = '\0';
	}
	return harness_dir;
}

const char *harness_write_file(const char *name, const char *text)
{
	static char paths[8][512];
	static int next;
	char *p = paths[next++ % 8];
	FILE *f;

	snprintf(p, 512, "%s/%s", harness_tmpdir(), name);
	f = fopen(p, "w");
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

static struct harness_proc *harness_track(void)
{
	if (harness_nprocs >= HARNESS_MAX_PROCS)
		return NULL;
	memset(&harness_procs[harness_nprocs], 0, sizeof(harness_procs[0]));
	harness_procs[harness_nprocs].out_fd = -1;
	return &harness_procs[harness_nprocs++];
}

/* fork + exec in dir (NULL: the current one) with stdout to a pipe, or (out_to_log) to the
 * log file as well, and stderr to a log file. The child dies with the test process
 * (PDEATHSIG), so a failed assertion leaks nothing. */
static pid_t harness_spawn_in(struct harness_proc *p, const char *const *argv, char **envp,
			      const char *dir, bool out_to_log)
{
	int pfd[2];
	pid_t pid;
	static int seq;

	snprintf(p->log_path, sizeof(p->log_path), "%s/proc%d.log", harness_tmpdir(), seq++);
	if (pipe(pfd) != 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int lfd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(out_to_log && lfd >= 0 ? lfd : pfd[1], STDOUT_FILENO);
		if (lfd >= 0)
			dup2(lfd, STDERR_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		if (dir != NULL && chdir(dir) != 0)
			_exit(126);
		execve(argv[0], (char *const *)argv, envp);
		_exit(127);
	}
	close(pfd[1]);
	p->out_fd = pfd[0];
	p->pid = pid;
	return pid;
}

static pid_t harness_spawn(struct harness_proc *p, const char *const *argv, char **envp)
{
	return harness_spawn_in(p, argv, envp, NULL, false);
}

/* Reads the child's stdout until a whole line came, into line (without its newline);
 * false at EOF or the deadline. */
static bool harness_read_line(const struct harness_proc *p, char *line, size_t len,
			      int timeout_ms)
{
	int64_t deadline = harness_now_ms() + harness_scale(timeout_ms);
	size_t got = 0;

	while (harness_now_ms() < deadline && got < len - 1) {
		struct pollfd pf = { p->out_fd, POLLIN, 0 };
		ssize_t r;
		char *nl;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		r = read(p->out_fd, line + got, len - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		line[got] = '\0';
		nl = strchr(line, '\n');
		if (nl != NULL) {
			*nl = '\0';
			return true;
		}
	}
	return false;
}

const char *harness_log(const struct harness_proc *p)
{
	static char buf[65536];
	int fd = open(p->log_path, O_RDONLY);
	ssize_t n = 0;

	buf[0] = '\0';
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
	}
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

char *harness_read_file(const char *path)
{
	FILE *f = fopen(path, "r"), *m;
	char *buf = NULL, chunk[8192];
	size_t len = 0, n;

	if (f == NULL)
		return NULL;
	m = open_memstream(&buf, &len);
	while (m != NULL && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	if (m != NULL)
		fclose(m);
	fclose(f);
	cr_assert_not_null(buf, "open_memstream() failed");
	return buf;
}

char *harness_read_all(const char *path)
{
	char *text = harness_read_file(path);

	return text != NULL ? text : strdup("");
}

char *harness_whole_log(const struct harness_proc *p)
{
	return harness_read_all(p->log_path);
}

int harness_count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/*
 * Starts one of the test servers (the mock SFU, the mock registry): the binary
 * named by the variable bin_env, else dflt, on a port of its choosing with
 * --key when key_b64 is not NULL, then args. Ready once it prints "PORT n".
 */
static struct harness_proc *harness_server_start(const char *bin_env, const char *dflt,
						 const char *key_b64, const char *const *args)
{
	const char *bin = getenv(bin_env);
	const char *argv[64];
	struct harness_proc *p = harness_track();
	int n = 0;
	char line[128];

	if (p == NULL)
		return NULL;
	argv[n++] = bin != NULL ? bin : dflt;
	argv[n++] = "--port";
	argv[n++] = "0";
	if (key_b64 != NULL) {
		argv[n++] = "--key";
		argv[n++] = key_b64;
	}
	argv[n++] = "--quiet";
	for (int i = 0; args != NULL && args[i] != NULL && n < 62; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (harness_spawn(p, argv, environ) < 0)
		return NULL;
	if (harness_read_line(p, line, sizeof(line), 5000) &&
	    sscanf(line, "PORT %d", &p->port) == 1)
		return p;
	return NULL;
}

struct harness_proc *harness_mock_start(const char *key_b64, const char *const *args)
{
	return harness_server_start("MOCK_SFU_BIN", "build/mock-sfu", key_b64, args);
}

struct harness_proc *harness_registry_start(const char *const *args)
{
	return harness_server_start("MOCK_REGISTRY_BIN", "build/mock-registry", NULL, args);
}

/* Whether env (NULL-terminated "NAME=value" entries, may be NULL) sets the variable of entry. */
static bool harness_env_sets(const char *const *env, const char *entry)
{
	size_t n = strcspn(entry, "=");

	for (int i = 0; env != NULL && env[i] != NULL; i++)
		if (strncmp(env[i], entry, n) == 0 && env[i][n] == '=')
			return true;
	return false;
}

static char **harness_env(const char *const *env)
{
	static char *out[512];
	int n = 0;

	/* The test's own entries replace the inherited ones of the same name. */
	for (char **e = environ; *e != NULL && n < 400; e++)
		if (strncmp(*e, "SFU_GATEWAY_", 12) != 0 && !harness_env_sets(env, *e))
			out[n++] = *e;
	for (int i = 0; env != NULL && env[i] != NULL && n < 510; i++)
		out[n++] = (char *)env[i];
	out[n] = NULL;
	return out;
}

static bool harness_has_arg(const char *const *args, const char *name)
{
	for (int i = 0; args != NULL && args[i] != NULL; i++)
		if (strcmp(args[i], name) == 0)
			return true;
	return false;
}

static struct harness_proc *harness_gateway_spawn(const char *const *env, const char *const *args)
{
	const char *bin = getenv("SFU_GATEWAY_BIN");
	const char *argv[80];
	static char portbuf[16];
	struct harness_proc *p = harness_track();
	int n = 0;

	if (bin == NULL)
		bin = "build/sfu-gateway";
	if (p == NULL)
		return NULL;
	if (harness_valgrind()) {
		argv[n++] = "/usr/bin/valgrind";
		argv[n++] = "--quiet";
		argv[n++] = "--trace-children=yes";
		argv[n++] = "--error-exitcode=99";
		/* No gdbserver: its FIFOs are not removable after an exec (the binary
		 * upgrade), and valgrind says so in lines that read as reports. */
		argv[n++] = "--vgdb=no";
		argv[n++] = "--leak-check=no";
	}
	argv[n++] = bin;
	p->port = -1;
	for (int i = 0; args != NULL && args[i] != NULL; i++)
		if (strcmp(args[i], "--port") == 0 && args[i + 1] != NULL)
			p->port = atoi(args[i + 1]);
	if (p->port < 0) {
		p->port = harness_free_port();
		snprintf(portbuf, sizeof(portbuf), "%d", p->port);
		argv[n++] = "--port";
		argv[n++] = portbuf;
		argv[n++] = "--bind";
		argv[n++] = "127.0.0.1";
	}
	/* Never read a config file of the machine by accident. */
	if (!harness_has_arg(args, "--config") && !harness_has_arg(args, "-c")) {
		argv[n++] = "--config";
		argv[n++] = harness_write_file("empty.toml", "# empty\n");
	}
	for (int i = 0; args != NULL && args[i] != NULL && n < 78; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	{
		char err[256];

		/* The gateway's own rule (instance.c), with the same environment. */
		if (instance_lock_path((uint16_t)p->port, p->lock_path, sizeof(p->lock_path), err,
				       sizeof(err)) != 0)
			p->lock_path[0] = '\0';
	}
	if (harness_spawn(p, argv, harness_env(env)) < 0)
		return NULL;
	return p;
}

/* Polls GET path on p's port until it answers 200 (1), p exits (0) or the deadline (-1). */
static int harness_wait_up(struct harness_proc *p, const char *path, int64_t deadline)
{
	char req[256];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);

	while (harness_now_ms() < deadline) {
		struct harness_resp *r = calloc(1, sizeof(*r));
		int rc, status;

		cr_assert_not_null(r);
		rc = harness_raw(p->port, req, (size_t)n, r, 1000);
		status = r->status;
		free(r);
		if (rc == 0 && status == 200)
			return 1;
		if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
			p->pid = 0;
			return 0;
		}
		poll(NULL, 0, 20);
	}
	return -1;
}

/* Starts once and waits for /noop; 1 up, 0 exited, -1 neither within the deadline. */
static int harness_gateway_try(struct harness_proc **out, const char *const *env,
			       const char *const *args)
{
	struct harness_proc *p = harness_gateway_spawn(env, args);
	int64_t deadline = harness_now_ms() + harness_scale(10000);

	*out = p;
	if (p == NULL)
		return -1;
	return harness_wait_up(p, "/noop", deadline);
}

struct harness_proc *harness_gateway_start(const char *const *env, const char *const *args)
{
	/* A port picked by harness_free_port() is free when picked, not when the
	 * gateway binds it: a test running in parallel may take it meanwhile.
	 * Such a start fails at once naming the port; then pick another. */
	for (int attempt = 0; attempt < 3; attempt++) {
		struct harness_proc *p;
		int rc = harness_gateway_try(&p, env, args);
		const char *log;

		if (rc == 1)
			return p;
		if (rc < 0 || p == NULL || harness_has_arg(args, "--port"))
			return NULL;
		log = harness_log(p);
		if (strstr(log, "bind() failed") == NULL && strstr(log, "another sfu-gateway") == NULL)
			return NULL;
	}
	return NULL;
}

int harness_gateway_run(const char *const *env, const char *const *args, int timeout_ms,
			struct harness_proc **out)
{
	struct harness_proc *p = harness_gateway_spawn(env, args);
	int rc;

	if (out != NULL)
		*out = p;
	if (p == NULL)
		return -2;
	rc = harness_wait_exit(p->pid, timeout_ms);
	if (rc >= 0)
		p->pid = 0;
	return rc;
}

int harness_wait_exit(pid_t pid, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + harness_scale(timeout_ms);
	int status;

	while (harness_now_ms() < deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		poll(NULL, 0, 10);
	}
	return -1;
}

int harness_stop(struct harness_proc *p, int sig, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + harness_scale(timeout_ms);
	int status;

	if (p == NULL || p->pid <= 0)
		return -1;
	kill(p->pid, sig);
	while (harness_now_ms() < deadline) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			p->pid = 0;
			return status;
		}
		poll(NULL, 0, 10);
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &status, 0);
	p->pid = 0;
	return -1;
}

/* A sanitizer report in any child's log fails the test: workers are forked,
 * not exec'd, so their aborts would otherwise only show as respawns. */
static void harness_check_sanitizers(const struct harness_proc *p)
{
	static const char *const marks[] = { "AddressSanitizer", "LeakSanitizer",
					     "runtime error:", "==ERROR" };
	const char *log = harness_log(p);

	for (size_t k = 0; k < sizeof(marks) / sizeof(marks[0]); k++) {
		const char *hit = strstr(log, marks[k]);

		cr_expect(hit == NULL, "sanitizer report in %s:\n%.2000s", p->log_path,
			  hit ? hit : "");
	}
	/* Valgrind runs with --quiet, so every "==PID== " line it writes is a report
	 * (an error's lines, or a warning such as a bad descriptor in a system call):
	 * the processes are killed at the end, so their exit code cannot tell. */
	for (const char *l = log; harness_valgrind() && l != NULL && *l != '\0';) {
		size_t d = 0;

		if (l[0] == '=' && l[1] == '=') {
			while (l[2 + d] >= '0' && l[2 + d] <= '9')
				d++;
			cr_expect(!(d > 0 && strncmp(l + 2 + d, "== ", 3) == 0),
				  "valgrind report in %s:\n%.2000s", p->log_path, l);
		}
		l = strchr(l, '\n');
		if (l != NULL)
			l++;
	}
}

void harness_cleanup(void)
{
	for (int i = 0; i < harness_nprocs; i++) {
		struct harness_proc *p = &harness_procs[i];

		if (p->log_path[0] != '\0')
			harness_check_sanitizers(p);

		if (p->pid > 0) {
			/* The master's process group holds its workers. */
			kill(p->pid, SIGKILL);
			waitpid(p->pid, NULL, 0);
			p->pid = 0;
		}
		if (p->out_fd >= 0)
			close(p->out_fd);
		/* A killed master cannot remove its instance lock: do it for it. */
		if (p->lock_path[0] != '\0')
			unlink(p->lock_path);
	}
	harness_nprocs = 0;
	if (harness_dir[0] != '\0') {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", harness_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "harness: could not remove %s\n", harness_dir);
		harness_dir[0] = '\0';
	}
}

bool harness_segment(pid_t pid, char *path, size_t len, bool *deleted)
{
	char maps[64], line[1024];
	bool found = false;
	FILE *f;

	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
	f = fopen(maps, "r");
	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		char *p = strstr(line, " /dev/shm/"), *nl;

		if (p == NULL)
			continue;
		nl = strchr(p, '\n');
		if (nl != NULL)
			*nl = '\0';
		*deleted = strstr(p, " (deleted)") != NULL;
		if (*deleted)
			*strstr(p, " (deleted)") = '\0';
		snprintf(path, len, "%s", p + 1);
		found = true;
	}
	fclose(f);
	return found;
}

/* True once buf holds a whole response (head plus Content-Length bytes). */
static bool harness_complete(const char *buf, size_t len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	const char *cl;
	size_t head;

	if (end == NULL)
		return false;
	head = (size_t)(end - buf) + 4;
	cl = strcasestr(buf, "\r\nContent-Length:");
	if (cl == NULL || cl > end)
		return false; /* read to EOF */
	return len >= head + strtoul(cl + 17, NULL, 10);
}

/* A blocking TCP connection to 127.0.0.1:port from the IPv4 address src (NULL: the kernel's
 * choice); the fd or -errno. */
static int harness_connect_from(const char *src, int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), rc;

	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (src != NULL) {
		/* Linux answers for all of 127.0.0.0/8 on lo: any of it can be a source. */
		if (inet_pton(AF_INET, src, &sa.sin_addr) != 1) {
			close(fd);
			return -EINVAL;
		}
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			rc = -errno;
			close(fd);
			return rc;
		}
	}
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static int harness_connect(int port)
{
	return harness_connect_from(NULL, port);
}

int harness_raw(int port, const char *raw, size_t len, struct harness_resp *r, int timeout_ms)
{
	return harness_raw_from(NULL, port, raw, len, r, timeout_ms);
}

int harness_raw_from(const char *src, int port, const char *raw, size_t len,
		     struct harness_resp *r, int timeout_ms)
{
	int fd, rc = 0;
	size_t got = 0;
	static char buf[sizeof(r->head) + sizeof(r->body)];
	int64_t deadline = harness_now_ms() + harness_scale(timeout_ms);

	memset(r, 0, sizeof(*r));
	fd = harness_connect_from(src, port);
	if (fd < 0)
		return fd;
	if (len > 0 && write(fd, raw, len) != (ssize_t)len) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while (got < sizeof(buf) - 1) {
		int64_t left = deadline - harness_now_ms();
		struct pollfd pf = { fd, POLLIN, 0 };
		ssize_t n;

		if (left <= 0) {
			rc = -ETIMEDOUT;
			break;
		}
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0) {
			if (n < 0)
				rc = -errno;
			break;
		}
		got += (size_t)n;
		buf[got] = '\0';
		if (harness_complete(buf, got))
			break;
	}
	close(fd);
	buf[got] = '\0';
	if (got > 0) {
		char *end = memmem(buf, got, "\r\n\r\n", 4);
		size_t hl = end ? (size_t)(end - buf) + 4 : got;

		if (hl >= sizeof(r->head))
			hl = sizeof(r->head) - 1;
		memcpy(r->head, buf, hl);
		r->head[hl] = '\0';
		sscanf(r->head, "HTTP/1.%*d %d", &r->status);
		r->body_len = got - hl < sizeof(r->body) - 1 ? got - hl : sizeof(r->body) - 1;
		memcpy(r->body, buf + hl, r->body_len);
		r->body[r->body_len] = '\0';
		if (rc == -ETIMEDOUT && r->status != 0 && end != NULL)
			rc = 0;
	}
	return rc;
}

int harness_get(int port, const char *path, const char *headers, struct harness_resp *r)
{
	return harness_get_from(NULL, port, path, headers, r);
}

int harness_get_from(const char *src, int port, const char *path, const char *headers,
		     struct harness_resp *r)
{
	char req[16384];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n", path,
			 headers ? headers : "");

	return harness_raw_from(src, port, req, (size_t)n, r, 10000);
}

int harness_post(int port, const char *path, const char *headers, const char *body,
		 struct harness_resp *r)
{
	return harness_post_from(NULL, port, path, headers, body, r);
}

int harness_post_from(const char *src, int port, const char *path, const char *headers,
		      const char *body, struct harness_resp *r)
{
	size_t bl = strlen(body);
	char *req = malloc(bl + 16384);
	int n, rc;

	if (req == NULL)
		return -ENOMEM;
	n = snprintf(req, 16384,
		     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		     path, headers ? headers : "", bl);
	memcpy(req + n, body, bl);
	rc = harness_raw_from(src, port, req, (size_t)n + bl, r, 10000);
	free(req);
	return rc;
}

/* Header value in a response head (first match, case-insensitive) into out. */
static bool harness_head_value(const char *head, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	const char *p = strstr(head, "\r\n");

	while (p != NULL && p[2] != '\r' && p[2] != '\0') {
		const char *line = p + 2, *eol = strstr(line, "\r\n");

		if (eol == NULL)
			break;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;

			while (*v == ' ')
				v++;
			snprintf(out, outlen, "%.*s", (int)(eol - v), v);
			return true;
		}
		p = eol;
	}
	return false;
}

bool harness_resp_header(const struct harness_resp *r, const char *name, char *out,
			 size_t outlen)
{
	return harness_head_value(r->head, name, out, outlen);
}

/* Base64 of in: url-safe without padding, or (std) the standard alphabet padded. */
static void harness_b64(const unsigned char *in, size_t len, bool std, char *out)
{
	const char *a = std ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
			    : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		if (i + 1 < len)
			out[o++] = a[(v >> 6) & 63];
		else if (std)
			out[o++] = '=';
		if (i + 2 < len)
			out[o++] = a[v & 63];
		else if (std)
			out[o++] = '=';
	}
	out[o] = '\0';
}

/* Decodes a key in either alphabet, padded or not (url-safe keys are mapped to the
 * standard alphabet and padded). Returns its length. */
static int harness_key(const char *key_b64, unsigned char *out)
{
	char std[512];
	size_t len;
	int n;

	snprintf(std, sizeof(std), "%s", key_b64);
	for (char *c = std; *c; c++)
		*c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
	while (strlen(std) % 4 != 0)
		strcat(std, "=");
	len = strlen(std);
	n = EVP_DecodeBlock(out, (const unsigned char *)std, (int)len);
	for (size_t i = len; i > 0 && std[i - 1] == '='; i--)
		n--;
	return n;
}

const char *harness_token(const char *header_json, const char *claims_json, const char *key_b64)
{
	static char tok[16384];
	unsigned char key[256], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	int kl = harness_key(key_b64, key);
	size_t n;

	harness_b64((const unsigned char *)header_json, strlen(header_json), false, tok);
	n = strlen(tok);
	tok[n++] = '.';
	harness_b64((const unsigned char *)claims_json, strlen(claims_json), false, tok + n);
	n = strlen(tok);
	HMAC(EVP_sha256(), key, kl, (unsigned char *)tok, n, mac, &maclen);
	tok[n++] = '.';
	harness_b64(mac, maclen, false, tok + n);
	return tok;
}

const char *harness_token_ex(const char *header_json, const char *claims_json,
			     const char *key_b64, const struct evp_md_st *md, bool std)
{
	static char toks[2][16384];
	static int next;
	char *tok = toks[next++ % 2];
	unsigned char key[256], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t n;

	harness_b64((const unsigned char *)header_json, strlen(header_json), std, tok);
	n = strlen(tok);
	tok[n++] = '.';
	harness_b64((const unsigned char *)claims_json, strlen(claims_json), std, tok + n);
	n = strlen(tok);
	if (md != NULL) {
		int kl = harness_key(key_b64, key);

		cr_assert(kl > 0);
		cr_assert_not_null(HMAC(md, key, kl, (unsigned char *)tok, n, mac, &maclen));
	}
	tok[n++] = '.';
	harness_b64(mac, maclen, std, tok + n);
	return tok;
}

const char *harness_odoo_token(const char *iss, const char *key_b64)
{
	char claims[2048];

	snprintf(claims, sizeof(claims),
		 "{\"iss\": \"%s\", \"key\": \"6f1d7a52-8d67-4c6e-a1f1-0c7e2f6f2f4d\", "
		 "\"exp\": %lld}",
		 iss, (long long)time(NULL) + 30);
	return harness_token("{\"typ\": \"JWT\", \"alg\": \"HS256\"}", claims, key_b64);
}

const char *harness_json_str(const char *body, const char *field)
{
	static char out[4096];
	char pat[128];
	const char *p, *q;

	out[0] = '\0';
	snprintf(pat, sizeof(pat), "\"%s\"", field);
	p = strstr(body, pat);
	if (p == NULL)
		return out;
	p += strlen(pat);
	while (*p == ' ' || *p == ':')
		p++;
	if (*p != '"')
		return out;
	p++;
	q = strchr(p, '"');
	if (q == NULL)
		return out;
	snprintf(out, sizeof(out), "%.*s", (int)(q - p), p);
	return out;
}

/* ---- helpers the integration suites share */

const char *harness_all_logs(void)
{
	static char out[16384];
	size_t n = 0;
	glob_t g;
	char pat[300];

	out[0] = '\0';
	snprintf(pat, sizeof(pat), "%s/*.log", harness_tmpdir());
	if (glob(pat, 0, NULL, &g) != 0)
		return out;
	for (size_t i = 0; i < g.gl_pathc && n < sizeof(out) - 1; i++) {
		FILE *f = fopen(g.gl_pathv[i], "r");

		if (f == NULL)
			continue;
		n += (size_t)snprintf(out + n, sizeof(out) - n, "== %s\n", g.gl_pathv[i]);
		if (n < sizeof(out) - 1)
			n += fread(out + n, 1, sizeof(out) - 1 - n, f);
		out[n] = '\0';
		fclose(f);
	}
	globfree(&g);
	return out;
}

struct harness_proc *harness_gateway_up(const char *const *env, const char *const *args)
{
	struct harness_proc *gw = harness_gateway_start(env, args);

	cr_assert_not_null(gw, "the gateway did not come up:\n%s", harness_all_logs());
	return gw;
}

struct harness_proc *harness_gateway_keyed(const char *key_b64, const char *const *env,
					   int workers, const char *toml)
{
	static int seq;
	const char *envp[16], *args[6];
	char key_env[512], nw[16], name[32];
	int n = 0, a = 0;

	if (key_b64 != NULL) {
		snprintf(key_env, sizeof(key_env), "SFU_GATEWAY_KEY=%s", key_b64);
		envp[n++] = key_env;
	}
	for (int i = 0; env != NULL && env[i] != NULL && n < 15; i++)
		envp[n++] = env[i];
	envp[n] = NULL;
	snprintf(nw, sizeof(nw), "%d", workers);
	args[a++] = "--workers";
	args[a++] = nw;
	if (toml != NULL) {
		snprintf(name, sizeof(name), "gateway%d.toml", seq++);
		args[a++] = "--config";
		args[a++] = harness_write_file(name, toml);
	}
	args[a] = NULL;
	return harness_gateway_up(envp, args);
}

const char *harness_url(int port)
{
	static char bufs[8][64];
	static int next;
	char *b = bufs[next++ % 8];

	snprintf(b, sizeof(bufs[0]), "http://127.0.0.1:%d", port);
	return b;
}

int harness_served_by(struct harness_proc *const *mocks, int n, const char *body)
{
	const char *url = harness_json_str(body, "url");

	for (int i = 0; i < n; i++)
		if (strcmp(url, harness_url(mocks[i]->port)) == 0)
			return i;
	return -1;
}

uint64_t harness_next_seq(void)
{
	static uint64_t last;
	struct timespec ts;
	uint64_t ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	last = ms > last ? ms : last + 1;
	return last;
}

const char *harness_body_sha256(const char *body)
{
	static char out[64];
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	cr_assert(EVP_Digest(body, strlen(body), digest, &n, EVP_sha256(), NULL) == 1);
	harness_b64(digest, n, false, out);
	return out;
}

const char *harness_sfu_token(const char *address, const char *key_b64, const char *body)
{
	char claims[1024];
	long long now = (long long)time(NULL);

	snprintf(claims, sizeof(claims),
		 "{\"address\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"sha256\":\"%s\","
		 "\"seq\":%llu}",
		 address, now, now + 60, harness_body_sha256(body),
		 (unsigned long long)harness_next_seq());
	return harness_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, key_b64);
}

struct harness_resp *harness_heartbeat(int port, const char *address, const char *key_b64,
				       const char *body)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	char auth[16384 + 64];
	int rc;

	cr_assert_not_null(r);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n",
		 harness_sfu_token(address, key_b64, body));
	rc = harness_post(port, "/v1/sfu", auth, body, r);
	cr_assert_eq(rc, 0, "POST /v1/sfu failed: %d", rc);
	return r;
}

struct harness_resp *harness_channel(int port, const char *path, const char *iss,
				     const char *key_b64, const char *extra)
{
	return harness_channel_from(NULL, port, path, iss, key_b64, extra);
}

struct harness_resp *harness_channel_from(const char *src, int port, const char *path,
					  const char *iss, const char *key_b64, const char *extra)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	char headers[16384 + 1024];
	int rc;

	cr_assert_not_null(r);
	snprintf(headers, sizeof(headers), "Authorization: jwt %s\r\n%s",
		 harness_odoo_token(iss, key_b64), extra != NULL ? extra : "");
	rc = harness_get_from(src, port, path, headers, r);
	cr_assert_eq(rc, 0, "GET %s from %s failed: %d", path, src != NULL ? src : "127.0.0.1",
		     rc);
	return r;
}

int harness_channel_req(char *out, size_t outlen, const char *token)
{
	return snprintf(out, outlen,
			"GET /v1/channel HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: jwt %s\r\n"
			"Connection: close\r\n\r\n",
			token);
}

/* Fills a call from the answer in buf (complete, or all that came before EOF). */
static void harness_call_parse(struct harness_call *c, const char *buf, size_t len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	size_t hl = end != NULL ? (size_t)(end + 4 - buf) : len;

	c->done = true;
	c->status = 0;
	snprintf(c->head, sizeof(c->head), "%.*s", (int)hl, buf);
	snprintf(c->body, sizeof(c->body), "%.*s", (int)(len - hl), buf + hl);
	if (end != NULL)
		sscanf(buf, "HTTP/1.%*d %d", &c->status);
}

#define HARNESS_BATCH_MAX 256

void harness_batch(int port, struct harness_call *calls, int n, int conc, int timeout_ms)
{
	struct harness_slot {
		int fd, idx;
		size_t got;
		int64_t t0;
		char buf[8192];
	} *s = calloc((size_t)conc, sizeof(*s));
	int64_t deadline = harness_now_ms() + timeout_ms;
	int next = 0, active = 0;

	cr_assert_not_null(s);
	cr_assert_leq(conc, HARNESS_BATCH_MAX);
	for (int i = 0; i < conc; i++)
		s[i].fd = -1;
	for (;;) {
		struct pollfd pf[HARNESS_BATCH_MAX];
		int np = 0;

		for (int i = 0; i < conc && next < n; i++) {
			struct harness_call *c;
			size_t len;

			if (s[i].fd >= 0)
				continue;
			s[i].idx = next++;
			s[i].got = 0;
			s[i].t0 = harness_now_ms();
			c = &calls[s[i].idx];
			c->done = false;
			c->status = 0;
			c->head[0] = c->body[0] = '\0';
			s[i].fd = harness_connect(port);
			cr_assert_geq(s[i].fd, 0, "connect: %s", strerror(-s[i].fd));
			len = strlen(c->req);
			cr_assert_eq(write(s[i].fd, c->req, len), (ssize_t)len);
			active++;
		}
		if (active == 0 || harness_now_ms() >= deadline)
			break;
		for (int i = 0; i < conc; i++)
			if (s[i].fd >= 0)
				pf[np++] = (struct pollfd){ s[i].fd, POLLIN, 0 };
		if (poll(pf, (nfds_t)np, 50) <= 0)
			continue;
		for (int i = 0; i < conc; i++) {
			ssize_t r;

			if (s[i].fd < 0)
				continue;
			r = recv(s[i].fd, s[i].buf + s[i].got, sizeof(s[i].buf) - 1 - s[i].got,
				 MSG_DONTWAIT);
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				continue;
			if (r > 0) {
				s[i].got += (size_t)r;
				s[i].buf[s[i].got] = '\0';
				if (!harness_complete(s[i].buf, s[i].got) &&
				    s[i].got < sizeof(s[i].buf) - 1)
					continue;
			}
			harness_call_parse(&calls[s[i].idx], s[i].buf, s[i].got);
			calls[s[i].idx].ms = harness_now_ms() - s[i].t0;
			close(s[i].fd);
			s[i].fd = -1;
			active--;
		}
	}
	for (int i = 0; i < conc; i++)
		if (s[i].fd >= 0)
			close(s[i].fd);
	free(s);
}

bool harness_call_header(const struct harness_call *c, const char *name, char *out,
			 size_t outlen)
{
	return harness_head_value(c->head, name, out, outlen);
}

double harness_series(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

double harness_metric(int port, const char *series)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	double v;

	cr_assert_not_null(r);
	cr_assert_eq(harness_get(port, "/metrics", NULL, r), 0, "GET /metrics");
	cr_assert_eq(r->status, 200, "GET /metrics: %d", r->status);
	v = harness_series(r->body, series);
	free(r);
	return v;
}

struct json_object *harness_mock_json(const struct harness_proc *m, const char *path)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	json_object *o;

	cr_assert_not_null(r);
	cr_assert_eq(harness_get(m->port, path, NULL, r), 0, "mock %s", path);
	cr_assert_eq(r->status, 200, "mock %s: %d %s", path, r->status, r->body);
	o = json_tokener_parse(r->body);
	cr_assert_not_null(o, "mock %s: not JSON: %s", path, r->body);
	free(r);
	return o;
}

int64_t harness_mock_int(const struct harness_proc *m, const char *path, const char *field)
{
	json_object *o = harness_mock_json(m, path), *v;
	int64_t n;

	cr_assert(json_object_object_get_ex(o, field, &v), "no %s in %s", field, path);
	n = json_object_get_int64(v);
	json_object_put(o);
	return n;
}

void harness_mock_post(const struct harness_proc *m, const char *path, int want)
{
	struct harness_resp *r = calloc(1, sizeof(*r));

	cr_assert_not_null(r);
	cr_assert_eq(harness_post(m->port, path, NULL, "", r), 0, "mock POST %s", path);
	cr_assert_eq(r->status, want, "mock POST %s: %d %s", path, r->status, r->body);
	free(r);
}

/* ---- the real odoo/sfu (the interop suite; SFU_INTEROP_PEER names a prepared copy) */

const char *harness_peer_dir(void)
{
	return harness_peer_dir_of(HARNESS_PEER_UPSTREAM);
}

const char *harness_peer_dir_of(enum harness_peer peer)
{
	const char *var = peer == HARNESS_PEER_PATCHED ? "SFU_INTEROP_PEER_PATCHED"
						       : "SFU_INTEROP_PEER";
	const char *dir = getenv(var);

	cr_assert(dir != NULL && dir[0] != '\0',
		  "%s is not set: run the interop suite with make check-interop", var);
	return dir;
}

/* The node binary the interop script found (NODE_BIN), else the usual one. */
static const char *harness_node(void)
{
	const char *bin = getenv("NODE_BIN");

	return bin != NULL && bin[0] != '\0' ? bin : "/usr/bin/node";
}

/* Whether "NAME=value" entry e sets the variable that "NAME=..." entry name sets. */
static bool harness_same_var(const char *e, const char *name)
{
	const char *eq = strchr(name, '=');
	size_t n = eq != NULL ? (size_t)(eq - name) : strlen(name);

	return strncmp(e, name, n) == 0 && e[n] == '=';
}

/* The test's environment with the entries of sets (each NULL-terminated, later sets win)
 * replacing variables of the same name. Static buffer. */
static char **harness_env_over(const char *const *base, const char *const *over)
{
	static char *out[512];
	int n = 0;

	for (char **e = environ; *e != NULL && n < 400; e++) {
		bool replaced = false;

		for (int i = 0; base != NULL && base[i] != NULL; i++)
			replaced = replaced || harness_same_var(*e, base[i]);
		for (int i = 0; over != NULL && over[i] != NULL; i++)
			replaced = replaced || harness_same_var(*e, over[i]);
		if (!replaced)
			out[n++] = *e;
	}
	for (int i = 0; base != NULL && base[i] != NULL && n < 480; i++) {
		bool replaced = false;

		for (int k = 0; over != NULL && over[k] != NULL; k++)
			replaced = replaced || harness_same_var(base[i], over[k]);
		if (!replaced)
			out[n++] = (char *)base[i];
	}
	for (int i = 0; over != NULL && over[i] != NULL && n < 510; i++)
		out[n++] = (char *)over[i];
	out[n] = NULL;
	return out;
}

/* The port an env entry "PORT=n" sets, else 0. */
static int harness_env_port(const char *const *env)
{
	for (int i = 0; env != NULL && env[i] != NULL; i++)
		if (strncmp(env[i], "PORT=", 5) == 0)
			return atoi(env[i] + 5);
	return 0;
}

/* Starts the SFU of folder dir once on port and waits for /v1/noop: 1 up, 0 exited, -1
 * neither. */
static int harness_real_sfu_try(struct harness_proc **out, const char *dir, const char *key_b64,
				int port, const char *const *env)
{
	char entry[512], key_env[600], port_env[32];
	const char *argv[] = { harness_node(), "--import", "tsx", entry, NULL };
	const char *base[] = { key_env, port_env, "PUBLIC_IP=127.0.0.1",
			       "HTTP_INTERFACE=127.0.0.1", "PROXY=1", "LOG_LEVEL=warn",
			       "LOG_COLOR=", "NODE_OPTIONS=", NULL };
	struct harness_proc *p = harness_track();
	/* Node starts in about a second; two cores shared by parallel tests stretch that. */
	int64_t deadline = harness_now_ms() + harness_scale(20000);

	*out = p;
	if (p == NULL)
		return -1;
	snprintf(entry, sizeof(entry), "%s/sfu_http.ts", dir);
	snprintf(key_env, sizeof(key_env), "AUTH_KEY=%s", key_b64);
	snprintf(port_env, sizeof(port_env), "PORT=%d", port);
	p->port = port;
	if (harness_spawn_in(p, argv, harness_env_over(base, env), dir, true) < 0)
		return -1;
	return harness_wait_up(p, "/v1/noop", deadline);
}

struct harness_proc *harness_real_sfu_start_peer(enum harness_peer peer, const char *key_b64,
						 const char *const *env)
{
	const char *dir = harness_peer_dir_of(peer);
	int fixed = harness_env_port(env);

	/* As for the gateway: a parallel test may take the picked port before node binds it
	 * (a port the caller fixed is tried once). */
	for (int attempt = 0; attempt < (fixed > 0 ? 1 : 3); attempt++) {
		struct harness_proc *p;
		int rc = harness_real_sfu_try(&p, dir, key_b64,
					      fixed > 0 ? fixed : harness_free_port(), env);

		if (rc == 1)
			return p;
		if (rc < 0 || p == NULL || strstr(harness_log(p), "EADDRINUSE") == NULL)
			return NULL;
	}
	return NULL;
}

struct harness_proc *harness_real_sfu_start(const char *key_b64, const char *const *env)
{
	return harness_real_sfu_start_peer(HARNESS_PEER_UPSTREAM, key_b64, env);
}

struct harness_proc *harness_real_sfu_up_peer(enum harness_peer peer, const char *key_b64,
					      const char *const *env)
{
	struct harness_proc *p = harness_real_sfu_start_peer(peer, key_b64, env);

	cr_assert_not_null(p, "the real odoo/sfu (%s) did not come up:\n%s",
			   peer == HARNESS_PEER_PATCHED ? "patched" : "unpatched", harness_all_logs());
	return p;
}

struct harness_proc *harness_real_sfu_up(const char *key_b64, const char *const *env)
{
	return harness_real_sfu_up_peer(HARNESS_PEER_UPSTREAM, key_b64, env);
}

struct harness_proc *harness_ws_sessions(int sfu_port, const char *uuid, const char *channel_key,
					 int n, int first)
{
	char script[512], url[64], count[16], first_id[16], line[128];
	const char *argv[] = {
		harness_node(), script, url, uuid, channel_key, count, first_id, NULL,
	};
	struct harness_proc *p = harness_track();

	cr_assert_not_null(p, "too many processes");
	snprintf(script, sizeof(script), "%s/ws_sessions.mjs", harness_peer_dir());
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d", sfu_port);
	snprintf(count, sizeof(count), "%d", n);
	snprintf(first_id, sizeof(first_id), "%d", first);
	cr_assert_gt(harness_spawn_in(p, argv, environ, harness_peer_dir(), false), 0);
	/* It prints "OPEN n" once every session joined, or exits. */
	cr_assert(harness_read_line(p, line, sizeof(line), 20000) &&
			  strncmp(line, "OPEN ", 5) == 0,
		  "%d websocket sessions did not open:\n%s", n, harness_all_logs());
	return p;
}

struct harness_proc *harness_agent_start(const char *const *args, const char *const *env)
{
	static const char *const empty[] = { NULL };
	const char *bin = getenv("SFU_AGENT_BIN");
	const char *argv[48];
	struct harness_proc *p = harness_track();
	int n = 0;

	cr_assert_not_null(p, "too many processes");
	if (harness_valgrind()) {
		argv[n++] = "/usr/bin/valgrind";
		argv[n++] = "--quiet";
		argv[n++] = "--error-exitcode=99";
		/* No gdbserver: its FIFOs are not removable after an exec (the binary
		 * upgrade), and valgrind says so in lines that read as reports. */
		argv[n++] = "--vgdb=no";
		argv[n++] = "--leak-check=no";
	}
	argv[n++] = bin != NULL ? bin : "build/sfu-gateway-agent";
	for (int i = 0; args != NULL && args[i] != NULL && n < 47; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	cr_assert_gt(harness_spawn(p, argv, (char **)(env != NULL ? env : empty)), 0);
	return p;
}

struct harness_proc *harness_process_start(const char *const *argv, const char *const *env)
{
	static const char *const empty[] = { NULL };
	struct harness_proc *p = harness_track();

	cr_assert_not_null(p, "too many processes");
	cr_assert_gt(harness_spawn_in(p, argv, (char **)(env != NULL ? env : empty), NULL, true), 0,
		     "cannot start %s", argv[0]);
	return p;
}

/* ---- JSON of the gateway's routes */

struct json_object *harness_get_json(int port, const char *path, int *status)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	struct json_object *o;

	cr_assert_not_null(r);
	cr_assert_eq(harness_get(port, path, NULL, r), 0, "GET %s on port %d failed", path, port);
	if (status != NULL)
		*status = r->status;
	o = json_tokener_parse(r->body);
	cr_assert_not_null(o, "GET %s: not JSON: %s", path, r->body);
	free(r);
	return o;
}

struct json_object *harness_json_find(struct json_object *arr, const char *member,
				      const char *value)
{
	for (size_t i = 0; json_object_is_type(arr, json_type_array) &&
			   i < json_object_array_length(arr);
	     i++) {
		struct json_object *o = json_object_array_get_idx(arr, i), *v;

		if (json_object_object_get_ex(o, member, &v) &&
		    json_object_is_type(v, json_type_string) &&
		    strcmp(json_object_get_string(v), value) == 0)
			return o;
	}
	return NULL;
}

struct json_object *harness_health_sfu(int gw_port, const char *address, int *status)
{
	struct json_object *root = harness_get_json(gw_port, "/v1/health", status);
	struct json_object *sfus, *found;

	cr_assert(json_object_object_get_ex(root, "sfus", &sfus), "/v1/health has no sfus");
	found = json_object_get(harness_json_find(sfus, "address", address));
	json_object_put(root);
	return found;
}

int64_t harness_json_int(struct json_object *o, const char *field)
{
	struct json_object *v;

	cr_assert(json_object_object_get_ex(o, field, &v), "no field %s in %s", field,
		  json_object_to_json_string(o));
	return json_object_get_int64(v);
}
