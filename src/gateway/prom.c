/* Prometheus text exposition of the shared counters and of every SFU in the registry. */
#include "prom.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "tlsstate.h"

/*
 * What a scrape costs matters: anyone allowed to reach /metrics can repeat it,
 * and a fleet of a thousand SFUs is 8,000 lines. So every counter is summed in
 * one pass over the processes that exist (metrics_totals), every registry slot
 * is read once (not once per family), and the lines are put together with
 * memcpy and hand-written integers rather than a printf per line.
 */

/* Label values are free text (static SFU regions): escape as the format says. */
static void prom_label(struct strbuf *b, const char *in)
{
	const char *run = in;

	for (; *in != '\0'; in++) {
		if (*in != '\\' && *in != '"' && *in != '\n')
			continue;
		strbuf_put(b, run, (size_t)(in - run));
		run = in + 1;
		if (*in == '\n')
			STRBUF_LIT(b, "\\n");
		else if (*in == '\\')
			STRBUF_LIT(b, "\\\\");
		else
			STRBUF_LIT(b, "\\\"");
	}
	strbuf_put(b, run, (size_t)(in - run));
}

static void prom_head(struct strbuf *b, const char *name, const char *type, const char *help)
{
	STRBUF_LIT(b, "# HELP sfu_gateway_");
	strbuf_puts(b, name);
	STRBUF_LIT(b, " ");
	strbuf_puts(b, help);
	STRBUF_LIT(b, "\n# TYPE sfu_gateway_");
	strbuf_puts(b, name);
	STRBUF_LIT(b, " ");
	strbuf_puts(b, type);
	STRBUF_LIT(b, "\n");
}

static void prom_counter(struct strbuf *b, const struct metrics_totals *t, const char *name,
			 const char *help, enum metrics_counter c)
{
	prom_head(b, name, "counter", help);
	STRBUF_LIT(b, "sfu_gateway_");
	strbuf_puts(b, name);
	STRBUF_LIT(b, " ");
	strbuf_u64(b, t->c[c]);
	STRBUF_LIT(b, "\n");
}

static void prom_labelled(struct strbuf *b, const struct metrics_totals *t, const char *name,
			  const char *help, const char *label, const char *const *values,
			  const enum metrics_counter *cs, size_t n)
{
	prom_head(b, name, "counter", help);
	for (size_t i = 0; i < n; i++)
		strbuf_printf(b, "sfu_gateway_%s{%s=\"%s\"} %llu\n", name, label, values[i],
			      (unsigned long long)t->c[cs[i]]);
}

/* One SFU as its families print it: read once, under its seqlock and atomics. */
struct prom_sfu {
	size_t lbl_off, lbl_len; /* its labels in the label buffer */
	uint32_t sessions, channels;
	double cpu, memory;
	uint64_t assigned, ok, failed;
	int64_t age_ms;
	int key_mismatch;
	bool https;
	const char *tls_failure; /* NULL when the last handshake did not fail */
};

/* Views of the set tried before the per-SFU families show what they read anyway
 * (a batch writer that died leaves the batch open until the master repairs it). */
#define PROM_VIEW_TRIES 4

/* Reads every SFU once, all from one view of the set, so that a list applied
 * meanwhile shows whole or not at all; their labels go to lbl. Returns how
 * many, or -ENOMEM. */
static int prom_read_sfus(const struct registry *reg, int64_t now_ms, struct prom_sfu **out,
			  struct strbuf *lbl)
{
	struct prom_sfu *s = NULL;
	int n = 0;

