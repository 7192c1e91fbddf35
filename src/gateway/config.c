/* Configuration: one option table drives defaults, the TOML files, the environment and the CLI. */
#include "config.h"

#include "base64.h"
#include "http_client.h"
#include "log.h"
#include "toml.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <json.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONFIG_SFU_SECTION "sfu"
#define CONFIG_KEY_WARN_BYTES 32
/* The most static SFUs a list may hold: the upper bound of [gateway] max_sfus. */
#define CONFIG_SFUS_MAX 65536
/* Room for "sfu[65535] (<address>)", the name of an SFU in messages. */
#define CONFIG_SFU_NAME_MAX (CONFIG_ADDRESS_MAX + 24)

/* Where a row's value (and length) live: what the apply routine needs to store it. */
#define CFG(f) .offset = offsetof(struct config, f), .size = sizeof(((struct config *)NULL)->f)
#define CFG_LEN(f) .len_offset = offsetof(struct config, f), \
		   .len_size = sizeof(((struct config *)NULL)->f)
#define SFU(f) .offset = offsetof(struct config_sfu, f), \
	       .size = sizeof(((struct config_sfu *)NULL)->f)
#define SFU_LEN(f) .len_offset = offsetof(struct config_sfu, f), \
		   .len_size = sizeof(((struct config_sfu *)NULL)->f)

/* Both lists are in the order of their enums: the stored value is the index. */
static const char *const config_log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const config_strategies[] = { "load", "round-robin", NULL };

_Static_assert(LOG_LEVEL_ERROR == 0 && LOG_LEVEL_DEBUG == 3, "config_log_levels order");
_Static_assert(STRATEGY_LOAD == 0 && STRATEGY_ROUND_ROBIN == 1, "config_strategies order");

static int config_norm_bind(const char *in, char *out, size_t outlen);
static int config_norm_region(const char *in, char *out, size_t outlen);
static int config_norm_url(const char *in, char *out, size_t outlen);
static int config_norm_token(const char *in, char *out, size_t outlen);
static int config_norm_etcd(const char *in, char *out, size_t outlen);
static int config_norm_prefix(const char *in, char *out, size_t outlen);

