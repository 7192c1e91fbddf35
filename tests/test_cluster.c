/* Integration tests of a gateway cluster: real etcd members, gateways and mock SFUs on loopback. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* 34-byte keys: the gateways' (also the registration key), and the SFUs'. */
#define CL_GW_KEY "Y2x1c3Rlci10ZXN0cy1nYXRld2F5LWtleS0wMDAwMDAwMQ=="
#define CL_K1 "Y2x1c3Rlci10ZXN0cy1zZnUta2V5LW9uZS0wMDAwMDAwMg=="
#define CL_K2 "Y2x1c3Rlci10ZXN0cy1zZnUta2V5LXR3by0wMDAwMDAwMw=="
#define CL_K3 "Y2x1c3Rlci10ZXN0cy1zZnUta2V5LXRocmVlLTAwMDAwMDQ="
#define CL_WAIT_MS 10000
#define CL_MEMBERS_MAX 3

/* ---- etcd members, started by the test in its temporary folder */

struct cl_member {
	pid_t pid;
	int client, peer;
	char name[16];
	char dir[512];
	char log[512];
};

static struct cl_member cl_members[CL_MEMBERS_MAX];
static int cl_n_members;
static char cl_initial[512];

/* The etcd binary on PATH, or NULL. */
static const char *cl_etcd_bin(void)
{
	static char found[512];
	const char *path = getenv("PATH");
	char *copy, *save = NULL;

	if (found[0] != '\0')
		return found;
	copy = strdup(path != NULL ? path : "/usr/bin:/bin");
	cr_assert_not_null(copy);
	for (char *d = strtok_r(copy, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
		snprintf(found, sizeof(found), "%s/etcd", d);
		if (access(found, X_OK) == 0) {
			free(copy);
			return found;
		}
	}
	free(copy);
	found[0] = '\0';
	return NULL;
}

/* etcd present, or the test fails under CI and is skipped elsewhere. */
static void cl_need_etcd(void)
{
	if (cl_etcd_bin() == NULL)
		harness_absent("etcd is missing: install the Debian packages etcd-server and "
			       "etcd-client (scripts/deps.sh test) to run the cluster tests");
}

static void cl_member_spawn(struct cl_member *m)
{
	char client[64], peer[64];
	const char *argv[40];
	int n = 0;
	pid_t pid;

	snprintf(client, sizeof(client), "http://127.0.0.1:%d", m->client);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", m->peer);
	argv[n++] = cl_etcd_bin();
	argv[n++] = "--name";
	argv[n++] = m->name;
	argv[n++] = "--data-dir";
	argv[n++] = m->dir;
	argv[n++] = "--listen-client-urls";
	argv[n++] = client;
	argv[n++] = "--advertise-client-urls";
	argv[n++] = client;
	argv[n++] = "--listen-peer-urls";
	argv[n++] = peer;
	argv[n++] = "--initial-advertise-peer-urls";
	argv[n++] = peer;
	argv[n++] = "--initial-cluster";
	argv[n++] = cl_initial;
	argv[n++] = "--initial-cluster-token";
	argv[n++] = "sfu-gateway-tests";
	/* Fast elections on loopback: a lost member is noticed within a second. */
	argv[n++] = "--heartbeat-interval";
	argv[n++] = "50";
	argv[n++] = "--election-timeout";
	argv[n++] = "500";
	argv[n++] = "--logger";
	argv[n++] = "zap";
	argv[n++] = "--log-level";
	argv[n++] = "warn";
	argv[n] = NULL;
	pid = fork();
	cr_assert_geq(pid, 0, "fork() failed");
	if (pid == 0) {
		int fd = open(m->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		/* The member dies with the test, whatever ends it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	m->pid = pid;
}

/* Whether the member on port answers with a leader. */
static bool cl_member_ready(int port)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	bool ok = false;

	cr_assert_not_null(r);
	if (harness_post(port, "/v3/maintenance/status", NULL, "{}", r) == 0 && r->status == 200) {
		struct json_object *o = json_tokener_parse(r->body), *v;

		ok = o != NULL && json_object_object_get_ex(o, "leader", &v) &&
		     strcmp(json_object_get_string(v), "0") != 0;
		json_object_put(o);
	}
	free(r);
	return ok;
}

static void cl_members_wait(void)
{
	int64_t deadline = harness_now_ms() + 15000;

	for (int i = 0; i < cl_n_members; i++) {
		if (cl_members[i].pid <= 0)
			continue;
		while (!cl_member_ready(cl_members[i].client)) {
			cr_assert_lt(harness_now_ms(), deadline, "etcd member %s did not come up: %s",
				     cl_members[i].name, harness_all_logs());
			usleep(20000);
		}
	}
}

/* Starts an etcd cluster of n members (data and logs in the test's folder). */
static void cl_etcd_start(int n)
{
	size_t o = 0;

	cl_need_etcd();
	cr_assert_leq(n, CL_MEMBERS_MAX);
	cl_n_members = n;
	for (int i = 0; i < n; i++) {
		struct cl_member *m = &cl_members[i];

		memset(m, 0, sizeof(*m));
		snprintf(m->name, sizeof(m->name), "m%d", i);
		m->client = harness_free_port();
		m->peer = harness_free_port();
		snprintf(m->dir, sizeof(m->dir), "%s/etcd-m%d", harness_tmpdir(), i);
		snprintf(m->log, sizeof(m->log), "%s/etcd-m%d.log", harness_tmpdir(), i);
		o += (size_t)snprintf(cl_initial + o, sizeof(cl_initial) - o, "%sm%d=http://127.0.0.1:%d",
				      i ? "," : "", i, m->peer);
	}
	for (int i = 0; i < n; i++)
		cl_member_spawn(&cl_members[i]);
	cl_members_wait();
}

static void cl_member_stop(int i, int sig)
{
	struct cl_member *m = &cl_members[i];

	if (m->pid <= 0)
		return;
	kill(m->pid, sig);
	if (harness_wait_exit(m->pid, 10000) < 0) {
		kill(m->pid, SIGKILL);
		harness_wait_exit(m->pid, 5000);
	}
	m->pid = 0;
}

/* Every member stopped, then the usual cleanup. */
static void cl_fini(void)
{
	for (int i = 0; i < cl_n_members; i++)
		cl_member_stop(i, SIGKILL);
	cl_n_members = 0;
	harness_cleanup();
}

/* ---- gateways and SFUs */

/* A gateway of the cluster of the members listed in order (indexes, -1 ends),
 * with extra config appended. */
static struct harness_proc *cl_gateway(const int *order, int workers, const char *extra)
{
	char toml[2048];
	size_t o = (size_t)snprintf(toml, sizeof(toml), "[cluster]\netcd = [");

	for (int i = 0; order[i] >= 0; i++)
		o += (size_t)snprintf(toml + o, sizeof(toml) - o, "%s\"http://127.0.0.1:%d\"",
				      i ? ", " : "", cl_members[order[i]].client);
	snprintf(toml + o, sizeof(toml) - o, "]\nprefix = \"/t/\"\n%s", extra ? extra : "");
	return harness_gateway_keyed(CL_GW_KEY, NULL, workers, toml);
}

static struct harness_proc *cl_mock(const char *key, const char *const *args)
{
	struct harness_proc *m = harness_mock_start(key, args);

	cr_assert_not_null(m, "a mock SFU did not come up");
	return m;
}

/* A heartbeat body for the SFU on port. Static buffer. */
static const char *cl_body(int port, const char *key, const char *region, bool up)
{
	static char out[512];

	if (!up)
		snprintf(out, sizeof(out), "{\"status\":\"down\",\"address\":\"%s\"}",
			 harness_url(port));
	else
		snprintf(out, sizeof(out),
			 "{\"status\":\"up\",\"address\":\"%s\",\"region\":\"%s\",\"key\":\"%s\","
			 "\"channels\":0,\"sessions\":0}",
			 harness_url(port), region, key);
	return out;
}

/* Sends a heartbeat of the SFU on port to the gateway on gw_port; want is the
 * status its answer must carry ("registered", "updated", "removed"), or NULL. */
static void cl_heartbeat(int gw_port, int port, const char *key, const char *region, bool up,
			 const char *want)
{
	struct harness_resp *r = harness_heartbeat(gw_port, harness_url(port), CL_GW_KEY,
						   cl_body(port, key, region, up));

	cr_assert_eq(r->status, 200, "heartbeat: %d %s", r->status, r->body);
	if (want != NULL)
		cr_assert_str_eq(harness_json_str(r->body, "status"), want, "%s", r->body);
	free(r);
}

/* The gateway's health entry of the SFU on port (a reference), or NULL. */
static struct json_object *cl_sfu(const struct harness_proc *gw, int port)
{
	return harness_health_sfu(gw->port, harness_url(port), NULL);
}

static bool cl_listed(const struct harness_proc *gw, int port)
{
	struct json_object *o = cl_sfu(gw, port);
	bool yes = o != NULL;

	json_object_put(o);
	return yes;
}

/* Waits until the SFU on port is (listed) or is not (!listed) in the gateway's
 * health; returns the ms it took. */
static int64_t cl_wait_listed(const struct harness_proc *gw, int port, bool listed, int timeout_ms)
{
	int64_t start = harness_now_ms();

	while (cl_listed(gw, port) != listed) {
		cr_assert_lt(harness_now_ms() - start, timeout_ms,
			     "sfu %s still %s on the gateway on port %d after %d ms: %s",
			     harness_url(port), listed ? "missing" : "listed", gw->port, timeout_ms,
			     harness_all_logs());
		usleep(2000);
	}
	return harness_now_ms() - start;
}

/* The health answer's cluster object members. */
static void cl_health(const struct harness_proc *gw, char *status, size_t slen, char *state,
		      size_t stlen)
{
	struct json_object *root = harness_get_json(gw->port, "/v1/health", NULL), *c, *v;

	cr_assert_not_null(root);
	snprintf(status, slen, "%s", json_object_get_string(json_object_object_get(root, "status")));
	cr_assert(json_object_object_get_ex(root, "cluster", &c), "no cluster object: %s",
		  json_object_to_json_string(root));
	cr_assert(json_object_object_get_ex(c, "state", &v));
	snprintf(state, stlen, "%s", json_object_get_string(v));
	json_object_put(root);
}

static void cl_wait_state(const struct harness_proc *gw, const char *want, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	char status[32], state[32];

	for (;;) {
		cl_health(gw, status, sizeof(status), state, sizeof(state));
		if (strcmp(state, want) == 0)
			return;
		cr_assert_lt(harness_now_ms(), deadline,
			     "the gateway on port %d is %s, not %s, after %d ms: %s", gw->port,
			     state, want, timeout_ms, harness_all_logs());
		usleep(10000);
	}
}

/* A channel request through the gateway must be served by the mock on port. */
static void cl_channel_served(const struct harness_proc *gw, const char *iss,
			      struct harness_proc *const *mocks, int n, int want)
{
	struct harness_resp *r = harness_channel(gw->port, "/v1/channel?webRTC=false", iss,
						 CL_GW_KEY, NULL);

	cr_assert_eq(r->status, 200, "channel through port %d: %d %s", gw->port, r->status,
		     r->body);
	if (want >= 0)
		cr_assert_eq(harness_served_by(mocks, n, r->body), want, "%s", r->body);
	free(r);
}

/* ---- etcd absent: the gateway serves alone, degraded */

Test(cluster, etcd_unreachable_at_start_serves_alone_degraded, .fini = harness_cleanup,
     .timeout = 60)
{
	char toml[256], status[32], state[32];
	struct harness_proc *gw, *m;
	int closed = harness_free_port();

	snprintf(toml, sizeof(toml),
		 "[cluster]\netcd = [\"http://127.0.0.1:%d\"]\ntimeout_ms = 200\n", closed);
	gw = harness_gateway_keyed(CL_GW_KEY, NULL, 1, toml);
	m = cl_mock(CL_K1, NULL);
	cl_wait_state(gw, "degraded", CL_WAIT_MS);
	/* Heartbeats are accepted and the SFU serves: the gateway works alone. */
	cl_heartbeat(gw->port, m->port, CL_K1, "eu-west", true, "registered");
	cl_channel_served(gw, "alone", &m, 1, 0);
	cl_health(gw, status, sizeof(status), state, sizeof(state));
	cr_assert_str_eq(status, "degraded");
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_cluster_degraded"), 1);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_cluster_up"), 0);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_cluster_configured"), 1);
	/* Logged once, whatever the number of failed attempts. */
	{
		const char *log = harness_log(gw), *p = log;
		int n = 0;

		while ((p = strstr(p, "cluster: etcd unreachable")) != NULL) {
			n++;
			p++;
		}
		cr_assert_eq(n, 1, "the outage is logged once per change of state: %s", log);
	}
}

/* ---- registrations */

Test(cluster, heartbeat_reaches_every_gateway_and_leaves_by_sign_off_or_lease, .fini = cl_fini,
     .timeout = 90)
{
	static const int order[] = { 0, -1 };
	struct harness_proc *gw[3], *m[2];
	struct json_object *e;
	int64_t took, start;

	cl_etcd_start(1);
	for (int i = 0; i < 3; i++)
		gw[i] = cl_gateway(order, 1, "[registration]\nstale_after_ms = 2000\n");
	m[0] = cl_mock(CL_K1, NULL);
	m[1] = cl_mock(CL_K2, NULL);
	for (int i = 0; i < 3; i++)
		cl_wait_state(gw[i], "ok", CL_WAIT_MS);

	/* A heartbeat at A: usable at B and C within a watch round trip. */
	cl_heartbeat(gw[0]->port, m[0]->port, CL_K1, "eu-west", true, "registered");
	took = cl_wait_listed(gw[1], m[0]->port, true, 2000);
	took += cl_wait_listed(gw[2], m[0]->port, true, 2000);
	cr_log_info("heartbeat at A listed at B and C after %lld ms", (long long)took);
	e = cl_sfu(gw[1], m[0]->port);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(e, "reportedBy")),
			 "cluster");
	cr_assert_str_eq(json_object_get_string(json_object_object_get(e, "region")), "eu-west");
	json_object_put(e);
	e = cl_sfu(gw[0], m[0]->port);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(e, "reportedBy")),
			 "heartbeat");
	json_object_put(e);
	/* The key came through etcd: C re-signs with it and the SFU accepts. */
	cl_channel_served(gw[2], "via-c", m, 1, 0);
	cr_assert_geq(harness_metric(gw[0]->port, "sfu_gateway_cluster_writes_total{op=\"put\"}"),
		      1);

	/* The same heartbeat sent to B too (an SFU configured with every
	 * gateway) is no replay there: B has it from etcd already. */
	{
		const char *body = cl_body(m[0]->port, CL_K1, "eu-west", true);
		char auth[2048];
		struct harness_resp *r = calloc(1, sizeof(*r));

		cr_assert_not_null(r);
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n",
			 harness_sfu_token(harness_url(m[0]->port), CL_GW_KEY, body));
		cr_assert_eq(harness_post(gw[0]->port, "/v1/sfu", auth, body, r), 0);
		cr_assert_eq(r->status, 200, "%s", r->body);
		/* Wait until B mirrored this very heartbeat, then send it to B. */
		start = harness_now_ms();
		for (;;) {
			double n = harness_metric(gw[1]->port, "sfu_gateway_cluster_mirrored_total");

			if (n >= 2)
				break;
			cr_assert_lt(harness_now_ms() - start, 2000, "B did not mirror it");
			usleep(2000);
		}
		cr_assert_eq(harness_post(gw[1]->port, "/v1/sfu", auth, body, r), 0);
		cr_assert_eq(r->status, 200, "the same heartbeat at B: %d %s", r->status, r->body);
		/* A replay at A, which received it itself, is refused as ever. */
		cr_assert_eq(harness_post(gw[0]->port, "/v1/sfu", auth, body, r), 0);
		cr_assert_eq(r->status, 401, "%s", r->body);
		free(r);
	}

	/* A sign-off at B removes it everywhere. */
	cl_heartbeat(gw[1]->port, m[0]->port, CL_K1, "eu-west", false, "removed");
	for (int i = 0; i < 3; i++)
		cl_wait_listed(gw[i], m[0]->port, false, 2000);
	cr_assert_geq(harness_metric(gw[1]->port, "sfu_gateway_cluster_writes_total{op=\"delete\"}"),
		      1);

	/* One heartbeat at C, then none: the lease lapses in etcd (stale_after_ms
	 * plus at most one lease slice) and every gateway drops the SFU. */
	cl_heartbeat(gw[2]->port, m[1]->port, CL_K2, "us-east", true, "registered");
	start = harness_now_ms();
	for (int i = 0; i < 3; i++)
		cl_wait_listed(gw[i], m[1]->port, true, 2000);
	for (int i = 0; i < 3; i++)
		cl_wait_listed(gw[i], m[1]->port, false, 10000);
	took = harness_now_ms() - start;
	cr_log_info("lapsed lease removed the SFU everywhere after %lld ms", (long long)took);
	cr_assert_geq(took, 1900, "removed before stale_after_ms (%lld ms)", (long long)took);
	/* etcd's deletion did it, not each gateway's reaper ([cluster] hold_ms). */
	for (int i = 0; i < 3; i++)
		cr_assert_geq(harness_metric(gw[i]->port, "sfu_gateway_cluster_removed_total"), 1,
			      "gateway %d", i);
	cr_assert_eq(harness_metric(gw[2]->port, "sfu_gateway_expired_total"), 0);
}

