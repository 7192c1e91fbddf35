/* Binary upgrade (SIGUSR2): the handover under load, failed and refused upgrades, the lease, the layout check. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "harness.h"
#include "instance.h"
#include "lease.h"
#include "shm.h"
#include "upgrade.h"

#define UP_GW_KEY "dXBncmFkZS10ZXN0LWdhdGV3YXkta2V5LTAxMjM0NTY3ODlhYmNkZWY="
#define UP_SFU_KEY "dXBncmFkZS10ZXN0LXNmdS1rZXktMDEyMzQ1Njc4OWFiY2RlZmdoaWo="
#define UP_LOADERS 4 /* processes sending requests during the upgrade */
#define UP_LOAD_MAX_MS 30000 /* a loader stops by itself after this long */

/* ---- units: the lease, the variable, the segment check */

Test(lease, one_holder_renews_and_an_expired_one_is_taken_over)
{
	struct lease l;

	memset(&l, 0, sizeof(l));
	cr_assert(lease_hold(&l, 100, 1000, 2000), "a free lease is taken");
	cr_assert_not(lease_hold(&l, 200, 1500, 2000), "a live holder keeps it");
	cr_assert(lease_hold(&l, 100, 2500, 2000), "the holder renews it");
	cr_assert_not(lease_hold(&l, 200, 4500, 2000), "renewed at 2500: still live at 4500");
	cr_assert(lease_hold(&l, 200, 4501, 2000), "not renewed for more than the ttl: taken");
	cr_assert_eq(lease_holder(&l), 200);
	cr_assert_not(lease_hold(&l, 100, 4600, 2000), "the old holder learns it lost the lease");
	lease_release(&l, 100);
	cr_assert_eq(lease_holder(&l), 200, "only the holder releases it");
	lease_release(&l, 200);
	cr_assert_eq(lease_holder(&l), 0);
	cr_assert(lease_hold(&l, 100, 4700, 2000), "a released lease is free at once");
}

Test(upgrade_env, encodes_and_decodes_every_descriptor)
{
	struct upgrade_fds u, v;
	char text[512];

	memset(&u, 0, sizeof(u));
	u.old_master = 4242;
	u.ready = 9;
	u.shm = 7;
	u.lock = 3;
	u.pid_file = -1;
	u.keeper = 11;
	u.n_listen = 3;
	u.listen[0] = 4;
	u.listen[1] = 5;
	u.listen[2] = 12;
	cr_assert_eq(upgrade_encode(&u, text, sizeof(text)), 0);
	cr_assert_str_eq(text, "version=1 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=11 "
			       "listen=4,5,12");
	cr_assert_eq(upgrade_decode(text, &v), 0);
	cr_assert_eq(v.old_master, 4242);
	cr_assert(v.ready == 9 && v.shm == 7 && v.lock == 3 && v.pid_file == -1 && v.keeper == 11);
	cr_assert(v.n_listen == 3 && v.listen[0] == 4 && v.listen[1] == 5 && v.listen[2] == 12);
	cr_assert_eq(upgrade_encode(&u, text, 20), -ENOSPC);
}

Test(upgrade_env, refuses_what_a_running_gateway_never_writes)
{
	static const char *const bad[] = {
		"",
		"version=2 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=1 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=4242 ready=-1 shm=7 lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=",
		"version=1 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=4,",
		"version=1 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=4x",
		"version=1 master=4242 ready=9 shm=7x lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=4242 shm=7 ready=9 lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=4242 ready=99999999999 shm=7 lock=3 pid=-1 keeper=-1 listen=4",
	};
	struct upgrade_fds u;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(upgrade_decode(bad[i], &u), -EINVAL, "accepted: \"%s\"", bad[i]);
}

/* A copy of a live segment's descriptor with a field changed, for shm_adopt. */
static int up_tampered(const struct shm_segment *seg, size_t off, const void *val, size_t n)
{
	int fd = memfd_create("tampered", MFD_CLOEXEC);
	char *copy;

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)seg->size), 0);
	copy = mmap(NULL, seg->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(copy, MAP_FAILED);
	memcpy(copy, seg->layout, seg->size);
	memcpy(copy + off, val, n);
	munmap(copy, seg->size);
	return fd;
}

