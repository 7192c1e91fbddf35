/* SFU load fields: what an SFU reports about itself (status, channels, sessions...), with the heartbeat's names and rules. */
#include "sfuload.h"

#include <errno.h>
#include <json.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A member that is there and not null. */
static struct json_object *sfuload_member(struct json_object *o, const char *name)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return v;
}

/* A non-negative integer field that fits 32 bits. */
static int sfuload_count(struct json_object *o, const char *name, bool required, uint32_t *out,
			 char *err, size_t errlen)
{
	struct json_object *v = sfuload_member(o, name);
	int64_t n;

	if (v == NULL) {
		if (!required)
			return 0;
		snprintf(err, errlen, "missing field '%s'", name);
		return -EINVAL;
	}
	if (!json_object_is_type(v, json_type_int)) {
		snprintf(err, errlen, "invalid field '%s': " SFULOAD_RULE_COUNT, name);
		return -EINVAL;
	}
	errno = 0;
	n = json_object_get_int64(v);
	if (n < 0 || n > UINT32_MAX || errno != 0) {
		snprintf(err, errlen, "invalid field '%s': " SFULOAD_RULE_COUNT, name);
		return -EINVAL;
	}
	*out = (uint32_t)n;
	return 0;
}

/* An optional number in [0, 1]; 0 when absent. */
static int sfuload_usage(struct json_object *o, const char *name, double *out, char *err,
			 size_t errlen)
{
	struct json_object *v = sfuload_member(o, name);
	double d;

	if (v == NULL) {
		*out = 0.0;
		return 0;
	}
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
		snprintf(err, errlen, "invalid field '%s': " SFULOAD_RULE_USAGE, name);
		return -EINVAL;
	}
	d = json_object_get_double(v);
	if (!(d >= 0.0 && d <= 1.0)) { /* also rejects NaN */
		snprintf(err, errlen, "invalid field '%s': " SFULOAD_RULE_USAGE, name);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

int sfuload_status(struct json_object *o, bool required, bool *up, char *err, size_t errlen)
{
	struct json_object *v = sfuload_member(o, "status");
	const char *s;

	*up = true;
	if (v == NULL) {
		if (!required)
			return 0;
		snprintf(err, errlen, "missing field 'status'");
		return -EINVAL;
	}
	s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
	if (s == NULL || (strcmp(s, "up") != 0 && strcmp(s, "down") != 0)) {
		snprintf(err, errlen, "invalid field 'status': " SFULOAD_RULE_STATUS);
		return -EINVAL;
	}
	*up = strcmp(s, "up") == 0;
	return 0;
}

int sfuload_parse(struct json_object *o, struct sfu_hot *load, char *err, size_t errlen)
{
	uint32_t channels = 0, sessions = 0, max_sessions = 0;
	double cpu, memory;

	if (sfuload_count(o, "channels", true, &channels, err, errlen) != 0 ||
	    sfuload_count(o, "sessions", true, &sessions, err, errlen) != 0 ||
	    sfuload_count(o, "maxSessions", false, &max_sessions, err, errlen) != 0 ||
	    sfuload_usage(o, "cpuUsage", &cpu, err, errlen) != 0 ||
	    sfuload_usage(o, "memoryUsage", &memory, err, errlen) != 0)
		return -EINVAL;
	load->channels = channels;
	load->sessions = sessions;
	load->max_sessions = max_sessions;
	load->cpu = cpu;
	load->memory = memory;
	return 0;
}

bool sfuload_present(struct json_object *o)
{
	static const char *const names[] = { "channels", "sessions", "cpuUsage", "memoryUsage" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (sfuload_member(o, names[i]) != NULL)
			return true;
	return false;
}

int sfuload_max_sessions(struct json_object *o, uint32_t *out, char *err, size_t errlen)
{
	*out = 0;
	return sfuload_count(o, "maxSessions", false, out, err, errlen);
}