/* ---- issuer affinity */

/* Sends raw_a to port_a and raw_b to port_b at once (both connected and
 * written before either is read: as close to simultaneous as two clients get)
 * and reads both answers. */
static void cl_pair(int port_a, const char *raw_a, int port_b, const char *raw_b, char *out_a,
		    char *out_b, size_t outlen)
{
	const char *raws[2] = { raw_a, raw_b };
	int fds[2] = { -1, -1 }, ports[2] = { port_a, port_b };
	char *outs[2] = { out_a, out_b };
	size_t lens[2] = { 0, 0 };
	bool done[2] = { false, false };
	int64_t deadline = harness_now_ms() + 5000;

	for (int i = 0; i < 2; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(ports[i]) };

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert_geq(fds[i], 0);
		cr_assert_eq(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	for (int i = 0; i < 2; i++)
		cr_assert_eq(write(fds[i], raws[i], strlen(raws[i])), (ssize_t)strlen(raws[i]));
	while (!done[0] || !done[1]) {
		struct pollfd p[2];
		int np = 0, idx[2];

		for (int i = 0; i < 2; i++)
			if (!done[i]) {
				p[np].fd = fds[i];
				p[np].events = POLLIN;
				idx[np++] = i;
			}
		cr_assert_lt(harness_now_ms(), deadline, "no answer to a pair of requests");
		if (poll(p, (nfds_t)np, 100) <= 0)
			continue;
		for (int k = 0; k < np; k++) {
			int i = idx[k];
			ssize_t n;

			if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(fds[i], outs[i] + lens[i], outlen - 1 - lens[i]);
			if (n <= 0 || lens[i] + (size_t)n >= outlen - 1)
				done[i] = true;
			if (n > 0)
				lens[i] += (size_t)n;
			outs[i][lens[i]] = '\0';
		}
	}
	close(fds[0]);
	close(fds[1]);
}

/* The mock (index) a raw answer's body names; -1 when not a 200 served by one. */
static int cl_served(struct harness_proc *const *mocks, int n, const char *raw)
{
	const char *body = strstr(raw, "\r\n\r\n");

	if (strncmp(raw, "HTTP/1.1 200", 12) != 0 || body == NULL)
		return -1;
	return harness_served_by(mocks, n, body + 4);
}

Test(cluster, simultaneous_first_requests_through_two_gateways_land_on_one_sfu,
     .fini = cl_fini, .timeout = 90)
{
	static const int order[] = { 0, -1 };
	struct harness_proc *gw[2], *m[2];
	int64_t created = 0, won = 0, lost = 0;

	cl_etcd_start(1);
	gw[0] = cl_gateway(order, 2, NULL);
	gw[1] = cl_gateway(order, 2, NULL);
	m[0] = cl_mock(CL_K1, NULL);
	m[1] = cl_mock(CL_K2, NULL);
	cl_wait_state(gw[0], "ok", CL_WAIT_MS);
	cl_wait_state(gw[1], "ok", CL_WAIT_MS);
	cl_heartbeat(gw[0]->port, m[0]->port, CL_K1, "eu-west", true, "registered");
	cl_heartbeat(gw[1]->port, m[1]->port, CL_K2, "us-east", true, "registered");
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 2; k++)
			cl_wait_listed(gw[i], m[k]->port, true, 2000);
	/* The claim lease is there once a claim succeeds: wait for the first. */
	{
		int64_t deadline = harness_now_ms() + CL_WAIT_MS;

		while (harness_metric(gw[0]->port, "sfu_gateway_cluster_claims_total{result=\"won\"}") <
		       1) {
			struct harness_resp *r = harness_channel(gw[0]->port,
								 "/v1/channel?webRTC=false", "warm-up",
								 CL_GW_KEY, NULL);

			free(r);
			cr_assert_lt(harness_now_ms(), deadline, "no claim ever won: %s",
				     harness_all_logs());
			usleep(20000);
		}
	}
	harness_mock_post(m[0], "/mock/reset-stats", 200);
	harness_mock_post(m[1], "/mock/reset-stats", 200);

	/*
	 * Each gateway alone would choose differently: the region hint sends A's
	 * request to the eu-west SFU and B's to the us-east one. The claim in
	 * etcd makes them agree: both land on one SFU, which creates one channel.
	 */
	for (int i = 0; i < 100; i++) {
		char iss[32], raw_a[4096], raw_b[4096], req[4096], out_a[8192], out_b[8192];
		const char *tok;
		int a, b;

		snprintf(iss, sizeof(iss), "pair-%d", i);
		tok = harness_odoo_token(iss, CL_GW_KEY);
		snprintf(req, sizeof(req),
			 "GET /v1/channel?webRTC=false&region=%%s HTTP/1.1\r\nHost: gw\r\n"
			 "Authorization: jwt %s\r\nConnection: close\r\n\r\n",
			 tok);
		snprintf(raw_a, sizeof(raw_a), req, "eu-west");
		snprintf(raw_b, sizeof(raw_b), req, "us-east");
		memset(out_a, 0, sizeof(out_a));
		memset(out_b, 0, sizeof(out_b));
		cl_pair(gw[0]->port, raw_a, gw[1]->port, raw_b, out_a, out_b, sizeof(out_a));
		a = cl_served(m, 2, out_a);
		b = cl_served(m, 2, out_b);
		cr_assert_geq(a, 0, "pair %d at A: %.300s", i, out_a);
		cr_assert_geq(b, 0, "pair %d at B: %.300s", i, out_b);
		cr_assert_eq(a, b, "pair %d split: A sent it to SFU %d, B to SFU %d", i, a, b);
	}
	for (int k = 0; k < 2; k++)
		created += harness_mock_int(m[k], "/mock/stats", "channels_created");
	cr_assert_eq(created, 100, "%lld channels for 100 calls", (long long)created);
	for (int i = 0; i < 2; i++) {
		won += (int64_t)harness_metric(gw[i]->port,
					       "sfu_gateway_cluster_claims_total{result=\"won\"}");
		lost += (int64_t)harness_metric(gw[i]->port,
						"sfu_gateway_cluster_claims_total{result=\"lost\"}");
	}
	/* Every pair was decided in etcd: one won, the other followed (a request
	 * that found the claim already in its local table needed no claim). */
	cr_log_info("claims: %lld won, %lld lost", (long long)won, (long long)lost);
	cr_assert_geq(won, 101);
	cr_assert_gt(lost, 0);
}

