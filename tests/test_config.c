/* Tests of the configuration: option table, defaults, files, environment, CLI, validation. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "http_client.h"
#include "log.h"
#include "toml.h"

/* "0123456789abcdef" twice, and another 32-byte key. */
#define KEY_A "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define KEY_B "QU5PVEhFUi0zMi1ieXRlLWtleS1mb3ItdGVzdGluZyE="
/* 32 bytes fb ff bf ... fb fe in both alphabets. */
#define KEY_STD "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/4="
#define KEY_URL "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_4"
/* "sixteen-byte-key" */
#define KEY_SHORT "c2l4dGVlbi1ieXRlLWtleQ=="
/* bytes 0..127 */
#define KEY_128                                                                            \
	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+" \
	"P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9" \
	"fn8="
/* bytes 0..128 */
#define KEY_129                                                                            \
	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+" \
	"P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9" \
	"fn+A"

static const char *const cfg_vars[] = {
	"SFU_GATEWAY_BIND", "SFU_GATEWAY_PORT", "SFU_GATEWAY_KEY", "SFU_GATEWAY_NODES",
	"SFU_GATEWAY_TRUST_PROXY", "SFU_GATEWAY_REGISTRATION_KEY", "SFU_GATEWAY_WORKERS",
	"SFU_GATEWAY_LOG_LEVEL",
};

static char cfg_root[PATH_MAX];
static char cfg_dir[PATH_MAX];

/* Each test runs in a fresh temporary directory (so no ./secrets.toml) and a clean env. */
static void cfg_setup(void)
{
	char tmpl[] = "/tmp/test_config.XXXXXX";

	cr_assert_not_null(getcwd(cfg_root, sizeof(cfg_root)));
	cr_assert_not_null(mkdtemp(tmpl));
	snprintf(cfg_dir, sizeof(cfg_dir), "%s", tmpl);
	cr_assert_eq(chdir(cfg_dir), 0);
	for (size_t i = 0; i < sizeof(cfg_vars) / sizeof(cfg_vars[0]); i++)
		unsetenv(cfg_vars[i]);
}

static void cfg_teardown(void)
{
	DIR *d = opendir(cfg_dir);
	struct dirent *e;

	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[PATH_MAX + 300];

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", cfg_dir, e->d_name);
		unlink(path);
	}
	if (d != NULL)
		closedir(d);
	if (chdir(cfg_root) != 0)
		return;
	rmdir(cfg_dir);
}

TestSuite(config, .init = cfg_setup, .fini = cfg_teardown);

static void cfg_write(const char *name, const char *text)
{
	FILE *f = fopen(name, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fputs(text, f) >= 0, 1);
	cr_assert_eq(fclose(f), 0);
}

/* Loads with --config path (NULL: none) and must succeed. */
static void cfg_assert_ok(struct config *c, const struct config_cli *cli)
{
	char err[1024] = "";
	int rc;

	memset(c, 0, sizeof(*c));
	rc = config_load(c, cli, err, sizeof(err));
	cr_assert_eq(rc, 0, "config_load failed: %s", err);
	cr_assert_str_eq(err, "");
}

static void cfg_ok_file(struct config *c, const char *text)
{
	struct config_cli cli = { .config_path = "cfg.toml" };

	cfg_write("cfg.toml", text);
	cfg_assert_ok(c, &cli);
}

/* Must fail with exactly want; and an error leaves the struct untouched. */
static void cfg_assert_fails(const struct config_cli *cli, const char *want)
{
	struct config c, before;
	char err[1024];
	int rc;

	memset(&c, 0x5a, sizeof(c));
	memcpy(&before, &c, sizeof(c));
	memset(err, 'x', sizeof(err));
	rc = config_load(&c, cli, err, sizeof(err));
	cr_assert_lt(rc, 0, "expected an error like [%s]", want);
	cr_assert_str_eq(err, want);
	cr_assert_eq(memcmp(&c, &before, sizeof(c)), 0, "config changed on error");
}

static void cfg_assert_fails_file(const char *text, const char *want)
{
	struct config_cli cli = { .config_path = "cfg.toml" };

	cfg_write("cfg.toml", text);
	cfg_assert_fails(&cli, want);
}

Test(config, option_table_is_complete_and_sane)
{
	static const char *const names[] = {
		"gateway.bind", "gateway.port", "gateway.key", "gateway.workers",
		"gateway.trust_proxy", "gateway.max_sfus", "gateway.pid_file", "gateway.user",
		"gateway.log_level", "gateway.log_file", "gateway.shutdown_timeout_ms",
		"gateway.max_connections", "gateway.upgrade_timeout_ms", "log.access",
		"registration.key", "registration.stale_after_ms", "registration.allow",
		"registration.sfu_networks", "registration.client_ca", "registration.require_token",
		"tls.cert", "tls.key", "tls.ca_file", "tls.ca_path",
		"balancing.strategy", "balancing.max_sessions", "balancing.weights.sessions",
		"balancing.weights.cpu", "balancing.weights.memory", "balancing.weights.distance",
		"failover.max_retries", "failover.retry_timeout_ms", "failover.connect_timeout_ms",
		"failover.deadline_ms", "circuit_breaker.failure_threshold",
		"circuit_breaker.open_ms",
		"overload.max_load_score", "overload.max_cpu", "overload.max_memory",
		"probe.interval_ms", "probe.timeout_ms", "probe.fall", "probe.rise",
		"affinity.ttl_ms", "observability.allow", "observability.token",
		"observability.max_age_ms", "registry.url", "registry.token", "registry.poll_ms",
		"registry.min_poll_ms", "registry.timeout_ms", "registry.max_sfus",
		"registry.max_bytes", "registry.stale_after_ms", "cluster.etcd", "cluster.prefix",
		"cluster.timeout_ms", "cluster.claim_timeout_ms", "cluster.hold_ms", "sfu.address",
		"sfu.region", "sfu.key", "sfu.max_sessions", "sfu.tls_verify",
	};
	/* bind, port and workers change on reload by replacing workers; these
	 * size the segment or belong to the process for its whole life. */
	static const char *const restart[] = { "gateway.max_sfus", "gateway.user",
					       "gateway.pid_file", "gateway.log_file", "log.access" };
	size_t rows = 0;

	for (const struct config_option *o = config_options; o->name != NULL; o++, rows++) {
		char full[96];
		bool found = false, is_sfu = strcmp(o->section, "sfu") == 0, want_reload = true;

		snprintf(full, sizeof(full), "%s.%s", o->section, o->name);
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			found = found || strcmp(names[i], full) == 0;
		cr_assert(found, "unexpected row %s", full);
		for (const struct config_option *p = config_options; p != o; p++)
			cr_assert(strcmp(p->section, o->section) || strcmp(p->name, o->name),
				  "duplicate row %s", full);
		cr_assert_not_null(o->default_text, "%s", full);
		cr_assert_not_null(o->help, "%s", full);
		cr_assert_eq(o->help[strlen(o->help) - 1], '.', "%s: help is a sentence", full);
		cr_assert_leq(o->offset + o->size,
			      is_sfu ? sizeof(struct config_sfu) : sizeof(struct config), "%s",
			      full);
		cr_assert_gt(o->size, 0, "%s", full);
		if (o->type == CONFIG_T_ENUM)
			cr_assert_not_null(o->choices, "%s", full);
		if (o->type == CONFIG_T_KEY || o->type == CONFIG_T_CIDR_LIST ||
		    o->type == CONFIG_T_STRING_LIST)
			cr_assert_gt(o->len_size, 0, "%s", full);
		if (o->type == CONFIG_T_STRING_LIST)
			cr_assert(o->normalise != NULL && o->max >= 1 &&
					  o->size % (size_t)o->max == 0,
				  "%s: items of size / max bytes, each normalised", full);
		if (o->type == CONFIG_T_FLOAT)
			cr_assert_eq(o->size, sizeof(double), "%s", full);
		if (o->type == CONFIG_T_INT)
			cr_assert_lt(o->min, o->max, "%s", full);
		for (size_t i = 0; i < sizeof(restart) / sizeof(restart[0]); i++)
			if (strcmp(full, restart[i]) == 0)
				want_reload = false;
		cr_assert_eq(o->reloadable, want_reload, "%s reloadable", full);
	}
	cr_assert_eq(rows, sizeof(names) / sizeof(names[0]));
}