/* clang-format off */
const struct config_option config_options[] = {
	{ "gateway", "bind", CONFIG_T_STRING, "\"0.0.0.0\"", 0, 0, true,
	  "IPv4 or IPv6 address the gateway listens on.",
	  CFG(bind), .normalise = config_norm_bind },
	{ "gateway", "port", CONFIG_T_INT, "8071", 1, 65535, true,
	  "TCP port the gateway listens on.", CFG(port) },
	{ "gateway", "key", CONFIG_T_KEY, "", 1, CONFIG_KEY_MAX, true,
	  "Base64 key shared with Odoo, which signs channel tokens with it (required).",
	  CFG(t.key), CFG_LEN(t.key_len) },
	{ "gateway", "workers", CONFIG_T_INT, "0", 0, 1024, true,
	  "Worker processes; 0 starts one per online CPU.", CFG(workers) },
	{ "gateway", "trust_proxy", CONFIG_T_BOOL, "false", 0, 1, true,
	  "Trust the X-Forwarded-For chain of a reverse proxy in front of the gateway.",
	  CFG(t.trust_proxy) },
	{ "gateway", "max_sfus", CONFIG_T_INT, "1024", 1, CONFIG_SFUS_MAX, false,
	  "Capacity of the shared SFU registry, static and registered SFUs together.",
	  CFG(max_sfus) },
	{ "gateway", "pid_file", CONFIG_T_STRING, "\"\"", 0, 0, false,
	  "File the master writes its pid to; empty for none.", CFG(pid_file) },
	{ "gateway", "user", CONFIG_T_STRING, "\"\"", 0, 0, false,
	  "User to switch to after binding the port; empty keeps the current user.",
	  CFG(user) },
	{ "gateway", "log_level", CONFIG_T_ENUM, "\"info\"", 0, 0, true,
	  "Least severe level logged: error, warn, info or debug.",
	  CFG(t.log_level), .choices = config_log_levels },
	{ "gateway", "log_file", CONFIG_T_STRING, "\"\"", 0, 0, false,
	  "File to append log lines to; empty logs to standard error.", CFG(log_file) },
	{ "gateway", "shutdown_timeout_ms", CONFIG_T_INT, "10000", 0, 3600000, true,
	  "How long a graceful stop waits for requests in flight.",
	  CFG(shutdown_timeout_ms) },
	{ "gateway", "max_connections", CONFIG_T_INT, "0", 0, 1000000, true,
	  "Open client connections per worker; at the cap a worker stops accepting until "
	  "one closes. 0 = half of the open-file limit, less 64.",
	  CFG(t.max_connections) },
	{ "gateway", "upgrade_timeout_ms", CONFIG_T_INT, "10000", 100, 600000, true,
	  "How long a binary upgrade (SIGUSR2) waits for the new binary to serve before "
	  "it stops it and keeps the running one.",
	  CFG(upgrade_timeout_ms) },

	{ "log", "access", CONFIG_T_STRING, "\"\"", 0, 0, false,
	  "File to append one JSON line per request to; empty for no access log.",
	  CFG(access_log) },

	{ "registration", "key", CONFIG_T_KEY, "", 1, CONFIG_KEY_MAX, true,
	  "Base64 key that signs SFU self-registrations; defaults to [gateway] key.",
	  CFG(t.registration_key), CFG_LEN(t.registration_key_len) },
	{ "registration", "stale_after_ms", CONFIG_T_INT, "30000", 1000, 86400000, true,
	  "A registered SFU without a heartbeat for this long is removed.",
	  CFG(t.stale_after_ms) },
	{ "registration", "allow", CONFIG_T_CIDR_LIST, "[]", 0, CONFIG_ALLOW_MAX, true,
	  "Networks (CIDR strings) allowed to self-register; empty allows any address.",
	  CFG(t.allow), CFG_LEN(t.n_allow) },
	{ "registration", "sfu_networks", CONFIG_T_CIDR_LIST, "[]", 0, CONFIG_ALLOW_MAX, true,
	  "Networks (CIDR strings) a registered SFU's address must be in, which then must be an "
	  "IP address; empty allows any address but link-local and cloud metadata ones.",
	  CFG(t.sfu_networks), CFG_LEN(t.n_sfu_networks) },
	{ "registration", "client_ca", CONFIG_T_STRING, "\"\"", 0, 0, true,
	  "PEM file of the CA whose client certificates heartbeats must carry, naming the "
	  "heartbeat's address in subjectAltName; empty requires none (needs [tls] cert).",
	  CFG(t.client_ca) },
	{ "registration", "require_token", CONFIG_T_BOOL, "true", 0, 1, true,
	  "Heartbeats also need the bearer token; false (only with client_ca) lets the "
	  "client certificate alone authenticate them.",
	  CFG(t.require_token) },

	{ "tls", "cert", CONFIG_T_STRING, "\"\"", 0, 0, true,
	  "PEM certificate (then its chain) the gateway serves HTTPS with; empty serves "
	  "plain HTTP. SIGHUP reloads it.",
	  CFG(t.tls_cert) },
	{ "tls", "key", CONFIG_T_STRING, "\"\"", 0, 0, true,
	  "PEM private key of cert, unencrypted; a file others may read is refused.",
	  CFG(t.tls_key) },
	{ "tls", "ca_file", CONFIG_T_STRING, "\"\"", 0, 0, true,
	  "PEM bundle of the CAs https SFUs are verified against; empty (with ca_path "
	  "empty) uses the system store.",
	  CFG(t.tls_ca_file) },
	{ "tls", "ca_path", CONFIG_T_STRING, "\"\"", 0, 0, true,
	  "Directory of hashed CA certificates (c_rehash) https SFUs are verified against.",
	  CFG(t.tls_ca_path) },

	{ "balancing", "strategy", CONFIG_T_ENUM, "\"load\"", 0, 0, true,
	  "\"load\" picks the least loaded SFU, \"round-robin\" rotates among healthy ones.",
	  CFG(t.strategy), .choices = config_strategies },
	{ "balancing", "max_sessions", CONFIG_T_INT, "0", 0, 1000000, true,
	  "Sessions an SFU holds when neither its heartbeat nor its [[sfu]] entry says; "
	  "0 = unknown (sessions rank SFUs but never make one overloaded).",
	  CFG(t.max_sessions) },

	{ "balancing.weights", "sessions", CONFIG_T_FLOAT, "0.5", 0, 100, true,
	  "Weight of the session ratio in the load score.", CFG(t.w_sessions) },
	{ "balancing.weights", "cpu", CONFIG_T_FLOAT, "0.3", 0, 100, true,
	  "Weight of the CPU usage in the load score.", CFG(t.w_cpu) },
	{ "balancing.weights", "memory", CONFIG_T_FLOAT, "0.2", 0, 100, true,
	  "Weight of the memory usage in the load score.", CFG(t.w_memory) },
	{ "balancing.weights", "distance", CONFIG_T_FLOAT, "0.0", 0, 100, true,
	  "Weight of the distance to the client's region (per 20000 km) in the score.",
	  CFG(t.w_distance) },

	{ "failover", "max_retries", CONFIG_T_INT, "3", 1, 16, true,
	  "Different SFUs tried for one request, the first one included.",
	  CFG(t.max_retries) },
	{ "failover", "retry_timeout_ms", CONFIG_T_INT, "800", 10, 600000, true,
	  "Time limit of one attempt on one SFU, connect included (its response timeout).",
	  CFG(t.retry_timeout_ms) },
	{ "failover", "connect_timeout_ms", CONFIG_T_INT, "500", 10, 60000, true,
	  "Time limit of the TCP connect of one attempt, with the TLS handshake for https.",
	  CFG(t.connect_timeout_ms) },
	{ "failover", "deadline_ms", CONFIG_T_INT, "2500", 10, 600000, true,
	  "Time limit of a whole request, all attempts together (Odoo gives up at 3 s).",
	  CFG(t.deadline_ms) },

	{ "circuit_breaker", "failure_threshold", CONFIG_T_INT, "5", 1, 1000, true,
	  "Consecutive failures that open an SFU's circuit.", CFG(t.failure_threshold) },
	{ "circuit_breaker", "open_ms", CONFIG_T_INT, "10000", 100, 3600000, true,
	  "How long an open circuit keeps an SFU out before one trial request.",
	  CFG(t.open_ms) },

	{ "overload", "max_load_score", CONFIG_T_FLOAT, "1.0", 0, 1000, true,
	  "SFUs whose load score exceeds this are skipped.", CFG(t.max_load_score) },
	{ "overload", "max_cpu", CONFIG_T_FLOAT, "0.95", 0, 1, true,
	  "SFUs whose CPU usage (0 to 1) exceeds this are skipped.", CFG(t.max_cpu) },
	{ "overload", "max_memory", CONFIG_T_FLOAT, "0.95", 0, 1, true,
	  "SFUs whose memory usage (0 to 1) exceeds this are skipped.", CFG(t.max_memory) },

	{ "probe", "interval_ms", CONFIG_T_INT, "5000", 100, 3600000, true,
	  "How often SFUs that send no heartbeats are probed.",
	  CFG(t.probe_interval_ms) },
	{ "probe", "timeout_ms", CONFIG_T_INT, "2000", 10, 60000, true,
	  "Time limit of one probe.", CFG(t.probe_timeout_ms) },
	{ "probe", "fall", CONFIG_T_INT, "3", 1, 100, true,
	  "Consecutive failed probes that mark an SFU down.", CFG(t.probe_fall) },
	{ "probe", "rise", CONFIG_T_INT, "2", 1, 100, true,
	  "Consecutive passed probes that bring a down SFU back.", CFG(t.probe_rise) },

	{ "affinity", "ttl_ms", CONFIG_T_INT, "60000", 0, 86400000, true,
	  "How long repeats from one client and issuer go to the same SFU; 0 turns it off.",
	  CFG(t.affinity_ttl_ms) },

	{ "observability", "allow", CONFIG_T_CIDR_LIST,
	  "[\"127.0.0.0/8\", \"::1/128\", \"10.0.0.0/8\", \"172.16.0.0/12\", \"192.168.0.0/16\", "
	  "\"fc00::/7\"]",
	  0, CONFIG_ALLOW_MAX, true,
	  "Networks (CIDR strings) allowed to read /metrics and /v1/health; empty allows any "
	  "address.",
	  CFG(t.obs_allow), CFG_LEN(t.n_obs_allow) },
	{ "observability", "token", CONFIG_T_STRING, "\"\"", 0, 0, true,
	  "Bearer token /metrics and /v1/health also require when set: printable ASCII "
	  "without spaces, up to 255 bytes.",
	  CFG(t.obs_token), .normalise = config_norm_token },
	{ "observability", "max_age_ms", CONFIG_T_INT, "1000", 0, 60000, true,
	  "Under load, how old an answer of /metrics or /v1/health a worker may serve again "
	  "instead of rendering it; 0 renders every request.",
	  CFG(t.obs_max_age_ms) },
	{ "registry", "url", CONFIG_T_STRING, "\"\"", 0, 0, true,
	  "URL of an external registry's SFU list, http(s)://host[:port]/path, polled with "
	  "If-None-Match; empty for none.",
	  CFG(t.registry_url), .normalise = config_norm_url },
	{ "registry", "token", CONFIG_T_STRING, "", 0, 0, true,
	  "Bearer token the registry requires (sent as Authorization: Bearer): printable ASCII "
	  "without spaces; none when unset.",
	  CFG(t.registry_token), .normalise = config_norm_token },
	{ "registry", "poll_ms", CONFIG_T_INT, "5000", 100, 3600000, true,
	  "How often the list is fetched when the registry sends no Cache-Control max-age.",
	  CFG(t.registry_poll_ms) },
	{ "registry", "min_poll_ms", CONFIG_T_INT, "1000", 100, 3600000, true,
	  "Fetches are never closer than this, whatever max-age says.",
	  CFG(t.registry_min_poll_ms) },
	{ "registry", "timeout_ms", CONFIG_T_INT, "5000", 10, 600000, true,
	  "Time limit of one fetch, connect and whole body included.",
	  CFG(t.registry_timeout_ms) },
	{ "registry", "max_sfus", CONFIG_T_INT, "1024", 1, CONFIG_SFUS_MAX, true,
	  "A list of more SFUs than this is refused (the last good list stays).",
	  CFG(t.registry_max_sfus) },
	{ "registry", "max_bytes", CONFIG_T_INT, "1048576", 1024, 67108864, true,
	  "A list whose body is larger than this is refused (the last good list stays).",
	  CFG(t.registry_max_bytes) },
	{ "registry", "stale_after_ms", CONFIG_T_INT, "60000", 1000, 86400000, true,
	  "Without a good answer for this long the list in use is flagged stale (still used).",
	  CFG(t.registry_stale_after_ms) },

	{ "cluster", "etcd", CONFIG_T_STRING_LIST, "[]", 0, CONFIG_ETCD_MAX, true,
	  "etcd endpoints, http(s)://host:port, through which gateways share registrations and "
	  "issuer affinity, tried in turn; empty runs the gateway alone.",
	  CFG(t.cluster_etcd), CFG_LEN(t.cluster_n_etcd), .normalise = config_norm_etcd },
	{ "cluster", "prefix", CONFIG_T_STRING, "\"/sfu-gateway/\"", 0, 0, true,
	  "Prefix of every key the cluster keeps in etcd: gateways with the same prefix share "
	  "their SFUs; printable ASCII without spaces, up to 100 bytes.",
	  CFG(t.cluster_prefix), .normalise = config_norm_prefix },
	{ "cluster", "timeout_ms", CONFIG_T_INT, "2000", 100, 60000, true,
	  "Time limit of one request of the reaper to etcd (writes, leases, reads); past it "
	  "the next endpoint is tried.",
	  CFG(t.cluster_timeout_ms) },
	{ "cluster", "claim_timeout_ms", CONFIG_T_INT, "300", 10, 10000, true,
	  "Time limit of the etcd transaction that claims an issuer's first channel request; "
	  "past it the gateway chooses the SFU alone.",
	  CFG(t.cluster_claim_timeout_ms) },
	{ "cluster", "hold_ms", CONFIG_T_INT, "300000", 0, 86400000, true,
	  "How long past [registration] stale_after_ms a registered SFU is kept while etcd, "
	  "which expires it otherwise, cannot be reached.",
	  CFG(t.cluster_hold_ms) },

	{ CONFIG_SFU_SECTION, "address", CONFIG_T_STRING, "", 0, 0, true,
	  "Base URL of a static SFU, http(s)://host[:port] without a path (required).",
	  SFU(address), .normalise = address_parse },
	{ CONFIG_SFU_SECTION, "region", CONFIG_T_STRING, "\"\"", 0, 0, true,
	  "Region of the SFU, e.g. \"eu-west\"; any text up to 63 bytes.",
	  SFU(region), .normalise = config_norm_region },
	{ CONFIG_SFU_SECTION, "key", CONFIG_T_KEY, "", 1, CONFIG_KEY_MAX, true,
	  "Base64 key of the SFU, which the gateway signs forwarded tokens with (required).",
	  SFU(key), SFU_LEN(key_len) },
	{ CONFIG_SFU_SECTION, "max_sessions", CONFIG_T_INT, "0", 0, 1000000, true,
	  "Sessions this SFU holds; 0 uses [balancing] max_sessions.", SFU(max_sessions) },
	{ CONFIG_SFU_SECTION, "tls_verify", CONFIG_T_BOOL, "true", 0, 1, true,
	  "Verify the certificate of this https SFU; false turns every check off for it "
	  "alone, and is logged at every start and reload.",
	  SFU(tls_verify) },

	{ .name = NULL },
};
/* clang-format on */

