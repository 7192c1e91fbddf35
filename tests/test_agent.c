/* Integration tests of sfu-gateway-agent against the real gateway and the mock SFU. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <json.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "harness.h"

/* The gateway's key, its registration key, the SFU's AUTH_KEY and a wrong key. */
#define AGT_GW_KEY "YWdlbnQtdGVzdHMtZ2F0ZXdheS1rZXktMDAwMDAwMDAx"
#define AGT_REG_KEY "YWdlbnQtdGVzdHMtcmVnaXN0cmF0aW9uLWtleS0wMDAy"
#define AGT_SFU_KEY "YWdlbnQtdGVzdHMtc2Z1LWF1dGgta2V5LTAwMDAwMDAz"
#define AGT_BAD_KEY "YWdlbnQtdGVzdHMtd3Jvbmcta2V5LTAwMDAwMDAwMDA0"
/* Stale SFUs expire only after a minute: what disappears sooner was signed off.
 * The agent reports the real host's load, which a busy test machine pushes to
 * 100% CPU: no overload limit may make the SFU unusable for channels. */
#define AGT_TOML                                                                      \
	"[registration]\nstale_after_ms = 60000\n"                                     \
	"[overload]\nmax_cpu = 1.0\nmax_memory = 1.0\nmax_load_score = 1000.0\n"

/* Under SFU_TEST_VALGRIND=1 the agent runs under valgrind and the gateway ~20x
 * slower: deadlines and freshness bounds stretch (as harness.c does). */
static bool agt_valgrind(void)
{
	const char *v = getenv("SFU_TEST_VALGRIND");

	return v != NULL && v[0] == '1';
}

static int agt_scale(int ms)
{
	return agt_valgrind() ? ms * 10 : ms;
}

/* Waits for the agent's exit; its exit code, 128+signal, or -1 at the deadline. */
static int agt_wait(struct harness_proc *p, int timeout_ms)
{
	int rc = harness_wait_exit(p->pid, timeout_ms);

	if (rc >= 0)
		p->pid = 0;
	return rc;
}

/* Runs the agent to its exit (bounded); returns the exit code, log in *log. */
static int agt_run(const char *const *args, const char *const *env, char **log)
{
	struct harness_proc *p = harness_agent_start(args, env);
	int rc = agt_wait(p, 5000);

	*log = harness_whole_log(p);
	return rc;
}

/* A one-worker gateway with the test keys; the config makes SFUs stale after a
 * minute. port 0: any free port. */
static struct harness_proc *agt_gateway(int port)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" AGT_GW_KEY,
					   "SFU_GATEWAY_REGISTRATION_KEY=" AGT_REG_KEY, NULL };
	char portbuf[16];
	const char *args[10];
	int n = 0;

	args[n++] = "--workers";
	args[n++] = "1";
	args[n++] = "--config";
	args[n++] = harness_write_file("agent.toml", AGT_TOML);
	if (port > 0) {
		snprintf(portbuf, sizeof(portbuf), "%d", port);
		args[n++] = "--port";
		args[n++] = portbuf;
		args[n++] = "--bind";
		args[n++] = "127.0.0.1";
	}
	args[n] = NULL;
	return harness_gateway_up(env, args);
}

static struct harness_proc *agt_mock(const char *sessions)
{
	const char *const args[] = { "--sessions", sessions, NULL };
	struct harness_proc *m = harness_mock_start(AGT_SFU_KEY, args);

	cr_assert_not_null(m, "the mock SFU did not come up");
	return m;
}

/* What /v1/health says of one SFU. */
struct agt_sfu {
	bool found;
	char source[32], region[64];
	int64_t channels, sessions, age_ms;
	double cpu, memory;
};

