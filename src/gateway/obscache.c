/* Observability answers (/metrics, /v1/health) rendered within a CPU budget: fresh while it lasts, else the last one. */
#include "obscache.h"

#include <stdlib.h>

bool obscache_must_render(struct obscache *oc, int64_t now_us, uint32_t max_age_ms)
{
	/* Hundredths of a microsecond, so that frequent small refills add up exactly. */
	if (oc->refill_us == 0) {
		/* First use: a full budget. */
		oc->budget = (int64_t)OBSCACHE_BURST_US * 100;
	} else if (now_us > oc->refill_us) {
		oc->budget += (now_us - oc->refill_us) * OBSCACHE_SHARE_PERCENT;
		if (oc->budget > (int64_t)OBSCACHE_BURST_US * 100)
			oc->budget = (int64_t)OBSCACHE_BURST_US * 100;
	}
	oc->refill_us = now_us;
	if (max_age_ms == 0 || oc->page == NULL || oc->budget > 0)
		return true;
	return now_us - oc->rendered_us >= (int64_t)max_age_ms * 1000;
}

static void obscache_unref(void *arg)
{
	struct obscache_page *p = arg;

	if (--p->refs > 0)
		return;
	strbuf_free(&p->text);
	free(p);
}

struct strbuf *obscache_begin(struct obscache *oc)
{
	struct obscache_page *p = oc->page;

	if (p == NULL || p->refs > 1) {
		/* Responses still write the last rendering: they keep it. */
		if (p != NULL)
			obscache_unref(p);
		oc->page = p = calloc(1, sizeof(*p));
		if (p == NULL)
			return NULL;
		p->refs = 1;
	}
	strbuf_reset(&p->text);
	return &p->text;
}

void obscache_commit(struct obscache *oc, int status, int64_t start_us, int64_t end_us)
{
	oc->page->status = status;
	oc->rendered_us = start_us;
	oc->budget -= end_us > start_us ? (end_us - start_us) * 100 : 0;
}

void obscache_abort(struct obscache *oc)
{
	if (oc->page != NULL)
		obscache_unref(oc->page);
	oc->page = NULL;
}

void obscache_send(struct obscache *oc, struct http_conn *c, const char *content_type)
{
	struct obscache_page *p = oc->page;

	p->refs++;
	http_respond_borrowed(c, p->status, content_type, p->text.buf, p->text.len, obscache_unref,
			      p);
}
