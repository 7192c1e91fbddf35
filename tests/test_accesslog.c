/* Access log: the JSON line format, secrets kept out, and the file the workers write and reopen. */
#include <criterion/criterion.h>

#include <errno.h>
#include <json.h>
#include <llhttp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accesslog.h"
#include "harness.h"

#define AL_GW_KEY "YWNjZXNzLWxvZy10ZXN0LWdhdGV3YXkta2V5LTAxMjM0NTY3ODlhYg=="
#define AL_SFU_KEY "YWNjZXNzLWxvZy10ZXN0LXNmdS1rZXktMDEyMzQ1Njc4OWFiY2RlZg=="

/* 2024-05-01T12:00:00.123Z */
#define AL_WALL_MS 1714564800123LL

static struct json_object *al_parse(const char *line, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	cr_assert_not_null(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, line, (int)len);
	cr_assert_not_null(o, "not JSON: %.*s (%s)", (int)len, line,
			   json_tokener_error_desc(json_tokener_get_error(tok)));
	json_tokener_free(tok);
	return o;
}

static const char *al_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	cr_assert(json_object_object_get_ex(o, key, &v), "no %s", key);
	return json_object_get_string(v);
}

static bool al_is_null(struct json_object *o, const char *key)
{
	struct json_object *v;

	cr_assert(json_object_object_get_ex(o, key, &v), "no %s", key);
	return v == NULL;
}

Test(accesslog, formats_one_json_line_with_every_field)
{
	struct accesslog_entry e = {
		.wall_ms = AL_WALL_MS,
		.client = "10.1.2.3",
		.method = HTTP_GET,
		.target = "/v1/channel?webRTC=false&region=eu-west",
		.status = 200,
		.sfu = "http://10.0.0.5:8070",
		.attempts = 2,
		.upstream_us = 3125,
		.total_us = 3402,
	};
	char line[ACCESSLOG_LINE_MAX];
	size_t n;

	e.target_len = strlen(e.target);
	n = accesslog_format(&e, line, sizeof(line));
	cr_assert_gt(n, 0);
	cr_assert_eq(line[n - 1], '\n');
	line[n] = '\0';
	cr_assert_str_eq(line, "{\"time\":\"2024-05-01T12:00:00.123Z\",\"client\":\"10.1.2.3\","
			       "\"method\":\"GET\",\"path\":\"/v1/channel?webRTC=false&region=eu-west\","
			       "\"status\":200,\"sfu\":\"http://10.0.0.5:8070\",\"attempts\":2,"
			       "\"upstream_ms\":3.125,\"total_ms\":3.402}\n");
	cr_assert_eq(accesslog_format(&e, line, 40), 0, "a buffer too small gets nothing");
}

Test(accesslog, nulls_for_what_a_request_did_not_have)
{
	struct accesslog_entry e = { .wall_ms = AL_WALL_MS, .client = "::1", .method = -1,
				     .target = "", .status = 400, .total_us = 15 };
	char line[ACCESSLOG_LINE_MAX];
	size_t n = accesslog_format(&e, line, sizeof(line));
	struct json_object *o = al_parse(line, n);

	cr_assert(al_is_null(o, "method"));
	cr_assert(al_is_null(o, "sfu"));
	cr_assert(al_is_null(o, "upstream_ms"));
	cr_assert_str_eq(al_str(o, "path"), "");
	cr_assert_str_eq(al_str(o, "client"), "::1");
	json_object_put(o);
}

Test(accesslog, escapes_every_byte_a_client_can_send)
{
	static const char target[] = "/a\"b\\c\x01\x1f\x7f\xff\xc3\xa9?x=\"";
	struct accesslog_entry e = { .wall_ms = AL_WALL_MS, .client = "1.2.3.4", .method = HTTP_GET,
				     .target = target, .target_len = sizeof(target) - 1,
				     .status = 404, .total_us = 1 };
	char line[ACCESSLOG_LINE_MAX];
	size_t n = accesslog_format(&e, line, sizeof(line));
	struct json_object *o;

	line[n] = '\0';
	cr_assert_not_null(strstr(line, "\"path\":\"/a\\\"b\\\\c\\u0001\\u001f\\u007f\\u00ff"
					"\\u00c3\\u00a9?x=\\\"\""),
			   "%s", line);
	cr_assert_null(memchr(line, '\n', n - 1), "one line only");
	o = al_parse(line, n);
	json_object_put(o);
}

Test(accesslog, secret_query_values_never_reach_the_line)
{
	static const char target[] = "/v1/channel?webRTC=false&token=SECRET1&access_token=SECRET2"
				     "&Api%4Bey=SECRET3&jwt=SECRET4&region=eu-west&password"
				     "=SECRET5&x=1";
	struct accesslog_entry e = { .wall_ms = AL_WALL_MS, .client = "1.2.3.4", .method = HTTP_GET,
				     .target = target, .target_len = sizeof(target) - 1,
				     .status = 200, .total_us = 1 };
	char line[ACCESSLOG_LINE_MAX];
	size_t n = accesslog_format(&e, line, sizeof(line));
	struct json_object *o = al_parse(line, n);

	cr_assert_str_eq(al_str(o, "path"),
			 "/v1/channel?webRTC=false&token=REDACTED&access_token=REDACTED"
			 "&Api%4Bey=REDACTED&jwt=REDACTED&region=eu-west&password=REDACTED&x=1");
	json_object_put(o);
}

