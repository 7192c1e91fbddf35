/* Cluster status: the etcd connection's state in shared memory, written by the reaper, read by workers, health and metrics. */
#include "clusterstatus.h"

#include <string.h>

void clusterstatus_publish(struct clusterstatus *s, const struct clusterstatus_data *d)
{
	/* The reaper is the only writer, and a respawned one may find its
	 * predecessor's section still open. */
	seqlock_write_restarted(&s->seq, s->words, d, CLUSTERSTATUS_WORDS);
}

int clusterstatus_read(const struct clusterstatus *s, struct clusterstatus_data *out)
{
	int rc = seqlock_read(&s->seq, s->words, CLUSTERSTATUS_WORDS, out);

	if (rc != 0)
		return rc;
	out->endpoint_url[sizeof(out->endpoint_url) - 1] = '\0';
	out->last_error[sizeof(out->last_error) - 1] = '\0';
	return 0;
}

const char *clusterstatus_state_name(enum cluster_state st)
{
	switch (st) {
	case CLUSTER_CONNECTING: return "connecting";
	case CLUSTER_OK: return "ok";
	case CLUSTER_DEGRADED: return "degraded";
	case CLUSTER_OFF: break;
	}
	return "off";
}
