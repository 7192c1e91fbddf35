/* etcd: the v3 API as its HTTP/JSON gateway speaks it: keys, request bodies and answers. */
#include "etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

int etcd_sfu_key(const char *prefix, const char *address, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s" ETCD_SFUS "%s", prefix, address);

	return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}

int etcd_affinity_key(const char *prefix, uint64_t key, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s" ETCD_AFFINITY "%016" PRIx64, prefix, key);

	return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}

enum etcd_key_kind etcd_key_parse(const char *prefix, const char *key, size_t len, char *address,
				  size_t addrlen, uint64_t *aff)
{
	size_t pl = strlen(prefix), sl = sizeof(ETCD_SFUS) - 1, al = sizeof(ETCD_AFFINITY) - 1;

	if (len < pl || memcmp(key, prefix, pl) != 0)
		return ETCD_KEY_OTHER;
	key += pl;
	len -= pl;
	if (len > sl && memcmp(key, ETCD_SFUS, sl) == 0) {
		if (len - sl >= addrlen || memchr(key + sl, '\0', len - sl) != NULL)
			return ETCD_KEY_OTHER;
		memcpy(address, key + sl, len - sl);
		address[len - sl] = '\0';
		return ETCD_KEY_SFU;
	}
	if (len == al + 16 && memcmp(key, ETCD_AFFINITY, al) == 0) {
		uint64_t v = 0;

		for (size_t i = al; i < len; i++) {
			char ch = key[i];

			if (ch >= '0' && ch <= '9')
				v = v << 4 | (uint64_t)(ch - '0');
			else if (ch >= 'a' && ch <= 'f')
				v = v << 4 | (uint64_t)(ch - 'a' + 10);
			else
				return ETCD_KEY_OTHER;
		}
		*aff = v;
		return ETCD_KEY_AFFINITY;
	}
	return ETCD_KEY_OTHER;
}

void etcd_b64(struct strbuf *b, const void *p, size_t n)
{
	size_t cap = ((n + 2) / 3) * 4 + 1;
	char small[1024], *out = cap <= sizeof(small) ? small : malloc(cap);

	if (out == NULL) {
		b->failed = true;
		return;
	}
	if (base64_encode(p, n, out, cap) < 0) {
		b->failed = true;
	} else {
		STRBUF_LIT(b, "\"");
		strbuf_puts(b, out);
		STRBUF_LIT(b, "\"");
	}
	/* The bytes may be a key (registration values carry the SFU's). */
	explicit_bzero(out, cap < sizeof(small) ? cap : sizeof(small));
	if (out != small)
		free(out);
}

void etcd_b64_prefix_end(struct strbuf *b, const char *prefix)
{
	char end[CONFIG_PREFIX_MAX];
	size_t n = strlen(prefix);

	/* Prefixes are printable ASCII (config.c), so the last byte never wraps. */
	if (n == 0 || n >= sizeof(end)) {
		b->failed = true;
		return;
	}
	memcpy(end, prefix, n);
	end[n - 1]++;
	etcd_b64(b, end, n);
}

void etcd_reg_value(struct strbuf *b, const struct clusterq_entry *e)
{
	STRBUF_LIT(b, "{\"status\":\"up\",\"address\":\"");
	strbuf_json(b, e->address);
	STRBUF_LIT(b, "\"");
	if (e->region[0] != '\0') {
		STRBUF_LIT(b, ",\"region\":\"");
		strbuf_json(b, e->region);
		STRBUF_LIT(b, "\"");
	}
	STRBUF_LIT(b, ",\"key\":");
	etcd_b64(b, e->key, e->key_len);
	STRBUF_LIT(b, ",\"channels\":");
	strbuf_u64(b, e->channels);
	STRBUF_LIT(b, ",\"sessions\":");
	strbuf_u64(b, e->sessions);
	if (e->max_sessions != 0) {
		STRBUF_LIT(b, ",\"maxSessions\":");
		strbuf_u64(b, e->max_sessions);
	}
	/* Full precision: the figures must read back as the heartbeat gave them. */
	strbuf_printf(b, ",\"cpuUsage\":%.17g,\"memoryUsage\":%.17g,\"seq\":%" PRIu64 "}", e->cpu,
		      e->memory, e->seq);
}

int64_t etcd_int(struct json_object *o, const char *name)
{
	struct json_object *v;
	const char *s;
	char *end;
	long long n;

	if (o == NULL || !json_object_object_get_ex(o, name, &v))
		return 0;
	if (json_object_is_type(v, json_type_int))
		return json_object_get_int64(v);
	if (!json_object_is_type(v, json_type_string))
		return 0;
	s = json_object_get_string(v);
	errno = 0;
	n = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0)
		return 0;
	return n;
}

bool etcd_nonzero(struct json_object *o, const char *name)
{
	struct json_object *v;
	const char *s;

	if (o == NULL || !json_object_object_get_ex(o, name, &v))
		return false;
	if (json_object_is_type(v, json_type_int))
		return json_object_get_int64(v) != 0;
	if (!json_object_is_type(v, json_type_string))
		return false;
	s = json_object_get_string(v);
	while (*s == '0')
		s++;
	return *s >= '1' && *s <= '9';
}

bool etcd_bool(struct json_object *o, const char *name)
{
	struct json_object *v;

	return o != NULL && json_object_object_get_ex(o, name, &v) &&
	       json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

int etcd_bytes(struct json_object *o, const char *name, char *out, size_t cap)
{
	struct json_object *v;
	ssize_t n;

	if (o == NULL || !json_object_object_get_ex(o, name, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	n = base64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v),
			  (uint8_t *)out, cap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n < cap)
		out[n] = '\0';
	return (int)n;
}

const char *etcd_error(struct json_object *o)
{
	struct json_object *v;

	if (o != NULL && (json_object_object_get_ex(o, "error", &v) ||
			  json_object_object_get_ex(o, "message", &v)) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return "";
}