	for (int tries = 0; tries < PROM_VIEW_TRIES; tries++) {
		uint64_t batch = 0;
		bool viewed = registry_view_begin(reg, &batch) == 0;
		uint32_t end = registry_scan_end(reg);

		free(s);
		s = calloc(end ? end : 1, sizeof(*s));
		if (s == NULL)
			return -ENOMEM;
		strbuf_reset(lbl);
		n = 0;
		for (uint32_t i = 0; i < end; i++) {
			const struct registry_slot *sl = &reg->slots[i];
			struct sfu_record rec;
			struct prom_sfu *p = &s[n];

			if (registry_read(reg, i, &rec) != 0)
				continue;
			p->lbl_off = lbl->len;
			STRBUF_LIT(lbl, "address=\"");
			prom_label(lbl, rec.cold.address);
			STRBUF_LIT(lbl, "\",region=\"");
			prom_label(lbl, rec.cold.region);
			STRBUF_LIT(lbl, "\"");
			p->lbl_len = lbl->len - p->lbl_off;
			p->sessions = rec.hot.sessions;
			p->channels = rec.hot.channels;
			p->cpu = rec.hot.cpu;
			p->memory = rec.hot.memory;
			p->age_ms = now_ms - rec.hot.last_report_ms;
			p->assigned = atomic_load_explicit(&sl->assigned, memory_order_relaxed);
			p->key_mismatch = atomic_load_explicit(&sl->key_check,
							       memory_order_relaxed) ==
					  SFU_KEY_MISMATCH;
			p->https = strncmp(rec.cold.address, "https://", 8) == 0;
			p->tls_failure = p->https ? tlsstate_failure(sl) : NULL;
			p->ok = atomic_load_explicit(&sl->requests_ok, memory_order_relaxed);
			p->failed = atomic_load_explicit(&sl->requests_failed, memory_order_relaxed);
			n++;
		}
		if (viewed && registry_view_valid(reg, batch))
			break;
	}
	*out = s;
	return n;
}

/* A gauge family of one series. */
static void prom_gauge(struct strbuf *b, const char *name, const char *help, double v)
{
	prom_head(b, name, "gauge", help);
	strbuf_printf(b, "sfu_gateway_%s %.17g\n", name, v);
}

/* The external registry source: its state as gauges, its fetches as counters.
 * Ages are left out while there is nothing to be old (never succeeded, no list). */
static void prom_regstatus(struct strbuf *b, const struct regstatus *rs, uint32_t stale_after_ms,
			   int64_t now_ms)
{
	static const char *const results[] = { "ok", "not_modified", "failed" };
	struct regstatus_data d;
	enum regstatus_state st = REGSTATUS_OFF;

	_Static_assert(sizeof(results) / sizeof(results[0]) == REGSTATUS_POLL__COUNT,
		       "a label per poll result");
	if (regstatus_read(rs, &d) == 0)
		st = regstatus_state(&d, now_ms, stale_after_ms);
	else
		memset(&d, 0, sizeof(d));
	prom_gauge(b, "registry_source_configured", "1 when an external registry is configured.",
		   d.configured != 0);
	prom_gauge(b, "registry_source_up",
		   "1 when the last fetch of the external registry's list succeeded.",
		   st == REGSTATUS_OK || (st == REGSTATUS_STALE && d.last_ok));
	prom_gauge(b, "registry_source_stale",
		   "1 when the list in use is older than [registry] stale_after_ms (still used).",
		   st == REGSTATUS_STALE);
	prom_gauge(b, "registry_source_sfus", "SFUs in the external registry's list in use.",
		   d.sfus);
	prom_gauge(b, "registry_source_ignored_sfus",
		   "SFUs of the list ignored because the config holds their address.", d.ignored);
	if (d.last_success_ms != 0)
		prom_gauge(b, "registry_source_last_success_age_seconds",
			   "Time since the last successful fetch (200 or 304).",
			   (double)(now_ms - d.last_success_ms) / 1000.0);
	if (d.list_ms != 0)
		prom_gauge(b, "registry_source_list_age_seconds",
			   "Time since the list in use arrived (its 200).",
			   (double)(now_ms - d.list_ms) / 1000.0);
	prom_gauge(b, "registry_source_last_apply_seconds",
		   "Time the last 200 took to parse and apply.",
		   (double)atomic_load(&rs->last_apply_us) / 1e6);
	prom_gauge(b, "registry_source_last_batch_seconds",
		   "How long the last list's batch held readers of the whole set off.",
		   (double)atomic_load(&rs->last_window_us) / 1e6);
	prom_head(b, "registry_source_polls_total", "counter",
		  "Fetches of the external registry's list, by result.");
	for (int i = 0; i < REGSTATUS_POLL__COUNT; i++)
		strbuf_printf(b, "sfu_gateway_registry_source_polls_total{result=\"%s\"} %llu\n",
			      results[i], (unsigned long long)atomic_load(&rs->polls[i]));
}

