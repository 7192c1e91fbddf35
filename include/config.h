/* Configuration: the option table, defaults, TOML file, secrets file, environment and CLI. */
#ifndef SFU_CONFIG_H
#define SFU_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "address.h"
#include "base64.h"
#include "cidr.h"
#include "tls.h"

#define CONFIG_ADDRESS_MAX ADDRESS_MAX /* "http://host:port", NUL included */
#define CONFIG_REGION_MAX 64 /* [a-z0-9-]{1,63} for registered SFUs */
#define CONFIG_KEY_MAX BASE64_KEY_MAX /* decoded key bytes */
#define CONFIG_ALLOW_MAX 64 /* CIDR entries in each of the config's CIDR lists */
#define CONFIG_OBS_TOKEN_MAX 256 /* [observability] token, NUL included */
#define CONFIG_URL_MAX 512 /* [registry] url, NUL included */
#define CONFIG_REGISTRY_TOKEN_MAX 512 /* [registry] token, NUL included */
#define CONFIG_ETCD_MAX 8 /* [cluster] etcd endpoints */
#define CONFIG_PREFIX_MAX 128 /* [cluster] prefix, NUL included */
#define CONFIG_DEFAULT_FILE "/etc/sfu-gateway/sfu-gateway.toml"
#define CONFIG_DEFAULT_SECRETS "secrets.toml"

enum config_strategy { STRATEGY_LOAD = 0, STRATEGY_ROUND_ROBIN = 1 };

struct config_sfu {
	char address[CONFIG_ADDRESS_MAX]; /* normalised: scheme://host[:port], no trailing slash */
	char region[CONFIG_REGION_MAX]; /* "" when not given */
	uint8_t key[CONFIG_KEY_MAX];
	size_t key_len;
	uint32_t max_sessions; /* 0 = not given */
	uint32_t tls_verify; /* 0/1: https only; 0 is the explicit opt-out, logged */
};


/*
 * Tunables: plain data (no pointers), so the master can copy the whole block
 * into shared memory and every worker sees a reload without restarting.
 */