Test(config, defaults)
{
	struct config_cli cli = { .config_path = "empty.toml" };
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct config c;

	cfg_write("empty.toml", "");
	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	cfg_assert_ok(&c, &cli);
	cr_assert_str_eq(c.bind, "0.0.0.0");
	cr_assert_eq(c.port, 8071);
	cr_assert_eq(c.workers, (uint32_t)(cpus < 1 ? 1 : cpus > 1024 ? 1024 : cpus));
	cr_assert_eq(c.max_sfus, 1024);
	cr_assert_eq(c.shutdown_timeout_ms, 10000);
	cr_assert_eq(c.t.log_level, 2); /* info */
	cr_assert_str_eq(c.pid_file, "");
	cr_assert_str_eq(c.user, "");
	cr_assert_str_eq(c.log_file, "");
	cr_assert_eq(c.t.key_len, 32);
	cr_assert_eq(memcmp(c.t.key, "0123456789abcdef0123456789abcdef", 32), 0);
	cr_assert_eq(c.t.registration_key_len, 32, "falls back to the gateway key");
	cr_assert_eq(memcmp(c.t.registration_key, c.t.key, 32), 0);
	cr_assert_eq(c.t.trust_proxy, 0);
	cr_assert_eq(c.t.stale_after_ms, 30000);
	cr_assert_eq(c.t.n_allow, 0);
	cr_assert_eq(c.t.strategy, STRATEGY_LOAD);
	cr_assert_eq(c.t.max_sessions, 0);
	cr_assert_float_eq(c.t.w_sessions, 0.5, 1e-12);
	cr_assert_float_eq(c.t.w_cpu, 0.3, 1e-12);
	cr_assert_float_eq(c.t.w_memory, 0.2, 1e-12);
	cr_assert_float_eq(c.t.w_distance, 0.0, 1e-12);
	cr_assert_eq(c.t.max_retries, 3);
	cr_assert_eq(c.t.retry_timeout_ms, 800);
	cr_assert_eq(c.t.connect_timeout_ms, 500);
	cr_assert_eq(c.t.deadline_ms, 2500);
	cr_assert_eq(c.t.failure_threshold, 5);
	cr_assert_eq(c.t.open_ms, 10000);
	cr_assert_float_eq(c.t.max_load_score, 1.0, 1e-12);
	cr_assert_float_eq(c.t.max_cpu, 0.95, 1e-12);
	cr_assert_float_eq(c.t.max_memory, 0.95, 1e-12);
	cr_assert_eq(c.t.probe_interval_ms, 5000);
	cr_assert_eq(c.t.probe_timeout_ms, 2000);
	cr_assert_eq(c.t.probe_fall, 3, "HAProxy's default");
	cr_assert_eq(c.t.probe_rise, 2, "HAProxy's default");
	cr_assert_eq(c.t.affinity_ttl_ms, 60000);
	cr_assert_eq(c.n_sfus, 0);
	cr_assert_null(c.sfus);
	cr_assert_str_eq(c.config_path, "empty.toml");
	cr_assert_str_eq(c.secrets_path, "");
	cr_assert(!c.use_syslog && !c.daemonize);
	config_free(&c);
	config_free(&c);
}

Test(config, missing_gateway_key)
{
	struct config_cli cli = { .config_path = "cfg.toml" };

	cfg_write("cfg.toml", "[registration]\nkey = \"" KEY_A "\"\n");
	cfg_assert_fails(&cli, "no gateway key: set SFU_GATEWAY_KEY or [gateway] key");
	setenv("SFU_GATEWAY_KEY", "", 1); /* empty counts as unset */
	cfg_assert_fails(&cli, "no gateway key: set SFU_GATEWAY_KEY or [gateway] key");
}

Test(config, full_file)
{
	struct config c;

	cfg_ok_file(&c, "[gateway]\n"
			"bind = \"::1\"\n"
			"port = 9000\n"
			"key = \"" KEY_URL "\"\n"
			"workers = 3\n"
			"trust_proxy = true\n"
			"max_sfus = 10\n"
			"pid_file = \"/run/gw.pid\"\n"
			"user = \"nobody\"\n"
			"log_level = \"debug\"\n"
			"log_file = \"/var/log/gw.log\"\n"
			"shutdown_timeout_ms = 0\n"
			"[registration]\n"
			"key = \"" KEY_B "\"\n"
			"stale_after_ms = 1000\n"
			"allow = [\"10.1.2.3/8\", \"::1\"]\n"
			"[balancing]\n"
			"strategy = \"round-robin\"\n"
			"max_sessions = 7\n"
			"[balancing.weights]\n"
			"sessions = 1\n"
			"cpu = 0\n"
			"memory = 2.5\n"
			"distance = 0.25\n"
			"[failover]\nmax_retries = 16\nretry_timeout_ms = 10\n"
			"connect_timeout_ms = 60000\ndeadline_ms = 2999\n"
			"[circuit_breaker]\nfailure_threshold = 1\nopen_ms = 100\n"
			"[overload]\nmax_load_score = 0\nmax_cpu = 1\nmax_memory = 0.5\n"
			"[probe]\ninterval_ms = 100\ntimeout_ms = 10\nfall = 100\nrise = 1\n"
			"[affinity]\nttl_ms = 0\n"
			"[[sfu]]\n"
			"key = \"" KEY_STD "\"\n"
			"address = \"HTTP://SFU1.Example.com:8070/\"\n"
			"region = \"eu-west\"\n"
			"max_sessions = 50\n"
			"[[sfu]]\n"
			"address = \"http://[::1]:80\"\n"
			"key = \"" KEY_A "\"\n");
	cr_assert_str_eq(c.bind, "::1");
	cr_assert_eq(c.port, 9000);
	cr_assert_eq(c.t.key_len, 32);
	cr_assert_eq(c.t.key[0], 0xfb);
	cr_assert_eq(c.t.key[31], 0xfe);
	cr_assert_eq(c.workers, 3);
	cr_assert_eq(c.t.trust_proxy, 1);
	cr_assert_eq(c.max_sfus, 10);
	cr_assert_str_eq(c.pid_file, "/run/gw.pid");
	cr_assert_str_eq(c.user, "nobody");
	cr_assert_eq(c.t.log_level, 3);
	cr_assert_str_eq(c.log_file, "/var/log/gw.log");
	cr_assert_eq(c.shutdown_timeout_ms, 0);
	cr_assert_eq(c.t.registration_key_len, 32);
	cr_assert_eq(memcmp(c.t.registration_key, "ANOTHER-32-byte-key-for-testing!", 32), 0);
	cr_assert_eq(c.t.stale_after_ms, 1000);
	cr_assert_eq(c.t.n_allow, 2);
	cr_assert_eq(c.t.allow[0].family, AF_INET);
	cr_assert_eq(c.t.allow[0].prefix, 8);
	cr_assert_eq(memcmp(c.t.allow[0].addr, "\x0a\0\0\0", 4), 0);
	cr_assert_eq(c.t.allow[1].family, AF_INET6);
	cr_assert_eq(c.t.allow[1].prefix, 128);
	cr_assert_eq(c.t.strategy, STRATEGY_ROUND_ROBIN);
	cr_assert_eq(c.t.max_sessions, 7);
	cr_assert_float_eq(c.t.w_sessions, 1.0, 1e-12);
	cr_assert_float_eq(c.t.w_cpu, 0.0, 1e-12);
	cr_assert_float_eq(c.t.w_memory, 2.5, 1e-12);
	cr_assert_float_eq(c.t.w_distance, 0.25, 1e-12);
	cr_assert_eq(c.t.max_retries, 16);
	cr_assert_eq(c.t.retry_timeout_ms, 10);
	cr_assert_eq(c.t.connect_timeout_ms, 60000);
	cr_assert_eq(c.t.deadline_ms, 2999);
	cr_assert_eq(c.t.failure_threshold, 1);
	cr_assert_eq(c.t.open_ms, 100);
	cr_assert_float_eq(c.t.max_load_score, 0.0, 1e-12);
	cr_assert_float_eq(c.t.max_cpu, 1.0, 1e-12);
	cr_assert_float_eq(c.t.max_memory, 0.5, 1e-12);
	cr_assert_eq(c.t.probe_interval_ms, 100);
	cr_assert_eq(c.t.probe_timeout_ms, 10);
	cr_assert_eq(c.t.probe_fall, 100);
	cr_assert_eq(c.t.probe_rise, 1);
	cr_assert_eq(c.t.affinity_ttl_ms, 0);
	cr_assert_eq(c.n_sfus, 2);
	cr_assert_str_eq(c.sfus[0].address, "http://sfu1.example.com:8070");
	cr_assert_str_eq(c.sfus[0].region, "eu-west");
	cr_assert_eq(c.sfus[0].key_len, 32);
	cr_assert_eq(c.sfus[0].key[1], 0xff);
	cr_assert_eq(c.sfus[0].max_sessions, 50);
	cr_assert_str_eq(c.sfus[1].address, "http://[::1]");
	cr_assert_str_eq(c.sfus[1].region, "");
	cr_assert_eq(c.sfus[1].max_sessions, 0);
	config_free(&c);
	cr_assert_null(c.sfus);
	cr_assert_eq(c.n_sfus, 0);
}