static struct agt_sfu agt_health(int gw_port, const char *address)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	struct agt_sfu s = { 0 };
	json_object *root, *arr, *v;

	cr_assert_not_null(r);
	cr_assert_eq(harness_get(gw_port, "/v1/health", NULL, r), 0, "GET /v1/health");
	cr_assert(r->status == 200 || r->status == 503, "GET /v1/health: %d", r->status);
	root = json_tokener_parse(r->body);
	cr_assert_not_null(root, "/v1/health is not JSON: %s", r->body);
	cr_assert(json_object_object_get_ex(root, "sfus", &arr), "no sfus[] in %s", r->body);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i);

		if (!json_object_object_get_ex(o, "address", &v) ||
		    strcmp(json_object_get_string(v), address) != 0)
			continue;
		s.found = true;
		if (json_object_object_get_ex(o, "source", &v))
			snprintf(s.source, sizeof(s.source), "%s", json_object_get_string(v));
		if (json_object_object_get_ex(o, "region", &v))
			snprintf(s.region, sizeof(s.region), "%s", json_object_get_string(v));
		if (json_object_object_get_ex(o, "channels", &v))
			s.channels = json_object_get_int64(v);
		if (json_object_object_get_ex(o, "sessions", &v))
			s.sessions = json_object_get_int64(v);
		if (json_object_object_get_ex(o, "lastHeartbeatAgeMs", &v))
			s.age_ms = json_object_get_int64(v);
		if (json_object_object_get_ex(o, "cpuUsage", &v))
			s.cpu = json_object_get_double(v);
		if (json_object_object_get_ex(o, "memoryUsage", &v))
			s.memory = json_object_get_double(v);
	}
	json_object_put(root);
	free(r);
	return s;
}

/* Polls the health until the SFU is there with want sessions (want < 0: any). */
static bool agt_wait_sfu(int gw_port, const char *address, int64_t want, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + agt_scale(timeout_ms);

	do {
		struct agt_sfu s = agt_health(gw_port, address);

		if (s.found && (want < 0 || s.sessions == want))
			return true;
		poll(NULL, 0, 25);
	} while (harness_now_ms() < deadline);
	return false;
}

static bool agt_wait_gone(int gw_port, const char *address, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + agt_scale(timeout_ms);

	do {
		if (!agt_health(gw_port, address).found)
			return true;
		poll(NULL, 0, 25);
	} while (harness_now_ms() < deadline);
	return false;
}

/* The sessions the mock's own /v1/stats reports, and its channel count. */
static void agt_mock_stats(const struct harness_proc *m, int64_t *channels)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	json_object *arr;

	cr_assert_not_null(r);
	cr_assert_eq(harness_get(m->port, "/v1/stats", NULL, r), 0, "mock /v1/stats");
	arr = json_tokener_parse(r->body);
	cr_assert(arr != NULL && json_object_is_type(arr, json_type_array), "mock stats: %s",
		  r->body);
	*channels = (int64_t)json_object_array_length(arr);
	json_object_put(arr);
	free(r);
}

/* Asserts the agent's log holds no key material and no token. */
static void agt_assert_no_secrets(const char *log)
{
	static const char *const secrets[] = { AGT_GW_KEY, AGT_REG_KEY, AGT_SFU_KEY, AGT_BAD_KEY,
					       "Bearer", "eyJ" };

	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		cr_assert_null(strstr(log, secrets[i]), "the agent logged secret material (%s):\n%s",
			       secrets[i], log);
}

/* ---- registration, load updates, sign-off */