/* A counter family of two series, label=v1 and label=v2, read from atomics. */
static void prom_pair(struct strbuf *b, const char *name, const char *help, const char *label,
		      const char *v1, const _Atomic uint64_t *c1, const char *v2,
		      const _Atomic uint64_t *c2)
{
	prom_head(b, name, "counter", help);
	strbuf_printf(b, "sfu_gateway_%s{%s=\"%s\"} %llu\n", name, label, v1,
		      (unsigned long long)atomic_load(c1));
	strbuf_printf(b, "sfu_gateway_%s{%s=\"%s\"} %llu\n", name, label, v2,
		      (unsigned long long)atomic_load(c2));
}

/* The cluster: the etcd connection's state as gauges, its work as counters. */
static void prom_cluster(struct strbuf *b, const struct clusterstatus *cs,
			 const struct clusterq *cq, const struct metrics_totals *t, int64_t now_ms)
{
	static const struct {
		enum clusterstatus_counter c;
		const char *name, *help;
	} counters[] = {
		{ CLUSTER_C_EVENTS, "cluster_watch_events_total",
		  "Registrations, deletions and claims received from etcd." },
		{ CLUSTER_C_MIRRORED, "cluster_mirrored_total",
		  "Registrations of other gateways applied to this gateway's registry." },
		{ CLUSTER_C_REMOVED, "cluster_removed_total",
		  "SFUs removed because etcd no longer holds them (sign-off or lapsed lease)." },
		{ CLUSTER_C_REFUSED, "cluster_refused_total",
		  "Registrations found in etcd and refused (invalid, or against this gateway's "
		  "address policy)." },
		{ CLUSTER_C_RESYNCS, "cluster_resyncs_total",
		  "Full reads of the cluster's registrations from etcd." },
		{ CLUSTER_C_ENDPOINT_SWITCHES, "cluster_endpoint_switches_total",
		  "Moves to the next etcd endpoint after a failure." },
		{ CLUSTER_C_LEASES, "cluster_leases_total", "Leases granted by etcd." },
		{ CLUSTER_C_STALE_DROPPED, "cluster_writes_dropped_total",
		  "Registrations dropped unwritten (older than stale_after_ms, or too many)." },
	};
	struct clusterstatus_data d;

	if (clusterstatus_read(cs, &d) != 0)
		memset(&d, 0, sizeof(d));
	prom_gauge(b, "cluster_configured", "1 when [cluster] etcd is set.",
		   d.state != CLUSTER_OFF);
	prom_gauge(b, "cluster_up", "1 when the registry mirrors etcd and the watch is open.",
		   d.state == CLUSTER_OK);
	prom_gauge(b, "cluster_degraded",
		   "1 while etcd cannot be reached: the gateway serves from its last view.",
		   d.state == CLUSTER_DEGRADED);
	prom_gauge(b, "cluster_revision", "The last etcd revision the registry mirrors.",
		   (double)d.revision);
	if (d.last_ok_ms != 0)
		prom_gauge(b, "cluster_last_ok_age_seconds",
			   "Time since the last successful exchange with etcd.",
			   (double)(now_ms - d.last_ok_ms) / 1000.0);
	prom_pair(b, "cluster_writes_total",
		  "Registrations (put) and sign-offs (delete) written to etcd.", "op", "put",
		  &cs->counters[CLUSTER_C_PUTS], "delete", &cs->counters[CLUSTER_C_DELETES]);
	prom_pair(b, "cluster_transactions_total",
		  "Write transactions sent to etcd, by result (failed ones are sent again).",
		  "result", "ok", &cs->counters[CLUSTER_C_TXNS], "failed",
		  &cs->counters[CLUSTER_C_TXN_FAILURES]);
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		prom_head(b, counters[i].name, "counter", counters[i].help);
		strbuf_printf(b, "sfu_gateway_%s %llu\n", counters[i].name,
			      (unsigned long long)atomic_load(&cs->counters[counters[i].c]));
	}
	prom_pair(b, "cluster_queue_total",
		  "Heartbeats workers queued for etcd, and those dropped because the queue was "
		  "full.",
		  "result", "queued", &cq->pushed, "dropped", &cq->dropped);
	{
		static const char *const v[] = { "won", "lost", "replaced", "fallback" };
		static const enum metrics_counter c[] = { M_CLAIMS_WON, M_CLAIMS_LOST,
							  M_CLAIMS_REPLACED, M_CLAIMS_FALLBACK };

		prom_labelled(b, t, "cluster_claims_total",
			      "Issuers' first channel requests claimed in etcd, by result: our "
			      "choice won, another gateway's was followed, an unusable one was "
			      "replaced, or no claim could be made (chose alone).",
			      "result", v, c, 4);
	}
}