Test(shm_adopt, takes_a_segment_of_its_layout_and_refuses_others)
{
	struct shm_segment seg, adopted;
	char err[512];
	uint32_t v99 = 99, cap = 7;
	uint64_t magic = 1;
	int fd;

	cr_assert_eq(shm_create(&seg, 16), 0);
	seg.layout->budget.tokens = 1234;
	fd = dup(seg.fd);
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(adopted.size, seg.size);
	cr_assert_eq(adopted.layout->budget.tokens, 1234, "the same segment, not a new one");
	adopted.layout->budget.tokens = 99;
	cr_assert_eq(seg.layout->budget.tokens, 99, "mapped shared");
	shm_destroy(&adopted);

	fd = up_tampered(&seg, offsetof(struct shm_layout, layout_version), &v99, sizeof(v99));
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), -EPROTO);
	cr_assert_not_null(strstr(err, "layout version 99; this binary reads version"), "%s", err);
	close(fd);
	fd = up_tampered(&seg, offsetof(struct shm_layout, magic), &magic, sizeof(magic));
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "bad magic"), "%s", err);
	close(fd);
	fd = up_tampered(&seg, offsetof(struct shm_layout, capacity), &cap, sizeof(cap));
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "bytes for 7 SFUs"), "%s", err);
	close(fd);
	fd = memfd_create("short", MFD_CLOEXEC);
	cr_assert_eq(ftruncate(fd, 100), 0);
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), -EINVAL);
	close(fd);
	shm_destroy(&seg);
}

/*
 * The layout a version stands for. A change of any of these sizes or offsets
 * without a new SHM_LAYOUT_VERSION would let a binary upgrade hand a segment
 * to a binary that misreads it: bump the version in include/shm.h, then
 * record the new fingerprint here.
 */
Test(shm_adopt, layout_fingerprint_matches_its_version)
{
	static const struct {
		unsigned version;
		unsigned long long fingerprint;
	} known[] = {
		{ 3, 9589728239924236595ULL },
		{ 4, 7830591965249289179ULL }, /* heartbeat seq tombstones */
		{ 5, 2968079931258011315ULL }, /* TLS: live config paths and digest, slot verdict, counters */
		{ 6, 5550674604044512691ULL }, /* TLS and the cluster together */
	};
	size_t parts[] = {
		sizeof(struct shm_layout),
		offsetof(struct shm_layout, budget),
		offsetof(struct shm_layout, reaper_lease),
		offsetof(struct shm_layout, live),
		offsetof(struct shm_layout, metrics),
		offsetof(struct shm_layout, affinity),
		offsetof(struct shm_layout, regstatus),
		offsetof(struct shm_layout, clusterstatus),
		offsetof(struct shm_layout, clusterq),
		offsetof(struct shm_layout, registry),
		sizeof(struct config_tunables),
		sizeof(struct metrics_proc),
		sizeof(struct affinity_table),
		sizeof(struct regstatus),
		sizeof(struct clusterstatus),
		sizeof(struct clusterq),
		sizeof(struct registry),
		sizeof(struct registry_slot),
		sizeof(struct sfu_hot),
		sizeof(struct sfu_cold),
		sizeof(struct circuit),
		sizeof(pthread_mutex_t),
	};
	unsigned long long fp = 1469598103934665603ULL;

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		fp ^= (unsigned long long)parts[i];
		fp *= 1099511628211ULL;
	}
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i].version == SHM_LAYOUT_VERSION)
			cr_assert_eq(known[i].fingerprint, fp,
				     "the shared-memory layout changed (fingerprint %llu): bump "
				     "SHM_LAYOUT_VERSION in include/shm.h and record the new "
				     "fingerprint in this test",
				     fp);
	cr_assert_eq(known[sizeof(known) / sizeof(known[0]) - 1].version, SHM_LAYOUT_VERSION,
		     "SHM_LAYOUT_VERSION %u has no fingerprint here (%llu)", SHM_LAYOUT_VERSION, fp);
}

/* ---- the gateway, upgraded while it serves */

/* New masters of an upgrade: children of the old one, so the harness does not
 * know them; orphaned to this test (a subreaper), which stops them. */
