/* TLS through real sockets: https SFUs and their refusals, the HTTPS listener and its reloads, mTLS heartbeats. */
#include <criterion/criterion.h>

#include <errno.h>
#include <json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"
#include "config.h"
#include "harness.h"
#include "harness_tls.h"
#include "tls.h"

#define TL_GW_KEY "dGxzLWdhdGV3YXkta2V5LWZvci10aGUtdGxzLXRlc3RzLTAx"
#define TL_SFU_KEY "dGxzLXNmdS1rZXktZm9yLXRoZS10bHMtdGVzdHMtMDAwMDAy"
#define TL_REG_KEY "dGxzLXJlZ2lzdHJhdGlvbi1rZXktZm9yLXRscy10ZXN0cy0z"
#define TL_DAY 86400L

/* ---- units */

static X509 *tl_load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	cr_assert_not_null(f, "%s", path);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert_not_null(x, "%s", path);
	return x;
}

/* subjectAltName names a host by DNS (one-label wildcard), IP or URI host; never the CN. */
Test(tls_unit, cert_names_host, .fini = harness_cleanup)
{
	struct harness_pki ca, a;
	X509 *x;

	harness_pki_ca("ca", "unit CA", &ca);
	harness_pki_issue(&ca, "a", "cn-only.example.org",
			  "DNS:*.example.com,DNS:sfu.example.net,IP:10.0.0.1,IP:fd00::2,"
			  "URI:https://[fd00::1]:8070/x,URI:spiffe://sfu.example.org/agent,"
			  "URI:https://user@uri.example.net:8443",
			  -60, TL_DAY, &a);
	x = tl_load_cert(a.cert);
	cr_assert(tls_cert_names_host(x, "a.example.com"));
	cr_assert(tls_cert_names_host(x, "A.EXAMPLE.COM"));
	cr_assert(!tls_cert_names_host(x, "a.b.example.com"));
	cr_assert(!tls_cert_names_host(x, "example.com"));
	cr_assert(tls_cert_names_host(x, "sfu.example.net"));
	cr_assert(tls_cert_names_host(x, "10.0.0.1"));
	cr_assert(!tls_cert_names_host(x, "10.0.0.2"));
	cr_assert(tls_cert_names_host(x, "fd00::2"));
	cr_assert(tls_cert_names_host(x, "fd00::1"), "an IP host from a URI");
	cr_assert(tls_cert_names_host(x, "sfu.example.org"), "a URI of another scheme");
	cr_assert(tls_cert_names_host(x, "uri.example.net"), "userinfo and port are skipped");
	cr_assert(!tls_cert_names_host(x, "user"));
	cr_assert(!tls_cert_names_host(x, "cn-only.example.org"), "the CN is never used");
	X509_free(x);
}

Test(tls_unit, address_host)
{
	static const char *const cases[][2] = {
		{ "https://sfu.example.com", "sfu.example.com" },
		{ "http://127.0.0.1:8070", "127.0.0.1" },
		{ "https://[fd00::1]:8443", "fd00::1" },
		{ "https://[::1]", "::1" },
	};
	char out[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(address_host(cases[i][0], out, sizeof(out)), 0, "%s", cases[i][0]);
		cr_assert_str_eq(out, cases[i][1]);
	}
	cr_assert_eq(address_host("sfu.example.com", out, sizeof(out)), -EINVAL);
	cr_assert_eq(address_host("https://", out, sizeof(out)), -EINVAL);
	cr_assert_eq(address_host("https://a-very-long-name.example.com", out, 8), -EINVAL);
}

/* The reasons operators read are OpenSSL's own words. */
Test(tls_unit, failure_text)
{
	cr_assert_null(tls_failure_text(0));
	cr_assert_str_eq(tls_failure_text(X509_V_ERR_CERT_HAS_EXPIRED), "certificate has expired");
	cr_assert_str_eq(tls_failure_text(X509_V_ERR_HOSTNAME_MISMATCH), "hostname mismatch");
	cr_assert_str_eq(tls_failure_text(TLS_FAILURE_EOF),
			 "connection closed during the TLS handshake");
	cr_assert_str_eq(tls_failure_text(-(int64_t)ERR_PACK(ERR_LIB_SSL, 0,
							     SSL_R_WRONG_VERSION_NUMBER)),
			 "wrong version number");
	cr_assert_str_eq(tls_failure_text(-(int64_t)ERR_PACK(ERR_LIB_USER, 0, 4095)),
			 "TLS handshake failed");
}

/* ---- helpers */

static struct harness_proc *tl_mock(const struct harness_pki *cert, const char *const *extra)
{
	const char *args[16];
	struct harness_proc *m;
	int n = 0;

	if (cert != NULL) {
		args[n++] = "--tls-cert";
		args[n++] = cert->cert;
		args[n++] = "--tls-key";
		args[n++] = cert->key;
	}
	for (int i = 0; extra != NULL && extra[i] != NULL && n < 14; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	m = harness_mock_start(TL_SFU_KEY, args);
	cr_assert_not_null(m, "a mock SFU did not come up: %s", harness_all_logs());
	return m;
}

static const char *tl_https(int port)
{
	static char bufs[8][64];
	static int next;
	char *b = bufs[next++ % 8];

	snprintf(b, sizeof(bufs[0]), "https://127.0.0.1:%d", port);
	return b;
}

/* Upstream handshakes so far: full, resumed, failed. */
static void tl_upstream(int gw_port, double out[3])
{
	static const char *const kinds[] = { "full", "resumed", "failed" };

	for (int i = 0; i < 3; i++) {
		char series[128];

		snprintf(series, sizeof(series),
			 "sfu_gateway_tls_handshakes_total{side=\"upstream\",result=\"%s\"}",
			 kinds[i]);
		out[i] = harness_metric(gw_port, series);
		cr_assert_geq(out[i], 0, "no %s in /metrics", series);
	}
}

/* The SFU's "tls" object of /v1/health (a new reference). */
static struct json_object *tl_health_tls(int gw_port, const char *address)
{
	struct json_object *sfu = harness_health_sfu(gw_port, address, NULL), *tls = NULL;