Test(accesslog, long_targets_are_cut)
{
	char target[5000], line[ACCESSLOG_LINE_MAX];
	struct accesslog_entry e = { .wall_ms = AL_WALL_MS, .client = "1.2.3.4", .method = HTTP_GET,
				     .target = target, .status = 414, .total_us = 1 };
	struct json_object *o;
	size_t n;

	memset(target, '\x01', sizeof(target));
	target[0] = '/';
	e.target_len = sizeof(target);
	n = accesslog_format(&e, line, sizeof(line));
	cr_assert_gt(n, 0, "the worst case fits ACCESSLOG_LINE_MAX");
	o = al_parse(line, n);
	cr_assert_eq(strlen(al_str(o, "path")), ACCESSLOG_PATH_MAX + 3);
	cr_assert_str_eq(al_str(o, "path") + ACCESSLOG_PATH_MAX, "...");
	json_object_put(o);
}

/* ---- the file, written by the workers */

static int al_lines(const char *text)
{
	int n = 0;

	for (const char *p = text; p != NULL && *p != '\0'; p++)
		n += *p == '\n';
	return n;
}

/* Polls path until it has at least want lines; its text (caller frees). */
static char *al_wait_lines(const char *path, int want)
{
	int64_t deadline = harness_now_ms() + 10000;
	char *text = NULL;

	for (;;) {
		free(text);
		text = harness_read_file(path);
		if (text != NULL && al_lines(text) >= want)
			return text;
		cr_assert_lt(harness_now_ms(), deadline, "%s has %d lines, not %d:\n%s", path,
			     text ? al_lines(text) : 0, want, text ? text : "(none)");
		poll(NULL, 0, 50);
	}
}

/* The parsed line whose path is prefix, or starts with it when it ends in '?'
 * (a new reference). */
static struct json_object *al_find(const char *text, const char *prefix)
{
	char *copy = strdup(text), *save = NULL;
	struct json_object *found = NULL;

	cr_assert_not_null(copy);
	for (char *l = strtok_r(copy, "\n", &save); l != NULL && found == NULL;
	     l = strtok_r(NULL, "\n", &save)) {
		struct json_object *o = al_parse(l, strlen(l));

		bool any_query = prefix[strlen(prefix) - 1] == '?';

		if (any_query ? strncmp(al_str(o, "path"), prefix, strlen(prefix)) == 0
			      : strcmp(al_str(o, "path"), prefix) == 0)
			found = o;
		else
			json_object_put(o);
	}
	free(copy);
	cr_assert_not_null(found, "no line for %s in:\n%s", prefix, text);
	return found;
}

static int64_t al_int(struct json_object *o, const char *key)
{
	struct json_object *v;

	cr_assert(json_object_object_get_ex(o, key, &v) && v != NULL, "no %s", key);
	return json_object_get_int64(v);
}

static double al_double(struct json_object *o, const char *key)
{
	struct json_object *v;

	cr_assert(json_object_object_get_ex(o, key, &v) && v != NULL, "no %s", key);
	return json_object_get_double(v);
}