static pid_t up_masters[4];
static int up_n_masters;
static pid_t up_loaders[UP_LOADERS];

static void up_fini(void)
{
	for (int i = 0; i < UP_LOADERS; i++)
		if (up_loaders[i] > 0) {
			kill(up_loaders[i], SIGKILL);
			waitpid(up_loaders[i], NULL, 0);
			up_loaders[i] = 0;
		}
	for (int i = 0; i < up_n_masters; i++)
		if (up_masters[i] > 0 && kill(up_masters[i], SIGTERM) == 0 &&
		    harness_wait_exit(up_masters[i], 15000) < 0) {
			kill(up_masters[i], SIGKILL);
			waitpid(up_masters[i], NULL, 0);
		}
	up_n_masters = 0;
	harness_cleanup();
}

TestSuite(upgrade, .fini = up_fini);

static void up_track(pid_t pid)
{
	if (up_n_masters < (int)(sizeof(up_masters) / sizeof(up_masters[0])))
		up_masters[up_n_masters++] = pid;
}

/* Copies a file to dst (mode 0755) through a temporary name and a rename, as
 * a package manager replaces a binary: the running one keeps its old file. */
static void up_install(const char *src, const char *dst)
{
	char tmp[PATH_MAX + 8], buf[65536];
	int in = open(src, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	cr_assert_geq(in, 0, "open %s: %s", src, strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s.new", dst);
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	cr_assert_geq(out, 0, "create %s: %s", tmp, strerror(errno));
	while ((n = read(in, buf, sizeof(buf))) > 0)
		cr_assert_eq(write(out, buf, (size_t)n), n);
	close(in);
	cr_assert_eq(fchmod(out, 0755), 0);
	cr_assert_eq(close(out), 0);
	cr_assert_eq(rename(tmp, dst), 0, "rename to %s: %s", dst, strerror(errno));
}

/* Replaces dst with a shell script (a binary that fails in its own way). */
static void up_install_script(const char *dst, const char *body)
{
	char text[512];

	snprintf(text, sizeof(text), "#!/bin/sh\n%s\n", body);
	up_install(harness_write_file("script.sh", text), dst);
}

/* The binary under test and the layout-99 build, as absolute paths. */
static const char *up_bin(const char *var, const char *fallback)
{
	static char path[2][PATH_MAX];
	static int k;
	const char *bin = getenv(var);
	char *out = path[k++ % 2];

	if (realpath(bin != NULL ? bin : fallback, out) == NULL)
		cr_assert_fail("%s not found (%s)", var, bin != NULL ? bin : fallback);
	return out;
}

struct up_env {
	char bin[PATH_MAX]; /* the copy the gateway runs from, replaced by the tests */
	char pid_file[PATH_MAX];
	struct harness_proc *gw;
	pid_t master;
};

/* Starts the gateway from a copy of the binary under test in the tmpdir, with
 * the pid file in pid_dir (NULL: the tmpdir) and user (NULL: none). */
static void up_start_as(struct up_env *e, const char *toml, const char *pid_dir,
			const char *user)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" UP_GW_KEY, NULL };
	const char *args[] = { "--pid-file", e->pid_file, "--config",
			       harness_write_file("up.toml", toml), "--workers", "2", NULL, NULL, NULL };
	const char *saved = getenv("SFU_GATEWAY_BIN");
	char keep[PATH_MAX];

	if (user != NULL) {
		args[6] = "--user";
		args[7] = user;
	}
	/* The worker count from the file, when it names one. */
	if (strstr(toml, "workers =") != NULL)
		args[4] = args[5] = NULL;
	/* A new binary that runs as the user reads the config and the binary again. */
	cr_assert_eq(chmod(args[3], 0644), 0);
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	snprintf(e->bin, sizeof(e->bin), "%s/sfu-gateway", harness_tmpdir());
	snprintf(e->pid_file, sizeof(e->pid_file), "%s/gw.pid",
		 pid_dir != NULL ? pid_dir : harness_tmpdir());
	up_install(up_bin("SFU_GATEWAY_BIN", "build/sfu-gateway"), e->bin);
	/* The harness starts SFU_GATEWAY_BIN: the copy, this once. */
	snprintf(keep, sizeof(keep), "%s", saved != NULL ? saved : "");
	setenv("SFU_GATEWAY_BIN", e->bin, 1);
	e->gw = harness_gateway_up(env, args);
	if (keep[0] != '\0')
		setenv("SFU_GATEWAY_BIN", keep, 1);
	e->master = e->gw->pid;
}

static void up_start(struct up_env *e, const char *toml)
{
	up_start_as(e, toml, NULL, NULL);
}

static int up_read_pid(const char *path)
{
	FILE *f = fopen(path, "r");
	int pid = 0;

	if (f != NULL) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return pid;
}

/* Polls the gateway's log (both masters write to it) for needle. */
static bool up_log_has(const struct up_env *e, const char *needle, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	do {
		if (strstr(harness_log(e->gw), needle) != NULL)
			return true;
		poll(NULL, 0, 20);
	} while (harness_now_ms() < deadline);
	return false;
}

/* A heartbeat of mock m with this CPU usage. */
static void up_beat(const struct up_env *e, const struct harness_proc *m, double cpu)
{
	const char *addr = harness_url(m->port);
	char body[1024];
	struct harness_resp *r;

	snprintf(body, sizeof(body),
		 "{\"status\":\"up\",\"address\":\"%s\",\"region\":\"eu-west\",\"key\":\"%s\","
		 "\"channels\":0,\"sessions\":0,\"cpuUsage\":%.2f,\"memoryUsage\":0.1}",
		 addr, UP_SFU_KEY, cpu);
	r = harness_heartbeat(e->gw->port, addr, UP_GW_KEY, body);
	cr_assert_eq(r->status, 200, "heartbeat: %d %s", r->status, r->body);
	free(r);
}

/* Which of the mocks served a channel request for iss (it must succeed). */
static int up_served(const struct up_env *e, struct harness_proc *const *mocks, int n,
		     const char *iss)
{
	struct harness_resp *r =
		harness_channel(e->gw->port, "/v1/channel?webRTC=false", iss, UP_GW_KEY, NULL);
	int who;

	cr_assert_eq(r->status, 200, "channel for %s: %d %s\n%s", iss, r->status, r->body,
		     harness_log(e->gw));
	who = harness_served_by(mocks, n, r->body);
	free(r);
	return who;
}

/* The circuit state /v1/health shows for the mock ("" when the SFU is absent). */
static const char *up_circuit(const struct up_env *e, const struct harness_proc *m)
{
	static char out[32];
	struct json_object *s = harness_health_sfu(e->gw->port, harness_url(m->port), NULL), *cb;

	out[0] = '\0';
	if (s != NULL && json_object_object_get_ex(s, "circuit", &cb) &&
	    json_object_object_get_ex(cb, "state", &cb))
		snprintf(out, sizeof(out), "%s", json_object_get_string(cb));
	json_object_put(s);
	return out;
}

/* The CPU usage /v1/health shows for the mock. */
static double up_cpu(const struct up_env *e, const struct harness_proc *m)
{
	struct json_object *s = harness_health_sfu(e->gw->port, harness_url(m->port), NULL), *v;
	double cpu;

	cr_assert_not_null(s, "%s is not in /v1/health", harness_url(m->port));
	cr_assert(json_object_object_get_ex(s, "cpuUsage", &v));
	cpu = json_object_get_double(v);
	json_object_put(s);
	return cpu;
}

/* One request on a new connection, without any assertion (a loader runs it):
 * the answer's status, or -1 when none came. */
static int up_one(int port, const char *req, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { 5, 0 };
	char buf[8192];
	size_t got = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = -1;

	if (fd < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    write(fd, req, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
		status = -1;
	close(fd);
	return status;
}

/*
 * A loader process: channel requests one after another, each on a new
 * connection as Odoo sends them, until its stop pipe closes or
 * UP_LOAD_MAX_MS. Writes "<ok> <failed>" on out and exits.
 */
static void up_loader(int port, const char *token, int stop_fd, int out_fd)
{
	char req[8192], line[64];
	int len = snprintf(req, sizeof(req),
			   "GET /v1/channel?webRTC=false HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			   "Authorization: jwt %s\r\nConnection: close\r\n\r\n",
			   token);
	int64_t end = harness_now_ms() + UP_LOAD_MAX_MS;
	long ok = 0, failed = 0;

	while (harness_now_ms() < end && ok + failed < 200000) {
		struct pollfd pf = { stop_fd, POLLIN, 0 };

		if (poll(&pf, 1, 0) > 0)
			break;
		if (up_one(port, req, (size_t)len) == 200)
			ok++;
		else
			failed++;
	}
	len = snprintf(line, sizeof(line), "%ld %ld\n", ok, failed);
	if (write(out_fd, line, (size_t)len) != len)
		_exit(2);
	_exit(0);
}

/* Starts the loaders; *stop_fd ends them when closed, *out_fd gives their counts. */
static void up_load_start(int port, int *stop_fd, int *out_fd)
{
	int stop[2], out[2];
	char token[4096];

	snprintf(token, sizeof(token), "%s", harness_odoo_token("load-iss", UP_GW_KEY));
	cr_assert_eq(pipe(stop), 0);
	cr_assert_eq(pipe(out), 0);
	for (int i = 0; i < UP_LOADERS; i++) {
		pid_t pid = fork();

		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(stop[1]);
			close(out[0]);
			up_loader(port, token, stop[0], out[1]);
		}
		up_loaders[i] = pid;
	}
	close(stop[0]);
	close(out[1]);
	*stop_fd = stop[1];
	*out_fd = out[0];
}

static void up_load_stop(int stop_fd, int out_fd, long *ok, long *failed)
{
	char buf[1024];
	size_t got = 0;
	ssize_t n;
	char *p;

	close(stop_fd);
	for (int i = 0; i < UP_LOADERS; i++) {
		cr_assert_geq(harness_wait_exit(up_loaders[i], UP_LOAD_MAX_MS + 10000), 0);
		up_loaders[i] = 0;
	}
	while (got < sizeof(buf) - 1 && (n = read(out_fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(out_fd);
	*ok = *failed = 0;
	p = buf;
	for (int i = 0; i < UP_LOADERS; i++) {
		long a, b;
		int used;

		cr_assert_eq(sscanf(p, "%ld %ld\n%n", &a, &b, &used), 2, "loader output: %s", buf);
		*ok += a;
		*failed += b;
		p += used;
	}
}

/* Waits until the mocks together answered at least want more channels than base. */
static void up_wait_served(struct harness_proc *const *mocks, int n, int64_t base, int64_t want)
{
	int64_t deadline = harness_now_ms() + 15000, sum = 0;

	while (harness_now_ms() < deadline) {
		sum = 0;
		for (int i = 0; i < n; i++)
			sum += harness_mock_int(mocks[i], "/mock/stats", "channel_requests");
		if (sum >= base + want)
			return;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("the load did not reach the mocks: %lld of %lld more channels",
		       (long long)(sum - base), (long long)want);
}

static int64_t up_channels(struct harness_proc *const *mocks, int n)
{
	int64_t sum = 0;

	for (int i = 0; i < n; i++)
		sum += harness_mock_int(mocks[i], "/mock/stats", "channel_requests");
	return sum;
}

/* USR2, then waits until the old master has exited and the pid file names a
 * new one, which is returned. */
static pid_t up_upgrade(struct up_env *e)
{
	pid_t old = e->master, now;
	int rc;

	cr_assert_eq(kill(old, SIGUSR2), 0);
	rc = harness_wait_exit(old, 30000);
	cr_assert_eq(rc, 0, "the old master did not hand over and exit 0 (%d):\n%s", rc,
		     harness_log(e->gw));
	if (e->gw->pid == old)
		e->gw->pid = 0;
	now = (pid_t)up_read_pid(e->pid_file);
	cr_assert(now > 1 && now != old, "the pid file names %d, not a new master:\n%s", (int)now,
		  harness_log(e->gw));
	up_track(now);
	cr_assert(up_log_has(e, "the upgrade is complete", 5000), "%s", harness_log(e->gw));
	e->master = now;
	return now;
}

/* Stops the (new) master and checks it leaves neither pid file nor lock. */
static void up_stop(struct up_env *e)
{
	char lock[512], err[256];
	int64_t deadline;

	cr_assert_eq(kill(e->master, SIGTERM), 0);
	cr_assert_eq(harness_wait_exit(e->master, 20000), 0, "%s", harness_log(e->gw));
	for (int i = 0; i < up_n_masters; i++)
		if (up_masters[i] == e->master)
			up_masters[i] = 0;
	cr_assert_eq(instance_lock_path((uint16_t)e->gw->port, lock, sizeof(lock), err,
				       sizeof(err)),
		     0);
	/* After --user the keeper removes them once the master has gone. */
	deadline = harness_now_ms() + 5000;
	while (access(e->pid_file, F_OK) == 0 || access(lock, F_OK) == 0) {
		cr_assert_lt(harness_now_ms(), deadline, "%s stayed",
			     access(lock, F_OK) == 0 ? lock : e->pid_file);
		poll(NULL, 0, 20);
	}
}

Test(upgrade, under_load_nothing_is_lost, .timeout = 120)
{
	struct up_env e;
	struct harness_proc *m[3];
	int stop_fd, out_fd, pinned, fresh, other;
	long ok, failed;
	int64_t before;
	double hits, served;
	pid_t first;

	for (int i = 0; i < 3; i++) {
		static const char *const fail[] = { "--fail-status", "500", NULL };

		m[i] = harness_mock_start(UP_SFU_KEY, i == 2 ? fail : NULL);
		cr_assert_not_null(m[i]);
	}
	up_start(&e, "[circuit_breaker]\nfailure_threshold = 1\nopen_ms = 600000\n"
		     "[registration]\nstale_after_ms = 600000\n");
	first = e.master;
	/* Registered SFUs only: the new binary's config knows none of them. The
	 * failing one looks idlest, so the first request tries it and opens its
	 * circuit. */
	up_beat(&e, m[0], 0.5);
	up_beat(&e, m[1], 0.5);
	up_beat(&e, m[2], 0.0);
	cr_assert_lt(up_served(&e, m, 3, "circuit-iss"), 2);
	cr_assert_str_eq(up_circuit(&e, m[2]), "open");
	/* A pin: then its SFU looks busy, and a new issuer goes to the other one. */
	pinned = up_served(&e, m, 2, "pinned-iss");
	other = 1 - pinned;
	up_beat(&e, m[pinned], 0.9);
	up_beat(&e, m[other], 0.1);
	cr_assert_eq(up_served(&e, m, 2, "fresh-iss-1"), other);
	cr_assert_eq(up_served(&e, m, 2, "pinned-iss"), pinned, "the pin holds before");
	hits = harness_metric(e.gw->port, "sfu_gateway_affinity_hits_total");
	served = harness_metric(e.gw->port,
				"sfu_gateway_requests_total{route=\"/v1/channel\",status=\"200\"}");
	cr_assert_geq(hits, 1);

	before = up_channels(m, 2);
	up_load_start(e.gw->port, &stop_fd, &out_fd);
	up_wait_served(m, 2, before, 50);
	up_upgrade(&e);
	/* Only the new master's workers are left: make them serve some load too. */
	up_wait_served(m, 2, up_channels(m, 2), 50);
	up_load_stop(stop_fd, out_fd, &ok, &failed);
	cr_assert_eq(failed, 0, "%ld of %ld requests failed during the upgrade\n%s", failed,
		     ok + failed, harness_log(e.gw));
	cr_assert_geq(ok, 100);
	cr_log_info("upgrade under load: %ld requests, %ld failed", ok + failed, failed);
	cr_assert_neq(e.master, first);

	/* What the segment held is the new binary's now, before any heartbeat. */
	cr_assert_str_eq(up_circuit(&e, m[2]), "open", "the open circuit was kept");
	cr_assert_str_eq(up_circuit(&e, m[pinned]), "closed");
	cr_assert_eq(up_served(&e, m, 2, "pinned-iss"), pinned, "the affinity pin was kept");
	/* The loads they reported (the load's channels have since counted on
	 * the idler one, which may now rank below: no choice is asserted). */
	cr_assert_float_eq(up_cpu(&e, m[pinned]), 0.9, 1e-9, "registered loads were kept");
	cr_assert_float_eq(up_cpu(&e, m[other]), 0.1, 1e-9, "registered loads were kept");
	fresh = up_served(&e, m, 2, "fresh-iss-2");
	cr_assert(fresh == 0 || fresh == 1);
	cr_assert_gt(harness_metric(e.gw->port, "sfu_gateway_affinity_hits_total"), hits,
		     "counters were kept");
	cr_assert_geq(harness_metric(e.gw->port, "sfu_gateway_requests_total{route=\"/v1/channel\","
						 "status=\"200\"}"),
		      served + (double)ok, "counters were kept");
	cr_assert_eq(harness_mock_int(m[2], "/mock/stats", "channel_requests"), 1,
		     "the SFU with the open circuit got nothing but the first request");
	cr_assert_not_null(strstr(harness_log(e.gw), "reaper: working"), "%s", harness_log(e.gw));
	up_stop(&e);
}

Test(upgrade, a_binary_that_fails_leaves_the_old_master_serving, .timeout = 90)
{
	struct up_env e;
	struct harness_proc *m[1];
	char needle[256];
	int pid;

	m[0] = harness_mock_start(UP_SFU_KEY, NULL);
	cr_assert_not_null(m[0]);
	up_start(&e, "[gateway]\nupgrade_timeout_ms = 1500\n");
	up_beat(&e, m[0], 0.2);

	/* A binary that exits at start. */
	up_install_script(e.bin, "echo 'simulated start failure' >&2\nexit 1");
	cr_assert_eq(kill(e.master, SIGUSR2), 0);
	cr_assert(up_log_has(&e, "exited with 1 before it served; still serving with this one",
			     10000),
		  "%s", harness_log(e.gw));
	cr_assert(up_log_has(&e, "simulated start failure", 1000));
	cr_assert_eq(up_read_pid(e.pid_file), e.master, "the pid file still names the old master");
	cr_assert_eq(waitpid(e.master, NULL, WNOHANG), 0, "the old master runs");
	cr_assert_eq(up_served(&e, m, 1, "after-failure"), 0);

	/* A binary that never serves: stopped after upgrade_timeout_ms. */
	up_install_script(e.bin, "exec sleep 60");
	cr_assert_eq(kill(e.master, SIGUSR2), 0);
	cr_assert(up_log_has(&e, "did not serve within 1500 ms; stopping it; still serving", 10000),
		  "%s", harness_log(e.gw));
	pid = 0;
	{
		const char *hit = strstr(harness_log(e.gw), "the stopped new binary (pid ");

		cr_assert(up_log_has(&e, "the stopped new binary (pid ", 5000));
		hit = strstr(harness_log(e.gw), "the stopped new binary (pid ");
		cr_assert_eq(sscanf(hit, "the stopped new binary (pid %d)", &pid), 1);
		snprintf(needle, sizeof(needle), "(pid %d) was killed by signal 9", pid);
		cr_assert_not_null(strstr(hit, needle), "%s", hit);
	}
	cr_assert_eq(up_read_pid(e.pid_file), e.master);
	cr_assert_eq(up_served(&e, m, 1, "after-timeout"), 0);

	/* The real binary back: the upgrade goes through. */
	up_install(up_bin("SFU_GATEWAY_BIN", "build/sfu-gateway"), e.bin);
	up_upgrade(&e);
	cr_assert_eq(up_served(&e, m, 1, "after-upgrade"), 0);
	up_stop(&e);
}

Test(upgrade, an_incompatible_layout_is_refused_cleanly, .timeout = 60)
{
	struct up_env e;
	struct harness_proc *m[1];
	char needle[256];

	m[0] = harness_mock_start(UP_SFU_KEY, NULL);
	cr_assert_not_null(m[0]);
	up_start(&e, "# defaults\n");
	up_beat(&e, m[0], 0.2);
	up_install(up_bin("SFU_LAYOUT99_BIN", "build/tests/sfu-gateway-layout99"), e.bin);
	cr_assert_eq(kill(e.master, SIGUSR2), 0);
	snprintf(needle, sizeof(needle),
		 ": master: upgrade refused: the running gateway's shared memory has layout "
		 "version %d; this binary reads version 99 only; still serving with this one",
		 SHM_LAYOUT_VERSION);
	cr_assert(up_log_has(&e, needle, 10000), "%s", harness_log(e.gw));
	cr_assert(up_log_has(&e, "exited with 1 before it served", 5000), "%s", harness_log(e.gw));
	cr_assert_eq(up_read_pid(e.pid_file), e.master);
	/* The registered SFU is still there and nothing was misread. */
	cr_assert_eq(up_served(&e, m, 1, "after-refusal"), 0);
	cr_assert_eq(kill(e.master, SIGTERM), 0);
	cr_assert_eq(harness_wait_exit(e.master, 20000), 0);
	e.gw->pid = 0;
	cr_assert_neq(access(e.pid_file, F_OK), 0, "the pid file stayed");
}

/*
 * After --user the master cannot write the pid file's directory: the pid file
 * is rewritten through the inherited descriptor, and the keeper, still root,
 * removes it and the lock when the new master stops. As another user than
 * root the same runs without --user.
 */
Test(upgrade, after_switching_user_the_files_still_hand_over, .timeout = 60)
{
	struct up_env e;
	struct harness_proc *m[1];
	struct passwd *nobody = getpwnam("nobody");
	bool as_nobody = geteuid() == 0 && nobody != NULL;
	char run[PATH_MAX], status[64];

	/* The user must reach the binary and the config in the tmpdir. */
	cr_assert_eq(chmod(harness_tmpdir(), 0755), 0);
	snprintf(run, sizeof(run), "%s/run", harness_tmpdir());
	cr_assert_eq(mkdir(run, 0755), 0);
	m[0] = harness_mock_start(UP_SFU_KEY, NULL);
	cr_assert_not_null(m[0]);
	up_start_as(&e, "# defaults\n", run, as_nobody ? "nobody" : NULL);
	up_beat(&e, m[0], 0.2);
	up_upgrade(&e);
	if (as_nobody) {
		FILE *f;
		char line[256];
		unsigned uid = 0;

		snprintf(status, sizeof(status), "/proc/%d/status", (int)e.master);
		f = fopen(status, "r");
		cr_assert_not_null(f);
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "Uid: %u", &uid) == 1)
				break;
		fclose(f);
		cr_assert_eq(uid, nobody->pw_uid, "the new master runs as nobody");
	}
	cr_assert_eq(up_read_pid(e.pid_file), e.master);
	cr_assert_eq(up_served(&e, m, 1, "as-user"), 0);
	/* Removed by the keeper (root) at the new master's stop: see up_stop. */
	up_stop(&e);
}

/* A new worker count in the new binary's config applies once the old master
 * has exited (its workers' sockets are in the group until then). */
Test(upgrade, a_new_worker_count_applies_after_the_handover, .timeout = 60)
{
	struct up_env e;
	struct harness_proc *m[1];
	int64_t deadline;
	int kids;

	m[0] = harness_mock_start(UP_SFU_KEY, NULL);
	cr_assert_not_null(m[0]);
	up_start(&e, "[gateway]\nworkers = 2\n");
	up_beat(&e, m[0], 0.2);
	harness_write_file("up.toml", "[gateway]\nworkers = 3\n");
	up_upgrade(&e);
	cr_assert(up_log_has(&e, "3 workers on 127.0.0.1 port", 2000), "%s", harness_log(e.gw));
	cr_assert(up_log_has(&e, "now 3 workers on 127.0.0.1", 10000), "%s", harness_log(e.gw));
	/* Three workers and the reaper, all serving. */
	deadline = harness_now_ms() + 10000;
	for (;;) {
		char cmd[128];
		FILE *p;

		snprintf(cmd, sizeof(cmd), "ps -o pid= --ppid %d | wc -l", (int)e.master);
		p = popen(cmd, "r");
		cr_assert_not_null(p);
		cr_assert_eq(fscanf(p, "%d", &kids), 1);
		pclose(p);
		if (kids == 4)
			break;
		cr_assert_lt(harness_now_ms(), deadline, "%d children of the new master", kids);
		poll(NULL, 0, 50);
	}
	for (int i = 0; i < 20; i++)
		cr_assert_eq(up_served(&e, m, 1, "resized"), 0);
	up_stop(&e);
}