Test(agent, registers_follows_load_and_signs_off, .fini = harness_cleanup, .timeout = 40)
{
	struct harness_proc *gw = agt_gateway(0), *m = agt_mock("5");
	const char *addr = harness_url(m->port);
	char e_gw[128], e_addr[128];
	/* The sender's environment variables, with one flag that must win over them. */
	const char *env[] = { e_gw, "SFU_GATEWAY_PING_INTERVAL=200", "SFU_REGION=eu-west",
			      e_addr, "AUTH_KEY=" AGT_SFU_KEY,
			      "SFU_GATEWAY_REGISTRATION_KEY=" AGT_REG_KEY, NULL };
	const char *const args[] = { "--region", "us-east", NULL };
	struct harness_proc *ag;
	struct agt_sfu s;
	struct harness_resp *r;
	char auth[4200], *log;
	int64_t channels, t0;
	int rc;

	snprintf(e_gw, sizeof(e_gw), "SFU_GATEWAY_URL=%s", harness_url(gw->port));
	snprintf(e_addr, sizeof(e_addr), "SFU_ADDRESS=%s", addr);
	ag = harness_agent_start(args, env);

	/* Registered at once with the load it polled. */
	cr_assert(agt_wait_sfu(gw->port, addr, 5, 5000), "the SFU was not registered with 5 "
							   "sessions");
	s = agt_health(gw->port, addr);
	agt_mock_stats(m, &channels);
	cr_assert_str_eq(s.source, "registered");
	cr_assert_str_eq(s.region, "us-east", "the --region flag did not win over SFU_REGION");
	cr_assert_eq(s.channels, channels, "channels %lld, the mock has %lld",
		     (long long)s.channels, (long long)channels);
	cr_assert(s.cpu >= 0.0 && s.cpu <= 1.0, "cpuUsage %g", s.cpu);
	cr_assert(s.memory > 0.0 && s.memory < 1.0, "memoryUsage %g", s.memory);

	/* The SFU's sessions change: the gateway follows. */
	harness_mock_post(m, "/mock/fault?sessions=12", 200);
	cr_assert(agt_wait_sfu(gw->port, addr, 12, 3000), "the gateway did not see 12 sessions");
	harness_mock_post(m, "/mock/fault?sessions=0", 200);
	cr_assert(agt_wait_sfu(gw->port, addr, 0, 3000), "the gateway did not see 0 sessions");
	/* Heartbeats keep coming at the interval. */
	s = agt_health(gw->port, addr);
	cr_assert_lt(s.age_ms, agt_scale(2000), "last heartbeat %lld ms ago", (long long)s.age_ms);

	/* A channel through the gateway reaches the mock with a token signed by the key
	 * the agent announced. */
	r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	snprintf(auth, sizeof(auth), "Authorization: jwt %s\r\n",
		 harness_odoo_token("https://odoo.example.com:agent", AGT_GW_KEY));
	cr_assert_eq(harness_get(gw->port, "/v1/channel", auth, r), 0, "GET /v1/channel");
	cr_assert_eq(r->status, 200, "GET /v1/channel: %d %s", r->status, r->body);
	cr_assert_eq(harness_get(m->port, "/mock/last", NULL, r), 0, "GET /mock/last");
	cr_assert(strstr(r->body, "\"verified\":true") != NULL, "mock did not verify: %s",
		  r->body);
	free(r);

	/* SIGTERM: signed off and gone at once, not after the minute of staleness. */
	t0 = harness_now_ms();
	kill(ag->pid, SIGTERM);
	rc = agt_wait(ag, 3000);
	cr_assert_eq(rc, 0, "the agent exited %d after SIGTERM", rc);
	cr_assert_lt(harness_now_ms() - t0, agt_scale(2500), "the sign-off took too long");
	cr_assert_not(agt_health(gw->port, addr).found, "the SFU is still registered");
	cr_assert_eq(harness_metric(gw->port,
				    "sfu_gateway_heartbeats_total{result=\"removed\"}"),
		     1);
	log = harness_whole_log(ag);
	cr_assert(strstr(log, "signed off") != NULL, "no sign-off in the log:\n%s", log);
	agt_assert_no_secrets(log);
	free(log);
}

/* ---- several gateways, one of them restarted */

