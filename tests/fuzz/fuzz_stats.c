/* Fuzz target: the odoo/sfu GET /v1/stats body parser (probe_parse_stats). */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "probe.h"

/* The body comes from an SFU, so from the network: a buffer of exactly len
 * bytes, without a NUL after it, as the HTTP client may hand it over. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t channels = 0xdeadbeef, sessions = 0xdeadbeef;
	char *body;
	int rc;

	if (size > 1 << 20)
		return 0;
	body = malloc(size > 0 ? size : 1);
	FUZZ_CHECK(body != NULL);
	memcpy(body, data, size);
	rc = probe_parse_stats(body, size, &channels, &sessions);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc != 0)
		FUZZ_CHECK(channels == 0xdeadbeef && sessions == 0xdeadbeef);
	/* Every channel is at least "{}," or "1,": three bytes, or two. */
	else
		FUZZ_CHECK(channels <= size / 2 + 1);
	free(body);
	return 0;
}