Test(config, precedence_file_env_cli)
{
	struct config_cli cli = { .config_path = "cfg.toml" };
	struct config c;

	cfg_write("cfg.toml", "[gateway]\nport = 1000\nbind = \"127.0.0.1\"\nworkers = 2\n"
			      "key = \"" KEY_A "\"\nlog_level = \"warn\"\ntrust_proxy = true\n");
	cfg_assert_ok(&c, &cli);
	cr_assert_eq(c.port, 1000);
	cr_assert_eq(c.t.key[0], '0');
	config_free(&c);

	setenv("SFU_GATEWAY_PORT", "2000", 1);
	setenv("SFU_GATEWAY_BIND", "::", 1);
	setenv("SFU_GATEWAY_KEY", KEY_B, 1);
	setenv("SFU_GATEWAY_WORKERS", "4", 1);
	setenv("SFU_GATEWAY_LOG_LEVEL", "error", 1);
	setenv("SFU_GATEWAY_TRUST_PROXY", "0", 1);
	setenv("SFU_GATEWAY_REGISTRATION_KEY", KEY_STD, 1);
	cfg_assert_ok(&c, &cli);
	cr_assert_eq(c.port, 2000);
	cr_assert_str_eq(c.bind, "::");
	cr_assert_eq(c.t.key[0], 'A');
	cr_assert_eq(c.workers, 4);
	cr_assert_eq(c.t.log_level, 0);
	cr_assert_eq(c.t.trust_proxy, 0);
	cr_assert_eq(c.t.registration_key[0], 0xfb);
	config_free(&c);

	cli.port = "3000";
	cli.bind = "10.0.0.1";
	cli.workers = "5";
	cli.log_level = "debug";
	cli.pid_file = "/tmp/x.pid";
	cli.user = "daemon";
	cli.log_file = "/tmp/x.log";
	cli.use_syslog = true;
	cli.daemonize = true;
	cfg_assert_ok(&c, &cli);
	cr_assert_eq(c.port, 3000);
	cr_assert_str_eq(c.bind, "10.0.0.1");
	cr_assert_eq(c.workers, 5);
	cr_assert_eq(c.t.log_level, 3);
	cr_assert_str_eq(c.pid_file, "/tmp/x.pid");
	cr_assert_str_eq(c.user, "daemon");
	cr_assert_str_eq(c.log_file, "/tmp/x.log");
	cr_assert(c.use_syslog && c.daemonize);
	config_free(&c);
}

Test(config, secrets_file)
{
	struct config_cli cli = { .config_path = "cfg.toml" };
	struct config c;

	cfg_write("cfg.toml", "[gateway]\nkey = \"" KEY_A "\"\n"
			      "[[sfu]]\naddress = \"http://file-a:1\"\nkey = \"" KEY_A "\"\n"
			      "[[sfu]]\naddress = \"http://file-b:1\"\nkey = \"" KEY_A "\"\n");
	cfg_assert_ok(&c, &cli);
	cr_assert_eq(c.n_sfus, 2);
	cr_assert_str_eq(c.secrets_path, "");
	config_free(&c);

	/* ./secrets.toml is read when present: its key and [[sfu]] list win over the file's. */
	cfg_write("secrets.toml", "[gateway]\nkey = \"" KEY_B "\"\n"
				  "[[sfu]]\naddress = \"http://secret:8070\"\nregion = \"x y\"\n"
				  "key = \"" KEY_B "\"\n");
	cfg_assert_ok(&c, &cli);
	cr_assert_str_eq(c.secrets_path, "secrets.toml");
	cr_assert_eq(c.t.key[0], 'A');
	cr_assert_eq(c.n_sfus, 1);
	cr_assert_str_eq(c.sfus[0].address, "http://secret:8070");
	cr_assert_str_eq(c.sfus[0].region, "x y");
	config_free(&c);

	/* A secrets file without [[sfu]] leaves the config file's list in place. */
	cfg_write("other.toml", "[gateway]\nkey = \"" KEY_B "\"\n");
	cli.secrets_path = "other.toml";
	cfg_assert_ok(&c, &cli);
	cr_assert_str_eq(c.secrets_path, "other.toml");
	cr_assert_eq(c.n_sfus, 2);
	cr_assert_str_eq(c.sfus[1].address, "http://file-b:1");
	config_free(&c);

	/* Named explicitly, it must exist. */
	cli.secrets_path = "nope.toml";
	cfg_assert_fails(&cli, "nope.toml: No such file or directory");
}

Test(config, missing_config_file)
{
	struct config_cli cli = { .config_path = "absent.toml" };

	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	cfg_assert_fails(&cli, "absent.toml: No such file or directory");
}

Test(config, nodes_replace_the_file_lists)
{
	struct config_cli cli = { .config_path = "cfg.toml" };
	struct config c;

	cfg_write("cfg.toml", "[gateway]\nkey = \"" KEY_A "\"\n"
			      "[[sfu]]\naddress = \"http://file-a:1\"\nkey = \"" KEY_A "\"\n");
	cfg_write("secrets.toml",
		  "[[sfu]]\naddress = \"http://secret:1\"\nkey = \"" KEY_A "\"\n");
	setenv("SFU_GATEWAY_NODES",
	       "{\"sfu\": [{\"address\": \"http://10.0.0.1:8070\", \"region\": \"eu-west\", "
	       "\"key\": \"" KEY_URL "\"}, {\"address\": \"http://n2\", \"region\": null, "
	       "\"key\": \"" KEY_SHORT "\", \"max_sessions\": 9}]}",
	       1);
	cfg_assert_ok(&c, &cli);
	cr_assert_eq(c.n_sfus, 2);
	cr_assert_str_eq(c.sfus[0].address, "http://10.0.0.1:8070");
	cr_assert_str_eq(c.sfus[0].region, "eu-west");
	cr_assert_eq(c.sfus[0].key_len, 32);
	cr_assert_eq(c.sfus[0].key[0], 0xfb);
	cr_assert_str_eq(c.sfus[1].address, "http://n2");
	cr_assert_str_eq(c.sfus[1].region, "");
	cr_assert_eq(c.sfus[1].key_len, 16);
	cr_assert_eq(c.sfus[1].max_sessions, 9);
	config_free(&c);

	/* An empty list still replaces them; an empty variable is unset. */
	setenv("SFU_GATEWAY_NODES", "{\"sfu\": []}", 1);
	cfg_assert_ok(&c, &cli);
	cr_assert_eq(c.n_sfus, 0);
	config_free(&c);
	setenv("SFU_GATEWAY_NODES", "", 1);
	cfg_assert_ok(&c, &cli);
	cr_assert_eq(c.n_sfus, 1);
	cr_assert_str_eq(c.sfus[0].address, "http://secret:1");
	config_free(&c);
}