Test(agent, two_gateways_one_restarted, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *a = agt_gateway(0), *b = agt_gateway(0), *m = agt_mock("3");
	const char *addr = harness_url(m->port);
	int a_port = a->port;
	char urls[128];
	const char *args[] = { "--gateway-url", urls, "--interval", "200", "--region", "eu-west",
			       "--address", addr, "--auth-key", AGT_SFU_KEY,
			       "--registration-key", AGT_REG_KEY, NULL };
	struct harness_proc *ag;
	int64_t deadline;
	int samples = 0, st;
	char *log;

	/* Spaces around the entries are allowed. */
	snprintf(urls, sizeof(urls), "%s , %s", harness_url(a->port), harness_url(b->port));
	ag = harness_agent_start(args, NULL);
	cr_assert(agt_wait_sfu(a->port, addr, 3, 5000), "gateway A did not get the SFU");
	cr_assert(agt_wait_sfu(b->port, addr, 3, 5000), "gateway B did not get the SFU");

	st = harness_stop(a, SIGTERM, 5000);
	cr_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "gateway A did not stop cleanly: status %d (99 << 8: a valgrind error)", st);
	/* While A is down, B keeps getting heartbeats, and follows a change of load. */
	harness_mock_post(m, "/mock/fault?sessions=4", 200);
	deadline = harness_now_ms() + 1500;
	while (harness_now_ms() < deadline) {
		struct agt_sfu s = agt_health(b->port, addr);

		cr_assert(s.found, "gateway B lost the SFU while A was down");
		cr_assert_lt(s.age_ms, agt_scale(1000), "gateway B heard nothing for %lld ms while A was down",
			     (long long)s.age_ms);
		samples++;
		poll(NULL, 0, 100);
	}
	cr_assert_geq(samples, 3);
	cr_assert(agt_wait_sfu(b->port, addr, 4, 3000), "gateway B did not follow the load");

	/* A comes back on the same port and gets the SFU again, within the backoff. */
	a = agt_gateway(a_port);
	cr_assert(agt_wait_sfu(a->port, addr, 4, 15000), "restarted gateway A never got the SFU");
	cr_assert_lt(agt_health(b->port, addr).age_ms, agt_scale(1000), "gateway B stopped hearing");

	kill(ag->pid, SIGTERM);
	cr_assert_eq(agt_wait(ag, 3000), 0, "the agent did not exit 0");
	cr_assert_not(agt_health(a->port, addr).found, "gateway A still has the SFU");
	cr_assert_not(agt_health(b->port, addr).found, "gateway B still has the SFU");
	log = harness_whole_log(ag);
	cr_assert(strstr(log, "connection refused") != NULL, "A's outage is not in the log:\n%s",
		  log);
	cr_assert(strstr(log, "accepted again") != NULL, "A's return is not in the log:\n%s", log);
	free(log);
}

/* ---- a wrong registration key */

/* A loopback listener standing in for a gateway; its port in *port. */
static int agt_listen(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 4), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* The first whole POST one listener gets (head and Content-Length body), read
 * with a deadline; the connection is then closed unanswered. */
static void agt_capture(int lfd, char *buf, size_t cap)
{
	int64_t deadline = harness_now_ms() + 5000;
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	size_t len = 0;
	int fd;

	cr_assert_eq(poll(&p, 1, 5000), 1, "no heartbeat came");
	fd = accept(lfd, NULL, NULL);
	cr_assert(fd >= 0);
	p.fd = fd;
	while (harness_now_ms() < deadline && len + 1 < cap) {
		const char *end, *cl;
		ssize_t n;

		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
		cl = strcasestr(buf, "\r\nContent-Length: ");
		if (end != NULL && cl != NULL &&
		    len >= (size_t)(end + 4 - buf) + strtoul(cl + 18, NULL, 10))
			break;
		if (poll(&p, 1, 100) != 1)
			continue;
		n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	cr_assert_not_null(strstr(buf, "\r\n\r\n"), "incomplete request: %s", buf);
}

/* The "seq" claim of the request's bearer token. */
static long long agt_seq(const char *request)
{
	const char *t = strstr(request, "Authorization: Bearer ");
	const char *dot1, *dot2;
	uint8_t claims[1024];
	struct json_object *o, *v;
	ssize_t n;
	long long seq;

	cr_assert_not_null(t, "no token: %s", request);
	dot1 = strchr(t, '.');
	cr_assert_not_null(dot1);
	dot2 = strchr(dot1 + 1, '.');
	cr_assert_not_null(dot2);
	n = base64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), claims, sizeof(claims) - 1);
	cr_assert(n > 0);
	claims[n] = '\0';
	o = json_tokener_parse((const char *)claims);
	cr_assert(o != NULL && json_object_object_get_ex(o, "seq", &v), "%s", claims);
	seq = (long long)json_object_get_int64(v);
	json_object_put(o);
	return seq;
}