/* The per-SFU families, each family's lines together as the text format requires. */
static void prom_sfus(struct strbuf *b, const struct prom_sfu *s, int n, const struct strbuf *lbl)
{
	static const char *const fams[][3] = {
		{ "sfu_sessions", "gauge", "Sessions the SFU reported." },
		{ "sfu_channels", "gauge", "Channels the SFU reported." },
		{ "sfu_cpu_usage", "gauge", "CPU usage the SFU reported (0-1)." },
		{ "sfu_memory_usage", "gauge", "Memory usage the SFU reported (0-1)." },
		{ "sfu_assigned", "gauge", "Channels sent to the SFU since its last report." },
		{ "sfu_last_report_age_seconds", "gauge", "Age of the SFU's last report." },
		{ "sfu_key_mismatch", "gauge",
		  "1 when the SFU refused a token signed with the key the gateway has for it." },
		{ "sfu_requests_total", "counter", "Channel requests forwarded to the SFU, by result." },
	};

	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		size_t name_len = strlen(fams[f][0]);

		prom_head(b, fams[f][0], fams[f][1], fams[f][2]);
		for (int i = 0; i < n; i++) {
			const struct prom_sfu *p = &s[i];
			int rep = f == 7 ? 2 : 1;

			for (int r = 0; r < rep; r++) {
				STRBUF_LIT(b, "sfu_gateway_");
				strbuf_put(b, fams[f][0], name_len);
				STRBUF_LIT(b, "{");
				strbuf_put(b, lbl->buf + p->lbl_off, p->lbl_len);
				switch (f) {
				case 0: STRBUF_LIT(b, "} "); strbuf_u64(b, p->sessions); break;
				case 1: STRBUF_LIT(b, "} "); strbuf_u64(b, p->channels); break;
				case 2: STRBUF_LIT(b, "} "); strbuf_g(b, p->cpu); break;
				case 3: STRBUF_LIT(b, "} "); strbuf_g(b, p->memory); break;
				case 4: STRBUF_LIT(b, "} "); strbuf_u64(b, p->assigned); break;
				case 5: STRBUF_LIT(b, "} "); strbuf_ms_seconds(b, p->age_ms); break;
				case 6: STRBUF_LIT(b, "} "); strbuf_u64(b, (uint64_t)p->key_mismatch); break;
				default:
					if (r == 0) {
						STRBUF_LIT(b, ",result=\"ok\"} ");
						strbuf_u64(b, p->ok);
					} else {
						STRBUF_LIT(b, ",result=\"failed\"} ");
						strbuf_u64(b, p->failed);
					}
					break;
				}
				STRBUF_LIT(b, "\n");
			}
		}
	}
}

/* https SFUs only: 1 with the reason while the last TLS handshake failed, else 0. */
static void prom_sfu_tls(struct strbuf *b, const struct prom_sfu *s, int n, const struct strbuf *lbl)
{
	prom_head(b, "sfu_tls_error", "gauge",
		  "1 while the last TLS handshake with the https SFU failed; reason says why "
		  "(\"certificate has expired\", \"hostname mismatch\"...).");
	for (int i = 0; i < n; i++) {
		const struct prom_sfu *p = &s[i];

		if (!p->https)
			continue;
		STRBUF_LIT(b, "sfu_gateway_sfu_tls_error{");
		strbuf_put(b, lbl->buf + p->lbl_off, p->lbl_len);
		STRBUF_LIT(b, ",reason=\"");
		if (p->tls_failure != NULL)
			prom_label(b, p->tls_failure);
		if (p->tls_failure != NULL)
			STRBUF_LIT(b, "\"} 1\n");
		else
			STRBUF_LIT(b, "\"} 0\n");
	}
}