/* Environment variables: the existing gateway's names first, then ours. */
static const struct config_env {
	const char *var;
	const char *section;
	const char *name;
} config_env[] = {
	{ "SFU_GATEWAY_BIND", "gateway", "bind" },
	{ "SFU_GATEWAY_PORT", "gateway", "port" },
	{ "SFU_GATEWAY_KEY", "gateway", "key" },
	{ "SFU_GATEWAY_TRUST_PROXY", "gateway", "trust_proxy" },
	{ "SFU_GATEWAY_REGISTRATION_KEY", "registration", "key" },
	{ "SFU_GATEWAY_WORKERS", "gateway", "workers" },
	{ "SFU_GATEWAY_LOG_LEVEL", "gateway", "log_level" },
};

/* clang-format off */
#define CLI(f) offsetof(struct config_cli, f)
/*
 * The command line: one row per flag. getopt's tables, --help and where a
 * value lands in the config all come from here; a value flag that names an
 * option shows that option's default in --help.
 */
const struct config_flag config_flags[] = {
	{ "config", 'c', "FILE", CLI(config_path), NULL, NULL,
	  "TOML configuration (default " CONFIG_DEFAULT_FILE ")" },
	{ "secrets", 's', "FILE", CLI(secrets_path), NULL, NULL,
	  "the existing gateway's [[sfu]] secrets (default secrets.toml, if present)" },
	{ "bind", 'b', "ADDR", CLI(bind), "gateway", "bind", "listen address" },
	{ "port", 'p', "N", CLI(port), "gateway", "port", "listen port" },
	{ "workers", 'w', "N", CLI(workers), "gateway", "workers",
	  "worker processes (0: one per online CPU)" },
	{ "daemon", 'd', NULL, CLI(daemonize), NULL, NULL,
	  "detach and run in the background; exit 0 once serving" },
	{ "pid-file", 'P', "FILE", CLI(pid_file), "gateway", "pid_file",
	  "write the master's pid to FILE" },
	{ "user", 'u', "NAME", CLI(user), "gateway", "user", "drop privileges to NAME after binding" },
	{ "log-level", 'l', "LEVEL", CLI(log_level), "gateway", "log_level",
	  "error, warn, info or debug" },
	{ "log-file", 'L', "FILE", CLI(log_file), "gateway", "log_file",
	  "log to FILE (reopened on SIGUSR1) instead of stderr" },
	{ "syslog", 'S', NULL, CLI(use_syslog), NULL, NULL, "log to syslog (daemon facility)" },
	{ "check-config", 't', NULL, CLI(check_config), NULL, NULL,
	  "validate the configuration and exit (0 valid, 1 not)" },
	{ "version", 'V', NULL, CLI(version), NULL, NULL, "print the version and exit" },
	{ "help", 'h', NULL, CLI(help), NULL, NULL, "print this help and exit" },
	{ .name = NULL },
};
#undef CLI
/* clang-format on */

/* Where a message comes from: its first words are src, then ":line" when known. */
struct config_ctx {
	char *err;
	size_t errlen;
	const char *src; /* file path, variable, flag, or NULL for no prefix */
};

static int config_fail(const struct config_ctx *c, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int config_fail(const struct config_ctx *c, int line, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (c->errlen == 0)
		return -EINVAL;
	if (c->src != NULL && line > 0)
		snprintf(c->err, c->errlen, "%s:%d: %s", c->src, line, why);
	else if (c->src != NULL)
		snprintf(c->err, c->errlen, "%s: %s", c->src, why);
	else
		snprintf(c->err, c->errlen, "%s", why);
	return -EINVAL;
}

/*
 * Names from the input appear in messages: only their plain-word start
 * (letters, digits, '_', '-', '.'), cut with "..." at anything else. A name is
 * the operator's text and could be a misquoted line such as 'key = "..."',
 * whose value must not reach a log or a terminal.
 */
static const char *config_printable(const char *in, char *out, size_t outlen)
{
	size_t o = 0, max = outlen > 48 ? 40 : outlen > 4 ? outlen - 4 : 0;

	for (; *in != '\0' && o < max; in++) {
		unsigned char ch = (unsigned char)*in;

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
			break;
		out[o++] = (char)ch;
	}
	if (*in != '\0' && outlen > o + 3) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o < outlen ? o : outlen - 1] = '\0';
	return out;
}