/* Every gateway a poll reaches gets the same heartbeat: the same body bytes and
 * the same seq, so that gateways sharing etcd see one heartbeat, not one each. */
Test(agent, one_heartbeat_per_poll_for_every_gateway, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *m = agt_mock("2");
	const char *addr = harness_url(m->port);
	static char got[2][8192];
	int lfd[2], port[2];
	char urls[128];
	const char *args[] = { "--gateway-url", urls, "--interval", "5000", "--region", "eu-west",
			       "--address", addr, "--auth-key", AGT_SFU_KEY,
			       "--registration-key", AGT_REG_KEY, NULL };

	for (int i = 0; i < 2; i++)
		lfd[i] = agt_listen(&port[i]);
	snprintf(urls, sizeof(urls), "%s,%s", harness_url(port[0]), harness_url(port[1]));
	cr_assert_not_null(harness_agent_start(args, NULL));
	for (int i = 0; i < 2; i++) {
		agt_capture(lfd[i], got[i], sizeof(got[i]));
		close(lfd[i]);
	}
	cr_assert_str_eq(strstr(got[0], "\r\n\r\n"), strstr(got[1], "\r\n\r\n"),
			 "the bodies differ");
	cr_assert_eq(agt_seq(got[0]), agt_seq(got[1]), "one poll, two seqs:\n%s\n%s", got[0],
		     got[1]);
}

Test(agent, wrong_registration_key_backs_off, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = agt_gateway(0), *m = agt_mock("2");
	const char *addr = harness_url(m->port);
	const char *const args[] = { "--gateway-url", harness_url(gw->port), "--interval", "200",
				     "--region", "eu-west", "--address", addr, "--auth-key",
				     AGT_SFU_KEY, "--registration-key", AGT_BAD_KEY, NULL };
	const char *rejected = "sfu_gateway_heartbeats_total{result=\"rejected\"}";
	struct harness_proc *ag;
	int64_t start, deadline;
	double n, prev = 0;
	char *log, *p;
	int delays = 0;

	ag = harness_agent_start(args, NULL);
	/* From the first rejection on, watch for 3.2 s: a fixed 200 ms interval would
	 * make ~16 rejections, the backoff (1 s, then 2 s) 2 or 3. */
	deadline = harness_now_ms() + agt_scale(5000);
	while (harness_metric(gw->port, rejected) < 1 && harness_now_ms() < deadline)
		poll(NULL, 0, 10);
	cr_assert_geq(harness_metric(gw->port, rejected), 1, "no heartbeat reached the gateway");
	start = harness_now_ms();
	while (harness_now_ms() - start < 3200) {
		n = harness_metric(gw->port, rejected);
		cr_assert_geq(n, prev);
		prev = n;
		poll(NULL, 0, 50);
	}
	n = harness_metric(gw->port, rejected);
	cr_assert(n >= 2 && n <= 4, "%g rejected heartbeats in 3.2 s; the backoff makes 2 to 4", n);
	cr_assert_not(agt_health(gw->port, addr).found, "a badly signed heartbeat registered");

	log = harness_whole_log(ag);
	cr_assert(strstr(log, "401") != NULL, "no 401 in the log:\n%s", log);
	cr_assert(strstr(log, "invalid token") != NULL, "no gateway error in the log:\n%s", log);
	cr_assert(strstr(log, harness_url(gw->port)) != NULL, "no gateway URL in the log:\n%s",
		  log);
	agt_assert_no_secrets(log);
	/* The announced delays grow: 1 s, 2 s, 4 s +-20% never overlap. */
	{
		double last = 0;

		for (p = strstr(log, "retrying in "); p != NULL; p = strstr(p + 1, "retrying in ")) {
			double d = strtod(p + 12, NULL);

			cr_assert_gt(d, last, "delays do not grow:\n%s", log);
			last = d;
			delays++;
		}
	}
	cr_assert_geq(delays, 2, "fewer than two retries announced:\n%s", log);
	free(log);

	/* Still running and retrying; SIGTERM ends it cleanly all the same. */
	kill(ag->pid, SIGTERM);
	cr_assert_eq(agt_wait(ag, 3000), 0, "the agent did not exit 0");
}

