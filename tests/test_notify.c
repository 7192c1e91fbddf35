/* The service manager's side of NOTIFY_SOCKET: READY=1 once serving, RELOADING/READY around a reload, MAINPID on upgrade. */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define NT_GW_KEY "bm90aWZ5LXRlc3QtZ2F0ZXdheS1rZXktMDEyMzQ1Njc4OWFiY2RlZg=="

static pid_t nt_new_master;

static void nt_fini(void)
{
	if (nt_new_master > 0) {
		kill(nt_new_master, SIGKILL);
		waitpid(nt_new_master, NULL, 0);
		nt_new_master = 0;
	}
	harness_cleanup();
}

TestSuite(notify, .fini = nt_fini);

/* One datagram and who sent it. */
struct nt_msg {
	char text[1024];
	pid_t sender;
};

/* Binds the service manager's socket: a path, or an abstract name for "@..." ;
 * SO_PASSCRED gives each message's sender, as systemd checks NotifyAccess. */
static int nt_listen(const char *name)
{
	struct sockaddr_un sa;
	socklen_t sl;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1;

	cr_assert_geq(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", name);
	sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
	if (name[0] == '@')
		sa.sun_path[0] = '\0';
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sl), 0, "bind %s: %s", name, strerror(errno));
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
	return fd;
}

/* The next message within timeout_ms; false when none came. */
static bool nt_recv(int fd, struct nt_msg *m, int timeout_ms)
{
	struct pollfd pf = { fd, POLLIN, 0 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(struct ucred))];
	} ctl;
	struct iovec iov = { m->text, sizeof(m->text) - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	ssize_t n;

	if (poll(&pf, 1, timeout_ms) <= 0)
		return false;
	n = recvmsg(fd, &mh, 0);
	cr_assert_geq(n, 0, "recvmsg: %s", strerror(errno));
	m->text[n] = '\0';
	m->sender = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred uc;

			memcpy(&uc, CMSG_DATA(c), sizeof(uc));
			m->sender = uc.pid;
		}
	return true;
}

/* Messages until one holds needle (which is returned), within timeout_ms; the
 * ones before it must not hold never (NULL: anything goes). */
static void nt_expect(int fd, const char *needle, const char *never, struct nt_msg *m,
		      int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	for (;;) {
		int64_t left = deadline - harness_now_ms();

		cr_assert(left > 0 && nt_recv(fd, m, (int)left), "no \"%s\" within %d ms", needle,
			  timeout_ms);
		if (strstr(m->text, needle) != NULL)
			return;
		cr_assert(never == NULL || strstr(m->text, never) == NULL,
			  "\"%s\" came before \"%s\": %s", never, needle, m->text);
	}
}

static int64_t nt_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Starts the gateway with NOTIFY_SOCKET=name without waiting for it. */
static struct harness_proc *nt_start(const char *name, const char *pid_file)
{
	char var[256];
	const char *env[] = { "SFU_GATEWAY_KEY=" NT_GW_KEY, var, NULL };
	const char *args[] = { "--workers", "2", "--bind", "127.0.0.1", "--pid-file", pid_file, NULL };
	struct harness_proc *p = NULL;

	snprintf(var, sizeof(var), "NOTIFY_SOCKET=%s", name);
	/* --port is picked by the harness only without --bind: pick it here. */
	{
		static char port[16];
		static const char *with_port[10];
		int n = 0;

		snprintf(port, sizeof(port), "%d", harness_free_port());
		for (int i = 0; args[i] != NULL; i++)
			with_port[n++] = args[i];
		with_port[n++] = "--port";
		with_port[n++] = port;
		with_port[n] = NULL;
		cr_assert_eq(harness_gateway_run(env, with_port, 1, &p), -1,
			     "the gateway exited at once: %s", p ? harness_log(p) : "");
	}
	cr_assert_not_null(p);
	return p;
}

