/* Fuzz target: the allocation-free JSON scanner (jscan), checked against json-c and strtod. */
#include <errno.h>
#include <json.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "jscan.h"

struct fuzz_scan {
	const char *text;
	size_t len;
	size_t members;
};

/* Nesting depth of a document, strings skipped; enough to tell whether json-c,
 * whose limit is a parameter, can be asked the same question. INT_MAX for a
 * control character in a string, which json-c accepts even when strict (as
 * JSON.parse and jscan do not). */
static int fuzz_depth(const char *s, size_t len)
{
	int depth = 0, max = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		if (in_str) {
			if ((unsigned char)s[i] < 0x20)
				return INT_MAX;
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_str = false;
		} else if (s[i] == '"') {
			in_str = true;
		} else if (s[i] == '{' || s[i] == '[') {
			if (++depth > max)
				max = depth;
		} else if (s[i] == '}' || s[i] == ']') {
			depth--;
		}
	}
	return max;
}

/* jscan_string into a buffer of exactly cap bytes, so ASan sees any overflow. */
static ssize_t fuzz_decode(const struct jscan_member *m, size_t cap, char **out)
{
	char *buf = malloc(cap > 0 ? cap : 1);
	ssize_t n;

	FUZZ_CHECK(buf != NULL);
	n = jscan_string(m, buf, cap);
	if (n >= 0)
		FUZZ_CHECK((size_t)n < cap && buf[n] == '\0');
	if (out != NULL)
		*out = buf;
	else
		free(buf);
	return n;
}

static void fuzz_number(const struct jscan_member *m)
{
	char *copy = malloc(m->val_len + 1);
	double d, ref;
	int64_t i;

	FUZZ_CHECK(copy != NULL);
	memcpy(copy, m->val, m->val_len);
	copy[m->val_len] = '\0';
	ref = strtod(copy, NULL);
	FUZZ_CHECK(jscan_double(m, &d) == 0);
	/* Same value as strtod on the whole number, whatever its length. */
	FUZZ_CHECK(d == ref || (isnan(d) && isnan(ref)));
	FUZZ_CHECK(jscan_int64(m, &i) == 0);
	if (ref >= 9223372036854775807.0)
		FUZZ_CHECK(i == INT64_MAX);
	else if (ref <= -9223372036854775808.0)
		FUZZ_CHECK(i == INT64_MIN);
	else
		FUZZ_CHECK(i == (int64_t)ref);
	free(copy);
}

static int fuzz_member(const struct jscan_member *m, void *ctx)
{
	struct fuzz_scan *s = ctx;
	struct jscan_member key = *m;
	char *dec = NULL;
	ssize_t n;

	s->members++;
	FUZZ_CHECK(m->key >= s->text && m->key + m->key_len <= s->text + s->len);
	FUZZ_CHECK(m->val >= s->text && m->val + m->val_len <= s->text + s->len);
	FUZZ_CHECK(m->key_escaped == (memchr(m->key, '\\', m->key_len) != NULL));
	(void)jscan_key_is(m, "alg");
	(void)jscan_key_is(m, "");

	/* A key that decodes to a C string is found by that string. */
	key.type = JSCAN_STRING;
	key.val = m->key;
	key.val_len = m->key_len;
	key.val_escaped = m->key_escaped;
	n = fuzz_decode(&key, 128, &dec);
	if (n >= 0 && memchr(dec, '\0', (size_t)n) == NULL)
		FUZZ_CHECK(jscan_key_is(m, dec));
	free(dec);

	if (m->type == JSCAN_STRING) {
		FUZZ_CHECK(m->val_escaped == (memchr(m->val, '\\', m->val_len) != NULL));
		/* Decoding never grows a string: every escape is longer than its
		 * UTF-8. jscan_decode asks for 5 spare bytes at each escape, so
		 * only val_len + 5 is sure to be enough (issue 13, finding 11:
		 * an escaped alg fails in an 8-byte buffer); it must never
		 * claim to fit n bytes and the NUL in n. */
		n = fuzz_decode(m, m->val_len + 5, NULL);
		FUZZ_CHECK(n == -EINVAL || (n >= 0 && (size_t)n <= m->val_len));
		if (n >= 0) {
			ssize_t fit = fuzz_decode(m, (size_t)n + 1, NULL);

			FUZZ_CHECK(fit == n || fit == -ENOSPC);
			FUZZ_CHECK(fuzz_decode(m, (size_t)n, NULL) == -ENOSPC);
		}
		FUZZ_CHECK(jscan_double(m, &(double){ 0 }) == -EINVAL);
	} else {
		FUZZ_CHECK(!m->val_escaped);
		FUZZ_CHECK(fuzz_decode(m, 64, NULL) == -EINVAL);
	}
	if (m->type == JSCAN_NUMBER)
		fuzz_number(m);
	return 0;
}

/* Stops the scan at the first member: the callback's value comes back. */
static int fuzz_stop(const struct jscan_member *m, void *ctx)
{
	(void)m;
	(void)ctx;
	return 7;
}

/* Whether json-c, strictly, reads the same text as one object and nothing else. */
static bool fuzz_jsonc_object(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(JSCAN_MAX_DEPTH + 1);
	struct json_object *o;
	bool ok;

	FUZZ_CHECK(tok != NULL);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, text, (int)len);
	ok = o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
	     json_object_is_type(o, json_type_object);
	if (ok) {
		size_t end = json_tokener_get_parse_end(tok);

		while (end < len && strchr(" \t\n\r", text[end]) != NULL)
			end++;
		ok = end == len;
	}
	json_object_put(o);
	json_tokener_free(tok);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_scan s;
	char *text;
	int rc, rc2;

	if (size > 65536)
		return 0;
	text = malloc(size > 0 ? size : 1);
	FUZZ_CHECK(text != NULL);
	memcpy(text, data, size);
	s.text = text;
	s.len = size;
	s.members = 0;
	rc = jscan_object(text, size, fuzz_member, &s);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	rc2 = jscan_object(text, size, NULL, NULL);
	FUZZ_CHECK(rc2 == rc);
	if (rc == 0 && s.members > 0)
		FUZZ_CHECK(jscan_object(text, size, fuzz_stop, NULL) == 7);
	/* What jscan accepts, a strict general parser accepts too (within both
	 * depth limits). Not the converse: json-c, even strict, takes leading
	 * zeros and control characters in strings, which JSON.parse refuses. */
	if (rc == 0 && fuzz_depth(text, size) <= JSCAN_MAX_DEPTH - 1)
		FUZZ_CHECK(fuzz_jsonc_object(text, size));
	free(text);
	return 0;
}
