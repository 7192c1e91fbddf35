/* Selection: one lock-free pass over the registry, then the region filter and a load/RR choice. */
#include "select.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "circuit.h"
#include "log.h"
#include "region.h"

/* The registry never holds more slots than this (its capacity bound); slots
 * past it would not fit in the candidate buffer and are ignored. */
#define SELECT_MAX_SLOTS 65536u
/* Distances are normalised by roughly half the Earth's circumference, the
 * longest great-circle distance, so the distance term stays within [0, w]. */
#define SELECT_DISTANCE_NORM_KM 20000.0

/* What selection remembers of one candidate between the scan and the choice. */
struct select_cand {
	uint32_t slot;
	uint8_t region_id;
	uint8_t hint_match; /* region string equals the unknown hint (by hash until confirmed) */
	uint8_t dead; /* vanished or unreadable when the full record was read */
	double score; /* strategy load only */
};

/* Which candidates the hint leaves in the running. */
enum select_filter { SELECT_ALL, SELECT_REGION, SELECT_KNOWN, SELECT_HINT_STRING };

/* The lowest score within a group of candidates: the first candidate (in slot
 * order) that has it, and how many share it exactly; ties == 0: empty group. */
struct select_low {
	double score;
	uint32_t idx;
	uint32_t ties;
};

struct select_snap_entry {
	uint32_t slot;
	uint8_t region_id;
	bool overloaded;
	uint64_t generation;
	uint64_t region_hash; /* for a hint naming a region outside the known ones */
	char region[CONFIG_REGION_MAX]; /* unknown regions only: confirms a hash match */
	double base; /* select_score(..., 0) */
	double per_assigned; /* what one assigned channel adds to the score */
	int64_t stale_at; /* registered SFUs: unusable from then on */
};

#define SELECT_TIES_MAX 64

/*
 * One worker's selection state: the candidate buffer of the scan and the
 * snapshot of the fast paths (described above select_fast). The worker owns
 * it; each worker process is single-threaded, and the buffers are too large
 * for a stack (about 8 MB at the largest registry, touched only as far as
 * the registry reaches).
 */
struct select_snapshot {
	bool fast; /* use the snapshot paths (false: always scan; tests compare) */
	const struct registry *r;
	uint64_t instance, epoch;
	uint64_t batch; /* registry batch sequence the snapshot was built in (even) */
	struct config_tunables t; /* the tunables the scores were computed with */
	bool valid;
	uint32_t n;
	uint32_t region_off[REGION_COUNT + 2]; /* entries of region id k: [off[k], off[k+1]) */
	uint32_t by_region[SELECT_MAX_SLOTS]; /* indexes into e, grouped by region, by base */
	struct select_snap_entry e[SELECT_MAX_SLOTS]; /* all, sorted by (base, slot) */
	uint32_t slot_order[SELECT_MAX_SLOTS]; /* indexes into e, by slot */
	/* Round-robin: the usable entries in slot order, all and per region,
	 * valid for one health_epoch and until usable_until (the first instant a
	 * report goes stale or a circuit's open period or probe claim ends). */
	bool usable_valid;
	uint64_t usable_health;
	int64_t usable_until;
	uint32_t usable_n, usable_overloaded, usable_unhealthy;
	uint32_t usable_all[SELECT_MAX_SLOTS];
	uint32_t usable_off[REGION_COUNT + 2];
	uint32_t usable_by_region[SELECT_MAX_SLOTS];
	struct select_cand cands[SELECT_MAX_SLOTS]; /* the scan's candidates, in slot order */
};


struct select_state {
	const struct config_tunables *t;
	struct registry *r;
	struct select_cand *cands; /* the snapshot object's buffer */
	uint32_t n; /* entries of cands in use, in slot order */
	uint32_t live; /* of those, not dead */
	uint32_t region_count[REGION_COUNT + 1]; /* live candidates per region id */
	uint32_t hint_count; /* live candidates with hint_match */
	/* Strategy load: the lowest score per group, kept during the scan so that
	 * the choice needs no second pass; invalid once a candidate changed. */
	bool lows_valid;
	struct select_low low_region[REGION_COUNT + 1], low_hint, low_all;
	uint32_t torn; /* slots skipped because a seqlocked read kept failing */
	uint32_t unhealthy; /* SFUs skipped: circuit open, probed down, stale */
	uint32_t overloaded; /* SFUs skipped: over an [overload] threshold */
	bool has_ticket; /* rr_counter was taken for this call: ticket */
	uint64_t ticket;
	int hint_region; /* known region of the hint, 0 = none */
	bool hint_string; /* an unknown region string was given */
	const char *hint; /* that string, and its length */
	size_t hint_len;
	enum select_filter filter;
	int filter_region;
};

/* Sessions are scaled by this when no capacity is stated: they still rank
 * SFUs (an SFU with 100 sessions scores like a full one of 100), but with no
 * capacity stated they never make an SFU overloaded. 100 is odoo/sfu's own
 * limit of sessions in one channel. */
