/* Reaper: the one process that polls: expires SFUs whose heartbeats went stale, probes, key checks, the external registry, the cluster's etcd. */
#include "reaper.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "child.h"
#include "clock.h"
#include "cluster.h"
#include "keycheck.h"
#include "lease.h"
#include "log.h"
#include "probe.h"
#include "regpoll.h"
#include "select.h"

#define REAPER_PERIOD_MS 250 /* stale SFUs leave within a quarter second of their deadline */
#define REAPER_BUDGET_US 2000 /* work per tick, so a huge registry never stalls the timer */

struct reaper {
	uv_loop_t loop;
	uv_timer_t tick;
	uv_signal_t sigs[CHILD_NSIGNALS];
	struct shm_layout *shm;
	struct config_tunables live;
	uint64_t live_version;
	uint32_t cursor;
	struct prober *prober;
	struct keycheck *keycheck;
	struct regpoll *regpoll;
	struct cluster *cluster;
	int32_t pid;
	bool holding; /* holds the reaper lease (lease.h): may work */
	bool told_standby; /* said once that another reaper holds it */
};

int reaper_sweep(struct registry *r, uint32_t *cursor, uint32_t stale_after_ms, int64_t now_ms,
		 uint32_t budget_us)
{
	uint32_t end = registry_scan_end(r);
	int64_t start = clock_us();
	int removed = 0;

	if (end == 0)
		return 0;
	/*
	 * Walk at most one full round from where the last tick stopped. The
	 * clock is read only every 64 slots: cheap enough to keep the budget,
	 * rare enough not to cost more than the reads themselves.
	 */
	for (uint32_t seen = 0; seen < end; seen++) {
		uint32_t i = *cursor;
		struct sfu_hot h;

		*cursor = (i + 1 >= end) ? 0 : i + 1;
		/* Only heartbeats' SFUs expire when heartbeats stop: the config and
		 * the registry list hold theirs whatever heartbeats do. */
		if (registry_read_hot(r, i, &h) == 0 && h.source == SFU_SOURCE_REGISTERED &&
		    now_ms - h.last_report_ms > (int64_t)stale_after_ms) {
			struct sfu_record rec;

			if (registry_read(r, i, &rec) == 0 &&
			    registry_remove_slot(r, i, h.generation, SFU_SOURCE_REGISTERED) == 0) {
				removed++;
				log_info("reaper: expired sfu=%s region=%s age_ms=%lld",
					 rec.cold.address, rec.cold.region,
					 (long long)(now_ms - h.last_report_ms));
			}
		}
		if ((seen & 63) == 63 && clock_us() - start > (int64_t)budget_us)
			break;
	}
	return removed;
}

/*
 * One reaper works at a time: while a binary upgrade runs two masters on one
 * segment, the new master's reaper stands by until the old one has left
 * (it releases the lease when stopped) or stalled for LEASE_TTL_MS. True when
 * this one may work this tick.
 */
static bool reaper_lease_tick(struct reaper *rp)
{
	bool held = lease_hold(&rp->shm->reaper_lease, rp->pid, clock_ms(), LEASE_TTL_MS);

	if (held && !rp->holding)
		log_info("reaper: working (holds the reaper lease)");
	else if (!held && rp->holding)
		log_warn("reaper: reaper pid=%d took the lease over; standing by",
			 (int)lease_holder(&rp->shm->reaper_lease));
	else if (!held && !rp->told_standby)
		log_info("reaper: standing by while reaper pid=%d works",
			 (int)lease_holder(&rp->shm->reaper_lease));
	rp->told_standby = rp->told_standby || !held;
	rp->holding = held;
	return held;
}

static void reaper_on_tick(uv_timer_t *t)
{
	struct reaper *rp = t->data;
	bool held;
	int n;

	if (shm_live_refresh(rp->shm, &rp->live, &rp->live_version) > 0) {
		log_set_level((enum log_level)rp->live.log_level);
		if (rp->regpoll != NULL)
			regpoll_configure(rp->regpoll, &rp->live, clock_ms());
		if (rp->cluster != NULL)
			cluster_configure(rp->cluster, &rp->live, clock_ms());
	}
	held = reaper_lease_tick(rp);
	if (rp->cluster != NULL)
		cluster_tick(rp->cluster, held, clock_ms());
	if (!held)
		return;
	n = reaper_sweep(&rp->shm->registry, &rp->cursor, select_expire_after_ms(&rp->live), clock_ms(),
			 REAPER_BUDGET_US);
	if (n > 0)
		metrics_add(&rp->shm->metrics.procs[METRICS_REAPER_SLOT], M_EXPIRED, (uint64_t)n);
	if (rp->prober != NULL)
		prober_tick(rp->prober, &rp->live, clock_ms());
	if (rp->keycheck != NULL)
		keycheck_tick(rp->keycheck, &rp->live, clock_ms());
	if (rp->regpoll != NULL)
		regpoll_tick(rp->regpoll, clock_ms());
}

static void reaper_on_signal(uv_signal_t *s, int signum)
{
	struct reaper *rp = s->data;

	if (signum == SIGUSR1) {
		log_reopen();
		return;
	}
	/* libuv runs this callback from the loop, never inside a registry write,
	 * and the reaper has nothing to flush: probes in flight are abandoned.
	 * The lease goes at once, so the other master's reaper of a binary
	 * upgrade takes over at its next tick. */
	lease_release(&rp->shm->reaper_lease, rp->pid);
	_exit(0);
}

int reaper_run(struct shm_layout *shm, pid_t master)
{
	static struct reaper rpk;
	struct reaper *rp = &rpk;

	if (child_start(master, "reaper") != 0)
		return 1;
	memset(rp, 0, sizeof(*rp));
	rp->shm = shm;
	rp->pid = (int32_t)getpid();
	shm_live_refresh(shm, &rp->live, &rp->live_version);
	if (uv_loop_init(&rp->loop) != 0) {
		log_error("reaper: uv_loop_init() failed");
		return 1;
	}
	if (prober_new(&rp->prober, &rp->loop, &shm->registry,
		       &shm->metrics.procs[METRICS_REAPER_SLOT]) != 0)
		log_warn("reaper: prober_new() failed: static SFUs will not be probed");
	if (keycheck_new(&rp->keycheck, &rp->loop, &shm->registry,
			 &shm->metrics.procs[METRICS_REAPER_SLOT]) != 0)
		log_warn("reaper: keycheck_new() failed: SFU keys will not be checked");
	/* One poller for the whole gateway: N workers, one request per period. */
	if (regpoll_new(&rp->regpoll, &rp->loop, &shm->registry, &shm->regstatus) != 0)
		log_error("reaper: regpoll_new() failed: the external registry will not be polled");
	else
		regpoll_configure(rp->regpoll, &rp->live, clock_ms());
	/* One watcher per gateway, whatever the number of workers. */
	if (cluster_new(&rp->cluster, &rp->loop, shm) != 0)
		log_error("reaper: cluster_new() failed: this gateway will not join its cluster");
	else
		cluster_configure(rp->cluster, &rp->live, clock_ms());
	uv_timer_init(&rp->loop, &rp->tick);
	rp->tick.data = rp;
	uv_timer_start(&rp->tick, reaper_on_tick, REAPER_PERIOD_MS, REAPER_PERIOD_MS);
	if (child_signals(&rp->loop, rp->sigs, reaper_on_signal, rp) != 0) {
		log_error("reaper: uv_signal_start() failed");
		return 1;
	}
	uv_run(&rp->loop, UV_RUN_DEFAULT);
	uv_loop_close(&rp->loop);
	return 0;
}
