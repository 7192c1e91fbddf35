/* Registry status: the external registry source's state in shared memory, written by the reaper, read by health and metrics. */
#include "regstatus.h"

#include <string.h>

void regstatus_publish(struct regstatus *s, const struct regstatus_data *d)
{
	/* The reaper is the only writer, and a respawned one may find its
	 * predecessor's section still open. */
	seqlock_write_restarted(&s->seq, s->words, d, REGSTATUS_WORDS);
}

int regstatus_read(const struct regstatus *s, struct regstatus_data *out)
{
	int rc = seqlock_read(&s->seq, s->words, REGSTATUS_WORDS, out);

	if (rc != 0)
		return rc;
	out->url[sizeof(out->url) - 1] = '\0';
	out->etag[sizeof(out->etag) - 1] = '\0';
	out->last_error[sizeof(out->last_error) - 1] = '\0';
	return 0;
}

enum regstatus_state regstatus_state(const struct regstatus_data *d, int64_t now_ms,
				     uint32_t stale_after_ms)
{
	if (!d->configured)
		return REGSTATUS_OFF;
	if (d->last_success_ms == 0)
		return d->last_error_ms == 0 ? REGSTATUS_PENDING : REGSTATUS_FAILING;
	if (now_ms - d->last_success_ms > (int64_t)stale_after_ms)
		return REGSTATUS_STALE;
	return d->last_ok ? REGSTATUS_OK : REGSTATUS_FAILING;
}

const char *regstatus_state_name(enum regstatus_state st)
{
	switch (st) {
	case REGSTATUS_PENDING: return "pending";
	case REGSTATUS_OK: return "ok";
	case REGSTATUS_FAILING: return "failing";
	case REGSTATUS_STALE: return "stale";
	case REGSTATUS_OFF: break;
	}
	return "off";
}