static const struct config_option *config_find(const char *section, const char *name)
{
	for (const struct config_option *o = config_options; o->name != NULL; o++)
		if (strcmp(o->section, section) == 0 && strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

static bool config_is_section(const char *section)
{
	for (const struct config_option *o = config_options; o->name != NULL; o++)
		if (strcmp(o->section, section) == 0)
			return true;
	return false;
}

/* Stores an unsigned value into a field of 1, 2, 4 or 8 bytes. */
static void config_store_uint(void *field, size_t size, uint64_t v)
{
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	switch (size) {
	case 1:
		memcpy(field, &u8, 1);
		break;
	case 2:
		memcpy(field, &u16, 2);
		break;
	case 4:
		memcpy(field, &u32, 4);
		break;
	default:
		memcpy(field, &v, 8);
		break;
	}
}

static const char *config_expected(enum config_type type)
{
	switch (type) {
	case CONFIG_T_INT:
		return "an integer";
	case CONFIG_T_FLOAT:
		return "a number";
	case CONFIG_T_BOOL:
		return "a boolean (true or false)";
	case CONFIG_T_KEY:
		return "a base64 string";
	case CONFIG_T_CIDR_LIST:
		return "an array of CIDR strings";
	case CONFIG_T_STRING_LIST:
		return "an array of strings";
	case CONFIG_T_STRING:
	case CONFIG_T_ENUM:
		break;
	}
	return "a string";
}

static int config_apply_enum(const struct config_ctx *c, const struct config_option *o,
			     const struct toml_value *v, char *field, const char *label)
{
	char list[128] = "";
	size_t n = 0;

	for (size_t i = 0; o->choices[i] != NULL; i++) {
		if (strcmp(v->u.s, o->choices[i]) == 0) {
			config_store_uint(field, o->size, i);
			return 0;
		}
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
				      o->choices[i]);
		if (n >= sizeof(list))
			n = sizeof(list) - 1;
	}
	return config_fail(c, v->line, "%s must be one of: %s", label, list);
}

static int config_apply_cidrs(const struct config_ctx *c, const struct config_option *o,
			      const struct toml_value *v, void *base, const char *label)
{
	struct cidr *cidrs = (struct cidr *)((char *)base + o->offset);
	size_t cap = o->size / sizeof(*cidrs);

	if (v->u.arr.n > cap)
		return config_fail(c, v->line, "%s has more than %zu entries", label, cap);
	for (size_t i = 0; i < v->u.arr.n; i++) {
		const struct toml_value *item = v->u.arr.items[i];

		if (item->type != TOML_STRING || cidr_parse(item->u.s, &cidrs[i]) < 0)
			return config_fail(c, item->line,
					   "%s[%zu] is not a CIDR string such as \"10.0.0.0/8\"",
					   label, i);
	}
	config_store_uint((char *)base + o->len_offset, o->len_size, v->u.arr.n);
	return 0;
}

/* A list of strings, each checked and rewritten by the row's normalise. */
static int config_apply_strings(const struct config_ctx *c, const struct config_option *o,
				const struct toml_value *v, void *base, const char *label)
{
	size_t cap = (size_t)o->max, item = o->size / cap;
	char *field = (char *)base + o->offset;

	if (v->u.arr.n > cap)
		return config_fail(c, v->line, "%s has more than %zu entries", label, cap);
	for (size_t i = 0; i < v->u.arr.n; i++) {
		const struct toml_value *it = v->u.arr.items[i];
		int n;

		if (it->type != TOML_STRING)
			return config_fail(c, it->line, "%s[%zu] must be a string", label, i);
		n = o->normalise(it->u.s, field + i * item, item);
		if (n < 0)
			return config_fail(c, it->line, "%s[%zu] is invalid: %s", label, i,
					   o->help);
	}
	memset(field + v->u.arr.n * item, 0, (cap - v->u.arr.n) * item);
	config_store_uint((char *)base + o->len_offset, o->len_size, v->u.arr.n);
	return 0;
}

/*
 * The one routine that moves a value into the field a row describes; every
 * source (defaults, files, environment, CLI, SFU_GATEWAY_NODES) ends up here.
 * Messages name the option by label and never echo a value: it may be a key.
 */
static int config_apply_value(const struct config_ctx *c, const struct config_option *o,
			      const struct toml_value *v, void *base, const char *label)
{
	char *field = (char *)base + o->offset;
	char tmp[PATH_MAX];
	double d;
	int n;

	switch (o->type) {
	case CONFIG_T_INT:
		if (v->type != TOML_INT)
			break;
		if ((double)v->u.i < o->min || (double)v->u.i > o->max)
			return config_fail(c, v->line, "%s must be between %.0f and %.0f", label,
					   o->min, o->max);
		config_store_uint(field, o->size, (uint64_t)v->u.i);
		return 0;
	case CONFIG_T_FLOAT:
		if (v->type != TOML_FLOAT && v->type != TOML_INT)
			break;
		d = v->type == TOML_INT ? (double)v->u.i : v->u.f;
		if (!(d >= o->min && d <= o->max))
			return config_fail(c, v->line, "%s must be between %g and %g", label,
					   o->min, o->max);
		memcpy(field, &d, sizeof(d));
		return 0;
	case CONFIG_T_BOOL:
		if (v->type != TOML_BOOL)
			break;
		config_store_uint(field, o->size, v->u.b != 0);
		return 0;
	case CONFIG_T_STRING:
		if (v->type != TOML_STRING)
			break;
		if (o->normalise != NULL) {
			n = o->size > sizeof(tmp) ? -EINVAL : o->normalise(v->u.s, tmp, o->size);
			if (n < 0)
				return config_fail(c, v->line, "%s is invalid: %s", label, o->help);
			memcpy(field, tmp, strlen(tmp) + 1);
			return 0;
		}
		if (strlen(v->u.s) >= o->size)
			return config_fail(c, v->line, "%s is longer than %zu bytes", label,
					   o->size - 1);
		memcpy(field, v->u.s, strlen(v->u.s) + 1);
		return 0;
	case CONFIG_T_ENUM:
		if (v->type != TOML_STRING)
			break;
		return config_apply_enum(c, o, v, field, label);
	case CONFIG_T_KEY:
		if (v->type != TOML_STRING)
			break;
		n = base64_decode_key(v->u.s, (uint8_t *)field, o->size);
		if (n < 0)
			return config_fail(c, v->line, "%s is not valid base64 of 1 to %d bytes",
					   label, CONFIG_KEY_MAX);
		config_store_uint((char *)base + o->len_offset, o->len_size, (uint64_t)n);
		return 0;
	case CONFIG_T_CIDR_LIST:
		if (v->type != TOML_ARRAY)
			break;
		return config_apply_cidrs(c, o, v, base, label);
	case CONFIG_T_STRING_LIST:
		if (v->type != TOML_ARRAY)
			break;
		return config_apply_strings(c, o, v, base, label);
	}
	return config_fail(c, v->line, "%s must be %s, not %s %s", label, config_expected(o->type),
			   v->type == TOML_INT || v->type == TOML_ARRAY ? "an" : "a",
			   toml_type_name(v->type));
}

/*
 * Text from the environment or the command line, typed by the row. Numbers are
 * strict (no trailing junk, no hex); booleans take true/1/false/0 like the
 * existing gateway's SFU_GATEWAY_TRUST_PROXY.
 */
static int config_apply_text(const struct config_ctx *c, const struct config_option *o,
			     const char *text, void *base, const char *label)
{
	struct toml_value v = { .type = TOML_STRING, .line = 0 };
	char *end = NULL;

	switch (o->type) {
	case CONFIG_T_INT:
		errno = 0;
		v.type = TOML_INT;
		v.u.i = strtoll(text, &end, 10);
		if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 ||
		    (double)v.u.i < o->min || (double)v.u.i > o->max)
			return config_fail(c, 0, "not a number between %.0f and %.0f", o->min,
					   o->max);
		break;
	case CONFIG_T_FLOAT:
		errno = 0;
		v.type = TOML_FLOAT;
		v.u.f = strtod(text, &end);
		if (end == text || *end != '\0' || errno != 0 || !(v.u.f >= o->min) ||
		    !(v.u.f <= o->max))
			return config_fail(c, 0, "not a number between %g and %g", o->min, o->max);
		break;
	case CONFIG_T_BOOL:
		v.type = TOML_BOOL;
		if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0)
			v.u.b = 1;
		else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
			v.u.b = 0;
		else
			return config_fail(c, 0, "expected true, false, 1 or 0");
		break;
	case CONFIG_T_CIDR_LIST:
	case CONFIG_T_STRING_LIST:
		return config_fail(c, 0, "%s cannot be set here", label);
	default:
		v.u.s = (char *)text;
		break;
	}
	return config_apply_value(c, o, &v, base, label);
}