struct config_tunables {
	uint8_t key[CONFIG_KEY_MAX]; /* gateway key: verifies Odoo's tokens */
	uint32_t key_len;
	uint8_t registration_key[CONFIG_KEY_MAX]; /* falls back to key when unset */
	uint32_t registration_key_len;
	uint32_t trust_proxy; /* 0/1 */
	uint32_t strategy; /* enum config_strategy */
	uint32_t max_sessions; /* [balancing] max_sessions */
	uint32_t stale_after_ms;
	uint32_t max_retries;
	uint32_t retry_timeout_ms;
	uint32_t connect_timeout_ms;
	uint32_t deadline_ms;
	uint32_t failure_threshold;
	uint32_t open_ms;
	uint32_t probe_interval_ms;
	uint32_t probe_timeout_ms;
	uint32_t probe_fall; /* consecutive failed probes that mark an SFU down */
	uint32_t probe_rise; /* consecutive passed probes that bring it back */
	uint32_t affinity_ttl_ms;
	uint32_t log_level; /* enum log_level: every process applies a reload */
	uint32_t max_connections; /* per worker; 0 = acceptor_default_cap() */
	uint32_t n_allow;
	uint32_t n_sfu_networks;
	double w_sessions, w_cpu, w_memory, w_distance;
	double max_load_score, max_cpu, max_memory;
	struct cidr allow[CONFIG_ALLOW_MAX];
	/* [registration] sfu_networks: where registered SFUs may be (addrpolicy.h). */
	struct cidr sfu_networks[CONFIG_ALLOW_MAX];
	/* [observability]: who may read /metrics and /v1/health, and how stale a
	 * worker may answer them under load. */
	struct cidr obs_allow[CONFIG_ALLOW_MAX];
	uint32_t n_obs_allow;
	uint32_t obs_max_age_ms;
	char obs_token[CONFIG_OBS_TOKEN_MAX]; /* "" = no token needed; never logged */
	/* [registry]: the external registry whose SFU list the reaper polls. */
	char registry_url[CONFIG_URL_MAX]; /* "" = no registry */
	char registry_token[CONFIG_REGISTRY_TOKEN_MAX]; /* bearer token, "" = none */
	uint32_t registry_poll_ms;
	uint32_t registry_min_poll_ms;
	uint32_t registry_timeout_ms;
	uint32_t registry_max_sfus;
	uint32_t registry_max_bytes;
	uint32_t registry_stale_after_ms;
	/* [tls]: the listener's pair (both "" = plain HTTP) and the CAs SFUs and
	 * their certificates are checked against ("" = the system store). The
	 * paths travel so that a reload can tell workers where to read the pair
	 * again; tls_digest says which pair the master checked (workers take
	 * files only when they still match it), tls_ticket_key is shared by
	 * every worker so that a session resumes whichever worker a client
	 * reaches (a reload draws a new one). */
	char tls_cert[TLS_PATH_MAX];
	char tls_key[TLS_PATH_MAX];
	char tls_ca_file[TLS_PATH_MAX];
	char tls_ca_path[TLS_PATH_MAX];
	/* [registration] client_ca ("" = no client certificate needed) and
	 * require_token (0/1): what a heartbeat must prove. */
	char client_ca[TLS_PATH_MAX];
	uint32_t require_token;
	uint32_t pad_tls;
	uint8_t tls_digest[TLS_DIGEST_LEN];
	uint8_t tls_ticket_key[TLS_TICKET_KEY_LEN];
	/* [cluster]: the etcd the gateways of a cluster share registrations and
	 * issuer affinity through (cluster.h); no endpoint = a gateway alone. */
	char cluster_etcd[CONFIG_ETCD_MAX][CONFIG_ADDRESS_MAX]; /* http://host[:port] */
	uint32_t cluster_n_etcd;
	char cluster_prefix[CONFIG_PREFIX_MAX]; /* every key of the cluster starts so */
	uint32_t cluster_timeout_ms; /* the reaper's requests to etcd */
	uint32_t cluster_claim_timeout_ms; /* a worker's affinity claim */
	uint32_t cluster_hold_ms; /* SFUs kept past stale_after_ms while etcd is away */
	uint32_t pad_cluster;
};

struct config {
	struct config_tunables t;

	/* Process-level settings: a reload that changes these replaces workers. */
	char bind[256]; /* IPv4 or IPv6 literal, default "0.0.0.0" */
	uint16_t port; /* default 8071 */
	uint32_t workers; /* default: online CPUs */
	uint32_t max_sfus; /* registry capacity, default 1024 */
	uint32_t shutdown_timeout_ms;
	char pid_file[PATH_MAX]; /* "" = none */
	char user[64]; /* "" = do not drop privileges */
	char log_file[PATH_MAX]; /* "" = stderr */
	char access_log[PATH_MAX]; /* [log] access, "" = none */
	uint32_t upgrade_timeout_ms;
	bool use_syslog;
	bool daemonize;

	/* The listener's certificate, key and client CA as the master read and
	 * checked them (empty without [tls] cert): workers forked from this
	 * config build their context from these bytes. */
	struct tls_pair tls_pair;

	/* Static SFUs from SFU_GATEWAY_NODES, else --secrets file, else [[sfu]]. */
	struct config_sfu *sfus; /* malloc'd, n_sfus entries */
	size_t n_sfus;

	/* Where this config came from (for reload and messages). */
	char config_path[PATH_MAX]; /* "" when no file was read */
	char secrets_path[PATH_MAX];
};

/* What the command line said; kept by the master so a reload applies it again. */
struct config_cli {
	const char *config_path; /* --config */
	const char *secrets_path; /* --secrets */
	const char *bind; /* --bind */
	const char *port; /* --port (string: validated by config_load) */
	const char *workers;
	const char *pid_file;
	const char *user;
	const char *log_level;
	const char *log_file;
	bool use_syslog;
	bool daemonize;
	bool check_config; /* --check-config */
	bool version; /* --version */
	bool help; /* --help */
};