Test(accesslog, workers_write_one_parsable_line_per_request, .fini = harness_cleanup,
     .timeout = 60)
{
	char toml[1024], log[300], rotated[310];
	const char *token;
	struct harness_proc *sfu, *gw;
	struct harness_resp *r;
	struct json_object *o;
	char *text, *old_text;
	static const char keys[][12] = { "time", "client", "method", "path", "status",
					 "sfu", "attempts", "upstream_ms", "total_ms" };

	snprintf(log, sizeof(log), "%s/access.log", harness_tmpdir());
	snprintf(rotated, sizeof(rotated), "%s.1", log);
	sfu = harness_mock_start(AL_SFU_KEY, NULL);
	cr_assert_not_null(sfu);
	snprintf(toml, sizeof(toml),
		 "[log]\naccess = \"%s\"\n\n[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n", log,
		 harness_url(sfu->port), AL_SFU_KEY);
	gw = harness_gateway_keyed(AL_GW_KEY, NULL, 2, toml);

	token = harness_odoo_token("access-iss", AL_GW_KEY);
	r = harness_channel(gw->port, "/v1/channel?webRTC=false&token=QUERYSECRET&region=eu-west",
			    "access-iss", AL_GW_KEY, NULL);
	cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
	free(r);
	r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	cr_assert_eq(harness_get(gw->port, "/noop", NULL, r), 0);
	cr_assert_eq(harness_get(gw->port, "/nowhere", NULL, r), 0);
	cr_assert_eq(r->status, 404);
	cr_assert_eq(harness_get(gw->port, "/v1/channel", "Authorization: jwt nope\r\n", r), 0);
	cr_assert_eq(r->status, 401);
	cr_assert_eq(harness_raw(gw->port, "BLAH\r\n\r\n", 8, r, 3000), 0);
	cr_assert_eq(r->status, 400);
	free(r);

	text = al_wait_lines(log, 5);
	cr_assert_null(strstr(text, "QUERYSECRET"), "a secret query value reached the log");
	cr_assert_null(strstr(text, token), "the token reached the log");
	cr_assert_null(strstr(text, "jwt"), "the Authorization header reached the log");
	/* Every line: the documented keys, in order. */
	{
		char *copy = strdup(text), *save = NULL;

		for (char *l = strtok_r(copy, "\n", &save); l != NULL;
		     l = strtok_r(NULL, "\n", &save)) {
			const char *p = l;

			json_object_put(al_parse(l, strlen(l)));
			for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
				char quoted[128];

				snprintf(quoted, sizeof(quoted), "\"%s\":", keys[k]);
				p = strstr(p, quoted);
				cr_assert_not_null(p, "%s missing or out of order: %s", keys[k], l);
			}
		}
		free(copy);
	}
	o = al_find(text, "/v1/channel?");
	cr_assert_str_eq(al_str(o, "path"), "/v1/channel?webRTC=false&token=REDACTED&region=eu-west");
	cr_assert_str_eq(al_str(o, "method"), "GET");
	cr_assert_str_eq(al_str(o, "client"), "127.0.0.1");
	cr_assert_eq(al_int(o, "status"), 200);
	cr_assert_str_eq(al_str(o, "sfu"), harness_url(sfu->port));
	cr_assert_eq(al_int(o, "attempts"), 1);
	cr_assert_geq(al_double(o, "upstream_ms"), 0);
	cr_assert_leq(al_double(o, "upstream_ms"), al_double(o, "total_ms"));
	cr_assert_eq(strlen(al_str(o, "time")), 24, "%s", al_str(o, "time"));
	json_object_put(o);
	o = al_find(text, "/v1/channel");
	cr_assert_eq(al_int(o, "status"), 401);
	cr_assert(al_is_null(o, "sfu") && al_is_null(o, "upstream_ms"));
	cr_assert_eq(al_int(o, "attempts"), 0);
	json_object_put(o);
	o = al_find(text, "/nowhere");
	cr_assert_eq(al_int(o, "status"), 404);
	json_object_put(o);
	o = al_find(text, "/noop");
	cr_assert_eq(al_int(o, "status"), 200);
	json_object_put(o);
	cr_assert_not_null(strstr(text, "\"method\":null,\"path\":\"\",\"status\":400"), "%s", text);
	free(text);

	/* Rotation: move the file, USR1, and the next lines go to a new one. */
	cr_assert_eq(rename(log, rotated), 0);
	cr_assert_eq(kill(gw->pid, SIGUSR1), 0);
	{
		int64_t deadline = harness_now_ms() + 10000;
		char *now = NULL;

		/* Until every worker reopened, a line may still land in the old file. */
		for (;;) {
			r = calloc(1, sizeof(*r));
			cr_assert_not_null(r);
			cr_assert_eq(harness_get(gw->port, "/after-rotation", NULL, r), 0);
			free(r);
			free(now);
			now = harness_read_file(log);
			if (now != NULL && strstr(now, "/after-rotation") != NULL)
				break;
			cr_assert_lt(harness_now_ms(), deadline, "no line in a new %s", log);
			poll(NULL, 0, 100);
		}
		free(now);
	}
	old_text = harness_read_file(rotated);
	cr_assert_not_null(old_text);
	cr_assert_not_null(strstr(old_text, "/nowhere"), "the lines before stay in the old file");
	free(old_text);
	cr_assert_eq(harness_stop(gw, SIGTERM, 15000) >= 0, 1);
}

Test(accesslog, a_link_is_refused_at_start, .fini = harness_cleanup, .timeout = 30)
{
	char toml[1024], link[300], target[300];
	struct harness_proc *gw = NULL;
	static const char *const env[] = { "SFU_GATEWAY_KEY=" AL_GW_KEY, NULL };
	const char *args[] = { "--config", NULL, NULL };
	int rc;

	snprintf(target, sizeof(target), "%s/precious", harness_tmpdir());
	snprintf(link, sizeof(link), "%s/access.log", harness_tmpdir());
	harness_write_file("precious", "precious\n");
	cr_assert_eq(symlink(target, link), 0);
	snprintf(toml, sizeof(toml), "[log]\naccess = \"%s\"\n", link);
	args[1] = harness_write_file("al.toml", toml);
	rc = harness_gateway_run(env, args, 10000, &gw);
	cr_assert_eq(rc, 1, "%s", gw ? harness_log(gw) : "");
	cr_assert_not_null(strstr(harness_log(gw), "cannot open access log"), "%s", harness_log(gw));
	cr_assert_not_null(strstr(harness_log(gw), "symbolic link (refused)"), "%s",
			   harness_log(gw));
	{
		char *t = harness_read_file(target);

		cr_assert_str_eq(t, "precious\n");
		free(t);
	}
}
