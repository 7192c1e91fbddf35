/* Prometheus text exposition of the shared counters and of every SFU in the registry. */
#include "prom.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "registry.h"

/* A bounded text buffer: writes past the end are dropped and remembered. */
struct prom_out {
	char *buf;
	size_t cap, len;
	bool overflow;
};

static void prom_printf(struct prom_out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void prom_printf(struct prom_out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->overflow = true;
		return;
	}
	o->len += (size_t)n;
}

/* Label values are free text (static SFU regions): escape as the format says. */
static const char *prom_label(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *in != '\0' && o + 3 < outlen; in++) {
		if (*in == '\\' || *in == '"') {
			out[o++] = '\\';
			out[o++] = *in;
		} else if (*in == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
	return out;
}

static uint64_t prom_sum_requests(const struct metrics *ms, size_t route, int status_idx)
{
	uint64_t s = 0;

	for (size_t i = 0; i < METRICS_MAX_PROCS; i++)
		s += atomic_load_explicit(&ms->procs[i].requests[route][status_idx],
					  memory_order_relaxed);
	return s;
}

static void prom_counter(struct prom_out *o, const struct metrics *ms, const char *name,
			    const char *help, enum metrics_counter c)
{
	prom_printf(o, "# HELP sfu_gateway_%s %s\n# TYPE sfu_gateway_%s counter\n", name, help,
		       name);
	prom_printf(o, "sfu_gateway_%s %llu\n", name, (unsigned long long)metrics_sum(ms, c));
}

static void prom_labelled(struct prom_out *o, const struct metrics *ms, const char *name,
			     const char *help, const char *label, const char *const *values,
			     const enum metrics_counter *cs, size_t n)
{
	prom_printf(o, "# HELP sfu_gateway_%s %s\n# TYPE sfu_gateway_%s counter\n", name, help,
		       name);
	for (size_t i = 0; i < n; i++)
		prom_printf(o, "sfu_gateway_%s{%s=\"%s\"} %llu\n", name, label, values[i],
			       (unsigned long long)metrics_sum(ms, cs[i]));
}

int prom_render(const struct metrics *ms, const struct registry *reg,
		   const char *const *route_names, size_t n_routes, unsigned n_workers,
		   int64_t now_ms, char *buf, size_t cap)
{
	struct prom_out o = { buf, cap, 0, false };
	uint32_t end = registry_scan_end(reg);
	uint64_t cum = 0, sum_us = 0, count = 0;

	if (n_routes > METRICS_ROUTES_MAX)
		n_routes = METRICS_ROUTES_MAX;
	prom_printf(&o, "# HELP sfu_gateway_requests_total HTTP requests answered, by route "
			   "and status.\n# TYPE sfu_gateway_requests_total counter\n");
	for (size_t r = 0; r < n_routes; r++)
		for (int si = 0; si < METRICS_STATUS__COUNT; si++) {
			uint64_t v = prom_sum_requests(ms, r, si);
			char st[8];

			if (v == 0)
				continue;
			if (si < METRICS_STATUS__COUNT - 1)
				snprintf(st, sizeof(st), "%d", metrics_status_code(si));
			else
				snprintf(st, sizeof(st), "other");
			prom_printf(&o, "sfu_gateway_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
				       route_names[r], st, (unsigned long long)v);
		}
	prom_printf(&o, "# HELP sfu_gateway_connections_total Connections accepted, by worker.\n"
			   "# TYPE sfu_gateway_connections_total counter\n");
	for (unsigned i = 0; i < n_workers && i < METRICS_REAPER_SLOT; i++)
		prom_printf(&o, "sfu_gateway_connections_total{worker=\"%u\"} %llu\n", i,
			       (unsigned long long)atomic_load_explicit(
				       &ms->procs[i].c[M_CONNECTIONS], memory_order_relaxed));
	prom_counter(&o, ms, "upstream_requests_total", "Attempts sent to an SFU.",
			M_UPSTREAM_REQUESTS);
	prom_counter(&o, ms, "upstream_failures_total",
			"Attempts that failed: connect error, timeout, reset, 5xx, 401/403/404 "
			"or a 2xx without uuid/url.",
			M_UPSTREAM_FAILURES);
	prom_counter(&o, ms, "retries_total", "Attempts beyond the first of a request.",
			M_RETRIES);
	prom_counter(&o, ms, "failovers_total",
			"Requests answered by another SFU than the first one tried.", M_FAILOVERS);
	prom_counter(&o, ms, "retry_budget_exhausted_total",
			"Retries refused because the shared retry budget was spent.",
			M_RETRY_BUDGET_EXHAUSTED);
	prom_counter(&o, ms, "orphan_channels_total",
			"Channels possibly left unused on an SFU by a retry elsewhere.",
			M_ORPHAN_CHANNELS);
	{
		static const char *const v[] = { "open", "half_open", "closed" };
		static const enum metrics_counter c[] = { M_CIRCUIT_OPENED, M_CIRCUIT_HALF_OPENED,
							  M_CIRCUIT_CLOSED };

		prom_labelled(&o, ms, "circuit_transitions_total",
				 "Circuit breaker transitions, by new state.", "to", v, c, 3);
	}
	{
		static const char *const v[] = { "registered", "updated", "removed", "rejected" };
		static const enum metrics_counter c[] = { M_HEARTBEATS_REGISTERED,
							  M_HEARTBEATS_UPDATED, M_HEARTBEATS_REMOVED,
							  M_HEARTBEATS_REJECTED };

		prom_labelled(&o, ms, "heartbeats_total", "Heartbeats received, by result.",
				 "result", v, c, 4);
	}
	prom_counter(&o, ms, "expired_total", "SFUs removed because their heartbeats stopped.",
			M_EXPIRED);
	{
		static const char *const v[] = { "ok", "failed" };
		static const enum metrics_counter c[] = { M_PROBES_OK, M_PROBES_FAILED };

		prom_labelled(&o, ms, "probes_total", "Active probes of static SFUs, by result.",
				 "result", v, c, 2);
	}
	prom_counter(&o, ms, "affinity_hits_total",
			"Channel requests sent to the SFU that served the same issuer before.",
			M_AFFINITY_HITS);
	prom_counter(&o, ms, "overload_rejected_total",
			"Channel requests refused because every SFU was overloaded.",
			M_OVERLOAD_REJECTED);

	prom_printf(&o, "# HELP sfu_gateway_upstream_latency_seconds Round trip of attempts "
			   "to SFUs.\n# TYPE sfu_gateway_upstream_latency_seconds histogram\n");
	for (int b = 0; b < METRICS_LATENCY__COUNT; b++) {
		for (size_t i = 0; i < METRICS_MAX_PROCS; i++)
			cum += atomic_load_explicit(&ms->procs[i].latency_bucket[b],
						    memory_order_relaxed);
		if (b < METRICS_LATENCY__COUNT - 1)
			prom_printf(&o,
				       "sfu_gateway_upstream_latency_seconds_bucket{le=\"%g\"} %llu\n",
				       (double)metrics_latency_bound_ms(b) / 1000.0, (unsigned long long)cum);
		else
			prom_printf(&o,
				       "sfu_gateway_upstream_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
				       (unsigned long long)cum);
	}
	for (size_t i = 0; i < METRICS_MAX_PROCS; i++) {
		sum_us += atomic_load_explicit(&ms->procs[i].latency_sum_us, memory_order_relaxed);
		count += atomic_load_explicit(&ms->procs[i].latency_count, memory_order_relaxed);
	}
	/* The buckets and count are read at different instants; never let the
	 * count trail the +Inf bucket, which a scraper would call inconsistent. */
	if (count < cum)
		count = cum;
	prom_printf(&o, "sfu_gateway_upstream_latency_seconds_sum %.6f\n", (double)sum_us / 1e6);
	prom_printf(&o, "sfu_gateway_upstream_latency_seconds_count %llu\n",
		       (unsigned long long)count);

	prom_printf(&o, "# HELP sfu_gateway_registry_sfus SFUs in the registry.\n"
			   "# TYPE sfu_gateway_registry_sfus gauge\nsfu_gateway_registry_sfus %u\n",
		       atomic_load(&reg->count));
	prom_printf(&o, "# HELP sfu_gateway_registry_capacity Slots in the registry.\n"
			   "# TYPE sfu_gateway_registry_capacity gauge\n"
			   "sfu_gateway_registry_capacity %u\n",
		       reg->capacity);

	/* Per-SFU families: one pass per family keeps each family's lines together,
	 * as the text format requires. */
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
			prom_printf(&o, "# HELP sfu_gateway_%s %s\n# TYPE sfu_gateway_%s %s\n",
				       fams[f][0], fams[f][2], fams[f][0], fams[f][1]);
			for (uint32_t i = 0; i < end; i++) {
				const struct registry_slot *sl = &reg->slots[i];
				struct sfu_record rec;
				char a[CONFIG_ADDRESS_MAX * 2], rg[CONFIG_REGION_MAX * 2], lbl[700];

				if (registry_read(reg, i, &rec) != 0)
					continue;
				snprintf(lbl, sizeof(lbl), "address=\"%s\",region=\"%s\"",
					 prom_label(rec.cold.address, a, sizeof(a)),
					 prom_label(rec.cold.region, rg, sizeof(rg)));
				switch (f) {
				case 0: prom_printf(&o, "sfu_gateway_%s{%s} %u\n", fams[f][0], lbl, rec.hot.sessions); break;
				case 1: prom_printf(&o, "sfu_gateway_%s{%s} %u\n", fams[f][0], lbl, rec.hot.channels); break;
				case 2: prom_printf(&o, "sfu_gateway_%s{%s} %g\n", fams[f][0], lbl, rec.hot.cpu); break;
				case 3: prom_printf(&o, "sfu_gateway_%s{%s} %g\n", fams[f][0], lbl, rec.hot.memory); break;
				case 4:
					prom_printf(&o, "sfu_gateway_%s{%s} %llu\n", fams[f][0], lbl,
						       (unsigned long long)atomic_load(&sl->assigned));
					break;
				case 5:
					prom_printf(&o, "sfu_gateway_%s{%s} %.3f\n", fams[f][0], lbl,
						       (double)(now_ms - rec.hot.last_report_ms) / 1000.0);
					break;
				case 6:
					prom_printf(&o, "sfu_gateway_%s{%s} %d\n", fams[f][0], lbl,
						       atomic_load(&sl->key_check) == SFU_KEY_MISMATCH);
					break;
				default:
					prom_printf(&o, "sfu_gateway_%s{%s,result=\"ok\"} %llu\n",
						       fams[f][0], lbl,
						       (unsigned long long)atomic_load(&sl->requests_ok));
					prom_printf(&o, "sfu_gateway_%s{%s,result=\"failed\"} %llu\n",
						       fams[f][0], lbl,
						       (unsigned long long)atomic_load(&sl->requests_failed));
					break;
				}
			}
		}
	}
	return o.overflow ? -ENOSPC : (int)o.len;
}