/* ---- etcd's failures */

/* A mock SFU that sends its own heartbeats to the gateway on gw_port every 300 ms. */
static struct harness_proc *cl_beating_mock(const char *key, const char *region, int gw_port)
{
	char url[64];
	const char *args[] = { "--heartbeat", url, "--heartbeat-interval-ms", "300",
			       "--registration-key", CL_GW_KEY, "--region", region, NULL };

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", gw_port);
	return cl_mock(key, args);
}

/* The mock stops its heartbeats and signs off. */
static void cl_mock_signoff(const struct harness_proc *m)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	int64_t deadline = harness_now_ms() + 5000;

	cr_assert_not_null(r);
	cr_assert_eq(harness_post(m->port, "/mock/fault?heartbeat=off", NULL, "", r), 0);
	cr_assert_lt(r->status, 300, "%d %s", r->status, r->body);
	/* 409 while a periodic heartbeat is still in flight. */
	do {
		cr_assert_lt(harness_now_ms(), deadline, "the mock would not sign off");
		cr_assert_eq(harness_post(m->port, "/mock/heartbeat?status=down", NULL, "", r), 0);
		if (r->status == 409)
			usleep(20000);
	} while (r->status == 409);
	cr_assert_eq(r->status, 202, "%d %s", r->status, r->body);
	free(r);
}

