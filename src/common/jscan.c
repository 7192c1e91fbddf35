/* JSON scanning without allocation: validates a document and walks the members of its top object. */
#include "jscan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"

struct jscan {
	const char *p, *end;
};

static void jscan_ws(struct jscan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* At an opening quote: moves past the closing one. */
static int jscan_skip_string(struct jscan *s, bool *escaped)
{
	*escaped = false;
	s->p++;
	while (s->p < s->end) {
		unsigned char c = (unsigned char)*s->p;

		if (c == '"') {
			s->p++;
			return 0;
		}
		if (c < 0x20)
			return -EINVAL;
		if (c == '\\') {
			*escaped = true;
			if (++s->p >= s->end)
				return -EINVAL;
			switch (*s->p) {
			case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
				s->p++;
				break;
			case 'u':
				if (s->end - s->p < 5)
					return -EINVAL;
				for (int i = 1; i <= 4; i++)
					if (hex_digit(s->p[i]) < 0)
						return -EINVAL;
				s->p += 5;
				break;
			default:
				return -EINVAL;
			}
			continue;
		}
		s->p++;
	}
	return -EINVAL;
}

static bool jscan_digit(const struct jscan *s)
{
	return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

static int jscan_skip_number(struct jscan *s)
{
	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (!jscan_digit(s))
		return -EINVAL;
	if (*s->p == '0')
		s->p++;
	else
		while (jscan_digit(s))
			s->p++;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (!jscan_digit(s))
			return -EINVAL;
		while (jscan_digit(s))
			s->p++;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!jscan_digit(s))
			return -EINVAL;
		while (jscan_digit(s))
			s->p++;
	}
	return 0;
}

static int jscan_literal(struct jscan *s, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return -EINVAL;
	s->p += n;
	return 0;
}

static int jscan_value(struct jscan *s, int depth, enum jscan_type *type, bool *escaped);

/* At '{' or '[': validates the container through its closing bracket. */
static int jscan_container(struct jscan *s, int depth, bool object)
{
	char close = object ? '}' : ']';
	enum jscan_type t;
	bool esc;

	if (depth >= JSCAN_MAX_DEPTH)
		return -EINVAL;
	s->p++;
	jscan_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		return 0;
	}
	for (;;) {
		if (object) {
			if (s->p >= s->end || *s->p != '"' || jscan_skip_string(s, &esc) != 0)
				return -EINVAL;
			jscan_ws(s);
			if (s->p >= s->end || *s->p != ':')
				return -EINVAL;
			s->p++;
			jscan_ws(s);
		}
		if (jscan_value(s, depth + 1, &t, &esc) != 0)
			return -EINVAL;
		jscan_ws(s);
		if (s->p >= s->end)
			return -EINVAL;
		if (*s->p == close) {
			s->p++;
			return 0;
		}
		if (*s->p != ',')
			return -EINVAL;
		s->p++;
		jscan_ws(s);
	}
}

static int jscan_value(struct jscan *s, int depth, enum jscan_type *type, bool *escaped)
{
	*escaped = false;
	if (s->p >= s->end)
		return -EINVAL;
	switch (*s->p) {
	case '"': *type = JSCAN_STRING; return jscan_skip_string(s, escaped);
	case '{': *type = JSCAN_OBJECT; return jscan_container(s, depth, true);
	case '[': *type = JSCAN_ARRAY; return jscan_container(s, depth, false);
	case 't': *type = JSCAN_TRUE; return jscan_literal(s, "true");
	case 'f': *type = JSCAN_FALSE; return jscan_literal(s, "false");
	case 'n': *type = JSCAN_NULL; return jscan_literal(s, "null");
	default: *type = JSCAN_NUMBER; return jscan_skip_number(s);
	}
}

