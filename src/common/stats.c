/* odoo/sfu's GET /v1/stats, read as it streams in: channel and session counts without the whole body. */
#include "stats.h"

#include <errno.h>
#include <string.h>

#include "hex.h"

/*
 * A byte-at-a-time JSON recogniser with a stack of open containers. It knows
 * just enough of the document's shape to count: the top-level array holds
 * channels, and a channel object's "sessionsStats" object holds its sessions'
 * "count". Everything else is validated and
 * skipped. The state survives between stats_feed() calls, so the body can
 * arrive in pieces of any size (a busy SFU's answer passes 64 KiB at about
 * 250 channels, and a channel lives up to an hour).
 */
enum stats_state {
	ST_VALUE, /* a value must come */
	ST_VALUE_OR_END, /* after '[': a value or ']' */
	ST_KEY_OR_END, /* after '{': a member name or '}' */
	ST_KEY, /* after ',' in an object: a member name */
	ST_COLON, /* after a member name */
	ST_AFTER, /* after a value: ',' or the container's end */
	ST_STRING, /* inside a string */
	ST_ESCAPE, /* after a backslash */
	ST_UHEX, /* inside \uXXXX */
	ST_NUM_MINUS, /* after '-' */
	ST_NUM_ZERO, /* a leading 0 */
	ST_NUM_INT, /* integer digits */
	ST_NUM_DOT, /* after '.' */
	ST_NUM_FRAC, /* fraction digits */
	ST_NUM_E, /* after 'e' */
	ST_NUM_ESIGN, /* after the exponent's sign */
	ST_NUM_EXP, /* exponent digits */
	ST_LITERAL, /* true, false, null */
	ST_DONE, /* the top-level value is complete: whitespace only */
};

/* What an open container is: object or array, and its part in the shape. */
#define STATS_OBJECT 0x1u
#define STATS_ROLE(x) ((x) >> 1)
enum stats_role { ROLE_NONE = 0, ROLE_CHANNELS = 1, ROLE_CHANNEL = 2, ROLE_SESSIONS_STATS = 3 };

/* The member whose value comes next. */
enum stats_member { M_NONE, M_SESSIONS_STATS, M_COUNT };

static uint64_t stats_sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int stats_fail(struct stats_parser *p)
{
	p->error = -EINVAL;
	return -EINVAL;
}

void stats_init(struct stats_parser *p)
{
	memset(p, 0, sizeof(*p));
	p->state = ST_VALUE;
}

static bool stats_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static unsigned stats_top(const struct stats_parser *p)
{
	return p->depth > 0 ? p->stack[p->depth - 1] : 0;
}

/* The value that just ended was a member's or an element's: what may follow. */
static void stats_value_done(struct stats_parser *p)
{
	p->member = M_NONE;
	p->state = p->depth == 0 ? ST_DONE : ST_AFTER;
}

/* A number value ended; counts only non-negative integers. */
static void stats_number_done(struct stats_parser *p)
{
	if (p->member == M_COUNT) {
		p->has_stats_count = p->num_int;
		p->stats_count = p->num;
	}
	stats_value_done(p);
}

/* Any value other than a number for a count member: that member says nothing. */
static void stats_other_value(struct stats_parser *p)
{
	if (p->member == M_COUNT || p->member == M_SESSIONS_STATS)
		p->has_stats_count = false;
}

static int stats_push(struct stats_parser *p, bool object)
{
	unsigned parent = STATS_ROLE(stats_top(p));
	unsigned role = ROLE_NONE;

	if (p->depth >= STATS_DEPTH_MAX)
		return stats_fail(p);
	if (p->depth == 0) {
		if (object)
			return stats_fail(p); /* the answer is an array of channels */
		role = ROLE_CHANNELS;
	} else if (parent == ROLE_CHANNELS && object) {
		role = ROLE_CHANNEL;
		p->has_stats_count = false;
	} else if (parent == ROLE_CHANNEL && object && p->member == M_SESSIONS_STATS) {
		role = ROLE_SESSIONS_STATS;
		/* A repeated member replaces the earlier one, as in JSON.parse. */
		p->has_stats_count = false;
	}
	stats_other_value(p);
	p->stack[p->depth++] = (uint8_t)((role << 1) | (object ? STATS_OBJECT : 0));
	p->member = M_NONE;
	p->state = object ? ST_KEY_OR_END : ST_VALUE_OR_END;
	return 0;
}