Test(config, nodes_errors)
{
	static const struct {
		const char *json;
		const char *want;
	} cases[] = {
		{ "{\"sfu\": [", "SFU_GATEWAY_NODES: invalid JSON: " },
		{ "{\"sfu\": []} x", "SFU_GATEWAY_NODES: invalid JSON: " },
		{ "[]",
		  "SFU_GATEWAY_NODES: expected {\"sfu\": [{\"address\": ..., \"key\": ...}]}" },
		{ "{\"sfu\": {}}",
		  "SFU_GATEWAY_NODES: expected {\"sfu\": [{\"address\": ..., \"key\": ...}]}" },
		{ "{\"sfu\": [], \"x\": 1}",
		  "SFU_GATEWAY_NODES: expected {\"sfu\": [{\"address\": ..., \"key\": ...}]}" },
		{ "{\"sfu\": [1]}", "SFU_GATEWAY_NODES: sfu[0] must be an object" },
		{ "{\"sfu\": [{\"key\": \"" KEY_A "\"}]}",
		  "SFU_GATEWAY_NODES: sfu[0]: missing address" },
		{ "{\"sfu\": [{\"address\": \"http://a:1\"}]}",
		  "SFU_GATEWAY_NODES: sfu[0] (http://a:1): missing key" },
		{ "{\"sfu\": [{\"address\": \"http://a:1\", \"key\": \"" KEY_A "\"}, "
		  "{\"address\": \"http://b:1\", \"key\": \"!!\"}]}",
		  "SFU_GATEWAY_NODES: sfu[1] (http://b:1): key is not valid base64 of 1 to 128 "
		  "bytes" },
		{ "{\"sfu\": [{\"address\": \"http://a:1\", \"key\": 5}]}",
		  "SFU_GATEWAY_NODES: sfu[0] (http://a:1): key must be a base64 string, not an "
		  "integer" },
		{ "{\"sfu\": [{\"address\": \"http://a:1\", \"key\": \"" KEY_A "\", \"name\": 1}]}",
		  "SFU_GATEWAY_NODES: sfu[0] (http://a:1): unknown key 'name' in [[sfu]]" },
		{ "{\"sfu\": [{\"address\": \"http://a:1\", \"region\": {}, "
		  "\"key\": \"" KEY_A "\"}]}",
		  "SFU_GATEWAY_NODES: sfu[0] (http://a:1): region must be a string, not a table" },
		{ "{\"sfu\": [{\"address\": \"a\\u0000b\", \"key\": \"" KEY_A "\"}]}",
		  "SFU_GATEWAY_NODES: sfu[0]: 'address' contains a NUL byte" },
		{ "{\"sfu\": [{\"address\": \"ftp://a\", \"key\": \"" KEY_A "\"}]}",
		  "SFU_GATEWAY_NODES: sfu[0]: address is invalid: Base URL of a static SFU, "
		  "http(s)://host[:port] without a path (required)." },
		{ "{\"sfu\": [{\"address\": \"http://a:1\", \"key\": \"" KEY_A "\"}, "
		  "{\"address\": \"HTTP://A:1/\", \"key\": \"" KEY_A "\"}]}",
		  "SFU_GATEWAY_NODES: sfu[1] (http://a:1): duplicate address (same as sfu[0])" },
		{ "{\"sfu\": [{\"address\": \"http://a:1\", \"key\": \"" KEY_A "\", "
		  "\"max_sessions\": -1}]}",
		  "SFU_GATEWAY_NODES: sfu[0] (http://a:1): max_sessions must be between 0 and "
		  "1000000" },
		{ "{\"sfu\": [{\"address\": \"http://a:1\", \"key\": \"" KEY_A "\", "
		  "\"max_sessions\": 99999999999999999999999}]}",
		  "SFU_GATEWAY_NODES: sfu[0] (http://a:1): max_sessions must be between 0 and "
		  "1000000" },
	};
	struct config_cli cli = { .config_path = NULL };

	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char err[1024];

		setenv("SFU_GATEWAY_NODES", cases[i].json, 1);
		memset(&c, 0, sizeof(c));
		cr_assert_lt(config_load(&c, &cli, err, sizeof(err)), 0, "case %zu", i);
		cr_assert_eq(strncmp(err, cases[i].want, strlen(cases[i].want)), 0,
			     "case %zu: got [%s] want [%s]", i, err, cases[i].want);
		if (strstr(cases[i].want, "invalid JSON") == NULL)
			cr_assert_str_eq(err, cases[i].want, "case %zu", i);
	}
}

Test(config, sfu_errors_name_index_and_address)
{
	cfg_assert_fails_file("[gateway]\nkey = \"" KEY_A "\"\n"
		       "[[sfu]]\naddress = \"http://10.0.0.1:8070\"\nkey = \"" KEY_A "\"\n"
		       "[[sfu]]\naddress = \"http://10.0.0.2:8070\"\nkey = \"" KEY_A "\"\n"
		       "[[sfu]]\naddress = \"http://10.0.0.3:8070\"\nregion = \"eu-west\"\n"
		       "key = \"not base64!\"\n",
		       "cfg.toml:12: sfu[2] (http://10.0.0.3:8070): key is not valid base64 of 1 "
		       "to 128 bytes");
	cfg_assert_fails_file("[[sfu]]\nkey = \"" KEY_A "\"\n", "cfg.toml:1: sfu[0]: missing address");
	cfg_assert_fails_file("[[sfu]]\naddress = \"http://a:1\"\n",
		       "cfg.toml:1: sfu[0] (http://a:1): missing key");
	cfg_assert_fails_file("[[sfu]]\naddress = \"http://a:1\"\nkey = \"" KEY_A "\"\nweight = 1\n",
		       "cfg.toml:4: sfu[0] (http://a:1): unknown key 'weight' in [[sfu]]");
	cfg_assert_fails_file("[[sfu]]\naddress = \"http://a/x\"\nkey = \"" KEY_A "\"\n",
		       "cfg.toml:2: sfu[0]: address is invalid: Base URL of a static SFU, "
		       "http(s)://host[:port] without a path (required).");
	cfg_assert_fails_file("[[sfu]]\naddress = \"http://a:1\"\nkey = \"" KEY_A "\"\nregion = "
		       "\"0123456789012345678901234567890123456789012345678901234567890123\"\n",
		       "cfg.toml:4: sfu[0] (http://a:1): region is invalid: Region of the SFU, "
		       "e.g. \"eu-west\"; any text up to 63 bytes.");
	cfg_assert_fails_file("[[sfu]]\naddress = \"http://a:1\"\nkey = \"" KEY_A "\"\nmax_sessions = "
		       "1.5\n",
		       "cfg.toml:4: sfu[0] (http://a:1): max_sessions must be an integer, not a "
		       "float");
	cfg_assert_fails_file("[[sfu]]\naddress = \"http://A:80\"\nkey = \"" KEY_A "\"\n"
		       "[[sfu]]\naddress = \"http://b\"\nkey = \"" KEY_A "\"\n"
		       "[[sfu]]\naddress = \"http://a/\"\nkey = \"" KEY_A "\"\n",
		       "cfg.toml:7: sfu[2] (http://a): duplicate address (same as sfu[0])");
	/* An IPv4 address spelt another way than dotted decimal. */
	cfg_assert_fails_file("[[sfu]]\naddress = \"http://0x7f.0.0.1:8070\"\nkey = \"" KEY_A "\"\n",
		       "cfg.toml:2: sfu[0]: address is invalid: Base URL of a static SFU, "
		       "http(s)://host[:port] without a path (required).");
	/* The same SFU written as an IPv4-mapped IPv6 address is a duplicate. */
	cfg_assert_fails_file("[[sfu]]\naddress = \"http://127.0.0.1:8070\"\nkey = \"" KEY_A "\"\n"
		       "[[sfu]]\naddress = \"http://[::ffff:127.0.0.1]:8070\"\nkey = \"" KEY_A "\"\n",
		       "cfg.toml:4: sfu[1] (http://127.0.0.1:8070): duplicate address (same as "
		       "sfu[0])");
	cfg_assert_fails_file("[sfu]\naddress = \"http://a:1\"\n",
		       "cfg.toml:1: SFUs are an array of tables: write [[sfu]]");
	cfg_assert_fails_file("sfu = [1]\n", "cfg.toml:1: sfu must be an array of tables ([[sfu]])");
	cfg_assert_fails_file("[gateway]\nkey = \"" KEY_A "\"\nmax_sfus = 1\n"
		       "[[sfu]]\naddress = \"http://a:1\"\nkey = \"" KEY_A "\"\n"
		       "[[sfu]]\naddress = \"http://b:1\"\nkey = \"" KEY_A "\"\n",
		       "2 static SFUs do not fit in [gateway] max_sfus = 1");
}

Test(config, region_is_free_text_up_to_63_bytes)
{
	struct config c;

	cfg_ok_file(&c, "[gateway]\nkey = \"" KEY_A "\"\n[[sfu]]\naddress = \"http://a:1\"\n"
			"key = \"" KEY_A "\"\nregion = \"Data Centre #3 (Zürich)\"\n"
			"[[sfu]]\naddress = \"http://b:1\"\nkey = \"" KEY_A "\"\nregion = "
			"\"012345678901234567890123456789012345678901234567890123456789012\"\n");
	cr_assert_str_eq(c.sfus[0].region, "Data Centre #3 (Zürich)");
	cr_assert_eq(strlen(c.sfus[1].region), 63);
	config_free(&c);
	cfg_assert_fails_file("[gateway]\nkey = \"" KEY_A "\"\n[[sfu]]\naddress = \"http://a:1\"\n"
		       "key = \"" KEY_A "\"\nregion = \"tab\\there\"\n",
		       "cfg.toml:6: sfu[0] (http://a:1): region is invalid: Region of the SFU, "
		       "e.g. \"eu-west\"; any text up to 63 bytes.");
}

