/* sfu-gateway-agent: polls an unmodified odoo/sfu and sends its heartbeats to the gateways. */
#include "agent.h"

#include <errno.h>
#include <getopt.h>
#include <json.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base64.h"
#include "clock.h"
#include "config.h"
#include "http_client.h"
#include "log.h"
#include "region.h"
#include "stats.h"
#include "sysload.h"
#include "tls.h"
#include "token.h"

#ifndef SFU_VERSION
#define SFU_VERSION "0.0.0"
#endif

#define AGENT_GATEWAYS_MAX 16
#define AGENT_KEY_B64_MAX 256 /* the SFU's key as given, sent in the heartbeat */
#define AGENT_INTERVAL_MIN 100
#define AGENT_INTERVAL_MAX 3600000
#define AGENT_DEFAULT_INTERVAL "10000"
/* A request never takes longer than this, so a hanging gateway or SFU costs one
 * slot of its own and nothing else. */
#define AGENT_REQUEST_MAX_MS 5000
#define AGENT_CONNECT_MAX_MS 2000
/* Sign-offs at shutdown: each gets this long, and the agent exits by the guard. */
#define AGENT_DOWN_TIMEOUT_MS 2000
#define AGENT_STOP_GUARD_MS 2100
/* Backoff after gateway errors: 1 s doubling to 60 s, each delay +-20%. */
#define AGENT_BACKOFF_FIRST_MS 1000
#define AGENT_BACKOFF_MAX_MS 60000
#define AGENT_TOKEN_TTL_S 60
#define AGENT_ERROR_TEXT_MAX 160

static const char agent_usage[] =
	"Usage: sfu-gateway-agent [OPTIONS]\n"
	"Registers an unmodified odoo/sfu with one or more sfu-gateways: polls the SFU's\n"
	"/v1/stats and the host's CPU and memory, and sends a heartbeat every interval.\n"
	"Signs off (\"down\") on SIGTERM or SIGINT. Flags win over the environment.\n"
	"\n"
	"  -g, --gateway-url URLS      gateway base URL, or a comma-separated list\n"
	"                              (env SFU_GATEWAY_URL; required)\n"
	"  -i, --interval MS           heartbeat interval in ms, 100..3600000\n"
	"                              (env SFU_GATEWAY_PING_INTERVAL; default 10000)\n"
	"  -r, --region REGION         the SFU's region, [a-z0-9-]{1,63} (env SFU_REGION;\n"
	"                              required)\n"
	"  -a, --address URL           the SFU as the gateways reach it, http(s)://host[:port]\n"
	"                              (env SFU_ADDRESS; required)\n"
	"  -u, --sfu-url URL           where the agent polls the SFU, http(s)://host[:port]\n"
	"                              (env SFU_URL; default: the address)\n"
	"  -k, --auth-key BASE64       the SFU's AUTH_KEY, sent in the heartbeat\n"
	"                              (env AUTH_KEY; required)\n"
	"  -K, --registration-key BASE64\n"
	"                              signs the heartbeat's token: the gateways'\n"
	"                              registration key (env SFU_GATEWAY_REGISTRATION_KEY;\n"
	"                              required)\n"
	"  -d, --down-after N          send \"down\" after N polls of the SFU failed in a\n"
	"                              row; 0 = never (env SFU_AGENT_DOWN_AFTER; default 0)\n"
	"  -m, --max-sessions N        sessions this SFU takes, sent as maxSessions; 0 = let\n"
	"                              the gateway decide (env SFU_AGENT_MAX_SESSIONS)\n"
	"  -l, --log-level LEVEL       error, warn, info or debug\n"
	"                              (env SFU_AGENT_LOG_LEVEL; default info)\n"
	"      --ca FILE               PEM bundle of the CAs https gateways and the SFU are\n"
	"                              verified against (env SFU_AGENT_CA; default: the\n"
	"                              system store)\n"
	"      --cert FILE             PEM client certificate presented to gateways that\n"
	"                              ask for one ([registration] client_ca); its\n"
	"                              subjectAltName must name the address's host\n"
	"                              (env SFU_AGENT_CERT)\n"
	"      --key FILE              PEM private key of --cert; refused when others may\n"
	"                              read it (env SFU_AGENT_KEY)\n"
	"  -V, --version               print the version and exit\n"
	"  -h, --help                  print this help and exit\n"
	"\n"
	"Exit status: 0 after a sign-off, 1 for a bad value, 2 for a usage error.\n";

/* The settings, in the order of agent_settings[]. */
enum agent_setting_id {
	AGENT_S_GATEWAY_URL,
	AGENT_S_INTERVAL,
	AGENT_S_REGION,
	AGENT_S_ADDRESS,
	AGENT_S_SFU_URL,
	AGENT_S_AUTH_KEY,
	AGENT_S_REGISTRATION_KEY,
	AGENT_S_DOWN_AFTER,
	AGENT_S_MAX_SESSIONS,
	AGENT_S_LOG_LEVEL,
	AGENT_S_CA,
	AGENT_S_CERT,
	AGENT_S_KEY,
	AGENT_S_COUNT
};

/* Options without a short letter are told apart by these values. */
#define AGENT_OPT_CA 0x100
#define AGENT_OPT_CERT 0x101
#define AGENT_OPT_KEY 0x102

/* Each setting's flag and environment variable: the names an SFU-side sender
 * uses (SFU_GATEWAY_URL, SFU_GATEWAY_PING_INTERVAL, SFU_REGION) first. */