/* One command-line flag (config.c's config_flags[], ended by a NULL name). */
struct config_flag {
	const char *name; /* long name, used as --name */
	char short_name;
	const char *arg; /* the value's name in --help; NULL for a switch */
	size_t offset; /* its field in struct config_cli: const char * for a value, else bool */
	const char *section, *option; /* the option a value sets, or NULL */
	const char *help; /* one line */
};
#define CONFIG_FLAGS_MAX 32
extern const struct config_flag config_flags[];

/* Reads argv into cli (values point into argv). 0, or -EINVAL after printing
 * why to stderr. */
int config_cli_parse(int argc, char **argv, struct config_cli *cli);
/* --help: every flag with its default, the environment variables, signals. */
void config_usage(FILE *out);

/*
 * Builds a config: defaults < TOML file < secrets file < environment < CLI.
 * Defaults are the default_text of config_options[]; an empty default_text means
 * "none" (the keys). workers = 0 means one per online CPU and is resolved here.
 * The secrets file takes the same sections as the config file. Empty
 * SFU_GATEWAY_* variables count as unset.
 * The config file is cli->config_path, else CONFIG_DEFAULT_FILE when it exists.
 * The secrets file is cli->secrets_path (must exist), else "secrets.toml" when it
 * exists. SFU_GATEWAY_NODES, when set, replaces the SFU list of the files.
 * Validates everything (bounds, base64 keys, addresses, the gateway key being set).
 * Returns 0, or -EINVAL/-errno with a one-line reason in err (never a secret).
 * Keys shorter than 32 bytes are accepted with a log_warn.
 * On success cfg owns memory: release with config_free(). On error *cfg is left
 * unchanged (a reload keeps the running config) and nothing is allocated.
 */
int config_load(struct config *cfg, const struct config_cli *cli, char *err, size_t errlen);
void config_free(struct config *cfg);

struct json_object;
/*
 * The SFUs of a parsed document shaped as SFU_GATEWAY_NODES, {"sfu": [{"address",
 * "region", "key", "max_sessions"}]}, checked exactly as that variable is (the
 * [[sfu]] rows of the option table: address, region and key rules, duplicate
 * addresses). Members of an entry named in extra (NULL-terminated, may be NULL)
 * are left to the caller; any other member is an error, and so is any other
 * top-level member. what names the document in err. On success *list (*n
 * entries) is replaced and owned by the caller (free with explicit_bzero, it
 * holds keys); on error it is left as it was. 0 or -EINVAL/-ENOMEM.
 */
int config_sfus_json(struct json_object *root, const char *what, const char *const *extra,
		     struct config_sfu **list, size_t *n, char *err, size_t errlen);
/* Wipes (keys) and frees a list of n SFUs; NULL is fine. */
void config_sfus_free(struct config_sfu *sfus, size_t n);

/* One row of the option table (Redis static_configs[] style), for --help,
 * the man page test and the example config test. */
enum config_type { CONFIG_T_STRING, CONFIG_T_INT, CONFIG_T_FLOAT, CONFIG_T_BOOL, CONFIG_T_KEY,
		   CONFIG_T_ENUM, CONFIG_T_CIDR_LIST, CONFIG_T_STRING_LIST };
struct config_option {
	const char *section; /* "gateway", "balancing.weights"... */
	const char *name; /* key in the section */
	enum config_type type;
	const char *default_text; /* as shown in docs, e.g. "8071", "\"0.0.0.0\"" */
	double min, max; /* bounds for numbers */
	bool reloadable; /* may a SIGHUP change it without replacing workers */
	const char *help; /* one sentence */

	/* Where config_load's one generic apply routine stores the value. */
	size_t offset, size; /* the field in struct config ([[sfu]] rows: struct config_sfu) */
	size_t len_offset, len_size; /* KEY and the lists: the unsigned length field */
	const char *const *choices; /* ENUM: accepted strings, stored as the index */
	/* STRING and STRING_LIST (each item; a list holds max items of size / max
	 * bytes): check, rewrite. */
	int (*normalise)(const char *in, char *out, size_t outlen);
};
/* The table, terminated by a row with name == NULL. */
extern const struct config_option config_options[];

#endif