static int stats_pop(struct stats_parser *p, bool object)
{
	unsigned top = stats_top(p);

	if (p->depth == 0 || ((top & STATS_OBJECT) != 0) != object)
		return stats_fail(p);
	if (STATS_ROLE(top) == ROLE_CHANNEL)
		p->sessions = stats_sat_add(p->sessions, p->has_stats_count ? p->stats_count : 0);
	p->depth--;
	stats_value_done(p);
	return 0;
}

/* A member name ended: which member of interest is it, if any? */
static void stats_key_done(struct stats_parser *p)
{
	unsigned role = STATS_ROLE(stats_top(p));
	bool fits = p->name_len <= STATS_NAME_MAX;

	p->name[fits ? p->name_len : 0] = '\0';
	p->member = M_NONE;
	if (!fits)
		return;
	if (role == ROLE_CHANNEL && strcmp(p->name, "sessionsStats") == 0)
		p->member = M_SESSIONS_STATS;
	else if (role == ROLE_SESSIONS_STATS && strcmp(p->name, "count") == 0)
		p->member = M_COUNT;
}

static void stats_name_char(struct stats_parser *p, char ch)
{
	if (p->in_key && p->name_len < STATS_NAME_MAX)
		p->name[p->name_len] = ch;
	if (p->in_key && p->name_len <= STATS_NAME_MAX)
		p->name_len++;
}

/* Starts whatever value begins with ch. */
static int stats_value_start(struct stats_parser *p, char ch)
{
	static const char *const literals[] = { "true", "false", "null" };

	/* Each element of the top-level array is one channel. */
	if (STATS_ROLE(stats_top(p)) == ROLE_CHANNELS && p->depth == 1)
		p->channels = stats_sat_add(p->channels, 1);
	if (ch == '{' || ch == '[') {
		if (p->depth == 0 && ch == '{')
			return stats_fail(p);
		return stats_push(p, ch == '{');
	}
	if (p->depth == 0)
		return stats_fail(p); /* only an array is an answer */
	if (ch == '"') {
		stats_other_value(p);
		p->in_key = false;
		p->state = ST_STRING;
		return 0;
	}
	if (ch == '-' || (ch >= '0' && ch <= '9')) {
		p->num = 0;
		p->num_int = ch != '-';
		if (ch == '-')
			p->state = ST_NUM_MINUS;
		else if (ch == '0')
			p->state = ST_NUM_ZERO;
		else {
			p->num = (uint64_t)(ch - '0');
			p->state = ST_NUM_INT;
		}
		return 0;
	}
	for (size_t i = 0; i < 3; i++) {
		if (ch == literals[i][0]) {
			stats_other_value(p);
			memcpy(p->lit, literals[i], strlen(literals[i]) + 1);
			p->lit_len = (uint8_t)strlen(literals[i]);
			p->lit_pos = 1;
			p->state = ST_LITERAL;
			return 0;
		}
	}
	return stats_fail(p);
}