static const struct agent_setting {
	const char *flag; /* long option, without "--" */
	int short_opt;
	const char *env;
	bool required;
} agent_settings[AGENT_S_COUNT] = {
	[AGENT_S_GATEWAY_URL] = { "gateway-url", 'g', "SFU_GATEWAY_URL", true },
	[AGENT_S_INTERVAL] = { "interval", 'i', "SFU_GATEWAY_PING_INTERVAL", false },
	[AGENT_S_REGION] = { "region", 'r', "SFU_REGION", true },
	[AGENT_S_ADDRESS] = { "address", 'a', "SFU_ADDRESS", true },
	[AGENT_S_SFU_URL] = { "sfu-url", 'u', "SFU_URL", false },
	[AGENT_S_AUTH_KEY] = { "auth-key", 'k', "AUTH_KEY", true },
	[AGENT_S_REGISTRATION_KEY] = { "registration-key", 'K', "SFU_GATEWAY_REGISTRATION_KEY",
				       true },
	[AGENT_S_DOWN_AFTER] = { "down-after", 'd', "SFU_AGENT_DOWN_AFTER", false },
	[AGENT_S_MAX_SESSIONS] = { "max-sessions", 'm', "SFU_AGENT_MAX_SESSIONS", false },
	[AGENT_S_LOG_LEVEL] = { "log-level", 'l', "SFU_AGENT_LOG_LEVEL", false },
	[AGENT_S_CA] = { "ca", AGENT_OPT_CA, "SFU_AGENT_CA", false },
	[AGENT_S_CERT] = { "cert", AGENT_OPT_CERT, "SFU_AGENT_CERT", false },
	[AGENT_S_KEY] = { "key", AGENT_OPT_KEY, "SFU_AGENT_KEY", false },
};