/* Runs config_load with stderr sent to a file, and returns what was logged. */
static void cfg_load_logged(const struct config_cli *cli, struct config *c, char *log,
			    size_t loglen)
{
	int saved = dup(STDERR_FILENO), fd;
	ssize_t n;

	cr_assert_geq(saved, 0);
	fd = open("stderr.log", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
	close(fd);
	cfg_assert_ok(c, cli);
	cr_assert_geq(dup2(saved, STDERR_FILENO), 0);
	close(saved);
	fd = open("stderr.log", O_RDONLY);
	cr_assert_geq(fd, 0);
	n = read(fd, log, loglen - 1);
	close(fd);
	log[n > 0 ? n : 0] = '\0';
}

Test(config, short_keys_are_accepted_with_a_warning)
{
	struct config_cli cli = { .config_path = "cfg.toml" };
	struct config c;
	char log[4096];

	cfg_write("cfg.toml", "[gateway]\nkey = \"" KEY_SHORT "\"\n"
			      "[registration]\nkey = \"" KEY_SHORT "\"\n"
			      "[[sfu]]\naddress = \"http://a:1\"\nkey = \"" KEY_A "\"\n"
			      "[[sfu]]\naddress = \"http://b:1\"\nkey = \"" KEY_SHORT "\"\n");
	cfg_load_logged(&cli, &c, log, sizeof(log));
	cr_assert_eq(c.t.key_len, 16);
	cr_assert_eq(c.sfus[1].key_len, 16);
	cr_assert_not_null(strstr(log, "[gateway] key is only 16 bytes"), "%s", log);
	cr_assert_not_null(strstr(log, "[registration] key is only 16 bytes"), "%s", log);
	cr_assert_not_null(strstr(log, "sfu[1] (http://b:1): key is only 16 bytes"), "%s", log);
	cr_assert_null(strstr(log, "sfu[0]"), "%s", log);
	cr_assert_null(strstr(log, KEY_SHORT), "%s", log);
	cr_assert_null(strstr(log, "sixteen"), "%s", log);
	config_free(&c);

	/* 32 bytes or more: nothing to say. */
	cfg_write("cfg.toml", "[gateway]\nkey = \"" KEY_A "\"\n");
	cfg_load_logged(&cli, &c, log, sizeof(log));
	cr_assert_str_eq(log, "");
	config_free(&c);
}

Test(config, unknown_keys_and_sections)
{
	cfg_assert_fails_file("[gateway]\nprot = 1\n", "cfg.toml:2: unknown key 'prot' in [gateway]");
	cfg_assert_fails_file("\n[foo]\n", "cfg.toml:2: unknown section [foo]");
	cfg_assert_fails_file("x = 1\n", "cfg.toml:1: unknown key 'x' outside any section");
	cfg_assert_fails_file("[balancing.weights]\nlatency = 1\n",
		       "cfg.toml:2: unknown key 'latency' in [balancing.weights]");
	cfg_assert_fails_file("[balancing]\nweights = 1\n",
		       "cfg.toml:2: [balancing.weights] must be a table");
	cfg_assert_fails_file("[gateway.sub]\n", "cfg.toml:1: unknown key 'sub' in [gateway]");
	cfg_assert_fails_file("[[gateway]]\n", "cfg.toml:1: [gateway] must be a table");
	cfg_assert_fails_file("[\"balancing.weights\"]\n",
		       "cfg.toml:1: unknown section [balancing.weights]");
	cfg_assert_fails_file("[gateway]\n\"p\xc3\xb6rt\" = 1\n",
		       "cfg.toml:2: unknown key 'p...' in [gateway]");
	cfg_assert_fails_file("[gateway]\nport = 1\nport = 2\n", "cfg.toml:3: duplicate key 'port'");
	cfg_assert_fails_file("[gateway]\nport = { x = 1 }\n",
		       "cfg.toml:2: inline tables are not supported");
}

Test(config, wrong_types)
{
	struct config c;

	cfg_assert_fails_file("[gateway]\nport = \"8071\"\n",
		       "cfg.toml:2: [gateway] port must be an integer, not a string");
	cfg_assert_fails_file("[gateway]\ntrust_proxy = 1\n",
		       "cfg.toml:2: [gateway] trust_proxy must be a boolean (true or false), not "
		       "an integer");
	cfg_assert_fails_file("[failover]\nmax_retries = 2.0\n",
		       "cfg.toml:2: [failover] max_retries must be an integer, not a float");
	cfg_assert_fails_file("[gateway]\nbind = 0\n",
		       "cfg.toml:2: [gateway] bind must be a string, not an integer");
	cfg_assert_fails_file("[gateway]\nkey = [\"" KEY_A "\"]\n",
		       "cfg.toml:2: [gateway] key must be a base64 string, not an array");
	cfg_assert_fails_file("[registration]\nallow = \"10.0.0.0/8\"\n",
		       "cfg.toml:2: [registration] allow must be an array of CIDR strings, not a "
		       "string");
	cfg_assert_fails_file("[registration]\nallow = [\"10.0.0.0/8\",\n 1]\n",
		       "cfg.toml:3: [registration] allow[1] is not a CIDR string such as "
		       "\"10.0.0.0/8\"");
	cfg_assert_fails_file("[registration]\nallow = [\"10.0.0.0/33\"]\n",
		       "cfg.toml:2: [registration] allow[0] is not a CIDR string such as "
		       "\"10.0.0.0/8\"");
	cfg_assert_fails_file("[balancing]\nstrategy = \"random\"\n",
		       "cfg.toml:2: [balancing] strategy must be one of: load, round-robin");
	cfg_assert_fails_file("[gateway]\nlog_level = \"loud\"\n",
		       "cfg.toml:2: [gateway] log_level must be one of: error, warn, info, debug");
	cfg_assert_fails_file("[gateway]\nbind = \"localhost\"\n",
		       "cfg.toml:2: [gateway] bind is invalid: IPv4 or IPv6 address the gateway "
		       "listens on.");
	/* Integers are numbers too. */
	cfg_ok_file(&c, "[gateway]\nkey = \"" KEY_A "\"\n[balancing.weights]\ncpu = 1\n");
	cr_assert_float_eq(c.t.w_cpu, 1.0, 1e-12);
	config_free(&c);
}

Test(config, too_many_allow_entries)
{
	char text[4096];
	size_t o = 0;

	o += (size_t)snprintf(text + o, sizeof(text) - o, "[registration]\nallow = [");
	for (int i = 0; i < 65; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o, "\"10.0.0.%d\",", i);
	snprintf(text + o, sizeof(text) - o, "]\n");
	cfg_assert_fails_file(text, "cfg.toml:2: [registration] allow has more than 64 entries");
}

/* Every numeric row: its bounds are accepted, one step outside is refused by name. */
Test(config, bounds_of_every_number)
{
	struct config_cli cli = { .config_path = "cfg.toml" };

	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	for (const struct config_option *o = config_options; o->name != NULL; o++) {
		const char *hdr = strcmp(o->section, "sfu") == 0 ? "[[sfu]]\naddress = \"http://a:1"
								   "\"\nkey = \"" KEY_A "\""
								 : "";
		double probes[4] = { o->min, o->max, o->min - 1, o->max + 1 };
		char text[512], want[256];
		bool is_sfu = strcmp(o->section, "sfu") == 0;

		if (o->type != CONFIG_T_INT && o->type != CONFIG_T_FLOAT)
			continue;
		for (int k = 0; k < 4; k++) {
			if (is_sfu)
				snprintf(text, sizeof(text), "%s\n%s = %.17g\n", hdr, o->name,
					 probes[k]);
			else
				snprintf(text, sizeof(text), "[%s]\n%s = %.17g\n", o->section,
					 o->name, probes[k]);
			if (k < 2) {
				struct config c;

				cfg_write("cfg.toml", text);
				cfg_assert_ok(&c, &cli);
				config_free(&c);
				continue;
			}
			if (is_sfu)
				snprintf(want, sizeof(want),
					 "cfg.toml:4: sfu[0] (http://a:1): %s must be between %.0f "
					 "and %.0f", o->name, o->min, o->max);
			else if (o->type == CONFIG_T_INT)
				snprintf(want, sizeof(want),
					 "cfg.toml:2: [%s] %s must be between %.0f and %.0f",
					 o->section, o->name, o->min, o->max);
			else
				snprintf(want, sizeof(want),
					 "cfg.toml:2: [%s] %s must be between %g and %g",
					 o->section, o->name, o->min, o->max);
			cfg_write("cfg.toml", text);
			cfg_assert_fails(&cli, want);
		}
	}
	cfg_assert_fails_file("[gateway]\nport = 99999999999999999999\n",
		       "cfg.toml:2: integer out of range");
	cfg_assert_fails_file("[gateway]\nport = -1\n",
		       "cfg.toml:2: [gateway] port must be between 1 and 65535");
}

Test(config, every_row_rejects_the_wrong_type)
{
	struct config_cli cli = { .config_path = "cfg.toml" };

	for (const struct config_option *o = config_options; o->name != NULL; o++) {
		bool wants_text = o->type == CONFIG_T_STRING || o->type == CONFIG_T_ENUM ||
				  o->type == CONFIG_T_KEY;
		char text[512], prefix[128];
		struct config c;
		char err[1024];

		if (strcmp(o->section, "sfu") == 0) {
			if (strcmp(o->name, "address") == 0)
				continue;
			snprintf(text, sizeof(text),
				 "[[sfu]]\naddress = \"http://a:1\"\n%s = %s\n", o->name,
				 wants_text ? "true" : "\"x\"");
			snprintf(prefix, sizeof(prefix),
				 "cfg.toml:3: sfu[0] (http://a:1): %s must be ", o->name);
		} else {
			snprintf(text, sizeof(text), "[%s]\n%s = %s\n", o->section, o->name,
				 wants_text ? "true" : "\"x\"");
			snprintf(prefix, sizeof(prefix), "cfg.toml:2: [%s] %s must be ", o->section,
				 o->name);
		}
		cfg_write("cfg.toml", text);
		memset(&c, 0, sizeof(c));
		cr_assert_lt(config_load(&c, &cli, err, sizeof(err)), 0, "%s", text);
		cr_assert_eq(strncmp(err, prefix, strlen(prefix)), 0, "got [%s]", err);
	}
}

Test(config, environment_values)
{
	struct config_cli cli = { .config_path = "cfg.toml" };
	static const struct {
		const char *var, *value, *want;
	} bad[] = {
		{ "SFU_GATEWAY_PORT", "abc", "SFU_GATEWAY_PORT: not a number between 1 and 65535" },
		{ "SFU_GATEWAY_PORT", "0", "SFU_GATEWAY_PORT: not a number between 1 and 65535" },
		{ "SFU_GATEWAY_PORT", "-80", "SFU_GATEWAY_PORT: not a number between 1 and 65535" },
		{ "SFU_GATEWAY_PORT", "80 ", "SFU_GATEWAY_PORT: not a number between 1 and 65535" },
		{ "SFU_GATEWAY_PORT", "0x50",
		  "SFU_GATEWAY_PORT: not a number between 1 and 65535" },
		{ "SFU_GATEWAY_PORT", "99999999999999999999999",
		  "SFU_GATEWAY_PORT: not a number between 1 and 65535" },
		{ "SFU_GATEWAY_WORKERS", "1025",
		  "SFU_GATEWAY_WORKERS: not a number between 0 and 1024" },
		{ "SFU_GATEWAY_BIND", "example.com",
		  "SFU_GATEWAY_BIND: [gateway] bind is invalid: IPv4 or IPv6 address the gateway "
		  "listens on." },
		{ "SFU_GATEWAY_LOG_LEVEL", "chatty",
		  "SFU_GATEWAY_LOG_LEVEL: [gateway] log_level must be one of: error, warn, info, "
		  "debug" },
		{ "SFU_GATEWAY_KEY", "a",
		  "SFU_GATEWAY_KEY: [gateway] key is not valid base64 of 1 to 128 bytes" },
		{ "SFU_GATEWAY_REGISTRATION_KEY", "%%%%",
		  "SFU_GATEWAY_REGISTRATION_KEY: [registration] key is not valid base64 of 1 to "
		  "128 bytes" },
	};
	struct config c;

	cfg_write("cfg.toml", "[gateway]\nkey = \"" KEY_A "\"\n");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv(bad[i].var, bad[i].value, 1);
		cfg_assert_fails(&cli, bad[i].want);
		unsetenv(bad[i].var);
	}
	setenv("SFU_GATEWAY_PORT", "", 1);
	setenv("SFU_GATEWAY_WORKERS", "0", 1);
	setenv("SFU_GATEWAY_BIND", "[::]", 1);
	cfg_assert_ok(&c, &cli);
	cr_assert_eq(c.port, 8071);
	cr_assert_geq(c.workers, 1);
	cr_assert_str_eq(c.bind, "::");
	config_free(&c);
}