#define SELECT_SESSIONS_SCALE 100u

uint32_t select_capacity(const struct config_tunables *t, const struct sfu_hot *h)
{
	return h->max_sessions ? h->max_sessions : t->max_sessions;
}

/*
 * The report-only half of the verdict: whether an SFU's last load report
 * puts it over an [overload] threshold. Sessions count only against a
 * capacity someone stated (heartbeat maxSessions, the [[sfu]] entry's
 * max_sessions or [balancing] max_sessions): a full call on an SFU of
 * unknown size says nothing about what else it can take.
 */
bool select_overloaded(const struct config_tunables *t, const struct sfu_hot *h)
{
	uint32_t cap = select_capacity(t, h);
	double score = t->w_cpu * h->cpu + t->w_memory * h->memory;

	if (!h->has_load)
		return false;
	if (cap > 0) {
		if (h->sessions >= cap)
			return true;
		score += t->w_sessions * (double)h->sessions / (double)cap;
	}
	return h->cpu > t->max_cpu || h->memory > t->max_memory || score > t->max_load_score;
}

/* When a registered SFU's report goes stale (the reaper is about to expire
 * it); INT64_MAX for SFUs that are not expired by heartbeats. */
uint32_t select_expire_after_ms(const struct config_tunables *t)
{
	uint64_t ms = t->stale_after_ms;

	if (t->cluster_n_etcd > 0)
		ms += t->cluster_hold_ms;
	return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

int64_t select_stale_at(const struct config_tunables *t, const struct sfu_hot *h)
{
	if (h->source != SFU_SOURCE_REGISTERED || t->stale_after_ms == 0)
		return INT64_MAX;
	return h->last_report_ms + (int64_t)select_expire_after_ms(t);
}

/* The live half: what other workers and the reaper change between registry
 * writes. Unhealthy while its circuit is open (unless its half-open probe is
 * due: then it competes, and the caller claims the probe) or the reaper's
 * probes find it down. */
static bool select_down_now(const struct registry_slot *slot, int64_t now_ms)
{
	return (!circuit_closed(&slot->cb) && !circuit_probe_ready(&slot->cb, now_ms)) ||
	       atomic_load_explicit(&slot->probe_down, memory_order_relaxed);
}

/*
 * Whether a readable slot may take a channel. Every path (the scan, the
 * snapshot searches, round-robin lists and the affinity pin) decides with
 * these same three functions, in this order: an SFU that is both unhealthy
 * and overloaded counts as unhealthy.
 */
enum select_verdict select_usable(const struct registry_slot *slot, const struct sfu_hot *h,
				  const struct config_tunables *t, int64_t now_ms)
{
	if (!h->in_use)
		return SELECT_FREE;
	if (select_down_now(slot, now_ms) || now_ms > select_stale_at(t, h))
		return SELECT_UNHEALTHY;
	if (select_overloaded(t, h))
		return SELECT_OVERLOADED;
	return SELECT_USABLE;
}

static bool select_excluded(uint32_t slot, const uint32_t *exclude, size_t nexclude)
{
	for (size_t i = 0; i < nexclude; i++)
		if (exclude[i] == slot)
			return true;
	return false;
}

double select_score(const struct config_tunables *t, const struct sfu_hot *h, uint64_t assigned)
{
	uint32_t cap = select_capacity(t, h);
	double max = (double)(cap ? cap : SELECT_SESSIONS_SCALE);
	double per_channel = 1.0;

	if (!h->has_load)
		return t->w_sessions * (double)assigned / max;
	/* assigned counts channels but the score counts sessions: a channel we
	 * sent will hold as many sessions as the SFU's channels do on average
	 * (a call has several participants), at least one. */
	if (h->channels > 0 && h->sessions > h->channels)
		per_channel = (double)h->sessions / (double)h->channels;
	return t->w_sessions * ((double)h->sessions + (double)assigned * per_channel) / max +
	       t->w_cpu * h->cpu + t->w_memory * h->memory;
}

/* True when the record's region string is exactly the hint (the hash only
 * narrowed it down; a collision must not route to a wrong region). */
static bool select_region_equals(const struct sfu_record *rec, const char *hint, size_t len)
{
	return len < sizeof(rec->cold.region) && memcmp(rec->cold.region, hint, len) == 0 &&
	       rec->cold.region[len] == '\0';
}

/* Reads the hint: region string first, else the country. */
static void select_parse_hint(struct select_state *st, const struct select_query *q)
{
	if (!q)
		return;
	if (q->region && q->region_len > 0) {
		st->hint_region = region_lookup(q->region, q->region_len);
		if (st->hint_region == REGION_UNKNOWN) {
			st->hint_string = true;
			st->hint = q->region;
			st->hint_len = q->region_len;
		}
	} else if (q->country && q->country_len > 0) {
		st->hint_region = region_from_country(q->country, q->country_len);
	}
}

/* The hash an SFU's hot.region_hash must have to match the unknown hint; 0
 * (never a registry_hash value) when no SFU region can equal it. */
static uint64_t select_hint_hash(const struct select_state *st)
{
	char buf[CONFIG_REGION_MAX];

	if (!st->hint_string || st->hint_len >= sizeof(buf))
		return 0;
	memcpy(buf, st->hint, st->hint_len);
	buf[st->hint_len] = '\0';
	return registry_hash(buf);
}

static void select_low_add(struct select_low *l, double score, uint32_t idx)
{
	if (l->ties == 0 || score < l->score) {
		l->score = score;
		l->idx = idx;
		l->ties = 1;
	} else if (score == l->score) {
		l->ties++;
	}
}

static void select_low_merge(struct select_low *l, const struct select_low *o)
{
	if (o->ties == 0)
		return;
	if (l->ties == 0 || o->score < l->score) {
		*l = *o;
	} else if (o->score == l->score) {
		l->ties += o->ties;
		if (o->idx < l->idx)
			l->idx = o->idx;
	}
}

/* The single pass over the registry: copies what the choice needs of every
 * candidate into select_cands, in slot order. */
static void select_scan(struct select_state *st, const uint32_t *exclude, size_t nexclude,
			int64_t now_ms)
{
	struct registry *r = st->r;
	const struct config_tunables *t = st->t;
	uint32_t end = registry_scan_end(r);
	uint64_t hint_hash = select_hint_hash(st);
	bool load = t->strategy == STRATEGY_LOAD;
	bool distance = load && t->w_distance > 0.0 && st->hint_region != REGION_UNKNOWN;
	static bool warned;

	if (end > SELECT_MAX_SLOTS) {
		if (!warned)
			log_warn("select: registry has %u slots, only the first %u are used", end,
				 SELECT_MAX_SLOTS);
		warned = true;
		end = SELECT_MAX_SLOTS;
	}
	for (uint32_t i = 0; i < end; i++) {
		struct sfu_hot h;
		struct select_cand *c;
		int rc;

		if (select_excluded(i, exclude, nexclude))
			continue;
		rc = registry_read_hot(r, i, &h);
		if (rc == -EAGAIN)
			st->torn++;
		if (rc != 0)
			continue;
		switch (select_usable(&r->slots[i], &h, t, now_ms)) {
		case SELECT_USABLE: break;
		case SELECT_FREE: continue;
		case SELECT_UNHEALTHY: st->unhealthy++; continue;
		case SELECT_OVERLOADED: st->overloaded++; continue;
		}
		c = &st->cands[st->n++];
		c->slot = i;
		c->region_id = h.region_id <= REGION_COUNT ? h.region_id : REGION_UNKNOWN;
		c->hint_match = hint_hash != 0 && h.region_hash == hint_hash;
		c->dead = 0;
		c->score = 0.0;
		if (load) {
			uint64_t assigned = atomic_load_explicit(&r->slots[i].assigned,
								 memory_order_relaxed);

			c->score = select_score(t, &h, assigned);
			if (distance && c->region_id != REGION_UNKNOWN)
				c->score += t->w_distance *
					    region_distance_km(st->hint_region, c->region_id) /
					    SELECT_DISTANCE_NORM_KM;
		}
		st->live++;
		st->region_count[c->region_id]++;
		st->hint_count += c->hint_match;
		if (load) {
			uint32_t idx = st->n - 1;

			select_low_add(&st->low_region[c->region_id], c->score, idx);
			if (c->hint_match)
				select_low_add(&st->low_hint, c->score, idx);
			select_low_add(&st->low_all, c->score, idx);
		}
	}
	st->lows_valid = load;
}

/*
 * Decides which candidates the hint leaves, from the live counts. A known
 * region walks the proximity order to the first region with a candidate. With
 * a distance weight under strategy load, that hard cut would make the weight
 * meaningless (every remaining SFU would be in one region), so instead every
 * SFU in a known region stays in and the distance term of the score trades
 * nearness against load; SFUs outside the known regions are still used only
 * when no known region has one, as with the proximity walk.
 */
static void select_choose_filter(struct select_state *st)
{
	const struct config_tunables *t = st->t;

	st->filter = SELECT_ALL;
	if (st->hint_region != REGION_UNKNOWN) {
		const uint8_t *order = region_proximity(st->hint_region);

		if (t->strategy == STRATEGY_LOAD && t->w_distance > 0.0) {
			for (int id = 1; id <= REGION_COUNT; id++)
				if (st->region_count[id] > 0)
					st->filter = SELECT_KNOWN;
			return;
		}
		for (int k = 0; k < REGION_COUNT; k++) {
			if (st->region_count[order[k]] > 0) {
				st->filter = SELECT_REGION;
				st->filter_region = order[k];
				return;
			}
		}
	} else if (st->hint_string && st->hint_count > 0) {
		st->filter = SELECT_HINT_STRING;
	}
}

static bool select_matches(const struct select_state *st, const struct select_cand *c)
{
	if (c->dead)
		return false;
	switch (st->filter) {
	case SELECT_REGION:
		return c->region_id == st->filter_region;
	case SELECT_KNOWN:
		return c->region_id != REGION_UNKNOWN;
	case SELECT_HINT_STRING:
		return c->hint_match;
	case SELECT_ALL:
		break;
	}
	return true;
}

/* How many live candidates the filter leaves, from the counts. */
static uint32_t select_filter_count(const struct select_state *st)
{
	switch (st->filter) {
	case SELECT_REGION:
		return st->region_count[st->filter_region];
	case SELECT_KNOWN:
		return st->live - st->region_count[REGION_UNKNOWN];
	case SELECT_HINT_STRING:
		return st->hint_count;
	case SELECT_ALL:
		break;
	}
	return st->live;
}

/* The lowest score among the candidates the filter leaves. */
static struct select_low select_filter_low(const struct select_state *st)
{
	struct select_low low = { 0.0, 0, 0 };

	if (!st->lows_valid) {
		for (uint32_t i = 0; i < st->n; i++)
			if (select_matches(st, &st->cands[i]))
				select_low_add(&low, st->cands[i].score, i);
		return low;
	}
	switch (st->filter) {
	case SELECT_REGION:
		return st->low_region[st->filter_region];
	case SELECT_KNOWN:
		for (int id = 1; id <= REGION_COUNT; id++)
			select_low_merge(&low, &st->low_region[id]);
		return low;
	case SELECT_HINT_STRING:
		return st->low_hint;
	case SELECT_ALL:
		break;
	}
	return st->low_all;
}

/* The k-th matching candidate in slot order (k < number of matches); with
 * only_score set, counting only those whose score equals *only_score. */
static struct select_cand *select_nth(const struct select_state *st, uint64_t k,
				      const double *only_score)
{
	/* No hint and no dead entry: the k-th candidate is simply entry k. */
	if (!only_score && st->filter == SELECT_ALL && st->live == st->n)
		return k < st->n ? &st->cands[k] : NULL;
	for (uint32_t i = 0; i < st->n; i++) {
		struct select_cand *c = &st->cands[i];

		if (!select_matches(st, c) || (only_score && c->score != *only_score))
			continue;
		if (k-- == 0)
			return c;
	}
	return NULL;
}

/*
 * Round-robin: the fetch_add makes all workers share one sequence. One ticket
 * per call: when the full read rejects a pick and the choice is made again,
 * taking a second ticket would skip a position of the sequence every time and
 * so starve some candidate for as long as the rejection repeats.
 */
static struct select_cand *select_pick_rr(struct select_state *st, const double *only_score,
					  uint64_t m)
{
	if (!st->has_ticket) {
		st->ticket = atomic_fetch_add_explicit(&st->r->rr_counter, 1, memory_order_relaxed);
		st->has_ticket = true;
	}
	return select_nth(st, st->ticket % m, only_score);
}

/* The candidate the strategy picks among the matching ones, NULL when none. */
static struct select_cand *select_pick(struct select_state *st)
{
	struct select_low low;
	uint32_t m;

	if (st->t->strategy != STRATEGY_LOAD) {
		m = select_filter_count(st);
		return m ? select_pick_rr(st, NULL, m) : NULL;
	}
	low = select_filter_low(st);
	if (low.ties == 0)
		return NULL;
	if (low.ties == 1)
		return &st->cands[low.idx];
	return select_pick_rr(st, &low.score, low.ties);
}

/* Moves a candidate between the live counts after its full read disagreed
 * with the scan (or marks it dead when the read failed). */
static void select_recount(struct select_state *st, struct select_cand *c, int new_region,
			   bool new_match, bool dead)
{
	st->region_count[c->region_id]--;
	st->hint_count -= c->hint_match;
	st->lows_valid = false;
	if (dead) {
		c->dead = 1;
		st->live--;
		return;
	}
	c->region_id = (uint8_t)new_region;
	c->hint_match = new_match;
	st->region_count[c->region_id]++;
	st->hint_count += c->hint_match;
}

/*
 * Fast path: strategy load without a distance weight (the defaults), for
 * fleets where a scan of every slot per request would cost too much.
 *
 * Between two registry writes (heartbeats, reloads, probes: tens per second
 * at most) nothing in the hot parts changes, so each worker keeps a snapshot
 * rebuilt when the registry's epoch moves: per SFU its score without
 * assignments ("base"), the score one assigned channel adds, and the verdicts
 * that depend on the report only (overload, when it goes stale). Entries are
 * sorted by base within each region. What moves between writes, assignments
 * and circuit state, is read live, and the search stops at the first entry
 * whose base is above the best score found: score >= base, so no later entry
 * can win. The answer is exactly the slow path's (lowest score, exact ties
 * round-robin in slot order); only the work differs.
 */
static int select_snap_cmp(const void *a, const void *b)
{
	const struct select_snap_entry *x = a, *y = b;

	if (x->base != y->base)
		return x->base < y->base ? -1 : 1;
	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

static int select_snap_slot_cmp(const void *a, const void *b, void *arg)
{
	const struct select_snapshot *sn = arg;
	uint32_t x = sn->e[*(const uint32_t *)a].slot;
	uint32_t y = sn->e[*(const uint32_t *)b].slot;

	return x < y ? -1 : x > y;
}

/* The tunables a snapshot's scores and verdicts depend on. */
static bool select_snap_same_tunables(const struct config_tunables *a,
				      const struct config_tunables *b)
{
	return a->w_sessions == b->w_sessions && a->w_cpu == b->w_cpu &&
	       a->w_memory == b->w_memory && a->max_sessions == b->max_sessions &&
	       select_expire_after_ms(a) == select_expire_after_ms(b) &&
	       a->max_load_score == b->max_load_score &&
	       a->max_cpu == b->max_cpu && a->max_memory == b->max_memory;
}

/* Rebuilds the snapshot; false when the registry kept changing under it. */
static bool select_snap_build(struct select_snapshot *sn, const struct registry *r,
			      const struct config_tunables *t)
{
	uint64_t epoch, batch;
	uint32_t end, n = 0, count[REGION_COUNT + 1] = { 0 };

	sn->valid = false;
	/* The whole set as one batch left it: no half-applied list. */
	if (registry_view_begin(r, &batch) != 0)
		return false;
	epoch = atomic_load_explicit(&r->epoch, memory_order_acquire);
	end = registry_scan_end(r);
	if (end > SELECT_MAX_SLOTS)
		return false;
	for (uint32_t i = 0; i < end; i++) {
		struct select_snap_entry *e = &sn->e[n];
		struct sfu_hot h;
		int rc = registry_read_hot(r, i, &h);

		if (rc == -ENOENT)
			continue;
		if (rc != 0)
			return false; /* torn: such a snapshot could not be trusted */
		e->slot = i;
		e->region_id = h.region_id <= REGION_COUNT ? h.region_id : REGION_UNKNOWN;
		e->generation = h.generation;
		e->region_hash = h.region_hash;
		e->region[0] = '\0';
		if (e->region_id == REGION_UNKNOWN && h.region_hash != 0) {
			struct sfu_record rec;

			/* The string itself, so a hint is matched here, not by a
			 * registry read per request. */
			if (registry_read(r, i, &rec) != 0 || rec.hot.generation != h.generation)
				return false;
			memcpy(e->region, rec.cold.region, sizeof(e->region));
		}
		e->base = select_score(t, &h, 0);
		e->per_assigned = select_score(t, &h, 1) - e->base;
		e->overloaded = select_overloaded(t, &h);
		e->stale_at = select_stale_at(t, &h);
		count[e->region_id]++;
		n++;
	}
	if (atomic_load_explicit(&r->epoch, memory_order_acquire) != epoch ||
	    !registry_view_valid(r, batch))
		return false;
	qsort(sn->e, n, sizeof(sn->e[0]), select_snap_cmp);
	sn->region_off[0] = 0;
	for (int k = 0; k <= REGION_COUNT; k++)
		sn->region_off[k + 1] = sn->region_off[k] + count[k];
	{
		uint32_t fill[REGION_COUNT + 1];

		memcpy(fill, sn->region_off, sizeof(fill));
		for (uint32_t i = 0; i < n; i++)
			sn->by_region[fill[sn->e[i].region_id]++] = i;
	}
	for (uint32_t i = 0; i < n; i++)
		sn->slot_order[i] = i;
	qsort_r(sn->slot_order, n, sizeof(uint32_t), select_snap_slot_cmp, sn);
	sn->usable_valid = false;
	sn->r = r;
	sn->instance = r->instance;
	sn->epoch = epoch;
	sn->batch = batch;
	sn->t = *t;
	sn->n = n;
	sn->valid = true;
	return true;
}

/* Makes the snapshot current for this registry, its epoch and the tunables;
 * false when it could not be rebuilt (take the slow path). */
static bool select_snap_fresh(struct select_snapshot *sn, const struct registry *r,
			      const struct config_tunables *t)
{
	if (sn->valid && sn->r == r && sn->instance == r->instance &&
	    sn->epoch == atomic_load_explicit(&r->epoch, memory_order_acquire) &&
	    sn->batch == registry_batch_seq(r) && select_snap_same_tunables(&sn->t, t))
		return true;
	return select_snap_build(sn, r, t);
}

/* The chosen entry's slot, read whole: still the SFU the snapshot holds, and
 * no batch has changed the set since the snapshot was built (else the
 * choice was made on a list that is no longer the registry's). */
static bool select_snap_confirm(const struct select_snapshot *sn, struct registry *r,
				uint32_t idx, struct select_choice *out)
{
	if (registry_read(r, sn->e[idx].slot, &out->rec) != 0 || !out->rec.hot.in_use ||
	    out->rec.hot.generation != sn->e[idx].generation || !registry_view_valid(r, sn->batch))
		return false;
	out->slot = sn->e[idx].slot;
	return true;
}

/* Whether entry e's region string is exactly the unknown hint. */
static bool select_snap_matches(const struct select_snap_entry *e, const struct select_state *st,
				uint64_t hash)
{
	return e->region_hash == hash && st->hint_len < sizeof(e->region) &&
	       memcmp(e->region, st->hint, st->hint_len) == 0 && e->region[st->hint_len] == '\0';
}

/* What a search over one list of entries found. */
struct select_fast {
	double best;
	uint32_t ties[SELECT_TIES_MAX]; /* entry indexes at the best score */
	uint32_t n_ties;
	uint32_t overloaded, unhealthy;
};

/* Branch and bound over entries sorted by base; list == NULL means all;
 * hash != 0 keeps only SFUs whose region string hashes to it. */
static void select_fast_search(const struct select_snapshot *sn, struct registry *r,
			       const struct select_state *st,
			       const uint32_t *list, uint32_t n, uint64_t hash,
			       const uint32_t *exclude, size_t nexclude, int64_t now_ms,
			       struct select_fast *f)
{
	for (uint32_t k = 0; k < n; k++) {
		uint32_t idx = list ? list[k] : k;
		const struct select_snap_entry *e = &sn->e[idx];
		const struct registry_slot *sl = &r->slots[e->slot];
		double score;

		if (e->base > f->best)
			break;
		if ((hash != 0 && !select_snap_matches(e, st, hash)) ||
		    select_excluded(e->slot, exclude, nexclude))
			continue;
		if (e->overloaded) {
			/* Counted as select_usable would: unhealthy comes first. */
			if (now_ms > e->stale_at || select_down_now(sl, now_ms))
				f->unhealthy++;
			else
				f->overloaded++;
			continue;
		}
		score = e->base + e->per_assigned * (double)atomic_load_explicit(
							     &sl->assigned, memory_order_relaxed);
		/* Health is read only for an SFU that would win: most visited
		 * ones do not, and each check is another load. */
		if (score > f->best)
			continue;
		if (now_ms > e->stale_at || select_down_now(sl, now_ms)) {
			f->unhealthy++;
			continue;
		}
		if (score < f->best) {
			f->best = score;
			f->n_ties = 0;
		}
		if (score == f->best && f->n_ties < SELECT_TIES_MAX)
			f->ties[f->n_ties++] = idx;
	}
}

static int select_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Returns 0 with *out, a negative errno like select_best, or 1 when this
 * call must take the slow path (snapshot not usable, or the chosen slot
 * changed since the snapshot).
 */
static int select_fast(struct select_snapshot *sn, struct registry *r,
		       const struct config_tunables *t,
		       const struct select_state *st, const uint32_t *exclude, size_t nexclude,
		       int64_t now_ms, struct select_choice *out)
{
	struct select_fast f;
	uint32_t pick;

	if (t->strategy != STRATEGY_LOAD || t->w_distance > 0.0)
		return 1;
	if (!select_snap_fresh(sn, r, t))
		return 1;
	memset(&f, 0, sizeof(f));
	f.best = HUGE_VAL;
	if (st->hint_region != REGION_UNKNOWN) {
		const uint8_t *order = region_proximity(st->hint_region);

		/* The first region, nearest first, where some SFU can take it. */
		for (int k = 0; k < REGION_COUNT && f.n_ties == 0; k++) {
			uint32_t off = sn->region_off[order[k]];

			select_fast_search(sn, r, st, sn->by_region + off,
					   sn->region_off[order[k] + 1] - off, 0, exclude,
					   nexclude, now_ms, &f);
		}
	} else if (st->hint_string && select_hint_hash(st) != 0) {
		select_fast_search(sn, r, st, NULL, sn->n, select_hint_hash(st), exclude,
				   nexclude, now_ms, &f);
	}
	if (f.n_ties == 0) {
		f.overloaded = f.unhealthy = 0;
		select_fast_search(sn, r, st, NULL, sn->n, 0, exclude, nexclude, now_ms, &f);
	}
	if (f.n_ties == 0)
		return f.overloaded > 0 ? -EBUSY : f.unhealthy > 0 ? -EHOSTDOWN : -ENOENT;
	pick = f.ties[0];
	if (f.n_ties > 1) {
		/* Exact ties go round-robin, in slot order, as on the slow path. */
		uint32_t slots[SELECT_TIES_MAX];

		for (uint32_t i = 0; i < f.n_ties; i++)
			slots[i] = sn->e[f.ties[i]].slot;
		qsort(slots, f.n_ties, sizeof(slots[0]), select_cmp_u32);
		pick = slots[atomic_fetch_add_explicit(&r->rr_counter, 1, memory_order_relaxed) %
			     f.n_ties];
		for (uint32_t i = 0; i < f.n_ties; i++)
			if (sn->e[f.ties[i]].slot == pick)
				pick = f.ties[i];
	}
	return select_snap_confirm(sn, r, pick, out) ? 0 : 1;
}

/* Lists the usable entries in slot order, all and per region, with the
 * instant this stops being true (see select_snap). */
static void select_rr_refresh(struct select_snapshot *sn, const struct registry *r, int64_t now_ms)
{
	uint32_t count[REGION_COUNT + 1] = { 0 }, fill[REGION_COUNT + 1];
	int64_t until = INT64_MAX;
	uint32_t n = 0;

	sn->usable_health = atomic_load_explicit(&r->health_epoch, memory_order_acquire);
	sn->usable_overloaded = sn->usable_unhealthy = 0;
	for (uint32_t k = 0; k < sn->n; k++) {
		uint32_t idx = sn->slot_order[k];
		const struct select_snap_entry *e = &sn->e[idx];
		const struct registry_slot *sl = &r->slots[e->slot];
		int64_t change = circuit_next_change(&sl->cb, now_ms);

		if (e->stale_at >= now_ms && e->stale_at < until)
			until = e->stale_at + 1;
		if (change < until)
			until = change;
		if (now_ms > e->stale_at || select_down_now(sl, now_ms)) {
			sn->usable_unhealthy++;
			continue;
		}
		if (e->overloaded) {
			sn->usable_overloaded++;
			continue;
		}
		sn->usable_all[n++] = idx;
		count[e->region_id]++;
	}
	sn->usable_off[0] = 0;
	for (int k = 0; k <= REGION_COUNT; k++)
		sn->usable_off[k + 1] = sn->usable_off[k] + count[k];
	memcpy(fill, sn->usable_off, sizeof(fill));
	for (uint32_t i = 0; i < n; i++) {
		uint32_t idx = sn->usable_all[i];

		sn->usable_by_region[fill[sn->e[idx].region_id]++] = idx;
	}
	sn->usable_n = n;
	sn->usable_until = until;
	sn->usable_valid = true;
}

/*
 * Round-robin without a scan: the existing gateway's rotation over the usable
 * SFUs in slot order, from lists that change only when the registry, an
 * SFU's health or the clock passes one of their deadlines. A request that
 * already tried some SFUs (failover) takes the slow path. Returns like
 * select_fast.
 */
static int select_rr_fast(struct select_snapshot *sn, struct registry *r,
			  const struct config_tunables *t,
			  const struct select_state *st, size_t nexclude, int64_t now_ms,
			  struct select_choice *out)
{
	const uint32_t *list = NULL;
	uint32_t m = 0, idx;

	if (t->strategy != STRATEGY_ROUND_ROBIN || nexclude > 0)
		return 1;
	if (!select_snap_fresh(sn, r, t))
		return 1;
	if (!sn->usable_valid || now_ms >= sn->usable_until ||
	    sn->usable_health != atomic_load_explicit(&r->health_epoch, memory_order_acquire))
		select_rr_refresh(sn, r, now_ms);
	if (st->hint_region != REGION_UNKNOWN) {
		const uint8_t *order = region_proximity(st->hint_region);

		for (int k = 0; k < REGION_COUNT && m == 0; k++) {
			list = sn->usable_by_region + sn->usable_off[order[k]];
			m = sn->usable_off[order[k] + 1] - sn->usable_off[order[k]];
		}
	}
	if (st->hint_string && select_hint_hash(st) != 0) {
		/* A region outside the known ones: count its SFUs (by their
		 * string, a hash match alone could be a collision), then take the
		 * ticket's one: two passes over the dense usable list. */
		uint64_t hash = select_hint_hash(st);
		uint32_t matches = 0;

		for (uint32_t i = 0; i < sn->usable_n; i++)
			matches += select_snap_matches(&sn->e[sn->usable_all[i]], st,
						       hash);
		if (matches > 0) {
			uint64_t nth = atomic_fetch_add_explicit(&r->rr_counter, 1,
								 memory_order_relaxed) % matches;

			for (uint32_t i = 0;; i++) {
				idx = sn->usable_all[i];
				if (select_snap_matches(&sn->e[idx], st, hash) && nth-- == 0)
					break;
			}
			goto chosen;
		}
	}
	if (m == 0) {
		list = sn->usable_all;
		m = sn->usable_n;
	}
	if (m == 0)
		return sn->usable_overloaded > 0  ? -EBUSY
		       : sn->usable_unhealthy > 0 ? -EHOSTDOWN
							  : -ENOENT;
	idx = list[atomic_fetch_add_explicit(&r->rr_counter, 1, memory_order_relaxed) % m];
chosen:
	return select_snap_confirm(sn, r, idx, out) ? 0 : 1;
}

/*
 * The scan and the choice over one view of the set. The scan read only hot
 * parts; the chosen slot is now read whole. It can have been freed, reused or
 * changed meanwhile, and a region hash can collide, so the full record is
 * checked against the filter; on a mismatch the candidate's view is corrected
 * and the choice is made again. Every round removes or corrects one
 * candidate; the bound only guards against a writer changing the same slot
 * forever.
 */
static int select_slow(struct select_state *st, struct registry *r, const uint32_t *exclude,
		       size_t nexclude, int64_t now_ms, struct select_choice *out)
{
	uint32_t rounds;

	select_scan(st, exclude, nexclude, now_ms);
	for (rounds = 0; rounds <= 2 * st->n + 1; rounds++) {
		struct select_cand *c;
		int rc, region;
		bool match;

		select_choose_filter(st);
		c = select_pick(st);
		if (!c) {
			if (st->overloaded > 0)
				return -EBUSY;
			if (st->unhealthy > 0)
				return -EHOSTDOWN;
			return st->torn ? -EAGAIN : -ENOENT;
		}
		rc = registry_read(r, c->slot, &out->rec);
		if (rc == -EAGAIN)
			st->torn++;
		if (rc != 0 || !out->rec.hot.in_use) {
			select_recount(st, c, 0, false, true);
			continue;
		}
		region = out->rec.hot.region_id <= REGION_COUNT ? out->rec.hot.region_id : 0;
		match = st->hint_string && select_region_equals(&out->rec, st->hint, st->hint_len);
		if (region != c->region_id || match != (bool)c->hint_match) {
			select_recount(st, c, region, match, false);
			continue;
		}
		out->slot = c->slot;
		return 0;
	}
	return -EAGAIN;
}

/* Views tried before a selection gives up: each failure means a whole batch
 * was applied during one scan, which lists change far too rarely to repeat. */
#define SELECT_VIEW_TRIES 8

int select_best(struct select_snapshot *sn, struct registry *r, const struct config_tunables *t,
		const struct select_query *q, const uint32_t *exclude, size_t nexclude,
		int64_t now_ms, struct select_choice *out)
{
	struct select_state st = { .t = t, .r = r, .cands = sn->cands };
	int fast = 1;

	select_parse_hint(&st, q);
	if (sn->fast) {
		fast = select_fast(sn, r, t, &st, exclude, nexclude, now_ms, out);
		if (fast == 1)
			fast = select_rr_fast(sn, r, t, &st, nexclude, now_ms, out);
	}
	if (fast != 1)
		return fast;
	/* The whole choice, answer included, within one view of the set: a list
	 * applied meanwhile would otherwise let the answer mix it with the last. */
	for (int tries = 0; tries < SELECT_VIEW_TRIES; tries++) {
		uint64_t batch;
		int rc;

		if (registry_view_begin(r, &batch) != 0)
			return -EAGAIN;
		st = (struct select_state){ .t = t, .r = r, .cands = sn->cands };
		select_parse_hint(&st, q);
		rc = select_slow(&st, r, exclude, nexclude, now_ms, out);
		if (registry_view_valid(r, batch))
			return rc;
	}
	return -EAGAIN;
}

struct select_snapshot *select_snapshot_new(bool fast)
{
	struct select_snapshot *sn = calloc(1, sizeof(*sn));

	if (sn != NULL)
		sn->fast = fast;
	return sn;
}

void select_snapshot_free(struct select_snapshot *sn)
{
	free(sn);
}

int select_pinned(struct registry *r, const struct config_tunables *t, uint32_t slot,
		  uint64_t generation, int64_t now_ms, struct select_choice *out)
{
	struct sfu_record rec;
	uint64_t batch;

	/* *out stays untouched unless the pin is good: callers fall back to it.
	 * A repeat of a pinned issuer joins the channel already running there,
	 * which adds no load a new call would: it is never refused for load,
	 * only for health. The pinned SFU must still be in the set as a whole
	 * batch left it. */
	if (slot >= registry_scan_end(r) || registry_view_begin(r, &batch) != 0 ||
	    registry_read(r, slot, &rec) != 0 || rec.hot.generation != generation ||
	    !registry_view_valid(r, batch))
		return -ENOENT;
	switch (select_usable(&r->slots[slot], &rec.hot, t, now_ms)) {
	case SELECT_USABLE:
	case SELECT_OVERLOADED:
		break;
	case SELECT_FREE:
	case SELECT_UNHEALTHY:
		return -ENOENT;
	}
	out->rec = rec;
	out->slot = slot;
	return 0;
}