int jscan_object(const char *text, size_t len, jscan_fn fn, void *ctx)
{
	struct jscan s = { text, text + len };

	jscan_ws(&s);
	if (s.p >= s.end || *s.p != '{')
		return -EINVAL;
	s.p++;
	jscan_ws(&s);
	if (s.p < s.end && *s.p == '}') {
		s.p++;
	} else {
		for (;;) {
			struct jscan_member m;
			const char *start;
			int rc;

			if (s.p >= s.end || *s.p != '"')
				return -EINVAL;
			start = s.p + 1;
			if (jscan_skip_string(&s, &m.key_escaped) != 0)
				return -EINVAL;
			m.key = start;
			m.key_len = (size_t)(s.p - 1 - start);
			jscan_ws(&s);
			if (s.p >= s.end || *s.p != ':')
				return -EINVAL;
			s.p++;
			jscan_ws(&s);
			start = s.p;
			if (jscan_value(&s, 1, &m.type, &m.val_escaped) != 0)
				return -EINVAL;
			if (m.type == JSCAN_STRING) {
				m.val = start + 1;
				m.val_len = (size_t)(s.p - 1 - m.val);
			} else {
				m.val = start;
				m.val_len = (size_t)(s.p - start);
			}
			/* Members are reported as they are met; a syntax error
			 * later still fails the whole scan, so callers trust what
			 * they gathered only once this returns 0. */
			if (fn != NULL && (rc = fn(&m, ctx)) != 0)
				return rc;
			jscan_ws(&s);
			if (s.p >= s.end)
				return -EINVAL;
			if (*s.p == '}') {
				s.p++;
				break;
			}
			if (*s.p != ',')
				return -EINVAL;
			s.p++;
			jscan_ws(&s);
		}
	}
	jscan_ws(&s);
	return s.p == s.end ? 0 : -EINVAL;
}

/* Decodes a validated string body (between quotes) into out, NUL-terminated. */
static ssize_t jscan_decode(const char *in, size_t len, char *out, size_t outcap)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		uint32_t cp;

		if (in[i] != '\\') {
			if (o + 1 >= outcap)
				return -ENOSPC;
			out[o++] = in[i];
			continue;
		}
		i++;
		switch (in[i]) {
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			cp = (uint32_t)(hex_digit(in[i + 1]) << 12 | hex_digit(in[i + 2]) << 8 |
					hex_digit(in[i + 3]) << 4 | hex_digit(in[i + 4]));
			i += 4;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				uint32_t lo;

				if (i + 6 >= len || in[i + 1] != '\\' || in[i + 2] != 'u')
					return -EINVAL;
				lo = (uint32_t)(hex_digit(in[i + 3]) << 12 | hex_digit(in[i + 4]) << 8 |
						hex_digit(in[i + 5]) << 4 | hex_digit(in[i + 6]));
				if (lo < 0xdc00 || lo > 0xdfff)
					return -EINVAL;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				i += 6;
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				return -EINVAL;
			}
			break;
		default: cp = (uint8_t)in[i]; break; /* " \ / */
		}
		/* Exactly the bytes this code point takes, plus the final NUL: a
		 * short field such as a token's "alg" must fit escaped as it fits plain. */
		if (o + (cp < 0x80 ? 1u : cp < 0x800 ? 2u : cp < 0x10000 ? 3u : 4u) >= outcap)
			return -ENOSPC;
		if (cp < 0x80) {
			out[o++] = (char)cp;
		} else if (cp < 0x800) {
			out[o++] = (char)(0xc0 | cp >> 6);
			out[o++] = (char)(0x80 | (cp & 0x3f));
		} else if (cp < 0x10000) {
			out[o++] = (char)(0xe0 | cp >> 12);
			out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (cp & 0x3f));
		} else {
			out[o++] = (char)(0xf0 | cp >> 18);
			out[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
			out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (cp & 0x3f));
		}
	}
	if (o >= outcap)
		return -ENOSPC;
	out[o] = '\0';
	return (ssize_t)o;
}

bool jscan_key_is(const struct jscan_member *m, const char *name)
{
	size_t n = strlen(name);
	char buf[128];

	if (!m->key_escaped)
		return m->key_len == n && memcmp(m->key, name, n) == 0;
	return jscan_decode(m->key, m->key_len, buf, sizeof(buf)) == (ssize_t)n &&
	       memcmp(buf, name, n) == 0;
}

