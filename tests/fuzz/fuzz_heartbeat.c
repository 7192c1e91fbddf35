/* Fuzz target: the POST /v1/sfu body parser and validator (heartbeat_parse). */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "heartbeat.h"
#include "region.h"

/* The daemon's bodies are NUL-terminated (http_server copies them), but the
 * parser must not need it: it gets a buffer of exactly len bytes here. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct heartbeat hb;
	char *body, err[160];
	int rc;

	if (size > 65536)
		return 0;
	body = malloc(size > 0 ? size : 1);
	FUZZ_CHECK(body != NULL);
	memcpy(body, data, size);
	memset(err, 0, sizeof(err));
	rc = heartbeat_parse(body, size, &hb, err, sizeof(err));
	if (rc != 0) {
		FUZZ_CHECK(rc == -EINVAL);
		FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
		for (const char *p = err; *p != '\0'; p++)
			FUZZ_CHECK(fuzz_one_line_char(*p));
		free(body);
		return 0;
	}
	{
		char again[CONFIG_ADDRESS_MAX];

		/* The address is normalised: normalising it again changes nothing. */
		FUZZ_CHECK(address_parse(hb.address, again, sizeof(again)) == 0);
		FUZZ_CHECK(strcmp(again, hb.address) == 0);
	}
	if (hb.up) {
		size_t n = strlen(hb.region);

		/* The region is optional; when given it follows the rule. */
		FUZZ_CHECK(n == 0 || region_name_valid(hb.region));
		FUZZ_CHECK(hb.key_len >= 1 && hb.key_len <= CONFIG_KEY_MAX);
		FUZZ_CHECK(hb.load.cpu >= 0.0 && hb.load.cpu <= 1.0);
		FUZZ_CHECK(hb.load.memory >= 0.0 && hb.load.memory <= 1.0);
	}
	free(body);
	return 0;
}