/* Every gateway serves channels and lists every SFU of ports (n, -1 for none). */
static void cl_all_serve(struct harness_proc *const *gws, int n_gw, struct harness_proc *const *m,
			 int n_m, const char *iss)
{
	for (int i = 0; i < n_gw; i++) {
		char who[64];

		for (int k = 0; k < n_m; k++)
			cr_assert(cl_listed(gws[i], m[k]->port), "gateway %d lost sfu %d: %s", i, k,
				  harness_all_logs());
		snprintf(who, sizeof(who), "%s-%d", iss, i);
		cl_channel_served(gws[i], who, m, n_m, -1);
	}
}

Test(cluster, three_members_one_lost_then_all_then_back, .fini = cl_fini, .timeout = 120)
{
	static const int order_a[] = { 0, 1, 2, -1 }, order_b[] = { 0, 2, 1, -1 };
	struct harness_proc *gw[2], *m[3];
	char status[32], state[32];
	int64_t start;

	cl_etcd_start(3);
	gw[0] = cl_gateway(order_a, 1, "[registration]\nstale_after_ms = 2000\n");
	gw[1] = cl_gateway(order_b, 1, "[registration]\nstale_after_ms = 2000\n");
	cl_wait_state(gw[0], "ok", CL_WAIT_MS);
	cl_wait_state(gw[1], "ok", CL_WAIT_MS);
	/* Each SFU heartbeats to one gateway only, as behind a load balancer
	 * that keeps sending it to the same one. */
	m[0] = cl_beating_mock(CL_K1, "eu-west", gw[0]->port);
	m[1] = cl_beating_mock(CL_K2, "us-east", gw[1]->port);
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 2; k++)
			cl_wait_listed(gw[i], m[k]->port, true, CL_WAIT_MS);

	/* The member both gateways use first dies: nothing visible changes. */
	cl_member_stop(0, SIGKILL);
	start = harness_now_ms();
	while (harness_now_ms() - start < 3000) {
		cl_all_serve(gw, 2, m, 2, "one-lost");
		for (int i = 0; i < 2; i++) {
			cl_health(gw[i], status, sizeof(status), state, sizeof(state));
			cr_assert_str_eq(status, "ok", "gateway %d after one member died: %s", i,
					 harness_all_logs());
		}
		usleep(100000);
	}
	for (int i = 0; i < 2; i++)
		cr_assert_geq(harness_metric(gw[i]->port,
					     "sfu_gateway_cluster_endpoint_switches_total"),
			      1, "gateway %d still on the dead member", i);
	/* Registrations still flow between the gateways. */
	m[2] = cl_beating_mock(CL_K3, "ap-south", gw[1]->port);
	cl_wait_listed(gw[0], m[2]->port, true, CL_WAIT_MS);

	/* All of etcd stops: every gateway serves from its last view, its own
	 * SFUs' heartbeats included, past stale_after_ms ([cluster] hold_ms). */
	cl_member_stop(1, SIGTERM);
	cl_member_stop(2, SIGTERM);
	cl_wait_state(gw[0], "degraded", CL_WAIT_MS);
	cl_wait_state(gw[1], "degraded", CL_WAIT_MS);
	start = harness_now_ms();
	while (harness_now_ms() - start < 3000) {
		cl_all_serve(gw, 2, m, 3, "outage");
		usleep(200000);
	}
	cl_health(gw[0], status, sizeof(status), state, sizeof(state));
	cr_assert_str_eq(status, "degraded");
	cr_assert_eq(harness_metric(gw[1]->port, "sfu_gateway_cluster_degraded"), 1);
	/* Meanwhile the SFU heartbeating to B signs off there: A, cut off, keeps it. */
	cl_mock_signoff(m[1]);
	cl_wait_listed(gw[1], m[1]->port, false, CL_WAIT_MS);
	cr_assert(cl_listed(gw[0], m[1]->port));

	/* etcd returns: the gateways catch up and agree again. */
	cl_members[0].pid = 0;
	for (int i = 0; i < 3; i++)
		cl_member_spawn(&cl_members[i]);
	cl_members_wait();
	cl_wait_state(gw[0], "ok", 20000);
	cl_wait_state(gw[1], "ok", 20000);
	cl_wait_listed(gw[0], m[1]->port, false, CL_WAIT_MS);
	for (int i = 0; i < 2; i++) {
		cl_wait_listed(gw[i], m[0]->port, true, CL_WAIT_MS);
		cl_wait_listed(gw[i], m[2]->port, true, CL_WAIT_MS);
	}
	cl_channel_served(gw[0], "after", m, 3, -1);
	cl_channel_served(gw[1], "after", m, 3, -1);
}