static const struct option agent_options[] = {
	{ "gateway-url", required_argument, NULL, 'g' },
	{ "interval", required_argument, NULL, 'i' },
	{ "region", required_argument, NULL, 'r' },
	{ "address", required_argument, NULL, 'a' },
	{ "sfu-url", required_argument, NULL, 'u' },
	{ "auth-key", required_argument, NULL, 'k' },
	{ "registration-key", required_argument, NULL, 'K' },
	{ "down-after", required_argument, NULL, 'd' },
	{ "max-sessions", required_argument, NULL, 'm' },
	{ "log-level", required_argument, NULL, 'l' },
	{ "ca", required_argument, NULL, AGENT_OPT_CA },
	{ "cert", required_argument, NULL, AGENT_OPT_CERT },
	{ "key", required_argument, NULL, AGENT_OPT_KEY },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct agent_config {
	char gateways[AGENT_GATEWAYS_MAX][CONFIG_ADDRESS_MAX]; /* normalised http(s):// URLs */
	size_t n_gateways;
	uint32_t interval_ms;
	char region[CONFIG_REGION_MAX];
	char address[CONFIG_ADDRESS_MAX]; /* normalised; the token's address claim */
	char sfu_url[CONFIG_ADDRESS_MAX]; /* normalised http(s):// URL */
	char auth_key[AGENT_KEY_B64_MAX]; /* base64 as given */
	uint8_t registration_key[CONFIG_KEY_MAX];
	size_t registration_key_len;
	uint32_t down_after;
	uint32_t max_sessions;
	enum log_level log_level;
	/* TLS to https gateways and SFUs: CAs ("" = the system store) and a client
	 * certificate for gateways that ask for one ("" = none). */
	char ca[TLS_PATH_MAX], cert[TLS_PATH_MAX], key[TLS_PATH_MAX];
};

struct agent;

/* One gateway: its own backoff, so an unreachable one never delays the others. */
struct agent_gateway {
	struct agent *a;
	const char *url;
	uv_timer_t retry; /* runs while the gateway is backing off */
	bool backing_off;
	bool up_in_flight;
	bool down_deferred; /* a sign-off waits for the "up" in flight to finish */
	uint32_t failures; /* consecutive */
};

/* One heartbeat request in flight. */
struct agent_req {
	struct agent_gateway *gw;
	bool down;
};

struct agent {
	struct agent_config cfg;
	uv_loop_t loop;
	uv_timer_t tick, stop_guard;
	uv_signal_t sig_term, sig_int;
	struct http_client *http;
	struct agent_gateway gws[AGENT_GATEWAYS_MAX];
	size_t n_gws;
	uint32_t request_timeout_ms;

	/* What the last poll of the SFU saw. /v1/stats is read as it arrives
	 * (a busy SFU's answer is hundreds of kilobytes). */
	bool polling;
	struct stats_parser stats;
	bool sfu_ok;
	uint32_t poll_failures; /* consecutive */
	bool down_sent; /* after --down-after failures; cleared when the SFU answers */
	uint32_t channels, sessions;
	double cpu, memory;
	struct sysload_cpu cpu_prev; /* zero at first: the first beat reports the boot average */
	bool host_warned;

	bool stopping;
	size_t downs_pending;
	size_t requests_in_flight; /* every request, for the final drain */
	uint64_t last_seq; /* the seq claim of the last token signed */
};

/*
 * The state is static so that what the HTTP client keeps until the process
 * ends stays reachable (http_client_free leaves its pools to the exit).
 */
static struct agent agent_state;

static void agent_send(struct agent_gateway *gw, bool down);

/* ---- configuration */

/* Prints a one-line error naming where the value came from; returns code. */
static int agent_config_error(int code, const char *src, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int agent_config_error(int code, const char *src, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (src != NULL)
		fprintf(stderr, "sfu-gateway-agent: %s: %s\n", src, msg);
	else
		fprintf(stderr, "sfu-gateway-agent: %s\n", msg);
	return code;
}

/* Strict unsigned decimal in [min, max]. */
static bool agent_parse_uint(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* A URL the agent itself talks to, http or https. */
static int agent_parse_url(const char *src, const char *in, char *out, size_t outlen)
{
	if (address_parse(in, out, outlen) != 0)
		return agent_config_error(1, src,
					  "'%s' is not http(s)://host[:port] (no path, query or "
					  "credentials)",
					  in);
	return 0;
}

/* A file path setting, copied into out ("" when not given). */
static int agent_parse_path(const char *src, const char *in, char *out, size_t outlen)
{
	if (in == NULL) {
		out[0] = '\0';
		return 0;
	}
	if (in[0] == '\0' || strlen(in) >= outlen)
		return agent_config_error(1, src, "not a file path of 1 to %zu bytes", outlen - 1);
	memcpy(out, in, strlen(in) + 1);
	return 0;
}

/* Splits the comma-separated gateway list; blanks around entries are ignored. */
static int agent_parse_gateways(struct agent_config *cfg, const char *src, const char *list)
{
	const char *p = list;

	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		char one[CONFIG_ADDRESS_MAX];
		int rc;

		while (n > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			n--;
		}
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == 0)
			return agent_config_error(1, src, "empty entry in the gateway list");
		if (n >= sizeof(one))
			return agent_config_error(1, src, "a gateway URL is too long");
		if (cfg->n_gateways == AGENT_GATEWAYS_MAX)
			return agent_config_error(1, src, "more than %d gateways",
						  AGENT_GATEWAYS_MAX);
		memcpy(one, p, n);
		one[n] = '\0';
		rc = agent_parse_url(src, one, cfg->gateways[cfg->n_gateways],
				     sizeof(cfg->gateways[0]));
		if (rc != 0)
			return rc;
		for (size_t i = 0; i < cfg->n_gateways; i++)
			if (strcmp(cfg->gateways[i], cfg->gateways[cfg->n_gateways]) == 0)
				return agent_config_error(1, src, "gateway %s is listed twice",
							  cfg->gateways[i]);
		cfg->n_gateways++;
		if (end == NULL)
			break;
		p = end + 1;
		if (*p == '\0')
			return agent_config_error(1, src, "empty entry in the gateway list");
	}
	return 0;
}

/* Checks every value and fills cfg. Returns 0, 1 (bad value) or 2 (usage). */
static int agent_config_build(struct agent_config *cfg, const char *const val[AGENT_S_COUNT],
			      const char *const src[AGENT_S_COUNT])
{
	uint8_t auth_key[CONFIG_KEY_MAX];
	const char *sfu_url;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < AGENT_S_COUNT; i++)
		if (agent_settings[i].required && val[i] == NULL)
			return agent_config_error(2, NULL, "missing %s (or --%s)",
						  agent_settings[i].env, agent_settings[i].flag);

	cfg->log_level = LOG_LEVEL_INFO;
	if (val[AGENT_S_LOG_LEVEL] != NULL &&
	    log_level_parse(val[AGENT_S_LOG_LEVEL], &cfg->log_level) != 0)
		return agent_config_error(1, src[AGENT_S_LOG_LEVEL],
					  "'%s' is not error, warn, info or debug",
					  val[AGENT_S_LOG_LEVEL]);
	rc = agent_parse_gateways(cfg, src[AGENT_S_GATEWAY_URL], val[AGENT_S_GATEWAY_URL]);
	if (rc != 0)
		return rc;
	if (cfg->n_gateways == 0)
		return agent_config_error(2, src[AGENT_S_GATEWAY_URL], "no gateway URL given");
	if (!agent_parse_uint(val[AGENT_S_INTERVAL] ? val[AGENT_S_INTERVAL]
						    : AGENT_DEFAULT_INTERVAL,
			      AGENT_INTERVAL_MIN, AGENT_INTERVAL_MAX, &cfg->interval_ms))
		return agent_config_error(1, src[AGENT_S_INTERVAL],
					  "'%s' is not a whole number of ms in %d..%d",
					  val[AGENT_S_INTERVAL], AGENT_INTERVAL_MIN,
					  AGENT_INTERVAL_MAX);
	if (!region_name_valid(val[AGENT_S_REGION]))
		return agent_config_error(1, src[AGENT_S_REGION], "'%s' does not match [a-z0-9-]{1,63}",
					  val[AGENT_S_REGION]);
	snprintf(cfg->region, sizeof(cfg->region), "%s", val[AGENT_S_REGION]);
	if (address_parse(val[AGENT_S_ADDRESS], cfg->address, sizeof(cfg->address)) != 0)
		return agent_config_error(1, src[AGENT_S_ADDRESS],
					  "'%s' is not http(s)://host[:port] (no path, query or "
					  "credentials)",
					  val[AGENT_S_ADDRESS]);
	sfu_url = val[AGENT_S_SFU_URL];
	rc = agent_parse_url(sfu_url ? src[AGENT_S_SFU_URL] : src[AGENT_S_ADDRESS],
			     sfu_url ? sfu_url : cfg->address, cfg->sfu_url, sizeof(cfg->sfu_url));
	if (rc != 0)
		return rc;
	rc = agent_parse_path(src[AGENT_S_CA], val[AGENT_S_CA], cfg->ca, sizeof(cfg->ca));
	if (rc == 0)
		rc = agent_parse_path(src[AGENT_S_CERT], val[AGENT_S_CERT], cfg->cert,
				      sizeof(cfg->cert));
	if (rc == 0)
		rc = agent_parse_path(src[AGENT_S_KEY], val[AGENT_S_KEY], cfg->key, sizeof(cfg->key));
	if (rc != 0)
		return rc;
	if ((cfg->cert[0] != '\0') != (cfg->key[0] != '\0'))
		return agent_config_error(2, NULL, "--cert and --key (SFU_AGENT_CERT and "
						   "SFU_AGENT_KEY) go together");
	{
		/* Loaded once here, so that a bad file stops the agent before it starts. */
		struct tls_client_opts o = { .ca_file = cfg->ca, .cert_file = cfg->cert,
					     .key_file = cfg->key, .verify = true };
		struct ssl_ctx_st *ctx = NULL;
		char err[TLS_PATH_MAX * 2 + 160];

		if (tls_client_ctx_new(&ctx, &o, err, sizeof(err)) != 0)
			return agent_config_error(1, cfg->key[0] ? src[AGENT_S_KEY] : src[AGENT_S_CA],
						  "%s", err);
		tls_ctx_free(ctx);
	}
	/* Keys are checked, never echoed. */
	if (strlen(val[AGENT_S_AUTH_KEY]) >= sizeof(cfg->auth_key) ||
	    base64_decode_key(val[AGENT_S_AUTH_KEY], auth_key, sizeof(auth_key)) < 0)
		return agent_config_error(1, src[AGENT_S_AUTH_KEY],
					  "not valid base64 of 1 to %d bytes", CONFIG_KEY_MAX);
	snprintf(cfg->auth_key, sizeof(cfg->auth_key), "%s", val[AGENT_S_AUTH_KEY]);
	rc = base64_decode_key(val[AGENT_S_REGISTRATION_KEY], cfg->registration_key,
			       sizeof(cfg->registration_key));
	if (rc < 0)
		return agent_config_error(1, src[AGENT_S_REGISTRATION_KEY],
					  "not valid base64 of 1 to %d bytes", CONFIG_KEY_MAX);
	cfg->registration_key_len = (size_t)rc;
	if (val[AGENT_S_DOWN_AFTER] != NULL &&
	    !agent_parse_uint(val[AGENT_S_DOWN_AFTER], 0, 1000000, &cfg->down_after))
		return agent_config_error(1, src[AGENT_S_DOWN_AFTER],
					  "'%s' is not a whole number in 0..1000000",
					  val[AGENT_S_DOWN_AFTER]);
	if (val[AGENT_S_MAX_SESSIONS] != NULL &&
	    !agent_parse_uint(val[AGENT_S_MAX_SESSIONS], 0, 1000000, &cfg->max_sessions))
		return agent_config_error(1, src[AGENT_S_MAX_SESSIONS],
					  "'%s' is not a whole number in 0..1000000",
					  val[AGENT_S_MAX_SESSIONS]);
	return 0;
}