	cr_assert_not_null(sfu, "%s is not in /v1/health", address);
	cr_assert(json_object_object_get_ex(sfu, "tls", &tls), "%s has no tls in /v1/health",
		  address);
	json_object_get(tls);
	json_object_put(sfu);
	return tls;
}

/* The SFU's tls.error of /v1/health ("" when null), into out. */
static void tl_health_error(int gw_port, const char *address, char *out, size_t outlen)
{
	struct json_object *tls = tl_health_tls(gw_port, address), *e = NULL;

	out[0] = '\0';
	if (json_object_object_get_ex(tls, "error", &e) && json_object_is_type(e, json_type_string))
		snprintf(out, outlen, "%s", json_object_get_string(e));
	json_object_put(tls);
}

/* Waits until the SFU's tls.error of /v1/health is want ("" for null). */
static void tl_wait_health_error(int gw_port, const char *address, const char *want)
{
	int64_t deadline = harness_now_ms() + 10000;
	char got[256] = "";

	while (harness_now_ms() < deadline) {
		tl_health_error(gw_port, address, got, sizeof(got));
		if (strcmp(got, want) == 0)
			return;
		poll(NULL, 0, 50);
	}
	cr_assert_fail("%s: tls.error is '%s', want '%s'", address, got, want);
}

/* n channel requests at once, conc at a time, each answered with want. */
static void tl_channels(int port, int n, int conc, int want)
{
	struct harness_call *calls = calloc((size_t)n, sizeof(*calls));
	static int seq;

	cr_assert_not_null(calls);
	for (int i = 0; i < n; i++) {
		char iss[96];

		snprintf(iss, sizeof(iss), "https://odoo-%d.example.com/tls%d", (int)getpid(), seq++);
		harness_channel_req(calls[i].req, sizeof(calls[i].req),
				    harness_odoo_token(iss, TL_GW_KEY));
	}
	harness_batch(port, calls, n, conc, 30000);
	for (int i = 0; i < n; i++)
		cr_assert_eq(calls[i].status, want, "request %d: %d %s", i, calls[i].status,
			     calls[i].body);
	free(calls);
}

/* ---- https SFUs */

/*
 * Channels through an https SFU: the certificate verified against [tls] ca_file, the
 * key check and the probe over https too; sequential requests on the warm pool cost no
 * handshake, and the new connections a burst needs resume the pool's session.
 */
Test(tls, https_sfu_warm_pool_and_session_resumption, .fini = harness_cleanup, .timeout = 90)
{
	struct harness_pki ca, srv;
	struct harness_proc *m, *gw;
	char toml[2048];
	double before[3], after[3];
	struct json_object *sfu, *tls, *v;

	harness_pki_ca("ca", "tls test CA", &ca);
	harness_pki_issue(&ca, "sfu", "sfu", "IP:127.0.0.1", -60, TL_DAY, &srv);
	m = tl_mock(&srv, NULL);
	snprintf(toml, sizeof(toml),
		 "[tls]\nca_file = \"%s\"\n[probe]\ninterval_ms = 3600000\n"
		 "[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n",
		 ca.cert, tl_https(m->port), TL_SFU_KEY);
	gw = harness_gateway_keyed(TL_GW_KEY, NULL, 1, harness_slow_failover(toml));

	/* The reaper's key check and probe reach the SFU over https. */
	{
		int64_t deadline = harness_now_ms() + 10000;
		const char *kc = "";

		while (harness_now_ms() < deadline) {
			sfu = harness_health_sfu(gw->port, tl_https(m->port), NULL);
			cr_assert_not_null(sfu);
			kc = json_object_get_string(json_object_object_get(sfu, "keyCheck"));
			/* Probed: its load came over https (null before the first probe). */
			if (strcmp(kc, "ok") == 0 &&
			    json_object_object_get(sfu, "lastHeartbeatAgeMs") != NULL) {
				json_object_put(sfu);
				break;
			}
			json_object_put(sfu);
			poll(NULL, 0, 50);
		}
		cr_assert(harness_now_ms() < deadline, "keyCheck never became ok over https");
	}
	tl_channels(gw->port, 1, 1, 200);
	tl_upstream(gw->port, before);
	/* Warm: 100 sequential requests on the pooled connection, no handshake. */
	tl_channels(gw->port, 100, 1, 200);
	tl_upstream(gw->port, after);
	cr_assert_leq((after[0] + after[1]) - (before[0] + before[1]), 2,
		      "handshakes per request on a warm pool: %g full, %g resumed for 100",
		      after[0] - before[0], after[1] - before[1]);
	/* A burst needs new connections: they resume the session instead of a full handshake. */
	harness_mock_post(m, "/mock/fault?mode=delay&delay_ms=150", 200);
	tl_upstream(gw->port, before);
	tl_channels(gw->port, 12, 12, 200);
	tl_upstream(gw->port, after);
	cr_assert_geq(after[1] - before[1], 6,
		      "resumed %g of the burst's new connections (full %g, failed %g); mock %s",
		      after[1] - before[1], after[0] - before[0], after[2] - before[2],
		      json_object_to_json_string(harness_mock_json(m, "/mock/stats")));
	cr_assert_eq(after[0] - before[0], 0, "%g full handshakes in the burst",
		     after[0] - before[0]);
	cr_assert_eq(after[2], 0, "failed handshakes: %g", after[2]);
	cr_assert_geq(harness_mock_int(m, "/mock/stats", "tls_resumed"), 6);
	/* What operators see. */
	tls = tl_health_tls(gw->port, tl_https(m->port));
	cr_assert(json_object_object_get_ex(tls, "verify", &v) && json_object_get_boolean(v));
	cr_assert(json_object_object_get_ex(tls, "error", &v) && v == NULL);
	json_object_put(tls);
	{
		char series[256];

		snprintf(series, sizeof(series),
			 "sfu_gateway_sfu_tls_error{address=\"%s\",region=\"\",reason=\"\"}",
			 tl_https(m->port));
		cr_assert_eq(harness_metric(gw->port, series), 0);
	}
}

/*
 * Certificates that must be refused: expired, for another host, self-signed, from an
 * untrusted CA. Each SFU shows its reason in /v1/health and /metrics, and the log says
 * it once, not once per request.
 */
Test(tls, refused_certificates_named_per_sfu, .fini = harness_cleanup, .timeout = 90)
{
	static const char *const want[4] = {
		"certificate has expired",
		"IP address mismatch",
		"self-signed certificate",
		"unable to get local issuer certificate",
	};
	struct harness_pki ca, evil, certs[4];
	struct harness_proc *m[4], *gw;
	char toml[4096], line[512], series[512];
	const char *log;
	size_t n;

	harness_pki_ca("ca", "tls test CA", &ca);
	harness_pki_ca("evil", "some other CA", &evil);
	harness_pki_issue(&ca, "expired", "expired", "IP:127.0.0.1", -10 * TL_DAY, -TL_DAY,
			  &certs[0]);
	harness_pki_issue(&ca, "other-host", "other", "IP:127.0.0.2,DNS:other.example.com", -60,
			  TL_DAY, &certs[1]);
	harness_pki_issue(NULL, "self", "self", "IP:127.0.0.1", -60, TL_DAY, &certs[2]);
	harness_pki_issue(&evil, "untrusted", "untrusted", "IP:127.0.0.1", -60, TL_DAY, &certs[3]);
	n = (size_t)snprintf(toml, sizeof(toml),
			     "[tls]\nca_file = \"%s\"\n[probe]\ninterval_ms = 3600000\n"
			     "[failover]\nmax_retries = 4\n",
			     ca.cert);
	for (int i = 0; i < 4; i++) {
		m[i] = tl_mock(&certs[i], NULL);
		n += (size_t)snprintf(toml + n, sizeof(toml) - n,
				      "[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n",
				      tl_https(m[i]->port), TL_SFU_KEY);
	}
	gw = harness_gateway_keyed(TL_GW_KEY, NULL, 2, harness_slow_failover(toml));
	/* Many requests; none can succeed. */
	for (int i = 0; i < 6; i++) {
		struct harness_resp *r = harness_channel(gw->port, "/v1/channel?webRTC=false",
							 "https://odoo.example.com:tls:refused",
							 TL_GW_KEY, NULL);

		cr_assert(r->status == 502 || r->status == 503, "status %d: %s", r->status,
			  r->body);
		free(r);
	}
	for (int i = 0; i < 4; i++) {
		tl_wait_health_error(gw->port, tl_https(m[i]->port), want[i]);
		snprintf(series, sizeof(series),
			 "sfu_gateway_sfu_tls_error{address=\"%s\",region=\"\",reason=\"%s\"}",
			 tl_https(m[i]->port), want[i]);
		cr_assert_eq(harness_metric(gw->port, series), 1, "%s", series);
		cr_assert_eq(harness_mock_int(m[i], "/mock/stats", "channel_requests"), 0,
			     "a request reached %s", tl_https(m[i]->port));
	}
	/* Once per SFU, whichever process (two workers, the reaper) saw it first. */
	log = harness_log(gw);
	for (int i = 0; i < 4; i++) {
		snprintf(line, sizeof(line), "sfu=%s: TLS handshake failed: %s",
			 tl_https(m[i]->port), want[i]);
		cr_assert_eq(harness_count(log, line), 1, "'%s' logged %d times: %s", line,
			     harness_count(log, line), log);
	}
	cr_assert_gt(harness_metric(gw->port, "sfu_gateway_tls_handshakes_total{side=\"upstream\","
					      "result=\"failed\"}"),
		     4);
}

/*
 * Without [tls] ca_file or ca_path the system store is used, looked up by hash in its
 * directory: SSL_CERT_DIR points the gateway at a hashed directory holding the test CA,
 * which then vouches for the SFU; the machine's own store does not know that CA.
 */
Test(tls, system_store_by_hashed_directory, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_pki ca, srv;
	struct harness_proc *m, *gw, *gw2;
	char toml[2048], dir[600], cmd[4096], env_dir[700], err[256];

	harness_pki_ca("ca", "tls test CA", &ca);
	harness_pki_issue(&ca, "sfu", "sfu", "IP:127.0.0.1", -60, TL_DAY, &srv);
	snprintf(dir, sizeof(dir), "%s/store", harness_tmpdir());
	snprintf(cmd, sizeof(cmd), "mkdir '%s' && cp '%s' '%s/ca.pem' && openssl rehash '%s'", dir,
		 ca.cert, dir, dir);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	m = tl_mock(&srv, NULL);
	snprintf(toml, sizeof(toml), "[probe]\ninterval_ms = 3600000\n"
		 "[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n", tl_https(m->port), TL_SFU_KEY);
	snprintf(env_dir, sizeof(env_dir), "SSL_CERT_DIR=%s", dir);
	{
		/* The machine may set SSL_CERT_FILE too (OpenSSL then loads that bundle as well). */
		const char *env[] = { env_dir, "SSL_CERT_FILE=", NULL };

		gw = harness_gateway_keyed(TL_GW_KEY, env, 1, harness_slow_failover(toml));
	}
	{
		struct harness_resp *r = harness_channel(gw->port, "/v1/channel?webRTC=false",
							 "https://odoo.example.com:store", TL_GW_KEY,
							 NULL);

		cr_assert_eq(r->status, 200, "%s; %s", r->body, harness_log(gw));
		free(r);
	}
	tl_health_error(gw->port, tl_https(m->port), err, sizeof(err));
	cr_assert_str_eq(err, "");
	{
		const char *env[] = { "SSL_CERT_DIR=", "SSL_CERT_FILE=", NULL };

		gw2 = harness_gateway_keyed(TL_GW_KEY, env, 1, harness_slow_failover(toml));
	}
	tl_wait_health_error(gw2->port, tl_https(m->port), "unable to get local issuer certificate");
}

/*
 * [[sfu]] tls_verify = false: the one SFU whose certificate is not checked works, says so
 * in /v1/health and in the log; an https address whose server speaks no TLS fails with
 * the reason.
 */
Test(tls, unverified_sfu_opt_out_and_plain_server, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_pki self;
	struct harness_proc *m, *plain, *gw;
	struct json_object *tls, *v;
	char toml[2048], err[256];

	harness_pki_issue(NULL, "self", "self", "IP:127.0.0.1", -60, TL_DAY, &self);
	m = tl_mock(&self, NULL);
	plain = tl_mock(NULL, NULL);
	snprintf(toml, sizeof(toml),
		 "[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\ntls_verify = false\n"
		 "[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n",
		 tl_https(m->port), TL_SFU_KEY, tl_https(plain->port), TL_SFU_KEY);
	gw = harness_gateway_keyed(TL_GW_KEY, NULL, 1, harness_slow_failover(toml));
	cr_assert_not_null(strstr(harness_log(gw), "tls_verify = false: its certificate is not "
						   "verified"),
			   "%s", harness_log(gw));
	tl_channels(gw->port, 4, 1, 200);
	tls = tl_health_tls(gw->port, tl_https(m->port));
	cr_assert(json_object_object_get_ex(tls, "verify", &v) && !json_object_get_boolean(v));
	cr_assert(json_object_object_get_ex(tls, "error", &v) && v == NULL);
	json_object_put(tls);
	/* The probe of the static SFU at start already tried TLS on the plain one. */
	{
		int64_t deadline = harness_now_ms() + 10000;

		do {
			tl_health_error(gw->port, tl_https(plain->port), err, sizeof(err));
			if (err[0] != '\0')
				break;
			poll(NULL, 0, 50);
		} while (harness_now_ms() < deadline);
	}
	cr_assert_str_eq(err, "wrong version number");
	/* A reload logs the opt-out again. */
	kill(gw->pid, SIGHUP);
	{
		int64_t deadline = harness_now_ms() + 10000;

		while (harness_count(harness_log(gw), "tls_verify = false: its certificate") < 2 &&
		       harness_now_ms() < deadline)
			poll(NULL, 0, 50);
	}
	cr_assert_eq(harness_count(harness_log(gw), "tls_verify = false: its certificate"), 2, "%s",
		     harness_log(gw));
}

/* ---- the HTTPS listener */

/* [tls] cert and key for a gateway, with more TOML after them. */
static void tl_listener_toml(char *out, size_t outlen, const struct harness_pki *srv,
			     const char *more)
{
	snprintf(out, outlen, "[tls]\ncert = \"%s\"\nkey = \"%s\"\n%s", srv->cert, srv->key,
		 more != NULL ? more : "");
}

/*
 * The gateway serves HTTPS: ALPN http/1.1 (a client offering only h2 is refused), the
 * operators' routes work without a client certificate, sessions resume on whichever
 * worker a new connection reaches, plain HTTP on the port fails, and the handshakes
 * are counted.
 */
Test(tls, listener_serves_https, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_pki ca, srv;
	struct harness_tls_client c = { 0 };
	struct harness_tls_info info;
	struct harness_resp *r = calloc(1, sizeof(*r));
	struct harness_proc *gw;
	char toml[2048];
	int resumed = 0;

	cr_assert_not_null(r);
	harness_pki_ca("ca", "tls test CA", &ca);
	harness_pki_issue(&ca, "gw", "gateway-one", "IP:127.0.0.1,DNS:localhost", -60, TL_DAY, &srv);
	tl_listener_toml(toml, sizeof(toml), &srv, NULL);
	gw = harness_tls_gateway_up(TL_GW_KEY, NULL, 2, toml, ca.cert);
	c.ca = ca.cert;
	cr_assert_eq(harness_tls_get(gw->port, &c, "/v1/health", NULL, r, &info), 0, "%s",
		     info.error);
	cr_assert_eq(r->status, 503, "%d %s", r->status, r->body); /* no SFU yet */
	cr_assert_not_null(strstr(r->body, "\"sfus\":[]"), "%s", r->body);
	cr_assert_str_eq(info.alpn, "http/1.1");
	cr_assert_str_eq(info.peer_cn, "gateway-one");
	/* By name too. */
	c.host = "localhost";
	cr_assert_eq(harness_tls_get(gw->port, &c, "/noop", NULL, r, &info), 0, "%s", info.error);
	cr_assert_eq(r->status, 200);
	c.host = NULL;
	/* Sessions resume across the two workers: they share the ticket key. */
	c.resume = true;
	for (int i = 0; i < 12; i++) {
		cr_assert_eq(harness_tls_get(gw->port, &c, "/noop", NULL, r, &info), 0, "%s",
			     info.error);
		cr_assert_eq(r->status, 200);
		resumed += info.resumed;
	}
	cr_assert_geq(resumed, 11, "%d of 12 connections resumed", resumed);
	harness_tls_client_reset(&c);
	c.resume = false;
	/* h2 alone: no protocol in common. */
	c.alpn = "\x02h2";
	cr_assert_eq(harness_tls_get(gw->port, &c, "/noop", NULL, r, &info), -EPROTO);
	cr_assert_not_null(strstr(info.error, "no application protocol"), "%s", info.error);
	c.alpn = NULL;
	/* Plain HTTP on the HTTPS port gets no answer. */
	cr_assert_neq(harness_get(gw->port, "/noop", NULL, r) == 0 && r->status == 200, true);
	/* Counted per side and result (the scrape itself is TLS: read it over TLS). */
	cr_assert_eq(harness_tls_get(gw->port, &c, "/metrics", NULL, r, &info), 0);
	cr_assert_geq(harness_series(r->body, "sfu_gateway_tls_handshakes_total{side=\"listener\","
					      "result=\"full\"}"),
		      3, "%s", r->body);
	cr_assert_geq(harness_series(r->body, "sfu_gateway_tls_handshakes_total{side=\"listener\","
					      "result=\"resumed\"}"),
		      11);
	cr_assert_geq(harness_series(r->body, "sfu_gateway_tls_handshakes_total{side=\"listener\","
					      "result=\"failed\"}"),
		      2);
	free(r);
}

/* Pipelined requests over TLS, in one record and split across many, are answered in
 * order on the one connection; a large answer (/metrics) comes whole. */
Test(tls, listener_pipelining_in_order, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_pki ca, srv;
	struct harness_tls_client c = { 0 };
	struct harness_tls_conn *k;
	struct harness_resp *r = calloc(1, sizeof(*r));
	struct harness_proc *gw;
	char toml[2048], batch[2048];
	static const char *const paths[] = { "/noop", "/v1/health", "/nope", "/metrics", "/v1/noop" };
	static const int want[] = { 200, 503, 404, 200, 200 };
	size_t n = 0;

	cr_assert_not_null(r);
	harness_pki_ca("ca", "tls test CA", &ca);
	harness_pki_issue(&ca, "gw", "gw", "IP:127.0.0.1", -60, TL_DAY, &srv);
	tl_listener_toml(toml, sizeof(toml), &srv, NULL);
	gw = harness_tls_gateway_up(TL_GW_KEY, NULL, 1, toml, ca.cert);
	c.ca = ca.cert;
	for (size_t i = 0; i < 5; i++)
		n += (size_t)snprintf(batch + n, sizeof(batch) - n,
				      "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", paths[i]);
	/* All five in one write, then again one byte per write (a record each). */
	for (int round = 0; round < 2; round++) {
		k = harness_tls_open(gw->port, &c, NULL);
		cr_assert_not_null(k);
		if (round == 0) {
			cr_assert_eq(harness_tls_conn_send(k, batch, n), 0);
		} else {
			for (size_t i = 0; i < n; i++)
				cr_assert_eq(harness_tls_conn_send(k, batch + i, 1), 0);
		}
		for (int i = 0; i < 5; i++) {
			cr_assert_eq(harness_tls_conn_read(k, r), 0, "round %d answer %d", round, i);
			cr_assert_eq(r->status, want[i], "round %d answer %d: %d %s", round, i,
				     r->status, r->head);
			if (i == 3)
				cr_assert_not_null(strstr(r->body, "\nsfu_gateway_tls_handshakes_total{side="
								   "\"listener\",result=\"full\"} "),
						   "%s", r->body);
		}
		harness_tls_close(k);
	}
	free(r);
}

/* A private key others may read, a key of another certificate, half a pair: the gateway
 * does not start, and says why in one line. */
Test(tls, listener_refuses_bad_pairs, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_pki ca, srv, other;
	char toml[2048];
	struct {
		const char *toml;
		const char *needle;
	} cases[4];
	char t[4][2048];

	harness_pki_ca("ca", "tls test CA", &ca);
	harness_pki_issue(&ca, "gw", "gw", "IP:127.0.0.1", -60, TL_DAY, &srv);
	harness_pki_issue(&ca, "other", "other", "IP:127.0.0.1", -60, TL_DAY, &other);
	snprintf(t[0], sizeof(t[0]), "[tls]\ncert = \"%s\"\nkey = \"%s\"\n", srv.cert, other.key);
	snprintf(t[1], sizeof(t[1]), "[tls]\ncert = \"%s\"\n", srv.cert);
	snprintf(t[2], sizeof(t[2]), "[tls]\ncert = \"%s\"\nkey = \"%s\"\n", ca.key, srv.key);
	snprintf(t[3], sizeof(t[3]),
		 "[tls]\ncert = \"%s\"\nkey = \"%s\"\n[registration]\nrequire_token = false\n",
		 srv.cert, srv.key);
	cases[0].toml = t[0];
	cases[0].needle = "does not match the certificate";
	cases[1].toml = t[1];
	cases[1].needle = "[tls] cert and key go together";
	cases[2].toml = t[2];
	cases[2].needle = "no PEM certificate";
	cases[3].toml = t[3];
	cases[3].needle = "require_token = false needs [registration] client_ca";
	for (int i = 0; i < 4; i++) {
		char name[32];
		const char *env[] = { "SFU_GATEWAY_KEY=" TL_GW_KEY, NULL };
		const char *args[] = { "--config", NULL, NULL };
		struct harness_proc *p = NULL;
		int rc;

		snprintf(name, sizeof(name), "bad%d.toml", i);
		args[1] = harness_write_file(name, cases[i].toml);
		rc = harness_gateway_run(env, args, 10000, &p);
		cr_assert_eq(rc, 1, "case %d: exit %d: %s", i, rc, harness_log(p));
		cr_assert_not_null(strstr(harness_log(p), cases[i].needle), "case %d: %s", i,
				   harness_log(p));
	}
	/* The mode check names the file and the fix. */
	cr_assert_eq(chmod(srv.key, 0644), 0);
	tl_listener_toml(toml, sizeof(toml), &srv, NULL);
	{
		const char *env[] = { "SFU_GATEWAY_KEY=" TL_GW_KEY, NULL };
		const char *args[] = { "--config", harness_write_file("mode.toml", toml), NULL };
		struct harness_proc *p = NULL;
		char want[700];

		cr_assert_eq(harness_gateway_run(env, args, 10000, &p), 1, "%s", harness_log(p));
		snprintf(want, sizeof(want),
			 "private key %s is readable or writable by others (mode 0644): refused",
			 srv.key);
		cr_assert_not_null(strstr(harness_log(p), want), "%s", harness_log(p));
	}
}

/* One client of the reload test: new connections (or one kept-alive connection),
 * requests in a loop until told to stop, every failure counted. */
struct tl_load {
	int port;
	const char *ca;
	bool keep_alive;
	_Atomic bool *stop;
	int ok, failed;
	char first_cn[256], last_cn[256], error[512];
};

static void *tl_load_run(void *arg)
{
	struct tl_load *l = arg;
	struct harness_tls_client c = { .ca = l->ca };
	struct harness_tls_info info;
	struct harness_resp *r = calloc(1, sizeof(*r));
	struct harness_tls_conn *k = NULL;

	if (r == NULL)
		return NULL;
	if (l->keep_alive) {
		k = harness_tls_open(l->port, &c, &info);
		if (k == NULL) {
			l->failed++;
			snprintf(l->error, sizeof(l->error), "open: %s", info.error);
			free(r);
			return NULL;
		}
		snprintf(l->first_cn, sizeof(l->first_cn), "%s", info.peer_cn);
		snprintf(l->last_cn, sizeof(l->last_cn), "%s", info.peer_cn);
	}
	while (!atomic_load(l->stop)) {
		int rc;

		if (k != NULL) {
			rc = harness_tls_conn_get(k, "/noop", r);
		} else {
			rc = harness_tls_get(l->port, &c, "/noop", NULL, r, &info);
			if (rc == 0) {
				if (l->first_cn[0] == '\0')
					snprintf(l->first_cn, sizeof(l->first_cn), "%s", info.peer_cn);
				snprintf(l->last_cn, sizeof(l->last_cn), "%s", info.peer_cn);
			}
		}
		if (rc == 0 && r->status == 200) {
			l->ok++;
		} else {
			l->failed++;
			snprintf(l->error, sizeof(l->error), "rc %d status %d %s", rc, r->status,
				 info.error);
		}
		poll(NULL, 0, 2);
	}
	harness_tls_close(k);
	free(r);
	return NULL;
}

/* Copies src over dst by a rename, as a deployment tool would. */
static void tl_replace(const char *src, const char *dst, mode_t mode)
{
	char tmp[600], cmd[4096];

	snprintf(tmp, sizeof(tmp), "%s.new", dst);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod %o '%s' && mv -f '%s' '%s'", src, tmp,
		 (unsigned)mode, tmp, tmp, dst);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* The CN a new connection sees. */
static const char *tl_peer_cn(int port, const char *ca)
{
	static char cn[256];
	struct harness_tls_client c = { .ca = ca };
	struct harness_tls_info info;
	struct harness_resp *r = calloc(1, sizeof(*r));

	cr_assert_not_null(r);
	cr_assert_eq(harness_tls_get(port, &c, "/noop", NULL, r, &info), 0, "%s", info.error);
	free(r);
	snprintf(cn, sizeof(cn), "%s", info.peer_cn);
	return cn;
}

/*
 * SIGHUP with a new certificate, then with a broken one and with a key others may read,
 * under load: not one request fails; new connections take the new pair at once, a
 * connection kept alive through it all keeps its own, and a bad pair keeps the one in
 * use with a one-line reason.
 */
Test(tls, listener_reload_under_load_drops_nothing, .fini = harness_cleanup, .timeout = 120)
{
	struct harness_pki ca, a, b, junk;
	struct harness_proc *gw;
	struct harness_pki live;
	struct tl_load load[4];
	pthread_t th[4];
	_Atomic bool stop = false;
	char toml[2048];
	int64_t deadline;
	int total = 0;

	harness_pki_ca("ca", "tls test CA", &ca);
	harness_pki_issue(&ca, "a", "gateway-a", "IP:127.0.0.1", -60, TL_DAY, &a);
	harness_pki_issue(&ca, "b", "gateway-b", "IP:127.0.0.1", -60, TL_DAY, &b);
	harness_pki_issue(&ca, "junk", "junk", "IP:127.0.0.1", -60, TL_DAY, &junk);
	snprintf(live.cert, sizeof(live.cert), "%s/live.pem", harness_tmpdir());
	snprintf(live.key, sizeof(live.key), "%s/live.key", harness_tmpdir());
	tl_replace(a.cert, live.cert, 0644);
	tl_replace(a.key, live.key, 0600);
	tl_listener_toml(toml, sizeof(toml), &live, NULL);
	gw = harness_tls_gateway_up(TL_GW_KEY, NULL, 2, toml, ca.cert);
	memset(load, 0, sizeof(load));
	for (int i = 0; i < 4; i++) {
		load[i].port = gw->port;
		load[i].ca = ca.cert;
		load[i].keep_alive = i == 3;
		load[i].stop = &stop;
		cr_assert_eq(pthread_create(&th[i], NULL, tl_load_run, &load[i]), 0);
	}
	poll(NULL, 0, 300);

	/* A new pair: new connections take it. */
	tl_replace(b.cert, live.cert, 0644);
	tl_replace(b.key, live.key, 0600);
	kill(gw->pid, SIGHUP);
	deadline = harness_now_ms() + 10000;
	while (strcmp(tl_peer_cn(gw->port, ca.cert), "gateway-b") != 0 &&
	       harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_str_eq(tl_peer_cn(gw->port, ca.cert), "gateway-b", "%s", harness_log(gw));
	/* Both workers: every new connection from now on. */
	for (int i = 0; i < 10; i++)
		cr_assert_str_eq(tl_peer_cn(gw->port, ca.cert), "gateway-b");
	poll(NULL, 0, 300);

	/* A certificate file that is no certificate: the reload fails, b stays. */
	tl_replace(junk.key, live.cert, 0644);
	kill(gw->pid, SIGHUP);
	deadline = harness_now_ms() + 10000;
	while (harness_count(harness_log(gw), "reload failed") < 1 && harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_not_null(strstr(harness_log(gw), "reload failed, keeping the running config: "
						   "[tls]: certificate: no PEM certificate"),
			   "%s", harness_log(gw));
	for (int i = 0; i < 10; i++)
		cr_assert_str_eq(tl_peer_cn(gw->port, ca.cert), "gateway-b");

	/* The right pair again, but the key readable by others: refused too. */
	tl_replace(b.cert, live.cert, 0644);
	tl_replace(a.key, live.key, 0644);
	kill(gw->pid, SIGHUP);
	deadline = harness_now_ms() + 10000;
	while (harness_count(harness_log(gw), "reload failed") < 2 && harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_not_null(strstr(harness_log(gw), "is readable or writable by others (mode "
						   "0644): refused"),
			   "%s", harness_log(gw));
	for (int i = 0; i < 10; i++)
		cr_assert_str_eq(tl_peer_cn(gw->port, ca.cert), "gateway-b");
	poll(NULL, 0, 300);

	atomic_store(&stop, true);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(load[i].failed, 0, "client %d: %d failed (%s); log: %s", i,
			     load[i].failed, load[i].error, harness_log(gw));
		cr_assert_gt(load[i].ok, 20, "client %d: only %d requests", i, load[i].ok);
		total += load[i].ok;
	}
	/* The kept-alive connection never changed certificate; the others saw both. */
	cr_assert_str_eq(load[3].first_cn, "gateway-a");
	cr_assert_str_eq(load[3].last_cn, "gateway-a");
	cr_assert_str_eq(load[0].first_cn, "gateway-a");
	cr_assert_str_eq(load[0].last_cn, "gateway-b");
	cr_assert_gt(total, 100, "%d requests", total);
}

/* ---- mTLS for POST /v1/sfu */

static const char *tl_heartbeat_body(const char *address)
{
	static char body[512];

	snprintf(body, sizeof(body),
		 "{\"status\":\"up\",\"address\":\"%s\",\"region\":\"eu-west\",\"key\":\"%s\","
		 "\"channels\":0,\"sessions\":0}",
		 address, TL_SFU_KEY);
	return body;
}

static int tl_heartbeat(int port, struct harness_tls_client *c, const char *address,
			bool token, struct harness_resp *r)
{
	char auth[1024] = "";
	struct harness_tls_info info;
	const char *body = tl_heartbeat_body(address);
	int rc;

	/* Wire format v2: the token names the exact body. */
	if (token)
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n",
			 harness_sfu_token(address, TL_REG_KEY, body));
	rc = harness_tls_post(port, c, "/v1/sfu", auth, body, r, &info);
	cr_assert_eq(rc, 0, "heartbeat: %d %s", rc, info.error);
	return r->status;
}

/*
 * [registration] client_ca: a heartbeat needs a client certificate from that CA naming
 * the heartbeat's host; refused without one, with one for another host or from another
 * CA; /v1/channel and the operators' routes need none. With require_token = false the
 * certificate alone is enough.
 */
Test(tls, mtls_registration, .fini = harness_cleanup, .timeout = 90)
{
	struct harness_pki ca, srv, sfus, good, other_host, stranger_ca, stranger, by_uri;
	struct harness_tls_client c = { 0 };
	struct harness_resp *r = calloc(1, sizeof(*r));
	struct harness_proc *gw, *gw2;
	const char *addr = "http://127.0.0.1:9"; /* never contacted: the test reads health */
	char toml[4096], more[1024];
	const char *env[] = { "SFU_GATEWAY_REGISTRATION_KEY=" TL_REG_KEY, NULL };
	struct harness_tls_info info;

	cr_assert_not_null(r);
	harness_pki_ca("ca", "tls test CA", &ca);
	harness_pki_issue(&ca, "gw", "gw", "IP:127.0.0.1", -60, TL_DAY, &srv);
	harness_pki_ca("sfus", "SFU client CA", &sfus);
	harness_pki_issue(&sfus, "good", "sfu-1", "IP:127.0.0.1", -60, TL_DAY, &good);
	harness_pki_issue(&sfus, "other-host", "sfu-9", "IP:127.0.0.9,DNS:sfu9.example.com", -60,
			  TL_DAY, &other_host);
	harness_pki_issue(&sfus, "by-uri", "sfu-uri", "URI:https://sfu7.example.com:8070", -60,
			  TL_DAY, &by_uri);
	harness_pki_ca("stranger-ca", "another CA", &stranger_ca);
	harness_pki_issue(&stranger_ca, "stranger", "sfu-1", "IP:127.0.0.1", -60, TL_DAY,
			  &stranger);
	snprintf(more, sizeof(more), "[registration]\nclient_ca = \"%s\"\n", sfus.cert);
	tl_listener_toml(toml, sizeof(toml), &srv, more);
	gw = harness_tls_gateway_up(TL_GW_KEY, env, 2, toml, ca.cert);
	c.ca = ca.cert;

	/* Accepted: the certificate names 127.0.0.1, and the token is there. */
	c.cert = good.cert;
	c.key = good.key;
	cr_assert_eq(tl_heartbeat(gw->port, &c, addr, true, r), 200, "%s", r->body);
	cr_assert_not_null(strstr(r->body, "registered"), "%s", r->body);
	/* ... but the token is still required. */
	cr_assert_eq(tl_heartbeat(gw->port, &c, addr, false, r), 401, "%s", r->body);
	cr_assert_not_null(strstr(r->body, "missing authorization"), "%s", r->body);
	/* A URI subjectAltName names its host too. */
	c.cert = by_uri.cert;
	c.key = by_uri.key;
	cr_assert_eq(tl_heartbeat(gw->port, &c, "https://sfu7.example.com:8070", true, r), 200,
		     "%s", r->body);
	cr_assert_eq(tl_heartbeat(gw->port, &c, addr, true, r), 403, "%s", r->body);

	/* Refused without a certificate. */
	c.cert = c.key = NULL;
	cr_assert_eq(tl_heartbeat(gw->port, &c, addr, true, r), 401, "%s", r->body);
	cr_assert_not_null(strstr(r->body, "client certificate required"), "%s", r->body);
	/* ... with one for another host (its own address is fine). */
	c.cert = other_host.cert;
	c.key = other_host.key;
	cr_assert_eq(tl_heartbeat(gw->port, &c, addr, true, r), 403, "%s", r->body);
	cr_assert_not_null(strstr(r->body, "client certificate does not name the heartbeat's "
					   "address"),
			   "%s", r->body);
	cr_assert_eq(tl_heartbeat(gw->port, &c, "http://127.0.0.9:8070", true, r), 200, "%s",
		     r->body);
	cr_assert_eq(tl_heartbeat(gw->port, &c, "http://sfu9.example.com:8070", true, r), 200,
		     "%s", r->body);
	/* ... and with one from another CA, even for the right host. */
	c.cert = stranger.cert;
	c.key = stranger.key;
	cr_assert_eq(tl_heartbeat(gw->port, &c, addr, true, r), 403, "%s", r->body);
	cr_assert_not_null(strstr(r->body, "client certificate refused: unable to verify the first "
					   "certificate"),
			   "%s", r->body);
	/* Signing off needs the certificate as well. */
	c.cert = other_host.cert;
	c.key = other_host.key;
	{
		char auth[1024], body[256];

		snprintf(body, sizeof(body), "{\"status\":\"down\",\"address\":\"%s\"}", addr);
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n",
			 harness_sfu_token(addr, TL_REG_KEY, body));
		cr_assert_eq(harness_tls_post(gw->port, &c, "/v1/sfu", auth, body, r, &info), 0);
		cr_assert_eq(r->status, 403, "%s", r->body);
	}
	/* Routes that need no certificate work without one (and with a stranger's). */
	c.cert = c.key = NULL;
	cr_assert_eq(harness_tls_get(gw->port, &c, "/v1/health", NULL, r, &info), 0, "%s",
		     info.error);
	cr_assert_eq(r->status, 200, "%s", r->body); /* registered SFUs make it ok */
	{
		char path[64];
		struct harness_resp *ch = calloc(1, sizeof(*ch));
		char req[4096];

		cr_assert_not_null(ch);
		snprintf(path, sizeof(path), "/v1/channel");
		harness_channel_req(req, sizeof(req),
				    harness_odoo_token("https://odoo.example.com:mtls", TL_GW_KEY));
		c.cert = stranger.cert;
		c.key = stranger.key;
		cr_assert_eq(harness_tls_raw(gw->port, &c, req, strlen(req), ch, &info, 10000), 0,
			     "%s", info.error);
		/* The SFU at :9 is not there: the gateway tried it, so the certificate did not stop it. */
		cr_assert(ch->status == 502 || ch->status == 503, "%d %s", ch->status, ch->body);
		free(ch);
	}

	/* require_token = false: the certificate alone. */
	snprintf(more, sizeof(more), "[registration]\nclient_ca = \"%s\"\nrequire_token = false\n",
		 sfus.cert);
	tl_listener_toml(toml, sizeof(toml), &srv, more);
	gw2 = harness_tls_gateway_up(TL_GW_KEY, env, 1, toml, ca.cert);
	c.cert = good.cert;
	c.key = good.key;
	cr_assert_eq(tl_heartbeat(gw2->port, &c, addr, false, r), 200, "%s", r->body);
	c.cert = c.key = NULL;
	cr_assert_eq(tl_heartbeat(gw2->port, &c, addr, true, r), 401, "%s", r->body);
	free(r);
}

/*
 * The agent over https both ways: it polls an https SFU and sends its heartbeats to an
 * HTTPS gateway that requires its client certificate; channels then go to the SFU over
 * https.
 */
Test(tls, agent_https_and_client_certificate, .fini = harness_cleanup, .timeout = 90)
{
	struct harness_pki ca, srv, sfu, agent_cert;
	struct harness_proc *m, *gw, *agent;
	struct harness_tls_client c = { 0 };
	struct harness_tls_info info;
	struct harness_resp *r = calloc(1, sizeof(*r));
	char toml[4096], more[2048], gw_url[64], ca_env[600], cert_env[600], key_env[600];
	char req[4096];
	int64_t deadline;
	const char *env[] = { "SFU_GATEWAY_REGISTRATION_KEY=" TL_REG_KEY, NULL };

	cr_assert_not_null(r);
	harness_pki_ca("ca", "tls test CA", &ca);
	harness_pki_issue(&ca, "gw", "gw", "IP:127.0.0.1", -60, TL_DAY, &srv);
	harness_pki_issue(&ca, "sfu", "sfu", "IP:127.0.0.1", -60, TL_DAY, &sfu);
	harness_pki_issue(&ca, "agent", "sfu-agent", "IP:127.0.0.1", -60, TL_DAY, &agent_cert);
	m = tl_mock(&sfu, NULL);
	snprintf(more, sizeof(more),
		 "ca_file = \"%s\"\n[registration]\nclient_ca = \"%s\"\n", ca.cert, ca.cert);
	tl_listener_toml(toml, sizeof(toml), &srv, more);
	gw = harness_tls_gateway_up(TL_GW_KEY, env, 1, toml, ca.cert);
	snprintf(gw_url, sizeof(gw_url), "https://127.0.0.1:%d", gw->port);
	snprintf(ca_env, sizeof(ca_env), "SFU_AGENT_CA=%s", ca.cert);
	snprintf(cert_env, sizeof(cert_env), "SFU_AGENT_CERT=%s", agent_cert.cert);
	snprintf(key_env, sizeof(key_env), "SFU_AGENT_KEY=%s", agent_cert.key);
	{
		const char *args[] = { "--gateway-url", gw_url, "--address", tl_https(m->port),
				       "--region", "eu-west", "--interval", "200", NULL };
		const char *aenv[] = { ca_env, cert_env, key_env,
				       "AUTH_KEY=" TL_SFU_KEY,
				       "SFU_GATEWAY_REGISTRATION_KEY=" TL_REG_KEY, NULL };

		agent = harness_agent_start(args, aenv);
		cr_assert_not_null(agent);
	}
	c.ca = ca.cert;
	deadline = harness_now_ms() + 15000;
	while (harness_now_ms() < deadline) {
		cr_assert_eq(harness_tls_get(gw->port, &c, "/v1/health", NULL, r, &info), 0);
		if (strstr(r->body, tl_https(m->port)) != NULL)
			break;
		poll(NULL, 0, 50);
	}
	cr_assert_not_null(strstr(r->body, tl_https(m->port)), "not registered: %s; agent: %s",
			   r->body, harness_log(agent));
	cr_assert_not_null(strstr(r->body, "\"source\":\"registered\""), "%s", r->body);
	/* The agent read the SFU's stats over https. */
	cr_assert_geq(harness_mock_int(m, "/mock/stats", "stats"), 1);
	cr_assert_geq(harness_mock_int(m, "/mock/stats", "tls_handshakes"), 1);
	/* And a channel goes through: Odoo over https to the gateway, which goes over https
	 * to the registered SFU. */
	harness_channel_req(req, sizeof(req),
			    harness_odoo_token("https://odoo.example.com:agent-tls", TL_GW_KEY));
	cr_assert_eq(harness_tls_raw(gw->port, &c, req, strlen(req), r, &info, 10000), 0);
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert_not_null(strstr(r->body, tl_https(m->port)), "%s", r->body);
	cr_assert_geq(harness_mock_int(m, "/mock/stats", "channel_requests"), 1);
	/* A stop signs it off over the same way. */
	cr_assert_eq(harness_stop(agent, SIGTERM, 10000), 0, "%s", harness_log(agent));
	cr_assert_eq(harness_tls_get(gw->port, &c, "/v1/health", NULL, r, &info), 0);
	cr_assert_null(strstr(r->body, tl_https(m->port)), "%s", r->body);
	free(r);
}
