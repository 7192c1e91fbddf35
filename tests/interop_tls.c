/* The real odoo/sfu behind a TLS terminator (Debian's nginx): the gateway and the agent reach it over https. */
#include <criterion/criterion.h>

#include <json.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_tls.h"
#include "interop_fleet.h"

#define ITLS_NGINX "/usr/sbin/nginx"
#define ITLS_REG_KEY "aW50ZXJvcC10bHMtcmVnaXN0cmF0aW9uLWtleS0wMDAwMDA0"
#define ITLS_FAST_PROBES "[probe]\ninterval_ms = 300\n"

/* An odoo/sfu as deployments run it over TLS: nginx terminates https on its own port and
 * proxies to the SFU's plain HTTP, saying who asked and how (X-Forwarded-*). */
struct itls_front {
	struct harness_proc *nginx;
	int port;
	char access_log[600];
};

/* nginx present, or the test fails under CI and is skipped elsewhere. */
static void itls_need_nginx(void)
{
	if (access(ITLS_NGINX, X_OK) != 0)
		harness_absent("interop_tls: " ITLS_NGINX " is missing (scripts/deps.sh test "
			       "installs nginx-light)");
}

/* Starts nginx with cert in front of the SFU on upstream; ready once GET /v1/noop answers
 * 200 through it over TLS (verified against ca). */
static void itls_front(struct itls_front *f, const struct harness_pki *cert, const char *ca,
		       int upstream)
{
	static int seq;

	for (int attempt = 0; attempt < 3; attempt++) {
		char conf[8192], name[64], prefix[512];
		const char *argv[8];
		struct harness_tls_client c = { .ca = ca };
		struct harness_resp *r = calloc(1, sizeof(*r));
		int64_t deadline;
		int n = seq++;

		cr_assert_not_null(r);
		f->port = harness_free_port();
		snprintf(prefix, sizeof(prefix), "%s/nginx%d", harness_tmpdir(), n);
		snprintf(f->access_log, sizeof(f->access_log), "%s.access", prefix);
		snprintf(conf, sizeof(conf),
			 "daemon off;\nmaster_process off;\nworker_processes 1;\n"
			 "pid %s.pid;\nerror_log %s.err warn;\n"
			 "events { worker_connections 256; }\n"
			 "http {\n"
			 "  access_log %s;\n"
			 "  client_body_temp_path %s.body;\n  proxy_temp_path %s.proxy;\n"
			 "  fastcgi_temp_path %s.fcgi;\n  uwsgi_temp_path %s.uwsgi;\n"
			 "  scgi_temp_path %s.scgi;\n"
			 "  server {\n"
			 "    listen 127.0.0.1:%d ssl;\n"
			 "    ssl_certificate %s;\n    ssl_certificate_key %s;\n"
			 "    location / {\n"
			 "      proxy_pass http://127.0.0.1:%d;\n"
			 "      proxy_http_version 1.1;\n"
			 "      proxy_set_header Connection \"\";\n"
			 "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
			 "      proxy_set_header X-Forwarded-Proto $scheme;\n"
			 "      proxy_set_header X-Forwarded-Host $http_host;\n"
			 "    }\n  }\n}\n",
			 prefix, prefix, f->access_log, prefix, prefix, prefix, prefix, prefix,
			 f->port, cert->cert, cert->key, upstream);
		snprintf(name, sizeof(name), "nginx%d.conf", n);
		argv[0] = ITLS_NGINX;
		argv[1] = "-p";
		argv[2] = harness_tmpdir();
		argv[3] = "-c";
		argv[4] = harness_write_file(name, conf);
		argv[5] = NULL;
		f->nginx = harness_process_start(argv, NULL);
		deadline = harness_now_ms() + 10000;
		while (harness_now_ms() < deadline) {
			if (harness_tls_get(f->port, &c, "/v1/noop", NULL, r, NULL) == 0 &&
			    r->status == 200) {
				free(r);
				return;
			}
			if (harness_wait_exit(f->nginx->pid, 0) >= 0)
				break; /* exited: the port was taken meanwhile, say; try another */
			poll(NULL, 0, 50);
		}
		free(r);
	}
	cr_assert_fail("nginx did not come up in front of port %d: %s", upstream,
		       harness_all_logs());
}