/*
 * Flags, then the environment for what no flag gave (empty variables count as
 * unset). Returns -1 to run, or an exit code (0 after --help/--version).
 */
static int agent_config_load(struct agent_config *cfg, int argc, char **argv)
{
	const char *val[AGENT_S_COUNT] = { NULL };
	char flag_src[AGENT_S_COUNT][32];
	const char *src[AGENT_S_COUNT];
	int opt, rc;

	opterr = 1;
	while ((opt = getopt_long(argc, argv, "g:i:r:a:u:k:K:d:m:l:Vh", agent_options, NULL)) !=
	       -1) {
		bool known = false;

		if (opt == 'V') {
			printf("sfu-gateway-agent %s\n", SFU_VERSION);
			return 0;
		}
		if (opt == 'h') {
			fputs(agent_usage, stdout);
			return 0;
		}
		for (int i = 0; i < AGENT_S_COUNT; i++) {
			if (agent_settings[i].short_opt == opt) {
				val[i] = optarg;
				known = true;
			}
		}
		if (!known) {
			fputs("Try 'sfu-gateway-agent --help'.\n", stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr,
			"sfu-gateway-agent: unexpected argument '%s'\n"
			"Try 'sfu-gateway-agent --help'.\n",
			argv[optind]);
		return 2;
	}
	for (int i = 0; i < AGENT_S_COUNT; i++) {
		const char *env = getenv(agent_settings[i].env);

		snprintf(flag_src[i], sizeof(flag_src[i]), "--%s", agent_settings[i].flag);
		src[i] = flag_src[i];
		if (val[i] == NULL && env != NULL && env[0] != '\0') {
			val[i] = env;
			src[i] = agent_settings[i].env;
		}
	}
	rc = agent_config_build(cfg, val, src);
	return rc == 0 ? -1 : rc;
}

/* ---- heartbeats */

/* The gateway's {"error": text} (or the body's start), printable ASCII only,
 * so a hostile or broken answer cannot forge log lines. */
static void agent_error_text(const char *body, size_t len, char *out, size_t outlen)
{
	struct json_object *o = NULL, *e;
	const char *text = NULL;
	size_t tl = 0, w = 0;

	if (len > 0)
		o = json_tokener_parse(body);
	if (o != NULL && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "error", &e) && json_object_is_type(e, json_type_string)) {
		text = json_object_get_string(e);
		tl = (size_t)json_object_get_string_len(e);
	} else {
		text = body;
		tl = len;
	}
	for (size_t i = 0; i < tl && w + 1 < outlen && w < AGENT_ERROR_TEXT_MAX; i++) {
		unsigned char ch = (unsigned char)text[i];

		out[w++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	out[w] = '\0';
	if (w == 0)
		snprintf(out, outlen, "(no error text)");
	json_object_put(o);
}

/* The next retry delay after failures consecutive errors, with +-20% jitter so
 * many agents restarted together do not keep hitting a gateway in step. */
static uint64_t agent_backoff_ms(uint32_t failures)
{
	uint64_t base = AGENT_BACKOFF_FIRST_MS;
	double jitter = 0.8 + 0.4 * ((double)random() / (double)RAND_MAX);

	for (uint32_t i = 1; i < failures && base < AGENT_BACKOFF_MAX_MS; i++)
		base *= 2;
	if (base > AGENT_BACKOFF_MAX_MS)
		base = AGENT_BACKOFF_MAX_MS;
	return (uint64_t)((double)base * jitter);
}

static void agent_on_retry(uv_timer_t *t)
{
	struct agent_gateway *gw = t->data;

	gw->backing_off = false;
	/* Without a fresh poll there is nothing true to report: wait for the next one. */
	if (!gw->a->stopping && gw->a->sfu_ok && !gw->up_in_flight)
		agent_send(gw, false);
}

static void agent_finish(struct agent *a)
{
	uv_stop(&a->loop);
}

/* A sign-off ended (sent, failed or given up): exit once all have. */
static void agent_down_done(struct agent *a)
{
	a->downs_pending--;
	if (a->stopping && a->downs_pending == 0)
		agent_finish(a);
}

/* What went wrong with a request to a gateway, for the log: the connection
 * error, or the HTTP status with the gateway's error text. */
static void agent_describe_failure(const struct http_client_result *res, char *out,
				   size_t outlen)
{
	char text[AGENT_ERROR_TEXT_MAX + 1];

	if (res->error != 0) {
		snprintf(out, outlen, "%s%s", res->connect_failed ? "cannot connect: " : "",
			 http_client_strerror(res));
		return;
	}
	agent_error_text(res->body, res->body_len, text, sizeof(text));
	snprintf(out, outlen, "HTTP %d: %s%s", res->status, text,
		 res->status == 401 ? " (check the registration key)" : "");
}

static void agent_beat_failed(struct agent_gateway *gw, const struct http_client_result *res)
{
	struct agent *a = gw->a;
	char why[AGENT_ERROR_TEXT_MAX + 64];
	uint64_t delay;

	agent_describe_failure(res, why, sizeof(why));
	gw->failures++;
	if (a->stopping) {
		log_warn("gateway %s: heartbeat failed: %s", gw->url, why);
		return;
	}
	delay = agent_backoff_ms(gw->failures);
	log_warn("gateway %s: heartbeat failed: %s; retrying in %.1f s (failure %u)", gw->url,
		 why, (double)delay / 1000.0, gw->failures);
	gw->backing_off = true;
	uv_update_time(&a->loop);
	uv_timer_start(&gw->retry, agent_on_retry, delay, 0);
}

/* The "status" of a 200 reply: "registered" or "updated"; "" when absent. */
static void agent_reply_status(const char *body, char *out, size_t outlen)
{
	struct json_object *o = json_tokener_parse(body), *s;

	out[0] = '\0';
	if (o != NULL && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "status", &s) && json_object_is_type(s, json_type_string))
		snprintf(out, outlen, "%s", json_object_get_string(s));
	json_object_put(o);
}

static void agent_on_beat(const struct http_client_result *res, void *ctx)
{
	struct agent_req *rq = ctx;
	struct agent_gateway *gw = rq->gw;
	struct agent *a = gw->a;
	bool ok = res->error == 0 && res->status == 200;

	a->requests_in_flight--;
	if (rq->down) {
		if (ok) {
			log_info("gateway %s: signed off %s", gw->url, a->cfg.address);
		} else {
			char why[AGENT_ERROR_TEXT_MAX + 64];

			agent_describe_failure(res, why, sizeof(why));
			log_warn("gateway %s: sign-off failed: %s", gw->url, why);
		}
		free(rq);
		agent_down_done(a);
		return;
	}
	free(rq);
	gw->up_in_flight = false;
	if (!ok) {
		agent_beat_failed(gw, res);
	} else {
		char reply[32];

		agent_reply_status(res->body, reply, sizeof(reply));
		if (gw->failures > 0)
			log_info("gateway %s: heartbeats accepted again after %u failures", gw->url,
				 gw->failures);
		if (strcmp(reply, "registered") == 0)
			log_info("gateway %s: registered %s (region %s)", gw->url, a->cfg.address,
				 a->cfg.region);
		else
			log_debug("gateway %s: %s channels=%u sessions=%u", gw->url,
				  reply[0] ? reply : "ok", a->channels, a->sessions);
		gw->failures = 0;
	}
	/* A sign-off asked for meanwhile goes out only now, so the gateway cannot
	 * see it before this heartbeat and register the SFU again. */
	if (gw->down_deferred) {
		gw->down_deferred = false;
		agent_send(gw, true);
	}
}

/*
 * The token (heartbeat wire format v2, see sfu-gateway(8)): HS256 with the
 * registration key, naming the SFU it speaks for, bound to the exact body bytes
 * sent by their SHA-256, with a seq that only grows (ms since the epoch, or one
 * more than the last when the clock did not move), so the gateways refuse an
 * altered or replayed heartbeat.
 */
static int agent_token(struct agent *a, const char *body, size_t body_len, char *out,
		       size_t outlen)
{
	struct json_object *c = json_object_new_object();
	uint8_t digest[SHA256_DIGEST_LENGTH];
	char sha[BASE64URL_ENCODED_LEN(SHA256_DIGEST_LENGTH) + 1];
	int64_t wall = clock_wall_ms(), now = wall / 1000;
	ssize_t n;

	if (c == NULL)
		return -ENOMEM;
	if (SHA256((const unsigned char *)body, body_len, digest) == NULL ||
	    base64url_encode(digest, sizeof(digest), sha, sizeof(sha)) < 0) {
		json_object_put(c);
		return -EIO;
	}
	a->last_seq = (uint64_t)wall > a->last_seq ? (uint64_t)wall : a->last_seq + 1;
	json_object_object_add(c, "address", json_object_new_string(a->cfg.address));
	json_object_object_add(c, "iat", json_object_new_int64(now));
	json_object_object_add(c, "exp", json_object_new_int64(now + AGENT_TOKEN_TTL_S));
	json_object_object_add(c, "sha256", json_object_new_string(sha));
	json_object_object_add(c, "seq", json_object_new_int64((int64_t)a->last_seq));
	n = token_sign(json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN |
							    JSON_C_TO_STRING_NOSLASHESCAPE),
		       a->cfg.registration_key, a->cfg.registration_key_len, out, outlen);
	json_object_put(c);
	return n < 0 ? (int)n : 0;
}