Test(notify, ready_once_serving_and_around_a_reload, .timeout = 60)
{
	char path[300], pid_file[300];
	struct nt_msg m;
	struct harness_resp *r;
	struct harness_proc *gw;
	int fd, rc;
	long long usec;
	int64_t before, after;

	snprintf(path, sizeof(path), "%s/notify.sock", harness_tmpdir());
	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", harness_tmpdir());
	fd = nt_listen(path);
	gw = nt_start(path, pid_file);

	/* READY=1 comes once the workers accept, from the master itself. */
	nt_expect(fd, "READY=1", NULL, &m, 15000);
	r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	rc = harness_get(gw->port, "/noop", NULL, r);
	cr_assert(rc == 0 && r->status == 200, "READY=1 came, but /noop answers %d (rc %d)",
		  r->status, rc);
	free(r);
	cr_assert_eq(m.sender, gw->pid, "READY=1 came from pid %d, not the master", (int)m.sender);
	cr_assert_not_null(strstr(m.text, "STATUS=serving on 127.0.0.1 port"), "%s", m.text);
	cr_assert_not_null(strstr(m.text, "with 2 workers"), "%s", m.text);

	/* A reload: RELOADING=1 with the monotonic time of the reload, then READY=1. */
	before = nt_monotonic_us();
	cr_assert_eq(kill(gw->pid, SIGHUP), 0);
	nt_expect(fd, "RELOADING=1", "READY=1", &m, 10000);
	after = nt_monotonic_us();
	cr_assert_not_null(strstr(m.text, "MONOTONIC_USEC="), "%s", m.text);
	cr_assert_eq(sscanf(strstr(m.text, "MONOTONIC_USEC="), "MONOTONIC_USEC=%lld", &usec), 1);
	cr_assert(usec >= before && usec <= after, "MONOTONIC_USEC=%lld outside [%lld, %lld]", usec,
		  (long long)before, (long long)after);
	nt_expect(fd, "READY=1", "RELOADING=1", &m, 10000);
	cr_assert_eq(m.sender, gw->pid);

	/* A stop says so. */
	cr_assert_eq(kill(gw->pid, SIGTERM), 0);
	nt_expect(fd, "STOPPING=1", "READY=1", &m, 10000);
	cr_assert_eq(harness_stop(gw, SIGTERM, 15000) >= 0, 1);
	close(fd);
}

Test(notify, abstract_socket_and_mainpid_on_upgrade, .timeout = 60)
{
	char name[108], pid_file[300];
	struct nt_msg m;
	struct harness_proc *gw;
	pid_t old;
	int fd, new_pid = 0;

	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	snprintf(name, sizeof(name), "@sfu-gateway-notify-test-%d-%lld", (int)getpid(),
		 (long long)harness_now_ms());
	snprintf(pid_file, sizeof(pid_file), "%s/gw.pid", harness_tmpdir());
	fd = nt_listen(name);
	gw = nt_start(name, pid_file);
	old = gw->pid;
	nt_expect(fd, "READY=1", NULL, &m, 15000);

	/* The old master names the new one the main process once it serves. */
	cr_assert_eq(kill(old, SIGUSR2), 0);
	nt_expect(fd, "MAINPID=", "STOPPING=1", &m, 15000);
	cr_assert_eq(m.sender, old, "MAINPID must come from the main process (NotifyAccess=main)");
	cr_assert_eq(sscanf(strstr(m.text, "MAINPID="), "MAINPID=%d", &new_pid), 1);
	nt_new_master = new_pid;
	cr_assert_eq(harness_wait_exit(old, 20000), 0, "%s", harness_log(gw));
	gw->pid = 0;
	{
		FILE *f = fopen(pid_file, "r");
		int in_file = 0;

		cr_assert_not_null(f);
		cr_assert_eq(fscanf(f, "%d", &in_file), 1);
		fclose(f);
		cr_assert_eq(in_file, new_pid, "the pid file and MAINPID disagree");
	}
	/* The new main process reloads as the old one did. */
	cr_assert_eq(kill(new_pid, SIGHUP), 0);
	nt_expect(fd, "RELOADING=1", NULL, &m, 10000);
	cr_assert_eq(m.sender, new_pid);
	nt_expect(fd, "READY=1", NULL, &m, 10000);
	cr_assert_eq(m.sender, new_pid);
	cr_assert_eq(kill(new_pid, SIGTERM), 0);
	cr_assert_eq(harness_wait_exit(new_pid, 20000), 0);
	nt_new_master = 0;
	close(fd);
}
