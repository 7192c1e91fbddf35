/* Unit tests of the registry document parser: the list's shape, load fields, every refusal, bounds. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regdoc.h"

/* 34 bytes, and a second key. */
#define RD_K1 "cmVnZG9jLXRlc3RzLXNmdS1rZXktb25lLTAwMDAwMDAx"
#define RD_K2 "cmVnZG9jLXRlc3RzLXNmdS1rZXktdHdvLTAwMDAwMDAy"

static int rd_parse(const char *text, uint32_t max, struct regdoc *doc, char *err, size_t errlen)
{
	return regdoc_parse(text, strlen(text), max, doc, err, errlen);
}

/* Parses text, which must be refused with an error containing want (and no key). */
static void rd_refused(const char *text, const char *want)
{
	struct regdoc doc;
	char err[256];

	cr_assert_eq(rd_parse(text, 16, &doc, err, sizeof(err)), -EINVAL, "accepted: %s", text);
	cr_assert_not_null(strstr(err, want), "error '%s' lacks '%s' for %s", err, want, text);
	cr_assert_null(strstr(err, RD_K1), "the error shows a key: %s", err);
	cr_assert_null(strstr(err, "bm90"), "the error shows a key: %s", err);
	cr_assert_null(doc.recs);
	cr_assert_eq(doc.n, 0);
}

Test(regdoc, nodes_json_with_load_fields)
{
	const char *text =
		"{\"sfu\": [\n"
		" {\"address\": \"HTTP://SFU1.Example.com:80/\", \"region\": \"eu-west\", \"key\": \"" RD_K1
		"\"},\n"
		" {\"address\": \"http://10.0.0.2:8070\", \"key\": \"" RD_K2 "\", \"max_sessions\": 70,"
		"  \"status\": \"up\", \"channels\": 3, \"sessions\": 12, \"cpuUsage\": 0.25,"
		"  \"memoryUsage\": 1},\n"
		" {\"address\": \"http://10.0.0.3:8070\", \"key\": \"" RD_K2 "\", \"maxSessions\": 40,"
		"  \"channels\": 0, \"sessions\": 0, \"region\": null}\n"
		"]}\n  \r\n";
	struct regdoc doc;
	char err[256];

	cr_assert_eq(rd_parse(text, 3, &doc, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(doc.n, 3);
	cr_assert_eq(doc.listed, 3);
	/* Addresses as the config normalises them. */
	cr_assert_str_eq(doc.recs[0].cold.address, "http://sfu1.example.com");
	cr_assert_str_eq(doc.recs[0].cold.region, "eu-west");
	cr_assert_eq(doc.recs[0].cold.key_len, 33);
	cr_assert_eq(memcmp(doc.recs[0].cold.key, "regdoc-tests-sfu-key-one-00000001", 33), 0);
	cr_assert_eq(doc.recs[0].hot.has_load, 0);
	cr_assert_eq(doc.recs[0].hot.max_sessions, 0);
	cr_assert_eq(doc.recs[1].hot.has_load, 1);
	cr_assert_eq(doc.recs[1].hot.channels, 3);
	cr_assert_eq(doc.recs[1].hot.sessions, 12);
	cr_assert_float_eq(doc.recs[1].hot.cpu, 0.25, 1e-12);
	cr_assert_float_eq(doc.recs[1].hot.memory, 1.0, 1e-12);
	cr_assert_eq(doc.recs[1].hot.max_sessions, 70);
	cr_assert_eq(doc.recs[2].hot.has_load, 1);
	cr_assert_eq(doc.recs[2].hot.max_sessions, 40, "maxSessions, the heartbeat's name");
	cr_assert_str_eq(doc.recs[2].cold.region, "");
	regdoc_free(&doc);
	cr_assert_null(doc.recs);
}

Test(regdoc, down_entries_are_left_out)
{
	const char *text = "{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1
			   "\",\"status\":\"down\"},{\"address\":\"http://b\",\"key\":\"" RD_K1
			   "\"},{\"address\":\"http://c\",\"key\":\"" RD_K1 "\",\"status\":\"down\"}]}";
	struct regdoc doc;
	char err[256];

	cr_assert_eq(rd_parse(text, 3, &doc, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(doc.listed, 3);
	cr_assert_eq(doc.n, 1);
	cr_assert_str_eq(doc.recs[0].cold.address, "http://b");
	regdoc_free(&doc);
}

Test(regdoc, an_empty_list_is_a_list)
{
	struct regdoc doc;
	char err[256];

	cr_assert_eq(rd_parse("{\"sfu\":[]}", 1, &doc, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(doc.n, 0);
	regdoc_free(&doc);
}

Test(regdoc, json_errors)
{
	rd_refused("", "invalid JSON");
	rd_refused("{\"sfu\":[", "invalid JSON");
	rd_refused("{\"sfu\":[]} x", "invalid JSON");
	rd_refused("{\"sfu\":[]}{}", "invalid JSON");
	rd_refused("{'sfu':[]}", "invalid JSON");
	rd_refused("{\"sfu\":[],}", "invalid JSON");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1 "\",\"region\":\"\xff\"}]}",
		   "invalid JSON");
	rd_refused("[]", "invalid JSON: not one JSON object");
	rd_refused("{\"sfu\":{}}", "expected {\"sfu\"");
	rd_refused("{\"sfu\":[],\"version\":2}", "expected {\"sfu\"");
	rd_refused("{\"sfu\":[1]}", "sfu[0] must be an object");
}

Test(regdoc, entry_errors_name_the_entry)
{
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"bm90IGEga2V5!!\"}]}",
		   "sfu[0] (http://a): key is not valid base64");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1
		   "\"},{\"address\":\"ftp://b\",\"key\":\"" RD_K1 "\"}]}",
		   "sfu[1]: address is invalid");
	rd_refused("{\"sfu\":[{\"address\":\"http://a/path\",\"key\":\"" RD_K1 "\"}]}",
		   "address is invalid");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1
		   "\",\"region\":\"eu\\nwest\"}]}",
		   "region is invalid");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\"}]}", "missing key");
	rd_refused("{\"sfu\":[{\"key\":\"" RD_K1 "\"}]}", "missing address");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1
		   "\"},{\"address\":\"HTTP://A:80\",\"key\":\"" RD_K2 "\"}]}",
		   "duplicate address");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1 "\",\"weight\":3}]}",
		   "unknown key 'weight'");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1 "\",\"status\":\"gone\"}]}",
		   "invalid field 'status': must be \"up\" or \"down\"");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1 "\",\"sessions\":3}]}",
		   "sfu[0] (http://a): missing field 'channels'");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1 "\",\"cpuUsage\":0.5}]}",
		   "missing field 'channels'");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1
		   "\",\"channels\":1,\"sessions\":-1}]}",
		   "invalid field 'sessions': must be a non-negative integer");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1
		   "\",\"channels\":1,\"sessions\":1,\"cpuUsage\":1.5}]}",
		   "invalid field 'cpuUsage': must be a number in [0, 1]");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1
		   "\",\"channels\":1,\"sessions\":1,\"memoryUsage\":\"high\"}]}",
		   "invalid field 'memoryUsage'");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1
		   "\",\"maxSessions\":5,\"max_sessions\":5}]}",
		   "give maxSessions or max_sessions, not both");
	rd_refused("{\"sfu\":[{\"address\":\"http://a\",\"key\":\"" RD_K1 "\",\"maxSessions\":1.5}]}",
		   "invalid field 'maxSessions'");
}