/* The heartbeat body (POST /v1/sfu); the caller puts the object. */
static struct json_object *agent_body(const struct agent *a, bool down)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	json_object_object_add(o, "status", json_object_new_string(down ? "down" : "up"));
	json_object_object_add(o, "address", json_object_new_string(a->cfg.address));
	if (down)
		return o;
	json_object_object_add(o, "region", json_object_new_string(a->cfg.region));
	json_object_object_add(o, "key", json_object_new_string(a->cfg.auth_key));
	json_object_object_add(o, "channels", json_object_new_int64(a->channels));
	json_object_object_add(o, "sessions", json_object_new_int64(a->sessions));
	json_object_object_add(o, "cpuUsage", json_object_new_double(a->cpu));
	json_object_object_add(o, "memoryUsage", json_object_new_double(a->memory));
	if (a->cfg.max_sessions > 0)
		json_object_object_add(o, "maxSessions", json_object_new_int64(a->cfg.max_sessions));
	return o;
}

/* One heartbeat as sent: the body's exact bytes and the headers with the token
 * bound to them. The same one goes to every gateway a poll reaches, so that a
 * cluster of gateways sees one seq and writes it to etcd once. */
struct agent_beat {
	struct json_object *body; /* owns text */
	const char *text;
	size_t len;
	char headers[1200];
	int headers_len;
};

