/* odoo/sfu's GET /v1/stats, read as it streams in: channel and session counts without the whole body. */
#ifndef SFU_STATS_H
#define SFU_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Containers deeper than this are refused (odoo/sfu's answer is 4 deep). */
#define STATS_DEPTH_MAX 32
/* Longest member name compared; longer ones match nothing. */
#define STATS_NAME_MAX 16

/*
 * The body is a JSON array with one object per channel. channels is the
 * array's length; sessions is the sum over channels of "sessionsStats":
 * {"count": n}, as odoo/sfu writes it. Counts that are not non-negative
 * integers count 0; sums
 * saturate at UINT32_MAX. The parser validates the whole document as strict
 * JSON (like JSON.parse: no trailing commas, comments or trailing garbage),
 * keeps a few dozen bytes of state whatever the body's size, and allocates
 * nothing, so a stats answer of any size costs no memory.
 */
struct stats_parser {
	int state; /* where in the grammar the next byte lands (stats.c) */
	int error; /* 0, or -EINVAL once the document is malformed (sticky) */
	uint32_t depth; /* open containers */
	uint8_t stack[STATS_DEPTH_MAX]; /* per open container: object or array, and what it is */
	/* The string being read: a member name is compared as it arrives. */
	bool in_key;
	uint8_t esc_left; /* hex digits left of a \u escape */
	char name[STATS_NAME_MAX + 1];
	uint32_t name_len; /* bytes of name so far; > STATS_NAME_MAX: no match */
	/* The member whose value comes next, at its depth (stats.c's enum). */
	int member;
	/* The number being read. */
	bool num_int; /* only digits so far, no sign, fraction or exponent */
	uint64_t num;
	char lit[6]; /* true/false/null being matched */
	uint8_t lit_len, lit_pos;
	/* The channel being read and the totals. */
	bool has_stats_count;
	uint64_t stats_count;
	uint64_t channels, sessions;
};

void stats_init(struct stats_parser *p);
/* Feeds the next bytes. 0, or -EINVAL once the document is malformed. */
int stats_feed(struct stats_parser *p, const char *buf, size_t len);
/* The end of the body: 0 with the counts when the document was one complete
 * array, else -EINVAL. */
int stats_finish(struct stats_parser *p, uint32_t *channels, uint32_t *sessions);
/* A whole body at once: stats_init, stats_feed, stats_finish. */
int stats_parse(const char *body, size_t len, uint32_t *channels, uint32_t *sessions);

#endif
