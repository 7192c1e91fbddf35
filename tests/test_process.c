/* Integration tests of the process model: tree, respawn, reloads under load, accept balance. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Base64 of 38 and 39 byte keys. */
#define PROC_GW_KEY "cHJvY2Vzcy10ZXN0cy1nYXRld2F5LWtleS0wMTIzNDU2Nzg5YWI="
#define PROC_KEY_ONE "cHJvY2Vzcy10ZXN0cy1zZnUta2V5LW9uZS0wMTIzNDU2Nzg5YWJj"
#define PROC_KEY_TWO "cHJvY2Vzcy10ZXN0cy1zZnUta2V5LXR3by0wMTIzNDU2Nzg5YWJj"

#define PROC_LOADERS 3 /* concurrent clients of a load: the bound on in-flight requests */
#define PROC_REQUEST_TIMEOUT_MS 5000
#define PROC_LOAD_MAX_MS 50000 /* a loader stops by itself after this */
#define PROC_NOTES 8
#define PROC_MAX_PIDS 64

/* How the loaders use connections. */
enum proc_mode {
	PROC_NEW_CONN, /* a new connection per request: exercises accept */
	PROC_KEEPALIVE, /* one connection per loader, reopened only when it breaks */
	PROC_MIXED, /* loaders alternate: even ones new connections, odd ones keep-alive */
};

/*
 * A load generator's shared state (MAP_SHARED): loader processes add to the
 * counters, the test reads them and sets stop. A request fails when it gets
 * no whole response or a status other than 200; the kind is counted too.
 */
struct proc_load {
	atomic_int stop;
	_Atomic uint64_t ok, failed;
	_Atomic uint64_t refused, reset, eof, timeout, bad_status, other;
	atomic_uint n_notes;
	char notes[PROC_NOTES][160]; /* the first failures, for assertion messages */
	int64_t t0_ms;
	pid_t pids[PROC_LOADERS];
};

/* ---- processes of the gateway */

/* Copies the tail of the gateway's log into the test output, for failed assertions. */
static void proc_dump_log(const struct harness_proc *gw)
{
	char *log = harness_whole_log(gw);
	size_t len = strlen(log);

	cr_log_error("gateway log (tail):\n%s", len > 6000 ? log + len - 6000 : log);
	free(log);
}

/* The children of pid, from /proc/<pid>/task/<pid>/children (the master has one
 * thread). Zombies stay listed until the master reaps them. */
static int proc_children(pid_t pid, pid_t *out, int max)
{
	char path[64];
	FILE *f;
	int n = 0, c;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (n < max && fscanf(f, "%d", &c) == 1)
		out[n++] = c;
	fclose(f);
	return n;
}

/* Whether the master's log announced pid as a child of the given role. */
static bool proc_started_as(const char *log, const char *role, pid_t pid)
{
	char needle[64];

	snprintf(needle, sizeof(needle), "started %s pid=%d ", role, (int)pid);
	return strstr(log, needle) != NULL;
}

/*
 * Polls until the master has exactly n_workers worker children and one
 * reaper, and no other child, within timeout_ms. The worker pids go to
 * workers (which holds PROC_MAX_PIDS) and the reaper's to *reaper. Returns
 * the number of workers last seen (-1 when the tree was never well formed).
 */
static int proc_wait_tree(const struct harness_proc *gw, int n_workers, int timeout_ms,
			  pid_t *workers, pid_t *reaper)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	int seen = -1;

	for (;;) {
		pid_t kids[PROC_MAX_PIDS];
		int n = proc_children(gw->pid, kids, PROC_MAX_PIDS), nw = 0, nr = 0, other = 0;
		char *log = harness_whole_log(gw);

		for (int i = 0; i < n; i++) {
			if (proc_started_as(log, "worker", kids[i]))
				workers[nw++] = kids[i];
			else if (proc_started_as(log, "reaper", kids[i]))
				nr++, *reaper = kids[i];
			else
				other++;
		}
		free(log);
		if (n >= 0 && nr == 1 && other == 0)
			seen = nw;
		if (seen == n_workers && nr == 1 && other == 0)
			return seen;
		if (harness_now_ms() >= deadline)
			return seen;
		poll(NULL, 0, 20);
	}
}

/* Asserts the tree reaches n workers plus the reaper within timeout_ms. */
static void proc_expect_tree(const struct harness_proc *gw, int n, int timeout_ms,
			     pid_t *workers, pid_t *reaper)
{
	int got = proc_wait_tree(gw, n, timeout_ms, workers, reaper);

	if (got != n)
		proc_dump_log(gw);
	cr_assert_eq(got, n, "master %d has %d workers, expected %d within %d ms", (int)gw->pid,
		     got, n, timeout_ms);
}

/* Asserts no process of the gateway died on an assertion or a sanitizer report. */
static void proc_expect_clean_log(const struct harness_proc *gw)
{
	static const char *const bad[] = { "Assertion", "AddressSanitizer", "runtime error:" };
	char *log = harness_whole_log(gw);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *at = strstr(log, bad[i]);

		cr_expect_null(at, "the log says: %.300s", at);
	}
	free(log);
}