/* ---- catching up after etcd compacted what a gateway missed */

/* A TCP relay from 127.0.0.1:port to 127.0.0.1:target in a child process: the
 * link between one gateway and etcd, which the test can cut (kill it) and
 * mend (start it again on the same port). */
static pid_t cl_relay_start(int port, int target)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int lfd, one = 1;
	pid_t pid;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(lfd, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind(): %s",
		     strerror(errno));
	cr_assert_eq(listen(lfd, 16), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid > 0) {
		close(lfd);
		return pid;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		int c = accept(lfd, NULL, NULL), u;
		struct sockaddr_in ta = { .sin_family = AF_INET, .sin_port = htons((uint16_t)target) };

		if (c < 0)
			continue;
		if (fork() != 0) {
			close(c);
			continue;
		}
		/* One connection: both ways until either side closes. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		ta.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		u = socket(AF_INET, SOCK_STREAM, 0);
		if (u < 0 || connect(u, (struct sockaddr *)&ta, sizeof(ta)) != 0)
			_exit(0);
		for (;;) {
			struct pollfd p[2] = { { c, POLLIN, 0 }, { u, POLLIN, 0 } };
			char buf[16384];

			if (poll(p, 2, -1) < 0)
				_exit(0);
			for (int i = 0; i < 2; i++) {
				ssize_t n;

				if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				n = read(p[i].fd, buf, sizeof(buf));
				if (n <= 0 || write(p[1 - i].fd, buf, (size_t)n) != n)
					_exit(0);
			}
		}
	}
}

/* The relay and the connections it carries, gone. */
static void cl_relay_cut(pid_t pid)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	harness_wait_exit(pid, 5000);
}