/* Applies the default_text of every row of one kind ([[sfu]] rows or the others). */
static int config_defaults(void *base, bool sfu, char *err, size_t errlen)
{
	const struct config_ctx c = { err, errlen, "built-in default" };

	for (const struct config_option *o = config_options; o->name != NULL; o++) {
		struct toml_table *t = NULL;
		char text[160], label[96];
		int rc;

		bool is_sfu = strcmp(o->section, CONFIG_SFU_SECTION) == 0;

		if (is_sfu != sfu || o->default_text[0] == '\0')
			continue;
		snprintf(text, sizeof(text), "v = %s", o->default_text);
		snprintf(label, sizeof(label), "[%s] %s", o->section, o->name);
		rc = toml_parse_string(text, label, &t, err, errlen);
		if (rc == 0)
			rc = config_apply_value(&c, o, toml_get(t, "v"), base, label);
		toml_free(t);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int config_apply_section(const struct config_ctx *c, const char *section,
				const struct toml_table *t, struct config *cfg)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct config_option *o = config_find(section, t->keys[i]);
		const struct toml_value *v = t->vals[i];
		char label[160], sub[64], name[72];
		int rc, n;

		if (o != NULL) {
			snprintf(label, sizeof(label), "[%s] %s", section, o->name);
			rc = config_apply_value(c, o, v, cfg, label);
			if (rc < 0)
				return rc;
			continue;
		}
		n = snprintf(sub, sizeof(sub), "%s.%s", section, t->keys[i]);
		if (n > 0 && (size_t)n < sizeof(sub) && strchr(t->keys[i], '.') == NULL &&
		    config_is_section(sub)) {
			if (v->type != TOML_TABLE)
				return config_fail(c, v->line, "[%s] must be a table", sub);
			rc = config_apply_section(c, sub, v->u.tab, cfg);
			if (rc < 0)
				return rc;
			continue;
		}
		return config_fail(c, v->line, "unknown key '%s' in [%s]",
				   config_printable(t->keys[i], name, sizeof(name)), section);
	}
	return 0;
}

/*
 * One [[sfu]] entry. The address goes first, whatever the order in the source,
 * so that messages about the other keys can name the SFU by its address.
 */
static int config_sfu_apply(const struct config_ctx *c, size_t idx, const struct toml_table *t,
			    struct config_sfu *sfu)
{
	const struct toml_value *addr = toml_get(t, "address");
	char sfu_name[CONFIG_SFU_NAME_MAX], label[CONFIG_SFU_NAME_MAX + 80], key[72];
	int rc;

	snprintf(sfu_name, sizeof(sfu_name), "sfu[%zu]", idx);
	if (addr == NULL)
		return config_fail(c, t->line, "%s: missing address", sfu_name);
	snprintf(label, sizeof(label), "%s: address", sfu_name);
	rc = config_apply_value(c, config_find(CONFIG_SFU_SECTION, "address"), addr, sfu, label);
	if (rc < 0)
		return rc;
	snprintf(sfu_name, sizeof(sfu_name), "sfu[%zu] (%s)", idx, sfu->address);
	for (size_t i = 0; i < t->n; i++) {
		const struct config_option *o = config_find(CONFIG_SFU_SECTION, t->keys[i]);

		if (t->vals[i] == addr)
			continue;
		if (o == NULL)
			return config_fail(c, t->vals[i]->line, "%s: unknown key '%s' in [[sfu]]",
					   sfu_name,
					   config_printable(t->keys[i], key, sizeof(key)));
		snprintf(label, sizeof(label), "%s: %s", sfu_name, o->name);
		rc = config_apply_value(c, o, t->vals[i], sfu, label);
		if (rc < 0)
			return rc;
	}
	if (sfu->key_len == 0)
		return config_fail(c, t->line, "%s: missing key", sfu_name);
	return 0;
}

static int config_sfu_cmp(const void *a, const void *b)
{
	const struct config_sfu *x = *(const struct config_sfu *const *)a;
	const struct config_sfu *y = *(const struct config_sfu *const *)b;
	int r = strcmp(x->address, y->address);

	/* Equal addresses keep their list order, so the later one is reported. */
	return r != 0 ? r : (x > y) - (x < y);
}

/* Sorting makes the check O(n log n) even for the largest lists. */
static int config_sfu_dups(const struct config_ctx *c, const struct toml_table *const *tabs,
			   const struct config_sfu *sfus, size_t n)
{
	const struct config_sfu **order;
	int rc = 0;

	if (n < 2)
		return 0;
	order = malloc(n * sizeof(*order));
	if (order == NULL)
		return config_fail(c, 0, "out of memory");
	for (size_t i = 0; i < n; i++)
		order[i] = &sfus[i];
	qsort(order, n, sizeof(*order), config_sfu_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(order[i - 1]->address, order[i]->address) == 0) {
			size_t first = (size_t)(order[i - 1] - sfus);
			size_t dup = (size_t)(order[i] - sfus);

			rc = config_fail(c, tabs[dup]->line,
					 "sfu[%zu] (%s): duplicate address (same as sfu[%zu])", dup,
					 order[i]->address, first);
			break;
		}
	}
	free(order);
	return rc;
}

void config_sfus_free(struct config_sfu *sfus, size_t n)
{
	if (sfus == NULL)
		return;
	explicit_bzero(sfus, n * sizeof(*sfus));
	free(sfus);
}

/* Builds a static SFU list from tables (TOML [[sfu]] entries, or views of JSON objects). */
static int config_sfu_list(const struct config_ctx *c, const struct toml_table *const *tabs,
			   size_t n, struct config_sfu **out, size_t *nout)
{
	struct config_sfu def = { .key_len = 0 };
	struct config_sfu *sfus;
	int rc;

	if (n > CONFIG_SFUS_MAX)
		return config_fail(c, 0, "more than %d static SFUs", CONFIG_SFUS_MAX);
	rc = config_defaults(&def, true, c->err, c->errlen);
	if (rc < 0)
		return rc;
	sfus = calloc(n ? n : 1, sizeof(*sfus));
	if (sfus == NULL)
		return config_fail(c, 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		sfus[i] = def;
		rc = config_sfu_apply(c, i, tabs[i], &sfus[i]);
		if (rc < 0)
			goto fail;
	}
	rc = config_sfu_dups(c, tabs, sfus, n);
	if (rc < 0)
		goto fail;
	config_sfus_free(*out, *nout);
	*out = sfus;
	*nout = n;
	return 0;
fail:
	config_sfus_free(sfus, n);
	return rc;
}

static int config_apply_sfu_array(const struct config_ctx *c, const struct toml_value *v,
				  struct config_sfu **list, size_t *n)
{
	const struct toml_table **tabs;
	int rc;

	if (v->type == TOML_TABLE)
		return config_fail(c, v->line, "SFUs are an array of tables: write [[sfu]]");
	if (v->type != TOML_ARRAY)
		return config_fail(c, v->line, "sfu must be an array of tables ([[sfu]])");
	tabs = calloc(v->u.arr.n ? v->u.arr.n : 1, sizeof(*tabs));
	if (tabs == NULL)
		return config_fail(c, v->line, "out of memory");
	for (size_t i = 0; i < v->u.arr.n; i++) {
		if (v->u.arr.items[i]->type != TOML_TABLE) {
			rc = config_fail(c, v->line, "sfu must be an array of tables ([[sfu]])");
			goto out;
		}
		tabs[i] = v->u.arr.items[i]->u.tab;
	}
	rc = config_sfu_list(c, tabs, v->u.arr.n, list, n);
out:
	free(tabs);
	return rc;
}

