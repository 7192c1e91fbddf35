/* Fuzz target: config_load with the input as the config file, read from a memfd. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"

/*
 * The input reaches config_load as its --config file through an anonymous
 * memory file (memfd_create), so nothing is written to disk and nothing is
 * left behind. --secrets is /dev/null, an empty file, so that a secrets.toml
 * in the working directory is never read; the SFU_GATEWAY_* variables are
 * removed from this process at start so that only the input decides.
 */

static int fuzz_fd = -1;
static char fuzz_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const vars[] = {
		"SFU_GATEWAY_BIND", "SFU_GATEWAY_PORT", "SFU_GATEWAY_KEY",
		"SFU_GATEWAY_TRUST_PROXY", "SFU_GATEWAY_REGISTRATION_KEY", "SFU_GATEWAY_WORKERS",
		"SFU_GATEWAY_LOG_LEVEL", "SFU_GATEWAY_NODES",
	};

	(void)argc;
	(void)argv;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	/* Short keys are accepted with a warning: not worth a line per input. */
	log_set_level(LOG_LEVEL_ERROR);
	fuzz_fd = memfd_create("sfu-gateway-fuzz-config", MFD_CLOEXEC);
	FUZZ_CHECK(fuzz_fd >= 0);
	snprintf(fuzz_path, sizeof(fuzz_path), "/proc/self/fd/%d", fuzz_fd);
	return 0;
}

static size_t fuzz_count(const char *text, size_t len, const char *v, size_t vl)
{
	size_t n = 0;

	for (const char *p = text; (p = memmem(p, len - (size_t)(p - text), v, vl)) != NULL; p++)
		n++;
	return n;
}

/* Whether the quoted value of a "key = ..." line shows up in the error
 * message: secrets are never quoted. Values of 8 bytes or less, or that
 * appear elsewhere in the input (an address, say), are not counted. */
static bool fuzz_err_quotes_key(const char *text, size_t len, const char *err)
{
	const char *end_text = text + len;

	for (const char *p = text; (p = memmem(p, (size_t)(end_text - p), "key", 3)) != NULL;
	     p += 3) {
		const char *v = p + 3, *end;
		char q;

		while (v < end_text && (*v == ' ' || *v == '\t'))
			v++;
		if (v >= end_text || *v++ != '=')
			continue;
		while (v < end_text && (*v == ' ' || *v == '\t'))
			v++;
		if (v >= end_text || (*v != '"' && *v != '\''))
			continue;
		q = *v++;
		end = memchr(v, q, (size_t)(end_text - v));
		if (end == NULL || end - v <= 8 || fuzz_count(text, len, v, (size_t)(end - v)) > 1)
			continue;
		if (memmem(err, strlen(err), v, (size_t)(end - v)) != NULL)
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_cli cli = { .config_path = fuzz_path, .secrets_path = "/dev/null" };
	struct config cfg, before;
	char err[256];
	int rc;

	if (size > 65536)
		return 0;
	FUZZ_CHECK(ftruncate(fuzz_fd, 0) == 0);
	FUZZ_CHECK(pwrite(fuzz_fd, data, size, 0) == (ssize_t)size);
	memset(&cfg, 0xa5, sizeof(cfg));
	before = cfg;
	rc = config_load(&cfg, &cli, err, sizeof(err));
	if (rc != 0) {
		FUZZ_CHECK(rc < 0);
		/* A failed load leaves the running config as it was. */
		FUZZ_CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);
		FUZZ_CHECK(err[0] != '\0');
		for (const char *p = err; *p != '\0'; p++)
			FUZZ_CHECK(fuzz_one_line_char(*p));
		FUZZ_CHECK(!fuzz_err_quotes_key((const char *)data, size, err));
		return 0;
	}
	FUZZ_CHECK(cfg.t.key_len >= 1 && cfg.t.key_len <= CONFIG_KEY_MAX);
	FUZZ_CHECK(cfg.t.registration_key_len >= 1 &&
		   cfg.t.registration_key_len <= CONFIG_KEY_MAX);
	FUZZ_CHECK(cfg.workers >= 1 && cfg.port >= 1);
	FUZZ_CHECK(cfg.n_sfus <= cfg.max_sfus && (cfg.n_sfus == 0 || cfg.sfus != NULL));
	FUZZ_CHECK(cfg.t.n_allow <= CONFIG_ALLOW_MAX);
	FUZZ_CHECK(strcmp(cfg.config_path, fuzz_path) == 0);
	for (size_t i = 0; i < cfg.n_sfus; i++) {
		const struct config_sfu *s = &cfg.sfus[i];
		char again[CONFIG_ADDRESS_MAX];

		FUZZ_CHECK(s->key_len >= 1 && s->key_len <= CONFIG_KEY_MAX);
		FUZZ_CHECK(strlen(s->region) < CONFIG_REGION_MAX);
		/* A normalised address is a fixed point of the normalisation. */
		FUZZ_CHECK(address_parse(s->address, again, sizeof(again)) == 0);
		FUZZ_CHECK(strcmp(again, s->address) == 0);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(cfg.sfus[j].address, s->address) != 0);
	}
	config_free(&cfg);
	return 0;
}