/* One byte; returns 1 when the byte ended a number and must be read again. */
static int stats_byte(struct stats_parser *p, char ch)
{
	unsigned top = stats_top(p);

	switch (p->state) {
	case ST_VALUE_OR_END:
		if (stats_space(ch))
			return 0;
		if (ch == ']')
			return stats_pop(p, false);
		return stats_value_start(p, ch);
	case ST_VALUE:
		if (stats_space(ch))
			return 0;
		return stats_value_start(p, ch);
	case ST_KEY_OR_END:
	case ST_KEY:
		if (stats_space(ch))
			return 0;
		if (ch == '}' && p->state == ST_KEY_OR_END)
			return stats_pop(p, true);
		if (ch != '"')
			return stats_fail(p);
		p->in_key = true;
		p->name_len = 0;
		p->state = ST_STRING;
		return 0;
	case ST_COLON:
		if (stats_space(ch))
			return 0;
		if (ch != ':')
			return stats_fail(p);
		p->state = ST_VALUE;
		return 0;
	case ST_AFTER:
		if (stats_space(ch))
			return 0;
		if (ch == ',') {
			p->state = (top & STATS_OBJECT) ? ST_KEY : ST_VALUE;
			return 0;
		}
		if (ch == '}' || ch == ']')
			return stats_pop(p, ch == '}');
		return stats_fail(p);
	case ST_STRING:
		if (ch == '"') {
			if (p->in_key) {
				stats_key_done(p);
				p->state = ST_COLON;
			} else {
				stats_value_done(p);
			}
			return 0;
		}
		if (ch == '\\') {
			p->state = ST_ESCAPE;
			return 0;
		}
		if ((unsigned char)ch < 0x20)
			return stats_fail(p);
		stats_name_char(p, ch);
		return 0;
	case ST_ESCAPE: {
		static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
		const char *at = ch != '\0' ? strchr(from, ch) : NULL;

		if (ch == 'u') {
			p->esc_left = 4;
			p->num = 0;
			p->state = ST_UHEX;
			return 0;
		}
		if (at == NULL)
			return stats_fail(p);
		stats_name_char(p, to[at - from]);
		p->state = ST_STRING;
		return 0;
	}
	case ST_UHEX:
		if (hex_digit(ch) < 0)
			return stats_fail(p);
		p->num = p->num * 16 + (uint64_t)hex_digit(ch);
		if (--p->esc_left == 0) {
			/* The names compared are ASCII: anything else just differs. */
			stats_name_char(p, p->num < 0x80 && p->num > 0 ? (char)p->num : '\x01');
			p->state = ST_STRING;
		}
		return 0;
	case ST_NUM_MINUS:
		if (ch == '0') {
			p->state = ST_NUM_ZERO;
			return 0;
		}
		if (ch < '1' || ch > '9')
			return stats_fail(p);
		p->state = ST_NUM_INT;
		return 0;
	case ST_NUM_ZERO:
	case ST_NUM_INT:
		if (ch >= '0' && ch <= '9' && p->state == ST_NUM_INT) {
			uint64_t d = (uint64_t)(ch - '0');

			p->num = p->num > (UINT64_MAX - d) / 10 ? UINT64_MAX : p->num * 10 + d;
			return 0;
		}
		if (ch == '.' || ch == 'e' || ch == 'E') {
			p->num_int = false;
			p->state = ch == '.' ? ST_NUM_DOT : ST_NUM_E;
			return 0;
		}
		if (ch >= '0' && ch <= '9')
			return stats_fail(p); /* a leading zero */
		stats_number_done(p);
		return 1;
	case ST_NUM_DOT:
		if (ch < '0' || ch > '9')
			return stats_fail(p);
		p->state = ST_NUM_FRAC;
		return 0;
	case ST_NUM_FRAC:
		if (ch >= '0' && ch <= '9')
			return 0;
		if (ch == 'e' || ch == 'E') {
			p->state = ST_NUM_E;
			return 0;
		}
		stats_number_done(p);
		return 1;
	case ST_NUM_E:
		if (ch == '+' || ch == '-') {
			p->state = ST_NUM_ESIGN;
			return 0;
		}
		/* fall through */
	case ST_NUM_ESIGN:
		if (ch < '0' || ch > '9')
			return stats_fail(p);
		p->state = ST_NUM_EXP;
		return 0;
	case ST_NUM_EXP:
		if (ch >= '0' && ch <= '9')
			return 0;
		stats_number_done(p);
		return 1;
	case ST_LITERAL:
		if (ch != p->lit[p->lit_pos])
			return stats_fail(p);
		if (++p->lit_pos == p->lit_len)
			stats_value_done(p);
		return 0;
	case ST_DONE:
		return stats_space(ch) ? 0 : stats_fail(p);
	default:
		return stats_fail(p);
	}
}

int stats_feed(struct stats_parser *p, const char *buf, size_t len)
{
	for (size_t i = 0; i < len && p->error == 0; i++) {
		int rc = stats_byte(p, buf[i]);

		/* A number ends at the first byte that is not part of it, which
		 * belongs to what follows. */
		if (rc == 1 && p->error == 0)
			rc = stats_byte(p, buf[i]);
		if (rc < 0)
			return p->error;
	}
	return p->error;
}

int stats_finish(struct stats_parser *p, uint32_t *channels, uint32_t *sessions)
{
	if (p->error != 0)
		return p->error;
	/* A top-level value cannot be a number here (only an array is
	 * accepted), so the document is complete exactly when it is done. */
	if (p->state != ST_DONE)
		return stats_fail(p);
	*channels = p->channels > UINT32_MAX ? UINT32_MAX : (uint32_t)p->channels;
	*sessions = p->sessions > UINT32_MAX ? UINT32_MAX : (uint32_t)p->sessions;
	return 0;
}

int stats_parse(const char *body, size_t len, uint32_t *channels, uint32_t *sessions)
{
	struct stats_parser p;

	stats_init(&p);
	if (stats_feed(&p, body, len) != 0)
		return -EINVAL;
	return stats_finish(&p, channels, sessions);
}
