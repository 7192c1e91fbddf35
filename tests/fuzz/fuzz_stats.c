/* Fuzz target: the odoo/sfu GET /v1/stats reader (stats.c), whole and in pieces. */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "stats.h"

/*
 * The body comes from an SFU, so from the network: a buffer of exactly len
 * bytes, without a NUL after it. The streaming reader must give the same
 * verdict and counts whatever the pieces the body arrives in; the split
 * point is taken from the input's first byte.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t channels = 0xdeadbeef, sessions = 0xdeadbeef, c2 = 0, s2 = 0;
	struct stats_parser p;
	size_t split;
	char *body;
	int rc, rc2;

	if (size > 1 << 20)
		return 0;
	body = malloc(size > 0 ? size : 1);
	FUZZ_CHECK(body != NULL);
	memcpy(body, data, size);
	rc = stats_parse(body, size, &channels, &sessions);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc != 0)
		FUZZ_CHECK(channels == 0xdeadbeef && sessions == 0xdeadbeef);
	/* Every channel is at least "{}," or "1,": three bytes, or two. */
	else
		FUZZ_CHECK(channels <= size / 2 + 1);
	split = size > 0 ? data[0] % (size + 1) : 0;
	stats_init(&p);
	rc2 = stats_feed(&p, body, split);
	if (rc2 == 0)
		rc2 = stats_feed(&p, body + split, size - split);
	if (rc2 == 0)
		rc2 = stats_finish(&p, &c2, &s2);
	FUZZ_CHECK(rc2 == rc);
	if (rc == 0)
		FUZZ_CHECK(c2 == channels && s2 == sessions);
	free(body);
	return 0;
}