Test(config, trust_proxy_values)
{
	static const struct {
		const char *value;
		int want; /* -1: error */
	} cases[] = {
		{ "true", 1 }, { "1", 1 }, { "false", 0 }, { "0", 0 }, { "yes", -1 },
		{ "TRUE", -1 }, { " true", -1 }, { "2", -1 }, { "on", -1 },
	};
	struct config_cli cli = { .config_path = "cfg.toml" };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;

		/* The file says the opposite, so the variable visibly wins. */
		cfg_write("cfg.toml", cases[i].want == 0 ? "[gateway]\ntrust_proxy = true\n"
							 : "[gateway]\ntrust_proxy = false\n");
		setenv("SFU_GATEWAY_KEY", KEY_A, 1);
		setenv("SFU_GATEWAY_TRUST_PROXY", cases[i].value, 1);
		if (cases[i].want < 0) {
			cfg_assert_fails(&cli, "SFU_GATEWAY_TRUST_PROXY: expected true, false, 1 or 0");
			continue;
		}
		cfg_assert_ok(&c, &cli);
		cr_assert_eq(c.t.trust_proxy, (uint32_t)cases[i].want, "value %s", cases[i].value);
		config_free(&c);
	}
}

Test(config, cli_values)
{
	static const char *const bad_ports[] = { "abc", "0", "65536", "-1", "", " 80", "80x",
						 "+80", "1e3" };
	struct config_cli cli = { .config_path = "cfg.toml" };

	cfg_write("cfg.toml", "[gateway]\nkey = \"" KEY_A "\"\n");
	for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
		cli.port = bad_ports[i];
		cfg_assert_fails(&cli, "--port: not a number between 1 and 65535");
	}
	cli.port = NULL;
	cli.workers = "many";
	cfg_assert_fails(&cli, "--workers: not a number between 0 and 1024");
	cli.workers = NULL;
	cli.bind = "0.0.0.0.0";
	cfg_assert_fails(&cli, "--bind: [gateway] bind is invalid: IPv4 or IPv6 address the gateway "
			"listens on.");
	cli.bind = NULL;
	cli.log_level = "verbose";
	cfg_assert_fails(&cli, "--log-level: [gateway] log_level must be one of: error, warn, info, "
			"debug");
}

Test(config, errors_never_contain_key_material)
{
	/* Valid base64 characters, so a leak would show them verbatim. */
	static const char secret[] = "c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw";
	static const char *const files[] = {
		"[gateway]\nkey = \"%s!\"\n",
		"[gateway]\nkey = \"%s\\u00e9\"\n",
		"[gateway]\nport = \"%s\"\n",
		"[gateway]\nkey = %s\n",
		"[gateway]\nkey = [\"%s\"]\n",
		"[gateway]\nlog_level = \"%s\"\n",
		"[gateway]\nbind = \"%s\"\n",
		"[gateway]\npid_file = \"%s%0300d\"\n",
		"[registration]\nkey = \"%s===\"\n",
		"[registration]\nallow = [\"%s\"]\n",
		"[[sfu]]\naddress = \"%s\"\nkey = \"x\"\n",
		"[[sfu]]\naddress = \"http://a:1\"\nkey = \"%s!\"\n",
		"[[sfu]]\naddress = \"http://a:1\"\nkey = \"A\"\nregion = \"%s%070d\"\n",
		"[[sfu]]\naddress = \"http://a:1\"\nkey = \"%s\"\nmax_sessions = \"x\"\n",
		"[balancing]\nstrategy = \"%s\"\n",
		"[gateway]\nkey = \"%s\n",
		"[gateway]\nkey = '''%s'''\n",
		/* A misquoted line is one unknown key name: never echoed whole. */
		"[gateway]\n'key = \"%s\"' = 1\n",
		"[[sfu]]\naddress = \"http://a:1\"\nkey = \"A\"\n\"key = '%s'\" = 1\n",
		"'key = \"%s\"' = 1\n",
	};
	struct config_cli cli = { .config_path = "cfg.toml" };
	char text[1024], err[1024], env[256];
	struct config c;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(text, sizeof(text), files[i], secret, 0);
		cfg_write("cfg.toml", text);
		memset(&c, 0, sizeof(c));
		cr_assert_lt(config_load(&c, &cli, err, sizeof(err)), 0, "%s", text);
		cr_assert_neq(err[0], '\0');
		cr_assert_null(strstr(err, secret), "leak: %s", err);
		cr_assert_null(strchr(err, '\n'), "two lines: %s", err);
	}
	cfg_write("cfg.toml", "");
	snprintf(env, sizeof(env), "%s!", secret);
	setenv("SFU_GATEWAY_KEY", env, 1);
	cr_assert_lt(config_load(&c, &cli, err, sizeof(err)), 0);
	cr_assert_null(strstr(err, secret), "leak: %s", err);
	setenv("SFU_GATEWAY_KEY", secret, 1);
	snprintf(env, sizeof(env), "{\"sfu\":[{\"address\":\"http://a:1\",\"key\":\"%s!\"}]}",
		 secret);
	setenv("SFU_GATEWAY_NODES", env, 1);
	cr_assert_lt(config_load(&c, &cli, err, sizeof(err)), 0);
	cr_assert_null(strstr(err, secret), "leak: %s", err);
	unsetenv("SFU_GATEWAY_NODES");
	cli.port = secret;
	cr_assert_lt(config_load(&c, &cli, err, sizeof(err)), 0);
	cr_assert_null(strstr(err, secret), "leak: %s", err);
}

