/* Registry document: an external registry's SFU list, parsed strictly and within bounds. */
#ifndef SFU_REGDOC_H
#define SFU_REGDOC_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/* What a parsed list holds: records as registry_apply_source takes them. */
struct regdoc {
	struct sfu_record *recs; /* the SFUs with status "up", in document order */
	size_t n;
	size_t listed; /* entries in the document, "down" ones included */
};

/*
 * Parses body[0..len): the JSON of SFU_GATEWAY_NODES, {"sfu": [{"address",
 * "region", "key", "max_sessions"}]}, checked by the same rules (config.c),
 * where each entry may also carry the heartbeat's fields: "status" ("up" or
 * "down"; a "down" entry is left out of the set), and load: "channels" and
 * "sessions" together, with optional "cpuUsage", "memoryUsage", and
 * "maxSessions" (a capacity, instead of "max_sessions"). Nothing else is
 * accepted: unknown members, trailing bytes other than white space, invalid
 * UTF-8, more than max_sfus entries, a key that does not decode, an address
 * or region that is not valid, an address listed twice: the whole document is
 * refused. 0 with *doc filled (free with regdoc_free), or -EINVAL with err
 * naming the first problem (never a key), -ENOMEM.
 */
int regdoc_parse(const char *body, size_t len, uint32_t max_sfus, struct regdoc *doc, char *err,
		 size_t errlen);
/* Wipes (keys) and frees what regdoc_parse gave; a zeroed doc is fine. */
void regdoc_free(struct regdoc *doc);

#endif