int prom_render(const struct metrics *ms, const struct registry *reg,
		const struct regstatus *rs, uint32_t stale_after_ms,
		const struct clusterstatus *cs, const struct clusterq *cq,
		const char *const *route_names, size_t n_routes, unsigned n_workers, int64_t now_ms,
		struct strbuf *b)
{
	struct metrics_totals *t = malloc(sizeof(*t));
	struct strbuf lbl = { 0 };
	struct prom_sfu *sfus = NULL;
	uint64_t cum = 0, count;
	int n, rc = 0;

	if (t == NULL)
		return -ENOMEM;
	metrics_totals(ms, t);
	if (n_routes > METRICS_ROUTES_MAX)
		n_routes = METRICS_ROUTES_MAX;
	prom_head(b, "requests_total", "counter", "HTTP requests answered, by route and status.");
	for (size_t r = 0; r < n_routes; r++)
		for (int si = 0; si < METRICS_STATUS__COUNT; si++) {
			uint64_t v = t->requests[r][si];

			if (v == 0)
				continue;
			STRBUF_LIT(b, "sfu_gateway_requests_total{route=\"");
			strbuf_puts(b, route_names[r]);
			STRBUF_LIT(b, "\",status=\"");
			if (si < METRICS_STATUS__COUNT - 1)
				strbuf_u64(b, (uint64_t)metrics_status_code(si));
			else
				STRBUF_LIT(b, "other");
			STRBUF_LIT(b, "\"} ");
			strbuf_u64(b, v);
			STRBUF_LIT(b, "\n");
		}
	prom_head(b, "connections_total", "counter", "Connections accepted, by worker.");
	for (unsigned i = 0; i < n_workers && i < METRICS_REAPER_SLOT; i++)
		strbuf_printf(b, "sfu_gateway_connections_total{worker=\"%u\"} %llu\n", i,
			      (unsigned long long)atomic_load_explicit(
				      &ms->procs[i].c[M_CONNECTIONS], memory_order_relaxed));
	{
		static const char *const v[] = { "cap", "emfile" };
		static const enum metrics_counter c[] = { M_ACCEPT_PAUSED_CAP,
							  M_ACCEPT_PAUSED_EMFILE };

		prom_labelled(b, t, "accept_paused_total",
			      "Times a worker stopped accepting connections (they wait in the "
			      "listen queue), by cause: max_connections reached or out of file "
			      "descriptors.",
			      "reason", v, c, 2);
	}
	prom_counter(b, t, "upstream_requests_total", "Attempts sent to an SFU.",
		     M_UPSTREAM_REQUESTS);
	prom_counter(b, t, "upstream_failures_total",
		     "Attempts that failed: connect error, timeout, reset, 5xx, 401/403/404 "
		     "or a 2xx without uuid/url.",
		     M_UPSTREAM_FAILURES);
	prom_counter(b, t, "retries_total", "Attempts beyond the first of a request.", M_RETRIES);
	prom_counter(b, t, "failovers_total",
		     "Requests answered by another SFU than the first one tried.", M_FAILOVERS);
	prom_counter(b, t, "retry_budget_exhausted_total",
		     "Retries refused because the shared retry budget was spent.",
		     M_RETRY_BUDGET_EXHAUSTED);
	prom_counter(b, t, "orphan_channels_total",
		     "Channels possibly left unused on an SFU by a retry elsewhere.",
		     M_ORPHAN_CHANNELS);
	{
		static const char *const v[] = { "open", "half_open", "closed" };
		static const enum metrics_counter c[] = { M_CIRCUIT_OPENED, M_CIRCUIT_HALF_OPENED,
							  M_CIRCUIT_CLOSED };

		prom_labelled(b, t, "circuit_transitions_total",
			      "Circuit breaker transitions, by new state.", "to", v, c, 3);
	}
	{
		static const char *const v[] = { "registered", "updated", "removed", "rejected" };
		static const enum metrics_counter c[] = { M_HEARTBEATS_REGISTERED,
							  M_HEARTBEATS_UPDATED, M_HEARTBEATS_REMOVED,
							  M_HEARTBEATS_REJECTED };

		prom_labelled(b, t, "heartbeats_total", "Heartbeats received, by result.", "result", v,
			      c, 4);
	}
	prom_counter(b, t, "expired_total", "SFUs removed because their heartbeats stopped.",
		     M_EXPIRED);
	{
		static const char *const v[] = { "ok", "failed" };
		static const enum metrics_counter c[] = { M_PROBES_OK, M_PROBES_FAILED };

		prom_labelled(b, t, "probes_total", "Active probes of static SFUs, by result.",
			      "result", v, c, 2);
	}
	{
		static const char *const v[] = { "full", "resumed", "failed" };
		static const enum metrics_counter up[] = { M_TLS_UPSTREAM_FULL,
							   M_TLS_UPSTREAM_RESUMED,
							   M_TLS_UPSTREAM_FAILED };
		static const enum metrics_counter ls[] = { M_TLS_LISTENER_FULL,
							   M_TLS_LISTENER_RESUMED,
							   M_TLS_LISTENER_FAILED };

		prom_head(b, "tls_handshakes_total", "counter",
			  "TLS handshakes: side=\"upstream\" with https SFUs, side=\"listener\" "
			  "with clients of the HTTPS listener; result full, resumed (a session "
			  "reused: no certificate exchange) or failed.");
		for (int i = 0; i < 3; i++)
			strbuf_printf(b, "sfu_gateway_tls_handshakes_total{side=\"upstream\",result=\"%s\"} "
				      "%llu\n", v[i], (unsigned long long)t->c[up[i]]);
		for (int i = 0; i < 3; i++)
			strbuf_printf(b, "sfu_gateway_tls_handshakes_total{side=\"listener\",result=\"%s\"} "
				      "%llu\n", v[i], (unsigned long long)t->c[ls[i]]);
	}
	prom_counter(b, t, "affinity_hits_total",
		     "Channel requests sent to the SFU that served the same issuer before.",
		     M_AFFINITY_HITS);
	prom_counter(b, t, "overload_rejected_total",
		     "Channel requests refused because every SFU was overloaded.",
		     M_OVERLOAD_REJECTED);