Test(config, small_error_buffers)
{
	struct config_cli cli = { .config_path = "cfg.toml" };
	struct config c;
	char err[6];

	cfg_write("cfg.toml", "[gateway]\nport = 0\n");
	memset(err, 'x', sizeof(err));
	cr_assert_lt(config_load(&c, &cli, err, sizeof(err)), 0);
	cr_assert_str_eq(err, "cfg.t");
	cr_assert_lt(config_load(&c, &cli, err, 0), 0);
	cli.config_path = "absent.toml";
	cr_assert_lt(config_load(&c, &cli, err, sizeof(err)), 0);
	cr_assert_str_eq(err, "absen");
}

/* xorshift32 keeps the garbage reproducible. */
static uint32_t cfg_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

Test(config, garbage_files_never_crash, .timeout = 60)
{
	static const char doc[] = "[gateway]\nkey = \"" KEY_A "\"\nport = 8071\nbind = \"::1\"\n"
				  "[registration]\nallow = [\"10.0.0.0/8\"]\n"
				  "[balancing.weights]\ncpu = 0.3\n"
				  "[[sfu]]\naddress = \"http://a:1\"\nkey = \"" KEY_A "\"\n";
	struct config_cli cli = { .config_path = "cfg.toml" };
	uint32_t seed = 0xC0FFEE;
	char buf[sizeof(doc)];

	/* Mutated keys may turn short: their warnings are expected, not interesting. */
	log_set_level(LOG_LEVEL_ERROR);
	for (int round = 0; round < 3000; round++) {
		size_t n = sizeof(doc) - 1;
		struct config c;
		char err[1024];
		int rc;

		memcpy(buf, doc, sizeof(doc));
		for (int k = 0; k < 1 + round % 4; k++)
			buf[cfg_rand(&seed) % n] = (char)(cfg_rand(&seed) % 255 + 1);
		buf[n - cfg_rand(&seed) % 8] = '\0';
		cfg_write("cfg.toml", buf);
		memset(&c, 0, sizeof(c));
		rc = config_load(&c, &cli, err, sizeof(err));
		if (rc == 0) {
			config_free(&c);
			continue;
		}
		cr_assert_neq(err[0], '\0');
		cr_assert_null(strchr(err, '\n'), "two lines: %s", err);
	}
}

/* Uncomments "# name = ..." and "# [section]" lines: the example's optional settings. */
static char *cfg_uncomment(const char *text)
{
	char *out = malloc(strlen(text) + 1), *o = out;
	const char *line = text;

	cr_assert_not_null(out);
	while (*line != '\0') {
		const char *end = strchr(line, '\n'), *p = line;
		size_t len = end ? (size_t)(end - line + 1) : strlen(line);

		if (p[0] == '#') {
			const char *q = p + 1 + (p[1] == ' ');
			const char *r = q;

			while ((*r >= 'a' && *r <= 'z') || *r == '_')
				r++;
			while (*r == ' ')
				r++;
			if (*q == '[' || (r > q && *r == '='))
				p = q;
		}
		memcpy(o, p, len - (size_t)(p - line));
		o += len - (size_t)(p - line);
		line += len;
	}
	*o = '\0';
	return out;
}

static const struct toml_table *cfg_section(const struct toml_table *doc, const char *section)
{
	const struct toml_value *v;
	char name[64], *dot;

	if (strcmp(section, "sfu") == 0) {
		v = toml_get(doc, "sfu");
		cr_assert(v != NULL && v->type == TOML_ARRAY && v->u.arr.n == 1,
			  "the example has one commented [[sfu]]");
		return v->u.arr.items[0]->u.tab;
	}
	snprintf(name, sizeof(name), "%s", section);
	dot = strchr(name, '.');
	if (dot != NULL)
		*dot = '\0';
	v = toml_get(doc, name);
	cr_assert(v != NULL && v->type == TOML_TABLE, "section [%s] missing", section);
	if (dot == NULL)
		return v->u.tab;
	v = toml_get(v->u.tab, dot + 1);
	cr_assert(v != NULL && v->type == TOML_TABLE, "section [%s] missing", section);
	return v->u.tab;
}

Test(config, example_config_lists_every_option_with_its_default)
{
	char path[PATH_MAX + 32], err[1024];
	struct toml_table *doc = NULL, *all = NULL;
	char *text, *uncommented;
	long size;
	FILE *f;

	snprintf(path, sizeof(path), "%s/etc/sfu-gateway.toml", cfg_root);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)size + 1);
	cr_assert_not_null(text);
	cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
	fclose(f);

	cr_assert_eq(toml_parse_string(text, path, &doc, err, sizeof(err)), 0, "%s", err);
	uncommented = cfg_uncomment(text);
	cr_assert_eq(toml_parse_string(uncommented, "uncommented", &all, err, sizeof(err)), 0,
		     "%s", err);
	for (const struct config_option *o = config_options; o->name != NULL; o++) {
		const struct toml_value *v = toml_get(cfg_section(all, o->section), o->name);
		const struct toml_value *d;
		struct toml_table *dt = NULL;
		char dtext[200];

		cr_assert_not_null(v, "[%s] %s is not in the example", o->section, o->name);
		if (o->default_text[0] == '\0' || strcmp(o->section, "sfu") == 0)
			continue;
		/* The value shown is the default, in the table's own words. */
		snprintf(dtext, sizeof(dtext), "v = %s", o->default_text);
		cr_assert_eq(toml_parse_string(dtext, "default", &dt, err, sizeof(err)), 0, "%s",
			     err);
		d = toml_get(dt, "v");
		cr_assert_eq(v->type, d->type, "[%s] %s", o->section, o->name);
		if (d->type == TOML_STRING)
			cr_assert_str_eq(v->u.s, d->u.s, "[%s] %s", o->section, o->name);
		else if (d->type == TOML_INT)
			cr_assert_eq(v->u.i, d->u.i, "[%s] %s", o->section, o->name);
		else if (d->type == TOML_FLOAT)
			cr_assert_float_eq(v->u.f, d->u.f, 1e-12, "[%s] %s", o->section, o->name);
		else if (d->type == TOML_BOOL)
			cr_assert_eq(v->u.b, d->u.b, "[%s] %s", o->section, o->name);
		else
			cr_assert_eq(v->u.arr.n, d->u.arr.n, "[%s] %s", o->section, o->name);
		toml_free(dt);
	}
	toml_free(all);
	toml_free(doc);
	free(uncommented);
	free(text);
}

Test(config, example_config_loads_to_the_defaults)
{
	struct config_cli example = { .config_path = NULL }, none = { .config_path = "empty.toml" };
	char path[PATH_MAX + 32];
	struct config a, b;

	snprintf(path, sizeof(path), "%s/etc/sfu-gateway.toml", cfg_root);
	example.config_path = path;
	cfg_write("empty.toml", "");
	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	cfg_assert_ok(&a, &example);
	cfg_assert_ok(&b, &none);
	cr_assert_str_eq(a.config_path, path);
	cr_assert_eq(a.n_sfus, 0);
	for (const struct config_option *o = config_options; o->name != NULL; o++) {
		if (strcmp(o->section, "sfu") == 0)
			continue;
		cr_assert_eq(memcmp((char *)&a + o->offset, (char *)&b + o->offset, o->size), 0,
			     "[%s] %s differs from its default", o->section, o->name);
		if (o->len_size != 0)
			cr_assert_eq(memcmp((char *)&a + o->len_offset, (char *)&b + o->len_offset,
					    o->len_size), 0, "[%s] %s", o->section, o->name);
	}
	config_free(&a);
	config_free(&b);
}

Test(config, secrets_example_parses)
{
	struct config_cli cli = { .config_path = "empty.toml" };
	char path[PATH_MAX + 32], want[PATH_MAX + 128];

	snprintf(path, sizeof(path), "%s/etc/secrets.toml.example", cfg_root);
	cli.secrets_path = path;
	cfg_write("empty.toml", "");
	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	/* Its keys are placeholders: loading it unchanged must stop at the first one. */
	snprintf(want, sizeof(want),
		 "%s:13: sfu[0] (http://10.0.0.1:8070): key is not valid base64 of 1 to 128 bytes",
		 path);
	cfg_assert_fails(&cli, want);
}

/* ---- [registry] */