/* ---- the SFU stops answering */

Test(agent, silent_sfu_then_down_after, .fini = harness_cleanup, .timeout = 40)
{
	struct harness_proc *gw = agt_gateway(0), *m = agt_mock("6");
	const char *addr = harness_url(m->port);
	const char *updated = "sfu_gateway_heartbeats_total{result=\"updated\"}";
	const char *const env[] = { "SFU_AGENT_DOWN_AFTER=999", "SFU_AGENT_LOG_LEVEL=debug", NULL };
	const char *const args[] = { "--gateway-url", harness_url(gw->port), "--interval", "200",
				     "--region", "eu-west", "--address", addr, "--auth-key",
				     AGT_SFU_KEY, "--registration-key", AGT_REG_KEY,
				     "--down-after", "3", NULL };
	struct harness_proc *ag;
	double before, after;
	int64_t deadline;

	/* The flag (3) wins over the environment (999). */
	ag = harness_agent_start(args, env);
	cr_assert(agt_wait_sfu(gw->port, addr, 6, 5000), "the SFU was not registered");

	/* The mock fails /v1/stats too: no heartbeat goes out... */
	harness_mock_post(m, "/mock/fault?mode=status&status=500&all=1", 200);
	cr_assert(agt_wait_gone(gw->port, addr, 5000),
		  "the SFU was not signed off after 3 failed polls");
	before = harness_metric(gw->port, updated);
	deadline = harness_now_ms() + 1000;
	while (harness_now_ms() < deadline) {
		cr_assert_not(agt_health(gw->port, addr).found, "a failing SFU was registered");
		poll(NULL, 0, 100);
	}
	after = harness_metric(gw->port, updated);
	cr_assert_eq(before, after, "heartbeats went out while the SFU did not answer");

	/* ...and it comes back once the SFU answers again. */
	harness_mock_post(m, "/mock/fault?mode=ok&all=0", 200);
	cr_assert(agt_wait_sfu(gw->port, addr, 6, 5000), "the SFU was not registered again");
	kill(ag->pid, SIGTERM);
	cr_assert_eq(agt_wait(ag, 3000), 0);
	{
		char *log = harness_whole_log(ag);

		cr_assert(strstr(log, "signing off") != NULL, "no down-after in the log:\n%s", log);
		agt_assert_no_secrets(log);
		free(log);
	}
}