/* Builds the heartbeat (or the sign-off) from the last poll; 0 or -errno.
 * agent_beat_clear() either way. */
static int agent_beat_make(struct agent *a, bool down, struct agent_beat *b)
{
	char token[1024];
	int rc;

	memset(b, 0, sizeof(*b));
	b->body = agent_body(a, down);
	if (b->body == NULL)
		return -ENOMEM;
	/* The body's exact bytes first: the token names their hash. */
	b->text = json_object_to_json_string_length(b->body, JSON_C_TO_STRING_PLAIN |
								     JSON_C_TO_STRING_NOSLASHESCAPE,
						    &b->len);
	rc = b->text != NULL ? agent_token(a, b->text, b->len, token, sizeof(token)) : -ENOMEM;
	if (rc == 0)
		b->headers_len = snprintf(b->headers, sizeof(b->headers),
					  "Authorization: Bearer %s\r\n"
					  "Content-Type: application/json\r\n",
					  token);
	explicit_bzero(token, sizeof(token));
	return rc;
}

static void agent_beat_clear(struct agent_beat *b)
{
	json_object_put(b->body);
	explicit_bzero(b->headers, sizeof(b->headers));
	b->body = NULL;
}

/* Starts one POST /v1/sfu of beat (or, when beat is NULL, after a local error,
 * ends at once); its end is agent_on_beat. A sign-off is counted in downs_pending
 * by the caller and ends in agent_down_done. */
static void agent_post(struct agent_gateway *gw, bool down, const struct agent_beat *beat,
		       int rc)
{
	struct agent *a = gw->a;
	struct agent_req *rq = NULL;
	struct http_client_req req = { 0 };

	if (rc != 0)
		goto fail;
	rc = -ENOMEM;
	rq = calloc(1, sizeof(*rq));
	if (rq == NULL)
		goto fail;
	rq->gw = gw;
	rq->down = down;
	req.method = "POST";
	req.target = "/v1/sfu";
	req.target_len = 7;
	req.headers = beat->headers;
	req.headers_len = (size_t)beat->headers_len;
	/* The client copies the request out before returning. */
	req.body = beat->text;
	req.body_len = beat->len;
	req.timeout_ms = down ? AGENT_DOWN_TIMEOUT_MS : a->request_timeout_ms;
	req.connect_timeout_ms = req.timeout_ms < AGENT_CONNECT_MAX_MS ? req.timeout_ms
								      : AGENT_CONNECT_MAX_MS;
	rc = http_client_request(a->http, gw->url, &req, agent_on_beat, rq);
	if (rc != 0)
		goto fail;
	a->requests_in_flight++;
	if (!down)
		gw->up_in_flight = true;
	return;
fail:
	/* Only a bug or memory exhaustion lands here; the next tick tries again. */
	log_error("gateway %s: cannot send a heartbeat: %s", gw->url, strerror(-rc));
	free(rq);
	if (down)
		agent_down_done(a);
}

