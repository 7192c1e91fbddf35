/* The interop suites' fixture: real odoo/sfu processes behind a real gateway, and their routes. */
#include "interop_fleet.h"

#include <criterion/criterion.h>

#include <ctype.h>
#include <json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void fleet_sfus(struct fleet *f, int n, const char *const *env)
{
	fleet_sfus_peer(f, n, HARNESS_PEER_UPSTREAM, env);
}

void fleet_sfus_peer(struct fleet *f, int n, enum harness_peer peer, const char *const *env)
{
	cr_assert_leq(n, FLEET_MAX);
	f->n = n;
	for (int i = 0; i < n; i++)
		f->sfu[i] = harness_real_sfu_up_peer(peer, FLEET_SFU_KEY, env);
}

void fleet_gateway(struct fleet *f, const char *extra, const char *const *keys,
		   const char *const *env)
{
	char toml[8192];
	size_t o = (size_t)snprintf(toml, sizeof(toml), "%s\n", extra != NULL ? extra : "");

	for (int i = 0; i < f->n; i++)
		o += (size_t)snprintf(toml + o, sizeof(toml) - o,
				      "[[sfu]]\naddress = \"%s\"\nregion = \"eu-west\"\n"
				      "key = \"%s\"\n",
				      harness_url(f->sfu[i]->port),
				      keys != NULL && keys[i] != NULL ? keys[i] : FLEET_SFU_KEY);
	cr_assert_lt(o, sizeof(toml));
	f->gw = harness_gateway_keyed(FLEET_GW_KEY, env, 2, toml);
}

const char *fleet_issuer(void)
{
	static char bufs[4][96];
	static int seq;
	char *b = bufs[seq % 4];

	snprintf(b, sizeof(bufs[0]), "https://odoo-%d.example.com:channel:%d", (int)getpid(),
		 seq++);
	return b;
}

struct harness_resp *fleet_channel(int port, const char *iss, const char *key_b64,
				   const char *extra)
{
	return harness_channel(port, FLEET_CHANNEL_PATH, iss, key_b64, extra);
}

struct harness_resp *fleet_channel_from(const char *src, int port, const char *iss,
					const char *key_b64, const char *extra)
{
	return harness_channel_from(src, port, FLEET_CHANNEL_PATH, iss, key_b64, extra);
}

const char *fleet_uuid(const struct harness_resp *r)
{
	static char bufs[4][64];
	static int next;
	char *b = bufs[next++ % 4];

	cr_assert_eq(r->status, 200, "channel request: %d %s", r->status, r->body);
	snprintf(b, sizeof(bufs[0]), "%s", harness_json_str(r->body, "uuid"));
	cr_assert(fleet_uuid_valid(b), "not a uuid: %s", r->body);
	return b;
}

bool fleet_uuid_valid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx";

	if (strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i] != '\0'; i++) {
		bool hex = isxdigit((unsigned char)s[i]) && !isupper((unsigned char)s[i]);

		if ((shape[i] == 'x' && !hex) ||
		    (shape[i] == 'V' && strchr("89ab", s[i]) == NULL) ||
		    (shape[i] != 'x' && shape[i] != 'V' && s[i] != shape[i]))
			return false;
	}
	return true;
}

struct json_object *fleet_stats_channel(const struct harness_proc *sfu, const char *uuid)
{
	struct json_object *arr = harness_get_json(sfu->port, "/v1/stats", NULL), *found;

	cr_assert(json_object_is_type(arr, json_type_array), "/v1/stats is no array");
	found = json_object_get(harness_json_find(arr, "uuid", uuid));
	json_object_put(arr);
	return found;
}

int fleet_stats_count(const struct harness_proc *sfu)
{
	struct json_object *arr = harness_get_json(sfu->port, "/v1/stats", NULL);
	int n;

	cr_assert(json_object_is_type(arr, json_type_array), "/v1/stats is no array");
	n = (int)json_object_array_length(arr);
	json_object_put(arr);
	return n;
}

int64_t fleet_stats_sessions(struct json_object *entry)
{
	struct json_object *st;

	cr_assert(json_object_object_get_ex(entry, "sessionsStats", &st), "no sessionsStats");
	return harness_json_int(st, "count");
}

const char *fleet_creator(const struct harness_proc *sfu, const char *uuid)
{
	static char out[128];
	struct json_object *ch = fleet_stats_channel(sfu, uuid), *v;

	cr_assert_not_null(ch, "the SFU does not list channel %s", uuid);
	cr_assert(json_object_object_get_ex(ch, "remoteAddress", &v));
	snprintf(out, sizeof(out), "%s", json_object_get_string(v));
	json_object_put(ch);
	return out;
}

int64_t fleet_sessions(const struct harness_proc *sfu, const char *uuid)
{
	struct json_object *ch = fleet_stats_channel(sfu, uuid);
	int64_t n;

	cr_assert_not_null(ch, "the SFU does not list channel %s", uuid);
	n = fleet_stats_sessions(ch);
	json_object_put(ch);
	return n;
}

int fleet_hangup(const struct harness_proc *sfu, const char *src, const char *key_b64,
		 const char *uuid, const char *ids, const char *extra)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	char claims[512];
	int status;

	cr_assert_not_null(r);
	snprintf(claims, sizeof(claims), "{\"sessionIdsByChannel\":{\"%s\":[%s]},\"exp\":%lld}",
		 uuid, ids, (long long)time(NULL) + 20);
	cr_assert_eq(harness_post_from(src, sfu->port, "/v1/disconnect", extra,
				       harness_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims,
						     key_b64),
				       r),
		     0, "POST /v1/disconnect from %s did not get an answer",
		     src != NULL ? src : "127.0.0.1");
	status = r->status;
	free(r);
	return status;
}

int64_t fleet_health_wait(int gw_port, int sfu_port, const char *field, int64_t want,
			  int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms, v = -1;

	do {
		struct json_object *m, *s = harness_health_sfu(gw_port, harness_url(sfu_port), NULL);

		v = -1;
		if (s != NULL && json_object_object_get_ex(s, field, &m))
			v = json_object_get_int64(m);
		json_object_put(s);
		if (v == want)
			break;
		poll(NULL, 0, 100);
	} while (harness_now_ms() < deadline);
	return v;
}

const char *fleet_health_str(int gw_port, int sfu_port, const char *field)
{
	static char out[256];
	struct json_object *s = harness_health_sfu(gw_port, harness_url(sfu_port), NULL), *o, *m;
	const char *dot = strchr(field, '.');
	char first[64];

	out[0] = '\0';
	snprintf(first, sizeof(first), "%.*s", dot != NULL ? (int)(dot - field) : 63, field);
	o = s;
	if (o != NULL && dot != NULL && !json_object_object_get_ex(o, first, &o))
		o = NULL;
	if (o != NULL && json_object_object_get_ex(o, dot != NULL ? dot + 1 : field, &m) &&
	    json_object_is_type(m, json_type_string))
		snprintf(out, sizeof(out), "%s", json_object_get_string(m));
	json_object_put(s);
	return out;
}