/* etcd's current revision, then everything before it compacted away. */
static void cl_compact(int port)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	struct json_object *o;
	char body[128];
	long long rev;

	cr_assert_not_null(r);
	cr_assert_eq(harness_post(port, "/v3/kv/range", NULL, "{\"key\":\"AA==\"}", r), 0);
	o = json_tokener_parse(r->body);
	rev = atoll(json_object_get_string(
		json_object_object_get(json_object_object_get(o, "header"), "revision")));
	json_object_put(o);
	cr_assert_gt(rev, 0, "%s", r->body);
	snprintf(body, sizeof(body), "{\"revision\":\"%lld\",\"physical\":true}", rev);
	cr_assert_eq(harness_post(port, "/v3/kv/compaction", NULL, body, r), 0);
	cr_assert_eq(r->status, 200, "%s", r->body);
	free(r);
}

/* Waits until the gateway has written n registrations (puts) to etcd. */
static void cl_wait_puts(const struct harness_proc *gw, double n)
{
	int64_t deadline = harness_now_ms() + CL_WAIT_MS;

	while (harness_metric(gw->port, "sfu_gateway_cluster_writes_total{op=\"put\"}") < n)
		cr_assert_lt(harness_now_ms(), deadline, "the gateway never wrote %g puts", n);
}

