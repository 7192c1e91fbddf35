/* Connection cap: the open-file limit raised, max_connections, EMFILE without failing clients. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* base64 of "conncap-test-gateway-key-0123456789abcdef" */
#define CAP_KEY_ENV "SFU_GATEWAY_KEY=Y29ubmNhcC10ZXN0LWdhdGV3YXkta2V5LTAxMjM0NTY3ODlhYmNkZWY="
#define CAP_CLIENTS 24

static const char *const cap_env[] = { CAP_KEY_ENV, NULL };

/* A blocking connection to 127.0.0.1:port (the kernel completes it from the listen
 * queue even while the worker does not accept). */
static int cap_connect(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

static void cap_send_noop(int fd)
{
	static const char req[] = "GET /noop HTTP/1.1\r\nHost: t\r\n\r\n";

	cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
}

/* One connection's answer so far. */
struct cap_conn {
	int fd;
	char buf[4096];
	size_t len;
	int status; /* 0 while incomplete */
	bool eof; /* closed before a whole answer */
};

/* Reads what is there without blocking; sets status once a whole answer came. */
static void cap_poll(struct cap_conn *c, int timeout_ms)
{
	struct pollfd pf = { c->fd, POLLIN, 0 };
	const char *end, *cl;
	ssize_t n;

	if (c->status != 0 || c->eof || poll(&pf, 1, timeout_ms) <= 0)
		return;
	n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	if (n <= 0) {
		c->eof = true;
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	end = strstr(c->buf, "\r\n\r\n");
	cl = strcasestr(c->buf, "\r\nContent-Length:");
	if (end != NULL && cl != NULL &&
	    c->len >= (size_t)(end + 4 - c->buf) + (size_t)atoi(cl + 17))
		c->status = atoi(c->buf + 9);
}

static void cap_close(struct cap_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* "Max open files" soft and hard limits of pid from /proc. */
static void cap_limits(pid_t pid, unsigned long long *soft, unsigned long long *hard)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	*soft = *hard = 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "Max open files", 14) == 0)
			sscanf(line + 14, "%llu %llu", soft, hard);
	fclose(f);
}

/* The pid of the first worker the master's log names ("started worker pid=N"). */
static pid_t cap_worker(const struct harness_proc *gw)
{
	int64_t deadline = harness_now_ms() + 5000;
	const char *p;

	while ((p = strstr(harness_log(gw), "started worker pid=")) == NULL &&
	       harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_not_null(p, "no worker in the log:\n%s", harness_log(gw));
	return (pid_t)atoi(p + strlen("started worker pid="));
}

/* The highest descriptor pid has open. */
static int cap_max_fd(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int max = -1;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && atoi(e->d_name) > max)
			max = atoi(e->d_name);
	closedir(d);
	return max;
}

/* Valgrind keeps descriptors of its own at the top of the open-file limit and
 * shows the program a lower one it may not raise: a test of the daemon's own
 * limits runs it natively even in the valgrind suite (each test is a process
 * of its own, so the others still run under valgrind). */
static void cap_native(void)
{
	unsetenv("SFU_TEST_VALGRIND");
}

Test(conncap, open_file_limit_raised_to_hard_limit, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const args[] = { "--workers", "1", NULL };
	unsigned long long soft, hard;
	struct harness_proc *gw;
	struct rlimit rl;
	char want[128];

	cap_native();
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	cr_assert_gt(rl.rlim_max, 128, "a hard limit of %llu leaves nothing to raise",
		     (unsigned long long)rl.rlim_max);
	/* The gateway inherits a low soft limit, as from a default login. */
	rl.rlim_cur = 128;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	gw = harness_gateway_up(cap_env, args);
	cap_limits(gw->pid, &soft, &hard);
	cr_assert_eq(soft, (unsigned long long)rl.rlim_max, "master: soft limit %llu, hard %llu",
		     soft, hard);
	cap_limits(cap_worker(gw), &soft, &hard);
	cr_assert_eq(soft, (unsigned long long)rl.rlim_max, "worker: soft limit %llu", soft);
	snprintf(want, sizeof(want), "open-file limit raised from 128 to %llu",
		 (unsigned long long)rl.rlim_max);
	cr_assert_not_null(strstr(harness_log(gw), want), "no '%s' in:\n%s", want,
			   harness_log(gw));
}

/*
 * At max_connections a worker stops accepting: the next client waits in the listen
 * queue (it gets neither an answer nor an end-of-file) and is served as soon as a
 * connection closes.
 */