/* Applies a parsed config or secrets file; its [[sfu]] entries go to *list. */
static int config_apply_doc(const struct config_ctx *c, const struct toml_table *doc,
			    struct config *cfg, struct config_sfu **list, size_t *n)
{
	for (size_t i = 0; i < doc->n; i++) {
		const char *key = doc->keys[i];
		const struct toml_value *v = doc->vals[i];
		/* A quoted ["balancing.weights"] is not the nested table: only bare names count. */
		bool known = strchr(key, '.') == NULL && config_is_section(key);
		char name[72];
		int rc;

		config_printable(key, name, sizeof(name));
		if (strcmp(key, CONFIG_SFU_SECTION) == 0)
			rc = config_apply_sfu_array(c, v, list, n);
		else if (!known && v->type == TOML_TABLE)
			rc = config_fail(c, v->line, "unknown section [%s]", name);
		else if (!known)
			rc = config_fail(c, v->line, "unknown key '%s' outside any section", name);
		else if (v->type != TOML_TABLE)
			rc = config_fail(c, v->line, "[%s] must be a table", name);
		else
			rc = config_apply_section(c, key, v->u.tab, cfg);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int config_load_file(struct config *cfg, const char *path, char *record,
			    struct config_sfu **list, size_t *n, char *err, size_t errlen)
{
	const struct config_ctx c = { err, errlen, path };
	struct toml_table *doc = NULL;
	int rc;

	if (strlen(path) >= PATH_MAX)
		return config_fail(&c, 0, "path too long");
	rc = toml_parse_file(path, &doc, err, errlen);
	if (rc < 0)
		return rc;
	rc = config_apply_doc(&c, doc, cfg, list, n);
	toml_free(doc);
	if (rc == 0)
		memcpy(record, path, strlen(path) + 1);
	return rc;
}

/* A JSON object seen as a table (values borrowed from json-c), for config_sfu_list. */
struct config_view {
	struct toml_table tab;
	struct toml_value *vals;
};

static void config_view_free(struct config_view *v)
{
	free(v->tab.keys);
	free(v->tab.vals);
	free(v->vals);
}

/* Whether name is one of the NULL-terminated list (which may be NULL). */
static bool config_listed(const char *const *names, const char *name)
{
	for (size_t i = 0; names != NULL && names[i] != NULL; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

static int config_view_init(const struct config_ctx *c, size_t idx, struct json_object *obj,
			    const char *const *extra, struct config_view *view)
{
	/* JSON objects and arrays only need a type for the "must be a string" message. */
	static struct toml_table empty_table;
	size_t m = (size_t)json_object_object_length(obj), k = 0;

	view->tab.keys = calloc(m + 1, sizeof(*view->tab.keys));
	view->tab.vals = calloc(m + 1, sizeof(*view->tab.vals));
	view->vals = calloc(m + 1, sizeof(*view->vals));
	if (view->tab.keys == NULL || view->tab.vals == NULL || view->vals == NULL)
		return config_fail(c, 0, "out of memory");
	json_object_object_foreach(obj, jkey, jval) {
		struct toml_value *tv = &view->vals[k];
		char name[72];

		if (config_listed(extra, jkey))
			continue; /* the caller's to read */
		switch (json_object_get_type(jval)) {
		case json_type_null:
			continue; /* like an absent optional field */
		case json_type_string:
			tv->type = TOML_STRING;
			tv->u.s = (char *)json_object_get_string(jval);
			if ((size_t)json_object_get_string_len(jval) != strlen(tv->u.s))
				return config_fail(c, 0, "sfu[%zu]: '%s' contains a NUL byte", idx,
						   config_printable(jkey, name, sizeof(name)));
			break;
		case json_type_int:
			tv->type = TOML_INT;
			tv->u.i = json_object_get_int64(jval);
			break;
		case json_type_double:
			tv->type = TOML_FLOAT;
			tv->u.f = json_object_get_double(jval);
			break;
		case json_type_boolean:
			tv->type = TOML_BOOL;
			tv->u.b = json_object_get_boolean(jval) ? 1 : 0;
			break;
		case json_type_array:
			tv->type = TOML_ARRAY;
			break;
		case json_type_object:
			tv->type = TOML_TABLE;
			tv->u.tab = &empty_table;
			break;
		}
		view->tab.keys[k] = jkey;
		view->tab.vals[k] = tv;
		k++;
	}
	view->tab.n = k;
	return 0;
}

int config_sfus_json(struct json_object *root, const char *what, const char *const *extra,
		     struct config_sfu **list, size_t *n, char *err, size_t errlen)
{
	const struct config_ctx c = { err, errlen, what };
	struct json_object *arr = NULL;
	struct config_view *views = NULL;
	const struct toml_table **tabs = NULL;
	size_t count = 0;
	int rc;

	if (errlen > 0)
		err[0] = '\0';
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "sfu", &arr) ||
	    !json_object_is_type(arr, json_type_array) ||
	    json_object_object_length(root) != 1)
		return config_fail(&c, 0, "expected {\"sfu\": [{\"address\": ..., \"key\": ...}]}");
	count = json_object_array_length(arr);
	views = calloc(count + 1, sizeof(*views));
	tabs = calloc(count + 1, sizeof(*tabs));
	if (views == NULL || tabs == NULL) {
		rc = config_fail(&c, 0, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		struct json_object *item = json_object_array_get_idx(arr, i);

		if (!json_object_is_type(item, json_type_object)) {
			rc = config_fail(&c, 0, "sfu[%zu] must be an object", i);
			goto out;
		}
		rc = config_view_init(&c, i, item, extra, &views[i]);
		if (rc < 0)
			goto out;
		tabs[i] = &views[i].tab;
	}
	rc = config_sfu_list(&c, tabs, count, list, n);
out:
	for (size_t i = 0; views != NULL && i < count; i++)
		config_view_free(&views[i]);
	free(views);
	free(tabs);
	return rc;
}

/* SFU_GATEWAY_NODES: {"sfu":[{"address":..,"region":..,"key":..}]}, the existing gateway's. */
static int config_nodes(const char *json, struct config_sfu **list, size_t *n, char *err,
			size_t errlen)
{
	const struct config_ctx c = { err, errlen, "SFU_GATEWAY_NODES" };
	struct json_tokener *tok = NULL;
	struct json_object *root = NULL;
	size_t len = strlen(json);
	int rc;

	if (len >= INT_MAX) {
		rc = config_fail(&c, 0, "too long");
		goto out;
	}
	tok = json_tokener_new();
	if (tok == NULL) {
		rc = config_fail(&c, 0, "out of memory");
		goto out;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	/* The terminating NUL is passed too: it tells json-c the input is complete. */
	root = json_tokener_parse_ex(tok, json, (int)len + 1);
	if (root == NULL) {
		rc = config_fail(&c, 0, "invalid JSON: %s",
				 json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	rc = config_sfus_json(root, "SFU_GATEWAY_NODES", NULL, list, n, err, errlen);
out:
	json_object_put(root);
	if (tok != NULL)
		json_tokener_free(tok);
	return rc;
}

static int config_apply_env(struct config *cfg, struct config_sfu **list, size_t *n,
			    bool *have_nodes, char *err, size_t errlen)
{
	const char *nodes = getenv("SFU_GATEWAY_NODES");

	for (size_t i = 0; i < sizeof(config_env) / sizeof(config_env[0]); i++) {
		const struct config_env *e = &config_env[i];
		const struct config_ctx c = { err, errlen, e->var };
		const char *text = getenv(e->var);
		char label[96];
		int rc;

		/* Empty counts as unset, as "FOO=" in a compose or unit file usually means. */
		if (text == NULL || text[0] == '\0')
			continue;
		snprintf(label, sizeof(label), "[%s] %s", e->section, e->name);
		rc = config_apply_text(&c, config_find(e->section, e->name), text, cfg, label);
		if (rc < 0)
			return rc;
	}
	if (nodes == NULL || nodes[0] == '\0')
		return 0;
	*have_nodes = true;
	return config_nodes(nodes, list, n, err, errlen);
}

static int config_apply_cli(struct config *cfg, const struct config_cli *cli, char *err,
			    size_t errlen)
{
	for (const struct config_flag *f = config_flags; f->name != NULL; f++) {
		char flag[40], label[96];
		const struct config_ctx c = { err, errlen, flag };
		const char *text;
		int rc;

		if (f->section == NULL)
			continue;
		memcpy(&text, (const char *)cli + f->offset, sizeof(text));
		if (text == NULL)
			continue;
		snprintf(flag, sizeof(flag), "--%s", f->name);
		snprintf(label, sizeof(label), "[%s] %s", f->section, f->option);
		rc = config_apply_text(&c, config_find(f->section, f->option), text, cfg, label);
		if (rc < 0)
			return rc;
	}
	cfg->use_syslog = cli->use_syslog;
	cfg->daemonize = cli->daemonize;
	return 0;
}

int config_cli_parse(int argc, char **argv, struct config_cli *cli)
{
	struct option longs[CONFIG_FLAGS_MAX + 1];
	char shorts[2 * CONFIG_FLAGS_MAX + 1];
	size_t n = 0, o = 0;
	int opt;

	for (const struct config_flag *f = config_flags; f->name != NULL; f++, n++) {
		longs[n] = (struct option){ f->name, f->arg ? required_argument : no_argument, NULL,
					    f->short_name };
		shorts[o++] = f->short_name;
		if (f->arg != NULL)
			shorts[o++] = ':';
	}
	longs[n] = (struct option){ NULL, 0, NULL, 0 };
	shorts[o] = '\0';
	optind = 1;
	while ((opt = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		const struct config_flag *f = config_flags;

		while (f->name != NULL && f->short_name != opt)
			f++;
		if (f->name == NULL) /* getopt printed what was wrong */
			return -EINVAL;
		if (f->arg != NULL)
			memcpy((char *)cli + f->offset, &optarg, sizeof(optarg));
		else
			*(bool *)((char *)cli + f->offset) = true;
	}
	if (optind < argc) {
		fprintf(stderr, "sfu-gateway: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

void config_usage(FILE *out)
{
	fputs("Usage: sfu-gateway [OPTIONS]\n"
	      "Routes Odoo's video-call channel requests to the best of many odoo/sfu servers.\n"
	      "\n",
	      out);
	for (const struct config_flag *f = config_flags; f->name != NULL; f++) {
		const struct config_option *o = f->section ? config_find(f->section, f->option) : NULL;
		char left[48];

		snprintf(left, sizeof(left), "-%c, --%s%s%s", f->short_name, f->name,
			 f->arg ? " " : "", f->arg ? f->arg : "");
		fprintf(out, "  %-24s %s", left, f->help);
		if (o != NULL && o->default_text[0] != '\0' && strcmp(o->default_text, "\"\"") != 0)
			fprintf(out, " (default %s)", o->default_text);
		fputc('\n', out);
	}
	fputs("\nEnvironment (the existing gateway's names work unchanged):\n", out);
	for (size_t i = 0; i < sizeof(config_env) / sizeof(config_env[0]); i++)
		fprintf(out, "  %-30s [%s] %s\n", config_env[i].var, config_env[i].section,
			config_env[i].name);
	fprintf(out, "  %-30s %s\n", "SFU_GATEWAY_NODES",
		"JSON {\"sfu\":[{\"address\",\"region\",\"key\"}]}, replaces the files' SFUs");
	fputs("\nPrecedence: command line > environment > secrets file > config file > defaults.\n"
	      "Signals: HUP reload, TERM/INT graceful stop, QUIT immediate stop, USR1 reopen logs,\n"
	      "USR2 binary upgrade (start the binary on disk, hand it the port and the registry).\n",
	      out);
}

/*
 * TLS: the listener's pair is read and checked here, at every start and
 * reload, so that a bad pair is refused like any bad value (a reload keeps
 * the running one); the CA options must load; every SFU that opts out of
 * verification is named.
 */
static int config_tls(struct config *cfg, const struct config_ctx *c)
{
	struct config_tunables *t = &cfg->t;
	char why[TLS_PATH_MAX * 3 + 256];
	int64_t left;

	if ((t->tls_cert[0] != '\0') != (t->tls_key[0] != '\0'))
		return config_fail(c, 0, "[tls] cert and key go together: set both or neither");
	if (t->client_ca[0] != '\0' && t->tls_cert[0] == '\0')
		return config_fail(c, 0, "[registration] client_ca needs the TLS listener: set "
					 "[tls] cert and key");
	if (!t->require_token && t->client_ca[0] == '\0')
		return config_fail(c, 0, "[registration] require_token = false needs "
					 "[registration] client_ca (heartbeats would need no proof)");
	if (t->tls_cert[0] != '\0') {
		if (tls_pair_read(&cfg->tls_pair, t->tls_cert, t->tls_key, t->client_ca, why,
				  sizeof(why)) != 0)
			return config_fail(c, 0, "[tls]: %s", why);
		memcpy(t->tls_digest, cfg->tls_pair.digest, sizeof(t->tls_digest));
		if (tls_random(t->tls_ticket_key, sizeof(t->tls_ticket_key)) != 0)
			return config_fail(c, 0, "[tls]: RAND_bytes() failed");
		left = tls_pair_expires_in(&cfg->tls_pair);
		if (left < 0)
			log_warn("[tls] cert %s has expired: clients will refuse it", t->tls_cert);
		else if (left < 14 * 86400)
			log_warn("[tls] cert %s expires in %lld days", t->tls_cert,
				 (long long)(left / 86400));
	}
	if (t->tls_ca_file[0] != '\0' || t->tls_ca_path[0] != '\0') {
		struct tls_client_opts o = { .ca_file = t->tls_ca_file, .ca_path = t->tls_ca_path,
					     .verify = true };
		struct ssl_ctx_st *ctx = NULL;

		if (tls_client_ctx_new(&ctx, &o, why, sizeof(why)) != 0)
			return config_fail(c, 0, "[tls]: %s", why);
		tls_ctx_free(ctx);
	}
	for (size_t i = 0; i < cfg->n_sfus; i++) {
		const struct config_sfu *s = &cfg->sfus[i];

		if (s->tls_verify)
			continue;
		if (strncmp(s->address, "https://", 8) != 0)
			log_warn("sfu[%zu] (%s): tls_verify = false has no effect on a plain http "
				 "address", i, s->address);
		else
			log_warn("sfu[%zu] (%s): tls_verify = false: its certificate is not verified, "
				 "so anyone on the network path can pose as this SFU", i, s->address);
	}
	return 0;
}

/* What holds only once every source is in: required keys, fallbacks, warnings. */
static int config_finish(struct config *cfg, char *err, size_t errlen)
{
	const struct config_ctx c = { err, errlen, NULL };

	if (cfg->t.key_len == 0)
		return config_fail(&c, 0, "no gateway key: set SFU_GATEWAY_KEY or [gateway] key");
	if (cfg->n_sfus > cfg->max_sfus)
		return config_fail(&c, 0, "%zu static SFUs do not fit in [gateway] max_sfus = %u",
				   cfg->n_sfus, cfg->max_sfus);
	if (cfg->workers == 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		cfg->workers = cpus < 1 ? 1 : cpus > 1024 ? 1024 : (uint32_t)cpus;
	}
	/* Short keys work (the existing gateway accepts them) but are easier to brute-force. */
	if (cfg->t.key_len < CONFIG_KEY_WARN_BYTES)
		log_warn("[gateway] key is only %u bytes; use at least %d", cfg->t.key_len,
			 CONFIG_KEY_WARN_BYTES);
	if (cfg->t.registration_key_len == 0) {
		memcpy(cfg->t.registration_key, cfg->t.key, cfg->t.key_len);
		cfg->t.registration_key_len = cfg->t.key_len;
	} else if (cfg->t.registration_key_len < CONFIG_KEY_WARN_BYTES) {
		log_warn("[registration] key is only %u bytes; use at least %d",
			 cfg->t.registration_key_len, CONFIG_KEY_WARN_BYTES);
	}
	if (cfg->t.registry_url[0] != '\0' && cfg->t.registry_poll_ms < cfg->t.registry_min_poll_ms)
		log_warn("[registry] poll_ms = %u is below min_poll_ms = %u: the list is fetched "
			 "every %u ms",
			 cfg->t.registry_poll_ms, cfg->t.registry_min_poll_ms,
			 cfg->t.registry_min_poll_ms);
	if (cfg->t.registry_token[0] != '\0' && cfg->t.registry_url[0] == '\0')
		log_warn("[registry] token is set but [registry] url is empty: no registry is polled");
	if (cfg->t.cluster_n_etcd > 0 &&
	    cfg->t.cluster_claim_timeout_ms + cfg->t.retry_timeout_ms > cfg->t.deadline_ms)
		log_warn("[cluster] claim_timeout_ms = %u and [failover] retry_timeout_ms = %u "
			 "exceed deadline_ms = %u: a slow etcd leaves an issuer's first request "
			 "no time for an attempt",
			 cfg->t.cluster_claim_timeout_ms, cfg->t.retry_timeout_ms,
			 cfg->t.deadline_ms);
	/* A hung SFU costs a whole attempt; with fewer than two attempts inside
	 * the deadline, one hung SFU fails the request instead of failing over. */
	if (cfg->t.max_retries > 1 && 2 * (uint64_t)cfg->t.retry_timeout_ms > cfg->t.deadline_ms)
		log_warn("[failover] retry_timeout_ms = %u leaves room for fewer than two attempts "
			 "within deadline_ms = %u: a hung SFU will fail requests",
			 cfg->t.retry_timeout_ms, cfg->t.deadline_ms);
	for (size_t i = 0; i < cfg->n_sfus; i++)
		if (cfg->sfus[i].key_len < CONFIG_KEY_WARN_BYTES)
			log_warn("sfu[%zu] (%s): key is only %zu bytes; use at least %d", i,
				 cfg->sfus[i].address, cfg->sfus[i].key_len, CONFIG_KEY_WARN_BYTES);
	return config_tls(cfg, &c);
}

int config_load(struct config *cfg, const struct config_cli *cli, char *err, size_t errlen)
{
	static const struct config_cli no_cli;
	/* [[sfu]] lists by source, in the order of precedence. */
	struct config_sfu *lists[3] = { NULL, NULL, NULL };
	size_t counts[3] = { 0, 0, 0 };
	bool have_nodes = false;
	struct config *c;
	const char *path;
	size_t pick;
	int rc;

	if (errlen > 0)
		err[0] = '\0';
	if (cli == NULL)
		cli = &no_cli;
	/* Built aside, so that an error leaves *cfg as it was (a reload keeps running). */
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = config_defaults(c, false, err, errlen);
	if (rc < 0)
		goto out;

	path = cli->config_path;
	if (path == NULL && access(CONFIG_DEFAULT_FILE, F_OK) == 0)
		path = CONFIG_DEFAULT_FILE;
	if (path != NULL) {
		rc = config_load_file(c, path, c->config_path, &lists[0], &counts[0], err, errlen);
		if (rc < 0)
			goto out;
	}
	path = cli->secrets_path;
	if (path == NULL && access(CONFIG_DEFAULT_SECRETS, F_OK) == 0)
		path = CONFIG_DEFAULT_SECRETS;
	if (path != NULL) {
		rc = config_load_file(c, path, c->secrets_path, &lists[1], &counts[1], err,
				      errlen);
		if (rc < 0)
			goto out;
	}
	rc = config_apply_env(c, &lists[2], &counts[2], &have_nodes, err, errlen);
	if (rc < 0)
		goto out;
	rc = config_apply_cli(c, cli, err, errlen);
	if (rc < 0)
		goto out;

	pick = have_nodes ? 2 : counts[1] > 0 ? 1 : 0;
	c->sfus = lists[pick];
	c->n_sfus = counts[pick];
	lists[pick] = NULL;
	rc = config_finish(c, err, errlen);
	if (rc < 0)
		goto out;
	*cfg = *c;
	c->sfus = NULL;
	c->n_sfus = 0;
	memset(&c->tls_pair, 0, sizeof(c->tls_pair));
out:
	for (size_t i = 0; i < 3; i++)
		config_sfus_free(lists[i], counts[i]);
	config_sfus_free(c->sfus, c->n_sfus);
	tls_pair_free(&c->tls_pair);
	explicit_bzero(c, sizeof(*c));
	free(c);
	return rc;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	config_sfus_free(cfg->sfus, cfg->n_sfus);
	cfg->sfus = NULL;
	cfg->n_sfus = 0;
	tls_pair_free(&cfg->tls_pair);
}

/* [gateway] bind: an IPv4 or IPv6 literal; "[::]" is taken for "::". */
static int config_norm_bind(const char *in, char *out, size_t outlen)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char buf[INET6_ADDRSTRLEN];
	size_t n = strlen(in);

	if (n >= 2 && in[0] == '[' && in[n - 1] == ']') {
		in++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(buf) || n >= outlen)
		return -EINVAL;
	memcpy(buf, in, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, addr) != 1 && inet_pton(AF_INET6, buf, addr) != 1)
		return -EINVAL;
	memcpy(out, buf, n + 1);
	return 0;
}

/* [cluster] etcd entries: an etcd client URL, normalised as SFU addresses are;
 * an https one is verified as https SFUs are ([tls] ca_file, ca_path). */
static int config_norm_etcd(const char *in, char *out, size_t outlen)
{
	return address_parse(in, out, outlen);
}

/* [cluster] prefix: a key prefix fit for logs: printable ASCII, no spaces,
 * 1 to 100 bytes (room for the key names the cluster adds to it). */
static int config_norm_prefix(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);

	if (n == 0 || n > 100 || n >= outlen)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)in[i] <= 0x20 || (unsigned char)in[i] >= 0x7f)
			return -EINVAL;
	memcpy(out, in, n + 1);
	return 0;
}

/* Static SFU regions are free text, as in the existing gateway, but must fit one log line. */
static int config_norm_region(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);

	if (n >= outlen)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)in[i] < 0x20 || in[i] == 0x7f)
			return -EINVAL;
	memcpy(out, in, n + 1);
	return 0;
}

/* A bearer token as a header carries it: printable ASCII, no spaces; "" is none. */
static int config_norm_token(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);

	if (n >= outlen)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)in[i] <= 0x20 || (unsigned char)in[i] >= 0x7f)
			return -EINVAL;
	memcpy(out, in, n + 1);
	return 0;
}