static const char *itls_https(int port)
{
	static char bufs[4][64];
	static int next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "https://127.0.0.1:%d", port);
	return b;
}

/* Lines of the front's access log that contain needle. */
static int itls_logged(const struct itls_front *f, const char *needle)
{
	FILE *fp = fopen(f->access_log, "r");
	char line[2048];
	int n = 0;

	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		n += strstr(line, needle) != NULL;
	fclose(fp);
	return n;
}

/* Waits until the gateway's /v1/health entry of address has member field equal to want. */
static void itls_health_wait(int gw_port, const char *address, const char *field,
			     const char *want)
{
	int64_t deadline = harness_now_ms() + 15000;
	char got[128] = "";

	while (harness_now_ms() < deadline) {
		struct json_object *sfu = harness_health_sfu(gw_port, address, NULL), *v;

		got[0] = '\0';
		if (sfu != NULL && json_object_object_get_ex(sfu, field, &v))
			snprintf(got, sizeof(got), "%s", v ? json_object_get_string(v) : "null");
		json_object_put(sfu);
		if (strcmp(got, want) == 0)
			return;
		poll(NULL, 0, 50);
	}
	cr_assert_fail("%s: %s is '%s', want '%s'", address, field, got, want);
}

/*
 * Channels through an https:// address, end to end: the gateway verifies nginx's
 * certificate, re-signs for the SFU behind it, and relays the SFU's answer, whose url is
 * the https address clients will use; the key check (POST /v1/disconnect) and the probe
 * (GET /v1/noop, /v1/stats) go over https too, and tell a wrong key from a right one.
 */
Test(interop_tls, channels_key_check_and_probe_over_https, .fini = harness_cleanup,
     .timeout = 120)
{
	struct harness_pki ca, front_cert;
	struct itls_front good, wrong;
	struct harness_proc *sfu, *sfu_wrong, *gw;
	struct harness_resp *r;
	char toml[4096];
	const char *uuid;
	struct json_object *ch;

	itls_need_nginx();
	harness_pki_ca("ca", "interop TLS CA", &ca);
	harness_pki_issue(&ca, "front", "sfu.example.com", "IP:127.0.0.1,DNS:localhost", -60,
			  86400, &front_cert);
	sfu = harness_real_sfu_up(FLEET_SFU_KEY, NULL);
	sfu_wrong = harness_real_sfu_up(FLEET_BAD_KEY, NULL);
	itls_front(&good, &front_cert, ca.cert, sfu->port);
	itls_front(&wrong, &front_cert, ca.cert, sfu_wrong->port);
	snprintf(toml, sizeof(toml),
		 "[tls]\nca_file = \"%s\"\n" ITLS_FAST_PROBES
		 "[[sfu]]\naddress = \"%s\"\nregion = \"eu-west\"\nkey = \"%s\"\n"
		 "[[sfu]]\naddress = \"%s\"\nregion = \"eu-west\"\nkey = \"%s\"\n",
		 ca.cert, itls_https(good.port), FLEET_SFU_KEY, itls_https(wrong.port),
		 FLEET_SFU_KEY);
	gw = harness_gateway_keyed(FLEET_GW_KEY, NULL, 2, toml);

	/* The key check over https: right for one, wrong for the other. */
	itls_health_wait(gw->port, itls_https(good.port), "keyCheck", "ok");
	itls_health_wait(gw->port, itls_https(wrong.port), "keyCheck", "mismatch");
	cr_assert_geq(itls_logged(&good, "POST /v1/disconnect"), 1);
	/* The probe over https: the load comes from /v1/stats through nginx. */
	itls_health_wait(gw->port, itls_https(good.port), "state", "up");
	{
		int64_t deadline = harness_now_ms() + 10000;

		while (itls_logged(&good, "GET /v1/stats") < 1 && harness_now_ms() < deadline)
			poll(NULL, 0, 50);
		cr_assert_geq(itls_logged(&good, "GET /v1/stats"), 1, "no probe reached the SFU");
	}
	/* The wrong-key SFU out of the way, a channel end to end. */
	harness_stop(sfu_wrong, SIGTERM, 5000);
	for (int i = 0; i < 3; i++) {
		r = fleet_channel(gw->port, fleet_issuer(), FLEET_GW_KEY, NULL);
		if (r->status == 200 && strstr(r->body, itls_https(good.port)) != NULL)
			break;
		free(r);
		r = NULL;
	}
	cr_assert_not_null(r, "no channel came from the https SFU");
	uuid = fleet_uuid(r);
	/* The SFU's url is what clients reach: the https front, as X-Forwarded-* told it. */
	cr_assert_str_eq(harness_json_str(r->body, "url"), itls_https(good.port));
	free(r);
	ch = fleet_stats_channel(sfu, uuid);
	cr_assert_not_null(ch, "the SFU does not list the channel the gateway returned");
	json_object_put(ch);
	/* Odoo's address reached the SFU through the gateway and nginx. */
	cr_assert_str_eq(fleet_creator(sfu, uuid), "127.0.0.1");
	cr_assert_geq(itls_logged(&good, "GET /v1/channel"), 1);
	/* The gateway verified nginx's certificate: no failure, and handshakes were made. */
	{
		struct json_object *o = harness_health_sfu(gw->port, itls_https(good.port), NULL);
		struct json_object *tls, *e;

		cr_assert(json_object_object_get_ex(o, "tls", &tls));
		cr_assert(json_object_object_get_ex(tls, "error", &e) && e == NULL);
		json_object_put(o);
	}
	cr_assert_geq(harness_metric(gw->port, "sfu_gateway_tls_handshakes_total{side=\"upstream\","
					      "result=\"full\"}"),
		      1);
}