/* Without --down-after, a silent SFU gets no heartbeats: the reaper expires it. */
Test(agent, silent_sfu_sends_nothing, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = agt_gateway(0), *m = agt_mock("1");
	const char *addr = harness_url(m->port);
	const char *const args[] = { "--gateway-url", harness_url(gw->port), "--interval", "200",
				     "--region", "eu-west", "--address", addr, "--auth-key",
				     AGT_SFU_KEY, "--registration-key", AGT_REG_KEY, NULL };
	struct harness_proc *ag = harness_agent_start(args, NULL);
	struct agt_sfu s;
	int64_t deadline;
	int st;

	cr_assert(agt_wait_sfu(gw->port, addr, 1, 5000), "the SFU was not registered");
	st = harness_stop(m, SIGKILL, 3000);
	cr_assert(st >= 0 && WIFSIGNALED(st), "the mock did not die: %d", st);
	/* Give the agent 1.2 s (six intervals) of refused polls. */
	deadline = harness_now_ms() + 1200;
	do {
		s = agt_health(gw->port, addr);
		cr_assert(s.found, "the SFU disappeared without --down-after");
		poll(NULL, 0, 100);
	} while (harness_now_ms() < deadline);
	cr_assert_gt(s.age_ms, 700, "heartbeats went on (%lld ms old) for a dead SFU",
		     (long long)s.age_ms);
	kill(ag->pid, SIGTERM);
	cr_assert_eq(agt_wait(ag, 3000), 0);
	cr_assert_not(agt_health(gw->port, addr).found, "SIGTERM did not sign off");
}

/* ---- configuration */