/* One heartbeat (or sign-off) of its own to one gateway. */
static void agent_send(struct agent_gateway *gw, bool down)
{
	struct agent_beat beat;
	int rc = agent_beat_make(gw->a, down, &beat);

	agent_post(gw, down, &beat, rc);
	agent_beat_clear(&beat);
}

/* A sign-off to one gateway, after any heartbeat still in flight to it. */
static void agent_gateway_down(struct agent_gateway *gw)
{
	if (gw->down_deferred)
		return;
	/* Counted now, deferred or not: the exit waits for it. */
	gw->a->downs_pending++;
	if (gw->up_in_flight) {
		gw->down_deferred = true;
		return;
	}
	agent_send(gw, true);
}

/* ---- polling the SFU */

/* Host CPU and memory; a host without /proc reports 0 (and says so once). */
static void agent_sample_host(struct agent *a)
{
	struct sysload_cpu cur;
	double mem;
	int rc = sysload_read_cpu(NULL, &cur);

	if (rc == 0) {
		a->cpu = sysload_cpu_usage(&a->cpu_prev, &cur);
		a->cpu_prev = cur;
	}
	if (rc == 0)
		rc = sysload_read_memory(NULL, &mem);
	if (rc == 0)
		a->memory = mem;
	if (rc != 0 && !a->host_warned) {
		log_warn("agent: cannot read host load from /proc: %s; reporting the last values",
			 strerror(-rc));
		a->host_warned = true;
	}
}

static void agent_poll_failed(struct agent *a, const char *why)
{
	a->sfu_ok = false;
	a->poll_failures++;
	/* The first failure, then ever more rarely: a dead SFU must not flood the log. */
	if ((a->poll_failures & (a->poll_failures - 1)) == 0)
		log_warn("sfu %s: not answering (%u in a row): %s; no heartbeat sent",
			 a->cfg.sfu_url, a->poll_failures, why);
	if (a->cfg.down_after > 0 && a->poll_failures >= a->cfg.down_after && !a->down_sent) {
		log_warn("sfu %s: %u polls failed in a row, signing off", a->cfg.sfu_url,
			 a->poll_failures);
		a->down_sent = true;
		for (size_t i = 0; i < a->n_gws; i++)
			agent_gateway_down(&a->gws[i]);
	}
}

static int agent_stats_body(void *ctx, const char *at, size_t len)
{
	struct agent *a = ctx;

	return stats_feed(&a->stats, at, len);
}

static void agent_on_stats(const struct http_client_result *res, void *ctx)
{
	struct agent *a = ctx;
	struct agent_beat beat;
	uint32_t channels, sessions;
	bool made = false;
	char why[96];
	int rc = 0;

	a->polling = false;
	a->requests_in_flight--;
	if (a->stopping)
		return;
	if (res->error == UV_EPROTO && a->stats.error != 0) {
		agent_poll_failed(a, "GET /v1/stats did not answer a JSON array of channels");
		return;
	}
	if (res->error != 0) {
		snprintf(why, sizeof(why), "%s", http_client_strerror(res));
		agent_poll_failed(a, why);
		return;
	}
	if (res->status != 200) {
		snprintf(why, sizeof(why), "GET /v1/stats answered %d", res->status);
		agent_poll_failed(a, why);
		return;
	}
	if (stats_finish(&a->stats, &channels, &sessions) != 0) {
		agent_poll_failed(a, "GET /v1/stats did not answer a JSON array of channels");
		return;
	}
	if (a->poll_failures > 0)
		log_info("sfu %s: answering again after %u failed polls", a->cfg.sfu_url,
			 a->poll_failures);
	a->poll_failures = 0;
	a->down_sent = false;
	a->sfu_ok = true;
	a->channels = channels;
	a->sessions = sessions;
	agent_sample_host(a);
	/* One heartbeat for every gateway this poll reaches; those backing off
	 * send their own from their timer. */
	for (size_t i = 0; i < a->n_gws; i++) {
		struct agent_gateway *gw = &a->gws[i];

		if (gw->backing_off || gw->up_in_flight || gw->down_deferred)
			continue;
		if (!made) {
			rc = agent_beat_make(a, false, &beat);
			made = true;
		}
		agent_post(gw, false, &beat, rc);
	}
	if (made)
		agent_beat_clear(&beat);
}

static void agent_on_tick(uv_timer_t *t)
{
	struct agent *a = t->data;
	struct http_client_req req = { 0 };
	int rc;

	if (a->polling)
		return; /* the last poll is still within its timeout */
	req.method = "GET";
	req.target = "/v1/stats";
	req.target_len = 9;
	req.on_body = agent_stats_body;
	stats_init(&a->stats);
	req.timeout_ms = a->request_timeout_ms;
	req.connect_timeout_ms = req.timeout_ms < AGENT_CONNECT_MAX_MS ? req.timeout_ms
								      : AGENT_CONNECT_MAX_MS;
	rc = http_client_request(a->http, a->cfg.sfu_url, &req, agent_on_stats, a);
	if (rc != 0) {
		agent_poll_failed(a, strerror(-rc));
		return;
	}
	a->polling = true;
	a->requests_in_flight++;
}