/* Sends SIGHUP and waits until the master acted on it. Returns 1 when it
 * reloaded, 0 when it reported a failed reload, -1 when it said nothing. */
static int proc_reload(const struct harness_proc *gw)
{
	char *log = harness_whole_log(gw);
	int ok = harness_count(log, "master: reloaded"), bad = harness_count(log, "reload failed");
	int64_t deadline = harness_now_ms() + 5000;

	free(log);
	cr_assert_eq(kill(gw->pid, SIGHUP), 0);
	while (harness_now_ms() < deadline) {
		int now_ok, now_bad;

		log = harness_whole_log(gw);
		now_ok = harness_count(log, "master: reloaded");
		now_bad = harness_count(log, "reload failed");
		free(log);
		if (now_ok > ok)
			return 1;
		if (now_bad > bad)
			return 0;
		poll(NULL, 0, 10);
	}
	return -1;
}

/* One static SFU of a config. */
struct proc_sfu {
	int port;
	const char *key;
};

/*
 * Writes the gateway's config file gw.toml in the test's tmpdir: workers
 * (none when 0, so the default or the CLI decides), a high circuit breaker
 * threshold (a test that makes an SFU fail on purpose must not open its
 * circuit) and the static SFUs. It goes through a rename so a reload never
 * reads half a file. Returns the path.
 */
static const char *proc_config(unsigned workers, const struct proc_sfu *sfus, int n)
{
	static char path[512];
	char text[4096];
	size_t o = 0;
	const char *tmp;

	if (workers > 0)
		o += (size_t)snprintf(text + o, sizeof(text) - o, "[gateway]\nworkers = %u\n\n",
				      workers);
	o += (size_t)snprintf(text + o, sizeof(text) - o,
			      "[circuit_breaker]\nfailure_threshold = 1000\n\n");
	for (int i = 0; i < n; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o,
				      "[[sfu]]\naddress = \"http://127.0.0.1:%d\"\n"
				      "region = \"eu-west\"\nkey = \"%s\"\n\n",
				      sfus[i].port, sfus[i].key);
	cr_assert(o < sizeof(text));
	tmp = harness_write_file("gw.toml.new", text);
	snprintf(path, sizeof(path), "%s/gw.toml", harness_tmpdir());
	cr_assert_eq(rename(tmp, path), 0, "rename %s: %s", tmp, strerror(errno));
	return path;
}

/* Starts the gateway on config; workers NULL leaves the count to the file. */
static struct harness_proc *proc_gateway(const char *config, const char *workers)
{
	const char *env[] = { "SFU_GATEWAY_KEY=" PROC_GW_KEY, NULL };
	const char *args[] = { "--config", config, workers ? "--workers" : NULL, workers, NULL };
	return harness_gateway_up(env, args);
}

static struct harness_proc *proc_mock(const char *key)
{
	struct harness_proc *m = harness_mock_start(key, NULL);

	cr_assert_not_null(m, "the mock SFU did not start");
	return m;
}

/* A counter of a mock's /mock/stats. */
static long long proc_mock_stat(const struct harness_proc *m, const char *name)
{
	return harness_mock_int(m, "/mock/stats", name);
}

/* ---- a client that tells what went wrong */

/* Connects to 127.0.0.1:port within the deadline; returns the fd or -errno. */
static int proc_connect(int port, int64_t deadline)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0;
	socklen_t el = sizeof(err);

	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		struct pollfd pf = { fd, POLLOUT, 0 };
		int64_t left = deadline - harness_now_ms();

		err = errno;
		if (err == EINPROGRESS) {
			err = poll(&pf, 1, left > 0 ? (int)left : 0) == 1 ? 0 : ETIMEDOUT;
			if (err == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
				err = errno;
		}
	}
	if (err == 0 && fcntl(fd, F_SETFL, 0) != 0)
		err = errno;
	if (err != 0) {
		close(fd);
		return -err;
	}
	return fd;
}

/*
 * Reads one response within the deadline. Returns its status, or -errno:
 * -ENODATA when the peer closed before a whole response arrived. Sets
 * *close_after when the server announced it closes the connection.
 */
static int proc_read_response(int fd, int64_t deadline, bool *close_after)
{
	char buf[16384];
	size_t got = 0;

	for (;;) {
		int64_t left = deadline - harness_now_ms();
		struct pollfd pf = { fd, POLLIN, 0 };
		const char *end, *cl;
		size_t head;
		ssize_t n;
		int status = 0;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		got += (size_t)n;
		buf[got] = '\0';
		end = memmem(buf, got, "\r\n\r\n", 4);
		if (end == NULL) {
			if (got == sizeof(buf) - 1)
				return -EMSGSIZE;
			continue;
		}
		head = (size_t)(end - buf) + 4;
		cl = strcasestr(buf, "\r\nContent-Length:");
		if (cl == NULL || cl > end)
			return -EPROTO; /* the gateway always sends a length */
		if (got < head + strtoul(cl + 17, NULL, 10))
			continue;
		cl = strcasestr(buf, "\r\nConnection: close");
		*close_after = cl != NULL && cl < end;
		if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
			return -EPROTO;
		return status;
	}
}