/*
 * The agent beside an SFU that is only reachable over https: it polls /v1/stats through
 * nginx (verifying it with --ca), registers the https address, and the gateway sends
 * channels there.
 */
Test(interop_tls, agent_polls_the_sfu_over_https, .fini = harness_cleanup, .timeout = 120)
{
	struct harness_pki ca, front_cert;
	struct itls_front front;
	struct harness_proc *sfu, *gw, *agent;
	struct harness_resp *r;
	char toml[2048], gw_url[64], ca_env[600];
	const char *env[] = { "SFU_GATEWAY_REGISTRATION_KEY=" ITLS_REG_KEY, NULL };

	itls_need_nginx();
	harness_pki_ca("ca", "interop TLS CA", &ca);
	harness_pki_issue(&ca, "front", "sfu.example.com", "IP:127.0.0.1", -60, 86400,
			  &front_cert);
	sfu = harness_real_sfu_up(FLEET_SFU_KEY, NULL);
	itls_front(&front, &front_cert, ca.cert, sfu->port);
	snprintf(toml, sizeof(toml),
		 "[tls]\nca_file = \"%s\"\n[registration]\nstale_after_ms = 60000\n"
		 "[overload]\nmax_cpu = 1.0\nmax_memory = 1.0\nmax_load_score = 1000.0\n",
		 ca.cert);
	gw = harness_gateway_keyed(FLEET_GW_KEY, env, 2, toml);
	snprintf(gw_url, sizeof(gw_url), "http://127.0.0.1:%d", gw->port);
	snprintf(ca_env, sizeof(ca_env), "SFU_AGENT_CA=%s", ca.cert);
	{
		const char *args[] = { "--gateway-url", gw_url, "--address", itls_https(front.port),
				       "--region", "eu-west", "--interval", "300", NULL };
		const char *aenv[] = { ca_env, "AUTH_KEY=" FLEET_SFU_KEY,
				       "SFU_GATEWAY_REGISTRATION_KEY=" ITLS_REG_KEY, NULL };

		agent = harness_agent_start(args, aenv);
	}
	itls_health_wait(gw->port, itls_https(front.port), "source", "registered");
	cr_assert_geq(itls_logged(&front, "GET /v1/stats"), 1, "the agent did not poll over https");
	r = fleet_channel(gw->port, fleet_issuer(), FLEET_GW_KEY, NULL);
	cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
	cr_assert_str_eq(harness_json_str(r->body, "url"), itls_https(front.port));
	free(r);
	/* The sign-off leaves the same way. */
	cr_assert_eq(harness_stop(agent, SIGTERM, 10000), 0, "%s", harness_log(agent));
	cr_assert_null(harness_health_sfu(gw->port, itls_https(front.port), NULL),
		       "still registered after the sign-off");
}