/* ---- start and stop */

static void agent_on_stop_guard(uv_timer_t *t)
{
	struct agent *a = t->data;

	log_warn("agent: %zu sign-offs still unanswered after %d ms; exiting", a->downs_pending,
		 AGENT_STOP_GUARD_MS);
	agent_finish(a);
}

static void agent_on_signal(uv_signal_t *s, int signum)
{
	struct agent *a = s->data;

	if (a->stopping) {
		log_warn("agent: signal %d again, exiting without waiting", signum);
		agent_finish(a);
		return;
	}
	log_info("agent: signal %d, signing off from %zu gateways", signum, a->n_gws);
	a->stopping = true;
	uv_timer_stop(&a->tick);
	for (size_t i = 0; i < a->n_gws; i++) {
		uv_timer_stop(&a->gws[i].retry);
		a->gws[i].backing_off = false;
	}
	uv_update_time(&a->loop);
	uv_timer_start(&a->stop_guard, agent_on_stop_guard, AGENT_STOP_GUARD_MS, 0);
	for (size_t i = 0; i < a->n_gws; i++)
		agent_gateway_down(&a->gws[i]);
	if (a->downs_pending == 0)
		agent_finish(a);
}

static void agent_close_cb(uv_handle_t *h)
{
	(void)h;
}

static void agent_close_handles(struct agent *a)
{
	uv_close((uv_handle_t *)&a->tick, agent_close_cb);
	uv_close((uv_handle_t *)&a->stop_guard, agent_close_cb);
	uv_close((uv_handle_t *)&a->sig_term, agent_close_cb);
	uv_close((uv_handle_t *)&a->sig_int, agent_close_cb);
	for (size_t i = 0; i < a->n_gws; i++)
		uv_close((uv_handle_t *)&a->gws[i].retry, agent_close_cb);
}

static int agent_run(struct agent *a)
{
	int rc;

	rc = uv_loop_init(&a->loop);
	if (rc != 0) {
		log_error("agent: cannot start the event loop: %s", uv_strerror(rc));
		return 1;
	}
	rc = http_client_new(&a->http, &a->loop);
	if (rc != 0) {
		log_error("agent: out of memory");
		return 1;
	}
	{
		struct http_client_tls o = { .ca_file = a->cfg.ca, .cert_file = a->cfg.cert,
					     .key_file = a->cfg.key };
		char err[TLS_PATH_MAX * 2 + 160];

		if (http_client_set_tls(a->http, &o, err, sizeof(err)) != 0) {
			fprintf(stderr, "sfu-gateway-agent: TLS: %s\n", err);
			return 1;
		}
	}
	a->request_timeout_ms = a->cfg.interval_ms < AGENT_REQUEST_MAX_MS ? a->cfg.interval_ms
									 : AGENT_REQUEST_MAX_MS;
	uv_timer_init(&a->loop, &a->tick);
	uv_timer_init(&a->loop, &a->stop_guard);
	a->tick.data = a;
	a->stop_guard.data = a;
	a->n_gws = a->cfg.n_gateways;
	for (size_t i = 0; i < a->n_gws; i++) {
		a->gws[i].a = a;
		a->gws[i].url = a->cfg.gateways[i];
		uv_timer_init(&a->loop, &a->gws[i].retry);
		a->gws[i].retry.data = &a->gws[i];
	}
	uv_signal_init(&a->loop, &a->sig_term);
	uv_signal_init(&a->loop, &a->sig_int);
	a->sig_term.data = a;
	a->sig_int.data = a;
	uv_signal_start(&a->sig_term, agent_on_signal, SIGTERM);
	uv_signal_start(&a->sig_int, agent_on_signal, SIGINT);
	/* The first heartbeat goes out at once, then one every interval. */
	uv_timer_start(&a->tick, agent_on_tick, 0, a->cfg.interval_ms);

	uv_run(&a->loop, UV_RUN_DEFAULT);

	agent_close_handles(a);
	http_client_free(a->http);
	/* Requests still in flight (bounded by their timeouts) are not waited for:
	 * the process ends now and the kernel closes their sockets. */
	if (a->requests_in_flight == 0) {
		uv_run(&a->loop, UV_RUN_DEFAULT);
		uv_loop_close(&a->loop);
	}
	log_info("agent: stopped");
	return 0;
}

int agent_main(int argc, char **argv)
{
	struct agent *a = &agent_state;
	int rc;

	log_set_role("agent");
	rc = agent_config_load(&a->cfg, argc, argv);
	if (rc >= 0)
		return rc;
	log_set_level(a->cfg.log_level);
	/* A gateway that resets the connection must not kill the agent. */
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	log_info("agent: sfu %s (polled at %s), region %s, every %u ms, %zu gateway(s)",
		 a->cfg.address, a->cfg.sfu_url, a->cfg.region, a->cfg.interval_ms,
		 a->cfg.n_gateways);
	for (size_t i = 0; i < a->cfg.n_gateways; i++)
		log_info("agent: gateway %s", a->cfg.gateways[i]);
	return agent_run(a);
}