	prom_head(b, "upstream_latency_seconds", "histogram", "Round trip of attempts to SFUs.");
	for (int i = 0; i < METRICS_LATENCY__COUNT; i++) {
		cum += t->latency_bucket[i];
		if (i < METRICS_LATENCY__COUNT - 1)
			strbuf_printf(b, "sfu_gateway_upstream_latency_seconds_bucket{le=\"%g\"} %llu\n",
				      (double)metrics_latency_bound_ms(i) / 1000.0,
				      (unsigned long long)cum);
		else
			strbuf_printf(b,
				      "sfu_gateway_upstream_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
				      (unsigned long long)cum);
	}
	/* The buckets and count are read at different instants; never let the
	 * count trail the +Inf bucket, which a scraper would call inconsistent. */
	count = t->latency_count < cum ? cum : t->latency_count;
	strbuf_printf(b, "sfu_gateway_upstream_latency_seconds_sum %.6f\n",
		      (double)t->latency_sum_us / 1e6);
	strbuf_printf(b, "sfu_gateway_upstream_latency_seconds_count %llu\n",
		      (unsigned long long)count);

	prom_regstatus(b, rs, stale_after_ms, now_ms);
	prom_cluster(b, cs, cq, t, now_ms);
	prom_head(b, "registry_sfus", "gauge", "SFUs in the registry.");
	STRBUF_LIT(b, "sfu_gateway_registry_sfus ");
	strbuf_u64(b, atomic_load(&reg->count));
	STRBUF_LIT(b, "\n");
	prom_head(b, "registry_capacity", "gauge", "Slots in the registry.");
	STRBUF_LIT(b, "sfu_gateway_registry_capacity ");
	strbuf_u64(b, reg->capacity);
	STRBUF_LIT(b, "\n");

	n = prom_read_sfus(reg, now_ms, &sfus, &lbl);
	if (n < 0 || lbl.failed)
		rc = -ENOMEM;
	else {
		prom_sfus(b, sfus, n, &lbl);
		prom_sfu_tls(b, sfus, n, &lbl);
	}
	free(sfus);
	strbuf_free(&lbl);
	free(t);
	if (rc == 0 && b->failed)
		rc = -ENOMEM;
	return rc;
}