Test(cluster, a_gateway_cut_off_while_etcd_compacts_catches_up, .fini = cl_fini, .timeout = 90)
{
	static const int direct[] = { 0, -1 };
	struct harness_proc *gw[2], *m[2];
	char toml[512];
	int relay_port;
	pid_t relay;

	cl_etcd_start(1);
	relay_port = harness_free_port();
	relay = cl_relay_start(relay_port, cl_members[0].client);
	gw[0] = cl_gateway(direct, 1, NULL);
	snprintf(toml, sizeof(toml),
		 "[cluster]\netcd = [\"http://127.0.0.1:%d\"]\nprefix = \"/t/\"\ntimeout_ms = 300\n",
		 relay_port);
	gw[1] = harness_gateway_keyed(CL_GW_KEY, NULL, 1, toml);
	m[0] = cl_mock(CL_K1, NULL);
	m[1] = cl_mock(CL_K2, NULL);
	cl_wait_state(gw[0], "ok", CL_WAIT_MS);
	cl_wait_state(gw[1], "ok", CL_WAIT_MS);
	cl_heartbeat(gw[0]->port, m[0]->port, CL_K1, "eu-west", true, "registered");
	cl_wait_listed(gw[1], m[0]->port, true, 2000);

	/*
	 * B loses etcd; A's SFU signs off, and etcd compacts up to that very
	 * deletion. B's watch resumes from the deletion's revision, which etcd
	 * still serves but without the deletion (a compaction keeps no
	 * tombstones): the keys that still exist tell B that the SFU left.
	 */
	cl_relay_cut(relay);
	cl_wait_state(gw[1], "degraded", CL_WAIT_MS);
	cl_heartbeat(gw[0]->port, m[0]->port, CL_K1, "eu-west", false, "removed");
	{
		int64_t deadline = harness_now_ms() + CL_WAIT_MS;

		while (harness_metric(gw[0]->port,
				      "sfu_gateway_cluster_writes_total{op=\"delete\"}") < 1)
			cr_assert_lt(harness_now_ms(), deadline, "A never wrote the sign-off");
	}
	cl_compact(cl_members[0].client);
	cr_assert(cl_listed(gw[1], m[0]->port), "B keeps its last view");
	relay = cl_relay_start(relay_port, cl_members[0].client);
	cl_wait_state(gw[1], "ok", 20000);
	cl_wait_listed(gw[1], m[0]->port, false, CL_WAIT_MS);

	/*
	 * Cut off again: an SFU registers at A and reports twice, and etcd
	 * compacts past the revision B would resume from. etcd refuses that
	 * watch (compacted), so B reads every registration again.
	 */
	cl_relay_cut(relay);
	cl_wait_state(gw[1], "degraded", CL_WAIT_MS);
	cl_heartbeat(gw[0]->port, m[1]->port, CL_K2, "us-east", true, "registered");
	cl_wait_puts(gw[0], 2);
	cl_heartbeat(gw[0]->port, m[1]->port, CL_K2, "us-east", true, "updated");
	cl_wait_puts(gw[0], 3);
	cl_compact(cl_members[0].client);
	cr_assert_not(cl_listed(gw[1], m[1]->port));
	relay = cl_relay_start(relay_port, cl_members[0].client);
	cl_wait_state(gw[1], "ok", 20000);
	cl_wait_listed(gw[1], m[1]->port, true, CL_WAIT_MS);
	cr_assert_geq(harness_metric(gw[1]->port, "sfu_gateway_cluster_resyncs_total"), 2,
		      "B read everything again: %s", harness_log(gw[1]));
	cl_relay_cut(relay);
}
