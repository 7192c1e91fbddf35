/* Registry document: an external registry's SFU list, parsed strictly and within bounds. */
#include "regdoc.h"

#include <errno.h>
#include <json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "jscan.h"
#include "sfuload.h"

/* Entry members read here; config_sfus_json checks the rest. */
static const char *const regdoc_extra[] = { "status",   "channels",    "sessions",
					    "maxSessions", "cpuUsage", "memoryUsage", NULL };

/* The document as json-c objects: one RFC 8259 object, valid UTF-8, nothing
 * after it but white space. NULL with err on failure. */
static struct json_object *regdoc_json(const char *body, size_t len, char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *root;
	size_t end;

	if (len >= INT_MAX) {
		snprintf(err, errlen, "the list is too large to parse");
		return NULL;
	}
	/* json-c's strict mode still takes single quotes; RFC 8259 first. */
	if (jscan_object(body, len, NULL, NULL) != 0) {
		snprintf(err, errlen, "invalid JSON: not one JSON object (RFC 8259)");
		return NULL;
	}
	tok = json_tokener_new();
	if (tok == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, body, (int)len);
	if (root == NULL) {
		snprintf(err, errlen, "invalid JSON: %s",
			 json_tokener_error_desc(json_tokener_get_error(tok)));
		json_tokener_free(tok);
		return NULL;
	}
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	for (; end < len; end++) {
		if (body[end] != ' ' && body[end] != '\t' && body[end] != '\r' && body[end] != '\n') {
			snprintf(err, errlen, "invalid JSON: bytes after the document");
			json_object_put(root);
			return NULL;
		}
	}
	return root;
}

/* The heartbeat-named members of entry i into rec; *up from its status. */
static int regdoc_entry(struct json_object *item, size_t i, const struct config_sfu *sfu,
			struct sfu_record *rec, bool *up, char *err, size_t errlen)
{
	char why[160];
	uint32_t max_sessions;

	memset(rec, 0, sizeof(*rec));
	if (sfuload_status(item, false, up, why, sizeof(why)) != 0 ||
	    sfuload_max_sessions(item, &max_sessions, why, sizeof(why)) != 0)
		goto fail;
	if (max_sessions != 0 && sfu->max_sessions != 0) {
		snprintf(why, sizeof(why), "give maxSessions or max_sessions, not both");
		goto fail;
	}
	if (sfuload_present(item)) {
		if (sfuload_parse(item, &rec->hot, why, sizeof(why)) != 0)
			goto fail;
		rec->hot.has_load = 1;
	}
	rec->hot.max_sessions = max_sessions ? max_sessions : sfu->max_sessions;
	memcpy(rec->cold.address, sfu->address, sizeof(rec->cold.address));
	memcpy(rec->cold.region, sfu->region, sizeof(rec->cold.region));
	memcpy(rec->cold.key, sfu->key, sfu->key_len);
	rec->cold.key_len = (uint32_t)sfu->key_len;
	return 0;
fail:
	snprintf(err, errlen, "sfu[%zu] (%s): %s", i, sfu->address, why);
	return -EINVAL;
}

int regdoc_parse(const char *body, size_t len, uint32_t max_sfus, struct regdoc *doc, char *err,
		 size_t errlen)
{
	struct json_object *root, *arr = NULL;
	struct config_sfu *sfus = NULL;
	size_t n = 0;
	int rc;

	memset(doc, 0, sizeof(*doc));
	if (errlen > 0)
		err[0] = '\0';
	root = regdoc_json(body, len, err, errlen);
	if (root == NULL)
		return -EINVAL;
	/* The size bound before anything is built per entry. */
	if (json_object_object_get_ex(root, "sfu", &arr) && json_object_is_type(arr, json_type_array) &&
	    json_object_array_length(arr) > max_sfus) {
		snprintf(err, errlen, "the list has %zu SFUs, more than [registry] max_sfus = %u",
			 json_object_array_length(arr), max_sfus);
		rc = -EINVAL;
		goto out;
	}
	rc = config_sfus_json(root, "the list", regdoc_extra, &sfus, &n, err, errlen);
	if (rc != 0)
		goto out;
	doc->recs = calloc(n ? n : 1, sizeof(*doc->recs));
	if (doc->recs == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	doc->listed = n;
	for (size_t i = 0; i < n; i++) {
		bool up;

		rc = regdoc_entry(json_object_array_get_idx(arr, i), i, &sfus[i],
				  &doc->recs[doc->n], &up, err, errlen);
		if (rc != 0)
			goto out;
		if (up)
			doc->n++;
		else
			explicit_bzero(&doc->recs[doc->n], sizeof(doc->recs[0]));
	}
	rc = 0;
out:
	config_sfus_free(sfus, n);
	json_object_put(root);
	if (rc != 0)
		regdoc_free(doc);
	return rc;
}

void regdoc_free(struct regdoc *doc)
{
	if (doc->recs != NULL) {
		explicit_bzero(doc->recs, (doc->listed ? doc->listed : 1) * sizeof(*doc->recs));
		free(doc->recs);
	}
	memset(doc, 0, sizeof(*doc));
}