Test(regdoc, size_bound_before_anything_is_built)
{
	char *text = malloc(1 << 20);
	size_t n = (size_t)sprintf(text, "{\"sfu\":[");
	struct regdoc doc;
	char err[256];

	cr_assert_not_null(text);
	for (int i = 0; i < 17; i++)
		n += (size_t)sprintf(text + n, "%s{\"address\":\"http://10.0.0.%d\",\"key\":\"%s\"}",
				     i ? "," : "", i + 1, RD_K1);
	sprintf(text + n, "]}");
	cr_assert_eq(rd_parse(text, 16, &doc, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "the list has 17 SFUs, more than [registry] max_sfus = 16");
	cr_assert_eq(rd_parse(text, 17, &doc, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(doc.n, 17);
	regdoc_free(&doc);
	free(text);
}

/* Random bytes, cut documents and flipped bytes: refused or parsed, never a crash. */
Test(regdoc, mangled_documents_never_crash)
{
	const char *good = "{\"sfu\":[{\"address\":\"http://a:1\",\"region\":\"eu-west\",\"key\":\"" RD_K1
			   "\",\"channels\":1,\"sessions\":2,\"cpuUsage\":0.5,\"status\":\"up\"}]}";
	size_t len = strlen(good);
	unsigned seed = 12345;
	char buf[512];

	for (int round = 0; round < 20000; round++) {
		struct regdoc doc;
		char err[256];
		size_t n = len;

		memcpy(buf, good, len);
		for (int k = 0; k < 1 + round % 3; k++) {
			seed = seed * 1103515245u + 12345u;
			buf[(seed >> 8) % len] = (char)(seed >> 16);
		}
		if (round % 5 == 0)
			n = (seed >> 4) % len;
		if (regdoc_parse(buf, n, 4, &doc, err, sizeof(err)) == 0) {
			cr_assert_leq(doc.n, 1);
			regdoc_free(&doc);
		} else {
			cr_assert_neq(err[0], '\0');
			cr_assert_null(strchr(err, '\n'));
		}
	}
}