Test(conncap, waits_at_max_connections, .fini = harness_cleanup, .timeout = 40)
{
	const char *config = harness_write_file("cap.toml", "[gateway]\nmax_connections = 4\n");
	const char *args[] = { "--workers", "1", "--config", config, NULL };
	struct cap_conn c[5];
	struct harness_proc *gw = harness_gateway_up(cap_env, args);
	int64_t deadline;

	cr_assert_not_null(strstr(harness_log(gw), "max_connections 4 per worker"), "%s",
			   harness_log(gw));
	memset(c, 0, sizeof(c));
	for (int i = 0; i < 4; i++) {
		c[i].fd = cap_connect(gw->port);
		cap_send_noop(c[i].fd);
		deadline = harness_now_ms() + 5000;
		while (c[i].status == 0 && !c[i].eof && harness_now_ms() < deadline)
			cap_poll(&c[i], 50);
		cr_assert_eq(c[i].status, 200, "connection %d: %s", i, c[i].buf);
	}
	/* Four keep-alive connections are open: the fifth waits. */
	c[4].fd = cap_connect(gw->port);
	cap_send_noop(c[4].fd);
	deadline = harness_now_ms() + 500;
	while (c[4].status == 0 && !c[4].eof && harness_now_ms() < deadline)
		cap_poll(&c[4], 50);
	cr_assert_eq(c[4].status, 0, "a fifth connection was served at max_connections 4");
	cr_assert_not(c[4].eof, "a fifth connection was closed rather than left waiting");
	cap_close(&c[0]);
	deadline = harness_now_ms() + 5000;
	while (c[4].status == 0 && !c[4].eof && harness_now_ms() < deadline)
		cap_poll(&c[4], 50);
	cr_assert_eq(c[4].status, 200, "the waiting connection was not served once one closed: "
		     "%s", c[4].buf);
	for (int i = 1; i < 5; i++)
		cap_close(&c[i]);
	deadline = harness_now_ms() + 5000;
	while (harness_metric(gw->port, "sfu_gateway_accept_paused_total{reason=\"cap\"}") < 1 &&
	       harness_now_ms() < deadline)
		poll(NULL, 0, 50);
	cr_assert_geq(harness_metric(gw->port, "sfu_gateway_accept_paused_total{reason=\"cap\"}"),
		      1);
	cr_assert_not_null(strstr(harness_log(gw), "at max_connections (4 open)"), "%s",
			   harness_log(gw));
}

/*
 * A worker out of file descriptors (EMFILE) stops accepting instead of failing
 * clients: every client is answered once descriptors free up, none gets an
 * end-of-file. The worker's limit is lowered from outside, below what its
 * max_connections default assumed, so that the cap does not come first.
 */
Test(conncap, waits_when_out_of_descriptors, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const args[] = { "--workers", "1", NULL };
	struct harness_proc *gw;
	pid_t worker;
	struct cap_conn c[CAP_CLIENTS];
	struct rlimit rl;
	int answered = 0, first = 0;
	int64_t deadline;

	cap_native();
	gw = harness_gateway_up(cap_env, args);
	worker = cap_worker(gw);
	/* Room for about four connections above what the worker holds. */
	rl.rlim_cur = rl.rlim_max = (rlim_t)cap_max_fd(worker) + 5;
	cr_assert_eq(prlimit(worker, RLIMIT_NOFILE, &rl, NULL), 0, "prlimit: %s",
		     strerror(errno));
	memset(c, 0, sizeof(c));
	for (int i = 0; i < CAP_CLIENTS; i++) {
		c[i].fd = cap_connect(gw->port);
		cap_send_noop(c[i].fd);
	}
	/* Those the worker could take are answered; none is closed unanswered. */
	deadline = harness_now_ms() + 1000;
	while (harness_now_ms() < deadline)
		for (int i = 0; i < CAP_CLIENTS; i++)
			cap_poll(&c[i], 0);
	for (int i = 0; i < CAP_CLIENTS; i++) {
		cr_assert_not(c[i].eof, "client %d got an end-of-file without an answer", i);
		first += c[i].status == 200;
	}
	cr_assert_lt(first, CAP_CLIENTS, "the lowered limit did not bite (%d answered)", first);
	/* Each connection closed lets the worker take another. */
	deadline = harness_now_ms() + 20000;
	while (answered < CAP_CLIENTS && harness_now_ms() < deadline) {
		answered = 0;
		for (int i = 0; i < CAP_CLIENTS; i++) {
			cap_poll(&c[i], 0);
			cr_assert_not(c[i].eof, "client %d: an end-of-file without an answer", i);
			if (c[i].status == 200) {
				answered++;
				cap_close(&c[i]);
			}
		}
		poll(NULL, 0, 10);
	}
	cr_assert_eq(answered, CAP_CLIENTS, "%d of %d clients answered", answered, CAP_CLIENTS);
	cr_assert_geq(harness_metric(gw->port,
				     "sfu_gateway_accept_paused_total{reason=\"emfile\"}"), 1);
	cr_assert_not_null(strstr(harness_log(gw), "Too many open files"), "%s", harness_log(gw));
}