Test(agent, config_errors, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const ok_env[] = { "SFU_GATEWAY_URL=http://127.0.0.1:9",
					      "SFU_REGION=eu-west",
					      "SFU_ADDRESS=http://127.0.0.1:8",
					      "AUTH_KEY=" AGT_SFU_KEY,
					      "SFU_GATEWAY_REGISTRATION_KEY=" AGT_REG_KEY, NULL };
	static const struct {
		const char *args[4];
		const char *env_extra; /* replaces the variable of the same name, or NULL */
		bool no_env;
		int code;
		const char *needle;
	} cases[] = {
		{ { NULL }, NULL, true, 2, "SFU_GATEWAY_URL" },
		{ { "--bogus", NULL }, NULL, false, 2, "--help" },
		{ { "stray", NULL }, NULL, false, 2, "unexpected argument" },
		{ { NULL }, "SFU_REGION=", false, 2, "SFU_REGION" },
		{ { NULL }, "AUTH_KEY=", false, 2, "AUTH_KEY" },
		{ { "--interval", "50", NULL }, NULL, false, 1, "--interval" },
		{ { NULL }, "SFU_GATEWAY_PING_INTERVAL=10s", false, 1, "SFU_GATEWAY_PING_INTERVAL" },
		{ { "--region", "EU West", NULL }, NULL, false, 1, "--region" },
		{ { NULL }, "SFU_ADDRESS=http://127.0.0.1:8/path", false, 1, "SFU_ADDRESS" },
		{ { NULL }, "SFU_ADDRESS=http://0x7f.0.0.1:8", false, 1, "SFU_ADDRESS" },
		{ { "--cert", "/etc/hostname", NULL }, NULL, false, 2, "go together" },
		{ { NULL }, "SFU_AGENT_KEY=/etc/hostname", false, 2, "go together" },
		{ { NULL }, "SFU_AGENT_CA=/nonexistent/ca.pem", false, 1, "/nonexistent/ca.pem" },
		{ { "--ca", "", NULL }, NULL, false, 1, "--ca" },
		{ { NULL }, "SFU_GATEWAY_URL=http://127.0.0.1:9,,http://127.0.0.1:10", false, 1,
		  "empty entry" },
		{ { NULL }, "SFU_GATEWAY_URL=ftp://127.0.0.1:9", false, 1, "http(s)://" },
		{ { NULL }, "SFU_GATEWAY_URL=http://a:1,http://A:1/", false, 1, "twice" },
		{ { "--registration-key", "not*base64!", NULL }, NULL, false, 1,
		  "--registration-key" },
		{ { NULL }, "AUTH_KEY=%%%%", false, 1, "AUTH_KEY" },
		{ { "--down-after", "-1", NULL }, NULL, false, 1, "--down-after" },
		{ { "--log-level", "loud", NULL }, NULL, false, 1, "--log-level" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *env[8];
		size_t n = 0;
		char *log;
		int rc;

		for (size_t j = 0; !cases[i].no_env && ok_env[j] != NULL; j++) {
			const char *x = cases[i].env_extra;

			if (x != NULL && strncmp(ok_env[j], x, strcspn(x, "=") + 1) == 0)
				continue;
			env[n++] = ok_env[j];
		}
		if (cases[i].env_extra != NULL)
			env[n++] = cases[i].env_extra;
		env[n] = NULL;
		rc = agt_run(cases[i].args, env, &log);
		cr_assert_eq(rc, cases[i].code, "case %zu: exit %d, want %d; stderr: %s", i, rc,
			     cases[i].code, log);
		cr_assert(strstr(log, cases[i].needle) != NULL, "case %zu: stderr lacks '%s': %s",
			  i, cases[i].needle, log);
		/* One line of our own; getopt's complaint comes with a hint line. */
		{
			size_t lines = 0;

			for (const char *c = log; *c != '\0'; c++)
				lines += *c == '\n';
			cr_assert(lines >= 1 && lines <= 2, "case %zu: %zu lines: %s", i, lines, log);
		}
		agt_assert_no_secrets(log);
		free(log);
	}
}

/* --help names every flag and variable, and the man page documents the same. */
Test(agent, help_version_and_man_page, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const names[] = {
		"--gateway-url", "--interval", "--region", "--address", "--sfu-url",
		"--auth-key", "--registration-key", "--down-after", "--max-sessions",
		"--log-level", "--version", "--help", "SFU_GATEWAY_URL",
		"SFU_GATEWAY_PING_INTERVAL", "SFU_REGION", "SFU_ADDRESS", "SFU_URL", "AUTH_KEY",
		"SFU_GATEWAY_REGISTRATION_KEY", "SFU_AGENT_DOWN_AFTER", "SFU_AGENT_MAX_SESSIONS",
		"SFU_AGENT_LOG_LEVEL", "--ca", "--cert", "--key", "SFU_AGENT_CA", "SFU_AGENT_CERT",
		"SFU_AGENT_KEY",
	};
	const char *const help[] = { "--help", NULL }, *const version[] = { "--version", NULL };
	char *out, *man, cmd[600];
	const char *bin = getenv("SFU_AGENT_BIN");
	FILE *f;
	size_t n;

	/* --help and --version print to stdout: capture it through a shell redirect. */
	snprintf(cmd, sizeof(cmd), "'%s' --help > '%s/help.txt'",
		 bin != NULL ? bin : "build/sfu-gateway-agent", harness_tmpdir());
	cr_assert_eq(system(cmd), 0, "--help failed");
	snprintf(cmd, sizeof(cmd), "%s/help.txt", harness_tmpdir());
	f = fopen(cmd, "r");
	cr_assert_not_null(f);
	out = calloc(1, 65536);
	man = calloc(1, 262144);
	cr_assert(out != NULL && man != NULL);
	n = fread(out, 1, 65535, f);
	fclose(f);
	out[n] = '\0';
	f = fopen("man/sfu-gateway-agent.8", "r");
	cr_assert_not_null(f, "man/sfu-gateway-agent.8 is missing (tests run from the top)");
	n = fread(man, 1, 262143, f);
	fclose(f);
	man[n] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char flag[64];

		cr_assert(strstr(out, names[i]) != NULL, "--help does not name %s", names[i]);
		/* mdoc writes a flag as ".Fl name" and a variable as ".Ev NAME". */
		snprintf(flag, sizeof(flag), "%s%s", names[i][0] == '-' ? "Fl " : "Ev ",
			 names[i] + (names[i][0] == '-' ? 2 : 0));
		cr_assert(strstr(man, flag) != NULL, "the man page does not document %s",
			  names[i]);
	}
	free(out);
	free(man);
	cr_assert_eq(system("mandoc -Tlint -Wwarning man/sfu-gateway-agent.8"), 0,
		     "mandoc -Tlint -Wwarning found problems in the man page");

	{
		char *log;

		cr_assert_eq(agt_run(help, NULL, &log), 0);
		free(log);
		cr_assert_eq(agt_run(version, NULL, &log), 0);
		free(log);
	}
}