/* One request on *fd, connecting first when it is -1 and closing after
 * unless keep-alive goes on. Returns the status or -errno. */
static int proc_exchange(int *fd, int port, bool keepalive, const char *req, size_t len)
{
	int64_t deadline = harness_now_ms() + PROC_REQUEST_TIMEOUT_MS;
	bool close_after = false;
	int rc;

	if (*fd < 0) {
		rc = proc_connect(port, deadline);
		if (rc < 0)
			return rc;
		*fd = rc;
	}
	if (send(*fd, req, len, MSG_NOSIGNAL) != (ssize_t)len)
		rc = -errno;
	else
		rc = proc_read_response(*fd, deadline, &close_after);
	if (rc < 0 || !keepalive || close_after) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

static void proc_note(struct proc_load *l, int idx, const char *what, int64_t now)
{
	unsigned i = atomic_fetch_add(&l->n_notes, 1);

	if (i < PROC_NOTES)
		snprintf(l->notes[i], sizeof(l->notes[i]), "loader %d at +%lld ms: %s", idx,
			 (long long)(now - l->t0_ms), what);
}

/* The loop of one loader process: GET /v1/channel with a fresh issuer each
 * time (so affinity never pins the load to one SFU) until told to stop. */
static void proc_loader_run(struct proc_load *l, int idx, int port, bool keepalive)
{
	int64_t deadline = harness_now_ms() + PROC_LOAD_MAX_MS;
	unsigned long seq = 0;
	int fd = -1;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	while (!atomic_load(&l->stop) && harness_now_ms() < deadline) {
		char iss[96], req[2048], what[128];
		int len, rc;

		snprintf(iss, sizeof(iss), "https://odoo.test:channel:%d-%lu", (int)getpid(), seq++);
		len = snprintf(req, sizeof(req),
			       "GET /v1/channel HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			       "Authorization: jwt %s\r\n%s\r\n",
			       harness_odoo_token(iss, PROC_GW_KEY),
			       keepalive ? "" : "Connection: close\r\n");
		rc = proc_exchange(&fd, port, keepalive, req, (size_t)len);
		if (rc == 200) {
			atomic_fetch_add(&l->ok, 1);
			continue;
		}
		atomic_fetch_add(&l->failed, 1);
		if (rc > 0)
			atomic_fetch_add(&l->bad_status, 1);
		else if (rc == -ECONNREFUSED)
			atomic_fetch_add(&l->refused, 1);
		else if (rc == -ECONNRESET || rc == -EPIPE)
			atomic_fetch_add(&l->reset, 1);
		else if (rc == -ENODATA)
			atomic_fetch_add(&l->eof, 1);
		else if (rc == -ETIMEDOUT)
			atomic_fetch_add(&l->timeout, 1);
		else
			atomic_fetch_add(&l->other, 1);
		if (rc > 0)
			snprintf(what, sizeof(what), "status %d", rc);
		else
			snprintf(what, sizeof(what), "%s", rc == -ENODATA ? "closed without an answer"
								: strerror(-rc));
		proc_note(l, idx, what, harness_now_ms());
	}
	if (fd >= 0)
		close(fd);
}

/* Starts PROC_LOADERS loader processes against port. */
static struct proc_load *proc_load_start(int port, enum proc_mode mode)
{
	struct proc_load *l = mmap(NULL, sizeof(*l), PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(l, MAP_FAILED);
	memset(l, 0, sizeof(*l));
	l->t0_ms = harness_now_ms();
	for (int i = 0; i < PROC_LOADERS; i++) {
		bool keepalive = mode == PROC_KEEPALIVE || (mode == PROC_MIXED && i % 2 == 1);
		pid_t pid = fork();

		cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
		if (pid == 0) {
			proc_loader_run(l, i, port, keepalive);
			_exit(0);
		}
		l->pids[i] = pid;
	}
	return l;
}

/* Waits until the load has served at least n more requests than from. */
static void proc_load_progress(struct proc_load *l, uint64_t from, uint64_t n)
{
	int64_t deadline = harness_now_ms() + 10000;

	while (atomic_load(&l->ok) < from + n && harness_now_ms() < deadline)
		poll(NULL, 0, 5);
	cr_assert_geq(atomic_load(&l->ok), from + n,
		      "the load got only %llu answers (wanted %llu more than %llu); %llu failed",
		      (unsigned long long)atomic_load(&l->ok), (unsigned long long)n,
		      (unsigned long long)from, (unsigned long long)atomic_load(&l->failed));
}

/* Stops the loaders and reaps them (SIGKILL after a deadline). */
static void proc_load_stop(struct proc_load *l)
{
	int64_t deadline = harness_now_ms() + PROC_REQUEST_TIMEOUT_MS + 2000;

	atomic_store(&l->stop, 1);
	for (int i = 0; i < PROC_LOADERS; i++) {
		while (waitpid(l->pids[i], NULL, WNOHANG) == 0) {
			if (harness_now_ms() >= deadline) {
				kill(l->pids[i], SIGKILL);
				waitpid(l->pids[i], NULL, 0);
				break;
			}
			poll(NULL, 0, 5);
		}
	}
}

/* What went wrong, for assertion messages (static buffer). */
static const char *proc_load_summary(struct proc_load *l)
{
	static char out[2048];
	size_t o;
	unsigned n = atomic_load(&l->n_notes);

	o = (size_t)snprintf(out, sizeof(out),
			     "ok=%llu failed=%llu (refused=%llu reset=%llu eof=%llu timeout=%llu "
			     "status=%llu other=%llu)",
			     (unsigned long long)atomic_load(&l->ok),
			     (unsigned long long)atomic_load(&l->failed),
			     (unsigned long long)atomic_load(&l->refused),
			     (unsigned long long)atomic_load(&l->reset),
			     (unsigned long long)atomic_load(&l->eof),
			     (unsigned long long)atomic_load(&l->timeout),
			     (unsigned long long)atomic_load(&l->bad_status),
			     (unsigned long long)atomic_load(&l->other));
	for (unsigned i = 0; i < n && i < PROC_NOTES && o < sizeof(out); i++)
		o += (size_t)snprintf(out + o, sizeof(out) - o, "; %s", l->notes[i]);
	return out;
}

static int64_t proc_load_ms(const struct proc_load *l)
{
	return harness_now_ms() - l->t0_ms;
}

/* One /v1/channel request; returns the status and, when serving_port is set,
 * checks the answer came from the mock on that port. */
static int proc_channel(const struct harness_proc *gw, int serving_port)
{
	struct harness_resp *r = harness_channel(gw->port, "/v1/channel",
						 "https://odoo.test:channel:1", PROC_GW_KEY, NULL);
	int status = r->status;

	if (status == 200 && serving_port > 0)
		cr_assert_str_eq(harness_json_str(r->body, "url"), harness_url(serving_port));
	free(r);
	return status;
}

/* ---- 1. the process tree */

Test(process, master_workers_reaper, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *m = proc_mock(PROC_KEY_ONE);
	const struct proc_sfu sfu = { m->port, PROC_KEY_ONE };
	struct harness_proc *gw = proc_gateway(proc_config(0, &sfu, 1), "3");
	pid_t workers[PROC_MAX_PIDS], reaper = 0;
	char *log;

	proc_expect_tree(gw, 3, 5000, workers, &reaper);
	log = harness_whole_log(gw);
	cr_expect_eq(harness_count(log, "started worker"), 3, "log:\n%s", log);
	cr_expect_eq(harness_count(log, "started reaper"), 1, "log:\n%s", log);
	free(log);
	/* The master serves nothing itself: the workers answer. */
	cr_assert_eq(proc_channel(gw, m->port), 200);
}

Test(process, reaper_respawned, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = proc_gateway(proc_config(0, NULL, 0), "1");
	pid_t workers[PROC_MAX_PIDS], reaper = 0, reaper2 = 0;
	int64_t deadline;
	char *log;

	proc_expect_tree(gw, 1, 5000, workers, &reaper);
	cr_assert_eq(kill(reaper, SIGKILL), 0);
	deadline = harness_now_ms() + 3000;
	do {
		poll(NULL, 0, 10);
		proc_wait_tree(gw, 1, 0, workers, &reaper2);
	} while (reaper2 == reaper && harness_now_ms() < deadline);
	cr_assert_neq(reaper2, reaper, "the reaper was not respawned");
	proc_expect_tree(gw, 1, 3000, workers, &reaper2);
	log = harness_whole_log(gw);
	cr_expect(strstr(log, "killed by signal 9") != NULL, "log:\n%s", log);
	free(log);
}

/* ---- 2 and 7. a worker killed under load */

/* Kills one of two workers under the load of the given mode; asserts it comes
 * back with a new pid, no connection is refused, at most the in-flight
 * requests fail and requests keep succeeding afterwards. */
static void proc_assert_kill_under_load(enum proc_mode mode)
{
	struct harness_proc *m = proc_mock(PROC_KEY_ONE);
	const struct proc_sfu sfu = { m->port, PROC_KEY_ONE };
	struct harness_proc *gw = proc_gateway(proc_config(0, &sfu, 1), "2");
	pid_t workers[PROC_MAX_PIDS], after[PROC_MAX_PIDS], reaper = 0, victim;
	struct proc_load *l;
	int64_t deadline, killed_at;
	bool respawned = false;

	proc_expect_tree(gw, 2, 5000, workers, &reaper);
	victim = workers[1];
	l = proc_load_start(gw->port, mode);
	proc_load_progress(l, 0, 300);
	killed_at = proc_load_ms(l);
	cr_assert_eq(kill(victim, SIGKILL), 0);
	deadline = harness_now_ms() + 3000;
	while (!respawned && harness_now_ms() < deadline) {
		poll(NULL, 0, 10);
		if (proc_wait_tree(gw, 2, 0, after, &reaper) == 2)
			respawned = after[0] != victim && after[1] != victim;
	}
	if (!respawned)
		proc_dump_log(gw);
	cr_assert(respawned, "the killed worker %d was not replaced within 3 s", (int)victim);
	proc_load_progress(l, atomic_load(&l->ok), 300);
	proc_load_stop(l);
	cr_expect_eq(atomic_load(&l->refused), 0, "killed at +%lld ms: %s", (long long)killed_at,
		     proc_load_summary(l));
	cr_expect_leq(atomic_load(&l->failed), PROC_LOADERS, "killed at +%lld ms: %s",
		      (long long)killed_at, proc_load_summary(l));
}

Test(process, worker_killed_keepalive_load, .fini = harness_cleanup, .timeout = 40)
{
	proc_assert_kill_under_load(PROC_MIXED);
}

Test(process, worker_killed_new_connection_load, .fini = harness_cleanup, .timeout = 40)
{
	proc_assert_kill_under_load(PROC_NEW_CONN);
}

/* ---- 3. SIGHUP adding an SFU under load */

Test(process, reload_adds_sfu_under_load, .fini = harness_cleanup, .timeout = 40)
{
	struct harness_proc *a = proc_mock(PROC_KEY_ONE), *b = proc_mock(PROC_KEY_TWO);
	const struct proc_sfu both[] = { { a->port, PROC_KEY_ONE }, { b->port, PROC_KEY_TWO } };
	struct harness_proc *gw = proc_gateway(proc_config(0, both, 1), "2");
	struct proc_load *l = proc_load_start(gw->port, PROC_MIXED);
	int64_t reloaded, deadline;
	long long served_b = 0;

	proc_load_progress(l, 0, 300);
	cr_assert_eq(proc_mock_stat(b, "channel_requests"), 0);
	proc_config(0, both, 2);
	cr_assert_eq(proc_reload(gw), 1, "the reload did not happen");
	reloaded = harness_now_ms();
	/* Keep loading a second at least, and until the new SFU served. */
	deadline = reloaded + 8000;
	while (harness_now_ms() < deadline) {
		served_b = proc_mock_stat(b, "channel_requests");
		if (served_b > 0 && harness_now_ms() - reloaded >= 1000)
			break;
		poll(NULL, 0, 20);
	}
	proc_load_progress(l, atomic_load(&l->ok), 100);
	proc_load_stop(l);
	cr_expect_eq(atomic_load(&l->failed), 0, "%s", proc_load_summary(l));
	cr_expect_gt(served_b, 0, "the added SFU served no channel: %s", proc_load_summary(l));
	cr_expect_eq(proc_mock_stat(b, "failed"), 0);
}

/* ---- 4. SIGHUP with a broken file */

Test(process, reload_broken_file_keeps_config, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *a = proc_mock(PROC_KEY_ONE), *b = proc_mock(PROC_KEY_TWO);
	const struct proc_sfu sfu = { a->port, PROC_KEY_ONE };
	const char *path = proc_config(0, &sfu, 1);
	struct harness_proc *gw = proc_gateway(path, "2");
	pid_t workers[PROC_MAX_PIDS], reaper = 0;
	char text[1024], needle[600], *log, *failed;
	const char *tmp;

	cr_assert_eq(proc_channel(gw, a->port), 200);
	/* Only B, and a table header without its closing bracket on line 4. */
	snprintf(text, sizeof(text),
		 "# broken on purpose\n[circuit_breaker]\nfailure_threshold = 1000\n"
		 "[[sfu]\naddress = \"http://127.0.0.1:%d\"\nregion = \"eu-west\"\n"
		 "key = \"%s\"\n",
		 b->port, PROC_KEY_TWO);
	tmp = harness_write_file("gw.toml.new", text);
	cr_assert_eq(rename(tmp, path), 0);
	cr_assert_eq(proc_reload(gw), 0, "the broken file was not reported");
	log = harness_whole_log(gw);
	failed = strstr(log, "reload failed");
	cr_assert_not_null(failed);
	snprintf(needle, sizeof(needle), "%s:4", path);
	cr_expect(strstr(failed, needle) != NULL, "the failure does not name %s:\n%s", needle,
		  failed);
	free(log);
	/* Still the old config: every request goes to A and succeeds. */
	proc_expect_tree(gw, 2, 2000, workers, &reaper);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(proc_channel(gw, a->port), 200, "request %d after the reload", i);
	cr_expect_eq(proc_mock_stat(b, "channel_requests"), 0);
}

/* ---- 5. SIGHUP re-keying a static SFU */

Test(process, reload_rekeys_static_sfu, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *a = proc_mock(PROC_KEY_ONE);
	const struct proc_sfu right = { a->port, PROC_KEY_ONE }, wrong = { a->port, PROC_KEY_TWO };
	struct harness_proc *gw = proc_gateway(proc_config(0, &right, 1), "2");
	long long failed;
	int status;

	cr_assert_eq(proc_channel(gw, a->port), 200);
	failed = proc_mock_stat(a, "failed");
	/* A key A does not have: A rejects the re-signed token, so no 200. */
	proc_config(0, &wrong, 1);
	cr_assert_eq(proc_reload(gw), 1);
	status = proc_channel(gw, 0);
	cr_expect_neq(status, 200, "the old key is still in use");
	cr_expect_gt(proc_mock_stat(a, "failed"), failed, "A did not see the wrongly signed token");
	/* And back: the right key works again at once. */
	proc_config(0, &right, 1);
	cr_assert_eq(proc_reload(gw), 1);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(proc_channel(gw, a->port), 200, "request %d after re-keying back", i);
}

/* ---- 6. worker-count changes under new-connection load */

Test(process, reload_resizes_workers_without_refusing, .fini = harness_cleanup, .timeout = 50)
{
	static const unsigned steps[] = { 3, 1, 2 };
	struct harness_proc *m = proc_mock(PROC_KEY_ONE);
	const struct proc_sfu sfu = { m->port, PROC_KEY_ONE };
	struct harness_proc *gw = proc_gateway(proc_config(2, &sfu, 1), NULL);
	pid_t workers[PROC_MAX_PIDS], reaper = 0;
	struct proc_load *l;
	char marks[256] = "";
	size_t o = 0;

	proc_expect_tree(gw, 2, 5000, workers, &reaper);
	l = proc_load_start(gw->port, PROC_NEW_CONN);
	proc_load_progress(l, 0, 300);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		o += (size_t)snprintf(marks + o, sizeof(marks) - o, " %u at +%lld ms;", steps[i],
				      (long long)proc_load_ms(l));
		proc_config(steps[i], &sfu, 1);
		cr_assert_eq(proc_reload(gw), 1, "reload to %u workers", steps[i]);
		proc_expect_tree(gw, (int)steps[i], 5000, workers, &reaper);
		proc_load_progress(l, atomic_load(&l->ok), 300);
	}
	proc_load_stop(l);
	if (atomic_load(&l->failed) != 0)
		proc_dump_log(gw);
	cr_expect_eq(atomic_load(&l->failed), 0, "resized to%s %s", marks, proc_load_summary(l));
	proc_expect_clean_log(gw);
}

/*
 * A reload that comes while workers of the previous one are still retiring
 * (here: 2 -> 1, then at once 1 -> 2, inside the 250 ms a retiring worker
 * keeps accepting) must not refuse or reset connections either.
 */
Test(process, reload_during_retirement_without_refusing, .fini = harness_cleanup, .timeout = 50)
{
	struct harness_proc *m = proc_mock(PROC_KEY_ONE);
	const struct proc_sfu sfu = { m->port, PROC_KEY_ONE };
	struct harness_proc *gw = proc_gateway(proc_config(2, &sfu, 1), NULL);
	pid_t workers[PROC_MAX_PIDS], reaper = 0;
	struct proc_load *l;
	int64_t t1, t2;

	proc_expect_tree(gw, 2, 5000, workers, &reaper);
	l = proc_load_start(gw->port, PROC_NEW_CONN);
	proc_load_progress(l, 0, 300);
	t1 = proc_load_ms(l);
	proc_config(1, &sfu, 1);
	cr_assert_eq(proc_reload(gw), 1);
	t2 = proc_load_ms(l);
	proc_config(2, &sfu, 1);
	cr_assert_eq(proc_reload(gw), 1);
	proc_expect_tree(gw, 2, 5000, workers, &reaper);
	proc_load_progress(l, atomic_load(&l->ok), 1000);
	proc_load_stop(l);
	if (atomic_load(&l->failed) != 0)
		proc_dump_log(gw);
	cr_expect_eq(atomic_load(&l->failed), 0, "1 worker at +%lld ms, 2 at +%lld ms: %s",
		     (long long)t1, (long long)t2, proc_load_summary(l));
	proc_expect_clean_log(gw);
}

/*
 * The drain a retiring worker goes through: SIGTERM while a request waits on
 * a slow SFU. The request is answered, and the worker then exits cleanly
 * (status 0, no assertion of libuv), and the master starts a new one.
 */
Test(process, stopped_worker_finishes_in_flight_request, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const slow[] = { "--delay-ms", "500", NULL };
	struct harness_proc *m = harness_mock_start(PROC_KEY_ONE, slow);
	const struct proc_sfu sfu = { m ? m->port : 0, PROC_KEY_ONE };
	struct harness_proc *gw;
	pid_t workers[PROC_MAX_PIDS], after[PROC_MAX_PIDS], reaper = 0, victim;
	char req[2048], needle[64], *log;
	bool close_after = false, replaced = false;
	int fd, len, status;
	int64_t deadline;

	cr_assert_not_null(m);
	gw = proc_gateway(proc_config(0, &sfu, 1), "1");
	proc_expect_tree(gw, 1, 5000, workers, &reaper);
	victim = workers[0];
	fd = proc_connect(gw->port, harness_now_ms() + 2000);
	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	len = snprintf(req, sizeof(req),
		       "GET /v1/channel HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: jwt %s\r\n"
		       "Connection: close\r\n\r\n",
		       harness_odoo_token("https://odoo.test:channel:7", PROC_GW_KEY));
	cr_assert_eq(send(fd, req, (size_t)len, MSG_NOSIGNAL), len);
	/* Stop the worker once the request waits at the SFU. */
	deadline = harness_now_ms() + 3000;
	while (proc_mock_stat(m, "channel_requests") < 1 && harness_now_ms() < deadline)
		poll(NULL, 0, 10);
	cr_assert_eq(proc_mock_stat(m, "channel_requests"), 1);
	cr_assert_eq(kill(victim, SIGTERM), 0);
	status = proc_read_response(fd, harness_now_ms() + 5000, &close_after);
	close(fd);
	cr_expect_eq(status, 200, "the in-flight request got %d (%s)", status,
		     status < 0 ? strerror(-status) : "status");
	deadline = harness_now_ms() + 5000;
	while (!replaced && harness_now_ms() < deadline) {
		poll(NULL, 0, 10);
		replaced = proc_wait_tree(gw, 1, 0, after, &reaper) == 1 && after[0] != victim;
	}
	cr_expect(replaced, "the stopped worker was not replaced");
	log = harness_whole_log(gw);
	snprintf(needle, sizeof(needle), "worker pid=%d exited with 0", (int)victim);
	cr_expect(strstr(log, needle) != NULL, "no \"%s\" in the log:\n%s", needle, log);
	free(log);
	proc_expect_clean_log(gw);
}

/*
 * A request still arriving when a worker stops is in flight too: the client
 * sent half of it before the SIGTERM and the rest after the worker stopped
 * accepting. The worker must wait for it and answer, not close the
 * connection as if it were an idle keep-alive one.
 */
Test(process, stopped_worker_finishes_request_still_arriving, .fini = harness_cleanup,
     .timeout = 30)
{
	struct harness_proc *m = proc_mock(PROC_KEY_ONE);
	const struct proc_sfu sfu = { m->port, PROC_KEY_ONE };
	struct harness_proc *gw = proc_gateway(proc_config(0, &sfu, 1), "1");
	pid_t workers[PROC_MAX_PIDS], reaper = 0;
	char req[2048];
	bool close_after = false;
	int fd, len, half, status;
	struct pollfd pf;

	proc_expect_tree(gw, 1, 5000, workers, &reaper);
	len = snprintf(req, sizeof(req),
		       "GET /v1/channel HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: jwt %s\r\n"
		       "Connection: close\r\n\r\n",
		       harness_odoo_token("https://odoo.test:channel:8", PROC_GW_KEY));
	half = len / 2;
	/* Accepted now or while it lingers, the connection is the worker's when it drains. */
	fd = proc_connect(gw->port, harness_now_ms() + 2000);
	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	cr_assert_eq(send(fd, req, (size_t)half, MSG_NOSIGNAL), half);
	cr_assert_eq(kill(workers[0], SIGTERM), 0);
	/* Four times the 250 ms the worker keeps accepting: by then it drains. A
	 * connection it closes turns readable (EOF) here. */
	pf = (struct pollfd){ fd, POLLIN, 0 };
	cr_expect_eq(poll(&pf, 1, 1000), 0, "the worker closed a connection whose request was "
		     "arriving");
	cr_assert_eq(send(fd, req + half, (size_t)(len - half), MSG_NOSIGNAL), len - half,
		     "send: %s", strerror(errno));
	status = proc_read_response(fd, harness_now_ms() + 5000, &close_after);
	close(fd);
	cr_expect_eq(status, 200, "the request got %d (%s)", status,
		     status < 0 ? strerror(-status) : "status");
}

#define PROC_STALL_REQUESTS 12
#define PROC_STALL_MS 3000 /* longer than an attempt (800 ms) and a request (2500 ms) */

/*
 * A worker stopped (SIGSTOP) while its requests wait on a slow but healthy
 * SFU: the SFU answers meanwhile, and when the worker resumes its expired
 * timers must not count as the SFU's failures. Every request gets the SFU's
 * answer, no failure is charged, the circuit stays closed (the default
 * threshold is 5, far below the requests stalled), and the next request is
 * served too.
 */
Test(process, stopped_worker_blames_no_sfu, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const slow[] = { "--delay-ms", "300", NULL };
	struct harness_proc *m = harness_mock_start(PROC_KEY_ONE, slow), *gw;
	const char *env[] = { "SFU_GATEWAY_KEY=" PROC_GW_KEY, NULL };
	const char *args[] = { "--config", NULL, NULL };
	pid_t workers[PROC_MAX_PIDS], reaper = 0;
	int fds[PROC_STALL_REQUESTS], ok = 0;
	char text[512], statuses[PROC_STALL_REQUESTS * 8] = "";
	struct json_object *sfu;
	int64_t deadline, resume;

	cr_assert_not_null(m);
	snprintf(text, sizeof(text),
		 "[gateway]\nworkers = 1\n\n[[sfu]]\naddress = \"http://127.0.0.1:%d\"\n"
		 "region = \"eu-west\"\nkey = \"%s\"\n",
		 m->port, PROC_KEY_ONE);
	args[1] = harness_write_file("gw.toml", text);
	gw = harness_gateway_up(env, args);
	proc_expect_tree(gw, 1, 5000, workers, &reaper);
	for (int i = 0; i < PROC_STALL_REQUESTS; i++) {
		char iss[64], req[2048];
		int len;

		snprintf(iss, sizeof(iss), "https://odoo.test:channel:stall-%d", i);
		len = snprintf(req, sizeof(req),
			       "GET /v1/channel HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			       "Authorization: jwt %s\r\nConnection: close\r\n\r\n",
			       harness_odoo_token(iss, PROC_GW_KEY));
		fds[i] = proc_connect(gw->port, harness_now_ms() + 2000);
		cr_assert_geq(fds[i], 0, "connect: %s", strerror(-fds[i]));
		cr_assert_eq(send(fds[i], req, (size_t)len, MSG_NOSIGNAL), len);
	}
	/* Stop the worker once every request waits at the SFU (which answers 300 ms later). */
	deadline = harness_now_ms() + 5000;
	while (proc_mock_stat(m, "channel_requests") < PROC_STALL_REQUESTS &&
	       harness_now_ms() < deadline)
		poll(NULL, 0, 5);
	cr_assert_eq(kill(workers[0], SIGSTOP), 0);
	cr_assert_eq(proc_mock_stat(m, "channel_requests"), PROC_STALL_REQUESTS);
	/* The stop itself is the scenario: it outlasts every timer of the requests. */
	resume = harness_now_ms() + PROC_STALL_MS;
	while (harness_now_ms() < resume)
		poll(NULL, 0, (int)(resume - harness_now_ms()));
	cr_assert_eq(kill(workers[0], SIGCONT), 0);

	for (int i = 0; i < PROC_STALL_REQUESTS; i++) {
		bool close_after = false;
		int status = proc_read_response(fds[i], harness_now_ms() + 5000, &close_after);
		size_t o = strlen(statuses);

		close(fds[i]);
		snprintf(statuses + o, sizeof(statuses) - o, " %d", status);
		ok += status == 200;
	}
	cr_expect_eq(ok, PROC_STALL_REQUESTS, "answers after the stop:%s", statuses);
	sfu = harness_health_sfu(gw->port, harness_url(m->port), NULL);
	cr_assert_not_null(sfu);
	{
		struct json_object *cb, *req;

		cr_assert(json_object_object_get_ex(sfu, "circuit", &cb));
		cr_assert(json_object_object_get_ex(sfu, "requests", &req));
		cr_expect_str_eq(json_object_get_string(json_object_object_get(cb, "state")), "closed",
				 "%s", json_object_to_json_string(sfu));
		cr_expect_eq(harness_json_int(cb, "failures"), 0, "%s",
			     json_object_to_json_string(sfu));
		cr_expect_eq(harness_json_int(req, "failed"), 0, "%s",
			     json_object_to_json_string(sfu));
	}
	json_object_put(sfu);
	cr_expect_eq(harness_metric(gw->port, "sfu_gateway_upstream_failures_total"), 0);
	cr_expect_eq(proc_channel(gw, m->port), 200, "the SFU is not served after the stop");
	proc_expect_clean_log(gw);
}

/* ---- 8. accept balance */

Test(process, accept_balance, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = proc_gateway(proc_config(0, NULL, 0), "4");
	struct harness_resp *r = calloc(1, sizeof(*r));
	unsigned long long per[4] = { 0 }, sum = 0, max = 0, min = ~0ULL;
	const char *p;

	cr_assert_not_null(r);
	for (int i = 0; i < 400; i++) {
		cr_assert_eq(harness_get(gw->port, "/noop", NULL, r), 0);
		cr_assert_eq(r->status, 200);
	}
	cr_assert_eq(harness_get(gw->port, "/metrics", NULL, r), 0);
	cr_assert_eq(r->status, 200);
	for (unsigned w = 0; w < 4; w++) {
		char needle[64];

		snprintf(needle, sizeof(needle), "sfu_gateway_connections_total{worker=\"%u\"} ", w);
		p = strstr(r->body, needle);
		cr_assert_not_null(p, "no %s in /metrics", needle);
		per[w] = strtoull(p + strlen(needle), NULL, 10);
		sum += per[w];
		max = per[w] > max ? per[w] : max;
		min = per[w] < min ? per[w] : min;
	}
	cr_assert_null(strstr(r->body, "sfu_gateway_connections_total{worker=\"4\"}"));
	free(r);
	/* 400 plus the scrape and the start-up probes. */
	cr_assert_geq(sum, 401);
	cr_expect_leq(max * 4, 2 * sum, "per worker %llu %llu %llu %llu", per[0], per[1], per[2],
		      per[3]);
	cr_expect_geq(min * 4 * 2, sum, "per worker %llu %llu %llu %llu", per[0], per[1], per[2],
		      per[3]);
}