ssize_t jscan_string(const struct jscan_member *m, char *out, size_t outcap)
{
	if (m->type != JSCAN_STRING)
		return -EINVAL;
	if (!m->val_escaped) {
		if (m->val_len + 1 > outcap)
			return -ENOSPC;
		memcpy(out, m->val, m->val_len);
		out[m->val_len] = '\0';
		return (ssize_t)m->val_len;
	}
	return jscan_decode(m->val, m->val_len, out, outcap);
}

/* Significant digits kept when a number is rewritten to fit jscan_double's buffer. */
#define JSCAN_NUM_DIGITS 480
/* Exponents are clamped here: far past any double, far below int64 overflow. */
#define JSCAN_EXP_CLAMP INT64_C(1000000000000000)

/*
 * Writes a validated JSON number that is too long for jscan_double's buffer
 * as an equal one that fits: "[-]<digits>e<exponent>", with the leading zeros
 * and the decimal point folded into the exponent. Past JSCAN_NUM_DIGITS
 * significant digits the rest is dropped and a final 1 stands for any nonzero
 * digit among them, so strtod rounds as it would on the whole text; only below
 * about 1e-180, where a point halfway between two doubles can have more
 * significant digits than that, could it in theory round differently.
 */
static void jscan_number_compact(const char *v, size_t len, char *buf, size_t cap)
{
	const char *p = v, *end = v + len;
	size_t n = 0, kept = 0;
	int64_t scale = 0, exp10 = 0;
	bool sticky = false, neg_exp = false;

	if (p < end && *p == '-')
		buf[n++] = *p++;
	for (; p < end && (*p == '.' || (*p >= '0' && *p <= '9')); p++) {
		if (*p == '.') {
			for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
				if (kept == 0 && *p == '0') {
					scale--;
				} else if (kept < JSCAN_NUM_DIGITS) {
					buf[n++] = *p;
					kept++;
					scale--;
				} else if (*p != '0') {
					sticky = true;
				}
			}
			break;
		}
		if (kept == 0 && *p == '0')
			continue;
		if (kept < JSCAN_NUM_DIGITS) {
			buf[n++] = *p;
			kept++;
		} else {
			scale++;
			sticky = sticky || *p != '0';
		}
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			neg_exp = *p++ == '-';
		for (; p < end; p++)
			if (exp10 < JSCAN_EXP_CLAMP)
				exp10 = exp10 * 10 + (*p - '0');
	}
	if (kept == 0) {
		buf[n++] = '0';
		buf[n] = '\0';
		return;
	}
	if (sticky) {
		buf[n++] = '1';
		scale--;
	}
	scale += neg_exp ? -exp10 : exp10;
	snprintf(buf + n, cap - n, "e%lld", (long long)scale);
}

int jscan_double(const struct jscan_member *m, double *out)
{
	char buf[512];

	if (m->type != JSCAN_NUMBER)
		return -EINVAL;
	if (m->val_len >= sizeof(buf)) {
		/* strtod needs a terminated copy; hundreds of digits are rewritten
		 * to an equal number that fits rather than allocated for. */
		jscan_number_compact(m->val, m->val_len, buf, sizeof(buf));
		*out = strtod(buf, NULL);
		return 0;
	}
	memcpy(buf, m->val, m->val_len);
	buf[m->val_len] = '\0';
	/* The daemon never calls setlocale(), so strtod reads '.' as the point. */
	*out = strtod(buf, NULL);
	return 0;
}

int jscan_int64(const struct jscan_member *m, int64_t *out)
{
	double d;

	if (jscan_double(m, &d) != 0)
		return -EINVAL;
	/* Integers past 2^53 lose precision through double, which no time claim
	 * or count we read comes near; exact small integers stay exact. */
	if (d >= 9223372036854775807.0)
		*out = INT64_MAX;
	else if (d <= -9223372036854775808.0)
		*out = INT64_MIN;
	else
		*out = (int64_t)d; /* truncates toward zero */
	return 0;
}