/*
 * [registry] url: http(s)://host[:port][/path][?query], the origin normalised
 * as SFU addresses are. No credentials in it (they would show in health and
 * logs: [registry] token carries them), no fragment, nothing outside printable
 * ASCII. "" turns the registry off.
 */
static int config_norm_url(const char *in, char *out, size_t outlen)
{
	const char *scheme_end = strstr(in, "://"), *rest;
	char origin[ADDRESS_MAX];
	size_t olen;
	int n;

	if (in[0] == '\0') {
		if (outlen == 0)
			return -EINVAL;
		out[0] = '\0';
		return 0;
	}
	for (const char *p = in; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#')
			return -EINVAL;
	if (scheme_end == NULL)
		return -EINVAL;
	rest = strpbrk(scheme_end + 3, "/?");
	if (rest == NULL)
		rest = scheme_end + 3 + strlen(scheme_end + 3);
	olen = (size_t)(rest - in);
	if (olen >= sizeof(origin) || memchr(in, '@', olen) != NULL)
		return -EINVAL;
	memcpy(origin, in, olen);
	origin[olen] = '\0';
	if (address_parse(origin, origin, sizeof(origin)) != 0)
		return -EINVAL;
	n = snprintf(out, outlen, "%s%s%s", origin, *rest == '/' ? "" : "/", rest);
	return n < 0 || (size_t)n >= outlen ? -EINVAL : 0;
}
