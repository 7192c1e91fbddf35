/* etcd: the v3 API as its HTTP/JSON gateway speaks it: keys, request bodies and answers. */
#ifndef SFU_ETCD_H
#define SFU_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clusterq.h"
#include "config.h"
#include "strbuf.h"

struct json_object;

/*
 * The gateway's keys under [cluster] prefix P:
 *   P "sfus/" address        one registered SFU: etcd_reg_value(), under a lease
 *                            of [registration] stale_after_ms (cluster.c);
 *   P "affinity/" 16 hex     one issuer's claim (affinity_key() of client and
 *                            iss): the SFU's address, under a lease of
 *                            [affinity] ttl_ms (claim.c).
 * In the JSON gateway keys and values travel base64 and 64-bit integers as
 * strings; members equal to their default (0, false, "") are left out.
 */
#define ETCD_KEY_MAX (CONFIG_PREFIX_MAX + 16 + CONFIG_ADDRESS_MAX)
#define ETCD_SFUS "sfus/"
#define ETCD_AFFINITY "affinity/"

enum etcd_key_kind { ETCD_KEY_OTHER = 0, ETCD_KEY_SFU = 1, ETCD_KEY_AFFINITY = 2 };

/* P "sfus/" address into out. Length, or -ENOSPC. */
int etcd_sfu_key(const char *prefix, const char *address, char *out, size_t outlen);
/* P "affinity/" and key as 16 lower-case hex digits. Length, or -ENOSPC. */
int etcd_affinity_key(const char *prefix, uint64_t key, char *out, size_t outlen);
/* What a key (len bytes, not NUL-terminated) names: an SFU (its address into
 * address, NUL-terminated), an affinity claim (its key into *aff), or other. */
enum etcd_key_kind etcd_key_parse(const char *prefix, const char *key, size_t len, char *address,
				  size_t addrlen, uint64_t *aff);

/* Appends "base64 of n bytes at p" (quoted) to b. */
void etcd_b64(struct strbuf *b, const void *p, size_t n);
/* Appends the quoted base64 of the end of the range of keys starting with
 * prefix (prefix with its last byte plus one), for range and watch requests. */
void etcd_b64_prefix_end(struct strbuf *b, const char *prefix);

/* A registration's value: the heartbeat's body (the same members and rules,
 * read back with heartbeat_parse) with the token's "seq". */
void etcd_reg_value(struct strbuf *b, const struct clusterq_entry *e);

/* A 64-bit member (a JSON string of digits, or a number); 0 when absent or
 * not a number (proto3 leaves zero values out). */
int64_t etcd_int(struct json_object *o, const char *name);
/* Whether a member is there and not zero: for unsigned 64-bit IDs (a member's,
 * the leader's) that do not fit etcd_int. */
bool etcd_nonzero(struct json_object *o, const char *name);
/* A boolean member; false when absent. */
bool etcd_bool(struct json_object *o, const char *name);
/* A base64 member decoded into out (at most cap bytes; NUL-terminated when
 * room is left). Length, 0 when absent, or -EINVAL (not base64, too long). */
int etcd_bytes(struct json_object *o, const char *name, char *out, size_t cap);
/* The gateway's error answer's message ("error" or "message"), "" when none. */
const char *etcd_error(struct json_object *o);

#endif