Test(config, registry_url_is_normalised_and_checked)
{
	struct config c;

	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	cfg_ok_file(&c, "[registry]\nurl = \"HTTP://Odoo.Example.com:80/sfu-list?db=x&a=1\"\n");
	cr_assert_str_eq(c.t.registry_url, "http://odoo.example.com/sfu-list?db=x&a=1");
	config_free(&c);
	cfg_ok_file(&c, "[registry]\nurl = \"http://[::1]:8069\"\n");
	cr_assert_str_eq(c.t.registry_url, "http://[::1]:8069/");
	config_free(&c);
	cfg_ok_file(&c, "[registry]\nurl = \"http://10.0.0.1:8069?x=1\"\n");
	cr_assert_str_eq(c.t.registry_url, "http://10.0.0.1:8069/?x=1");
	config_free(&c);
	cfg_ok_file(&c, "");
	cr_assert_str_eq(c.t.registry_url, "", "off by default");
	cr_assert_eq(c.t.registry_poll_ms, 5000);
	config_free(&c);
	/* Credentials belong in [registry] token; fragments and spaces nowhere. */
	cfg_assert_fails_file("[registry]\nurl = \"http://user:pw@odoo/list\"\n",
			      "cfg.toml:2: [registry] url is invalid: URL of an external registry's "
			      "SFU list, http(s)://host[:port]/path, polled with If-None-Match; empty "
			      "for none.");
	cfg_assert_fails_file("[registry]\nurl = \"http://odoo/list#x\"\n",
			      "cfg.toml:2: [registry] url is invalid: URL of an external registry's "
			      "SFU list, http(s)://host[:port]/path, polled with If-None-Match; empty "
			      "for none.");
	cfg_assert_fails_file("[registry]\nurl = \"odoo/list\"\n",
			      "cfg.toml:2: [registry] url is invalid: URL of an external registry's "
			      "SFU list, http(s)://host[:port]/path, polled with If-None-Match; empty "
			      "for none.");
	cfg_assert_fails_file("[registry]\nurl = \"http://odoo/a list\"\n",
			      "cfg.toml:2: [registry] url is invalid: URL of an external registry's "
			      "SFU list, http(s)://host[:port]/path, polled with If-None-Match; empty "
			      "for none.");
}

/* https wherever an address is given: static SFUs (verified unless their tls_verify
 * says otherwise) and the external registry. */
Test(config, https_addresses_and_tls_verify)
{
	struct config c;

	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	cfg_ok_file(&c, "[registry]\nurl = \"https://Odoo.example.com:443/sfu-list\"\n"
			"[[sfu]]\naddress = \"https://a\"\nkey = \"" KEY_A "\"\n"
			"[[sfu]]\naddress = \"https://b:8443\"\nkey = \"" KEY_A "\"\n"
			"tls_verify = false\n");
	cr_assert_str_eq(c.t.registry_url, "https://odoo.example.com/sfu-list");
	cr_assert_eq(c.n_sfus, 2);
	cr_assert_str_eq(c.sfus[0].address, "https://a");
	cr_assert_eq(c.sfus[0].tls_verify, 1);
	cr_assert_str_eq(c.sfus[1].address, "https://b:8443");
	cr_assert_eq(c.sfus[1].tls_verify, 0);
	config_free(&c);
}

Test(config, registry_token_is_one_header_value_and_never_echoed)
{
	struct config c;
	char err[1024];
	struct config_cli cli = { .config_path = "cfg.toml" };

	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	cfg_ok_file(&c, "[registry]\nurl = \"http://odoo/l\"\ntoken = \"abc.DEF-_~+/9==\"\n");
	cr_assert_str_eq(c.t.registry_token, "abc.DEF-_~+/9==");
	config_free(&c);
	/* A CR/LF would split the header: refused, and the message does not echo it. */
	cfg_write("cfg.toml", "[registry]\ntoken = \"secret\\r\\nX-Evil: 1\"\n");
	memset(&c, 0, sizeof(c));
	cr_assert_lt(config_load(&c, &cli, err, sizeof(err)), 0);
	cr_assert_null(strstr(err, "secret"), "%s", err);
	cr_assert_null(strstr(err, "Evil"), "%s", err);
	cr_assert_not_null(strstr(err, "[registry] token is invalid"), "%s", err);
	/* The same rule as [observability] token: one header value, no spaces. */
	cfg_ok_file(&c, "[registry]\ntoken = \"a=b\"\n");
	config_free(&c);
	cfg_assert_fails_file("[registry]\ntoken = \"a b\"\n",
			      "cfg.toml:2: [registry] token is invalid: Bearer token the registry "
			      "requires (sent as Authorization: Bearer): printable ASCII without "
			      "spaces; none when unset.");
}

Test(config, registration_sfu_networks)
{
	struct config c;

	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	cfg_ok_file(&c, "[registration]\nsfu_networks = [\"10.0.0.0/8\", \"fd00::/8\", "
			"\"169.254.0.0/16\"]\n");
	cr_assert_eq(c.t.n_sfu_networks, 3);
	cr_assert_eq(c.t.sfu_networks[0].family, AF_INET);
	cr_assert_eq(c.t.sfu_networks[0].prefix, 8);
	cr_assert_eq(c.t.sfu_networks[1].family, AF_INET6);
	cr_assert_eq(c.t.n_allow, 0, "allow is another list");
	config_free(&c);
	cfg_assert_fails_file("[registration]\nsfu_networks = [\"10.0.0.0/33\"]\n",
			      "cfg.toml:2: [registration] sfu_networks[0] is not a CIDR string "
			      "such as \"10.0.0.0/8\"");
	cfg_assert_fails_file("[registration]\nsfu_networks = [\"sfu.example.com\"]\n",
			      "cfg.toml:2: [registration] sfu_networks[0] is not a CIDR string "
			      "such as \"10.0.0.0/8\"");
}

/* ---- [cluster] */

Test(config, cluster_endpoints_and_prefix)
{
	struct config c;

	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	cfg_ok_file(&c, "");
	cr_assert_eq(c.t.cluster_n_etcd, 0, "off by default");
	cr_assert_str_eq(c.t.cluster_prefix, "/sfu-gateway/");
	cr_assert_eq(c.t.cluster_hold_ms, 300000);
	config_free(&c);
	cfg_ok_file(&c, "[cluster]\netcd = [\"HTTP://Etcd-1.example:2379\", \"http://[::1]:2379\"]\n"
			"prefix = \"/calls/eu/\"\nclaim_timeout_ms = 150\n");
	cr_assert_eq(c.t.cluster_n_etcd, 2);
	cr_assert_str_eq(c.t.cluster_etcd[0], "http://etcd-1.example:2379");
	cr_assert_str_eq(c.t.cluster_etcd[1], "http://[::1]:2379");
	cr_assert_str_eq(c.t.cluster_prefix, "/calls/eu/");
	cr_assert_eq(c.t.cluster_claim_timeout_ms, 150);
	config_free(&c);
	cfg_assert_fails_file("[cluster]\netcd = \"http://e:2379\"\n",
			      "cfg.toml:2: [cluster] etcd must be an array of strings, not a string");
	cfg_assert_fails_file("[cluster]\netcd = [2379]\n",
			      "cfg.toml:2: [cluster] etcd[0] must be a string");
	cfg_assert_fails_file("[cluster]\netcd = [\"http://e:2379/v3\"]\n",
			      "cfg.toml:2: [cluster] etcd[0] is invalid: etcd endpoints, "
			      "http(s)://host:port, through which gateways share registrations and "
			      "issuer affinity, tried in turn; empty runs the gateway alone.");
	cfg_assert_fails_file("[cluster]\netcd = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", "
			      "\"h\", \"i\"]\n",
			      "cfg.toml:2: [cluster] etcd has more than 8 entries");
	cfg_assert_fails_file("[cluster]\nprefix = \"a b\"\n",
			      "cfg.toml:2: [cluster] prefix is invalid: Prefix of every key the "
			      "cluster keeps in etcd: gateways with the same prefix share their "
			      "SFUs; printable ASCII without spaces, up to 100 bytes.");
	cfg_assert_fails_file("[cluster]\nprefix = \"\"\n",
			      "cfg.toml:2: [cluster] prefix is invalid: Prefix of every key the "
			      "cluster keeps in etcd: gateways with the same prefix share their "
			      "SFUs; printable ASCII without spaces, up to 100 bytes.");
}

/* https etcd endpoints are accepted (verified as https SFUs are) and normalised. */
Test(config, cluster_https_endpoints)
{
	struct config_cli cli = { .config_path = "cfg.toml" };
	char err[512];
	struct config c;

	setenv("SFU_GATEWAY_KEY", KEY_A, 1);
	cfg_write("cfg.toml", "[cluster]\netcd = [\"HTTPS://Etcd.Example:2379/\", \"http://10.0.0.6:2379\"]\n");
	memset(&c, 0, sizeof(c));
	cr_assert_eq(config_load(&c, &cli, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.t.cluster_n_etcd, 2);
	cr_assert_str_eq(c.t.cluster_etcd[0], "https://etcd.example:2379");
	cr_assert_str_eq(c.t.cluster_etcd[1], "http://10.0.0.6:2379");
	config_free(&c);
}
