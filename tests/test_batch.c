/* Batch tests: one process applies two disjoint lists in turn while another selects and scans; nobody may see a mix. */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "registry.h"
#include "select.h"

#define BT_CAP 256
#define BT_SET 64 /* SFUs per list */
/* The reader runs until its answers switched lists this many times (so it raced
 * the writer, whatever the scheduler did) and it made this many selections, and
 * never past BT_MAX_MS (a loaded machine, valgrind). */
#define BT_MIN_FLIPS 2000
#define BT_MIN_SELECTS 200000
#define BT_MAX_MS 30000

struct bt_shared {
	atomic_int stop;
	_Atomic uint64_t batches; /* lists applied by the writer */
	_Atomic int writer_error;
};

static int64_t bt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * List `set` (0: A, 1: B): BT_SET SFUs at 10.<set+1>.0.<k>, all loaded but the
 * last one listed, which is idle: it is what selection must answer, and, being
 * added last by the batch, the one a reader that sees half a batch misses.
 */
static void bt_list(int set, struct sfu_record *out)
{
	for (int k = 0; k < BT_SET; k++) {
		struct sfu_record *r = &out[k];

		memset(r, 0, sizeof(*r));
		snprintf(r->cold.address, sizeof(r->cold.address), "http://10.%d.0.%d:8070", set + 1,
			 k + 1);
		memset(r->cold.key, 'a' + set, 32);
		r->cold.key_len = 32;
		r->hot.has_load = 1;
		r->hot.channels = 1;
		r->hot.sessions = k == BT_SET - 1 ? 0 : 10 + (uint32_t)k;
	}
}

static const char *bt_min_address(int set)
{
	static char a[2][64];

	snprintf(a[set], sizeof(a[set]), "http://10.%d.0.%d:8070", set + 1, BT_SET);
	return a[set];
}

/* The writer: A, B, A, B... until told to stop. */
static void bt_writer(struct registry *r, struct bt_shared *sh)
{
	struct sfu_record lists[2][BT_SET];
	int64_t deadline = bt_now_ms() + BT_MAX_MS + 5000;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	bt_list(0, lists[0]);
	bt_list(1, lists[1]);
	for (uint64_t i = 0; !atomic_load(&sh->stop) && bt_now_ms() < deadline; i++) {
		int rc = registry_apply_source(r, lists[i % 2], BT_SET, 1000, 30000, NULL, NULL);

		if (rc != 0) {
			atomic_store(&sh->writer_error, rc);
			return;
		}
		atomic_fetch_add(&sh->batches, 1);
	}
}

static struct config_tunables bt_tunables(enum config_strategy s)
{
	struct config_tunables t;

	memset(&t, 0, sizeof(t));
	t.strategy = s;
	t.w_sessions = 0.5;
	t.w_cpu = 0.3;
	t.w_memory = 0.2;
	t.max_load_score = 1000;
	t.max_cpu = 1;
	t.max_memory = 1;
	t.stale_after_ms = 30000;
	return t;
}

/* Which list an address belongs to: 0, 1, or -1. */
static int bt_set_of(const char *address)
{
	if (strncmp(address, "http://10.1.0.", 14) == 0)
		return 0;
	if (strncmp(address, "http://10.2.0.", 14) == 0)
		return 1;
	return -1;
}

/*
 * A whole-set read as health and metrics make it: when the view holds, every
 * SFU seen belongs to one list and the list is whole. Returns the list seen,
 * or -1 when the view did not hold (a batch ran meanwhile: nothing to judge).
 */
static int bt_view(struct registry *r)
{
	int counts[2] = { 0, 0 }, other = 0;
	uint64_t seq;

	if (registry_view_begin(r, &seq) != 0)
		return -1;
	for (uint32_t i = 0; i < registry_scan_end(r); i++) {
		struct sfu_record rec;
		int set;

		if (registry_read(r, i, &rec) != 0)
			continue;
		set = bt_set_of(rec.cold.address);
		if (set < 0)
			other++;
		else
			counts[set]++;
	}
	if (!registry_view_valid(r, seq))
		return -1;
	cr_assert_eq(other, 0);
	cr_assert((counts[0] == BT_SET && counts[1] == 0) || (counts[1] == BT_SET && counts[0] == 0),
		  "a view saw %d of list A and %d of list B", counts[0], counts[1]);
	return counts[0] == BT_SET ? 0 : 1;
}

Test(registry_batch, no_selection_or_view_sees_a_mix, .timeout = 90)
{
	size_t size = registry_size(BT_CAP);
	struct registry *r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				  -1, 0);
	struct bt_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct select_snapshot *fast = select_snapshot_new(true), *slow = select_snapshot_new(false);
	struct config_tunables load = bt_tunables(STRATEGY_LOAD);
	struct config_tunables rr = bt_tunables(STRATEGY_ROUND_ROBIN);
	uint64_t answers[2] = { 0, 0 }, views[2] = { 0, 0 }, selects = 0, eagain = 0, flips = 0;
	int last = 0;
	int64_t deadline = bt_now_ms() + BT_MAX_MS;
	struct sfu_record first[BT_SET];
	pid_t pid;
	int status;

	cr_assert(r != MAP_FAILED && sh != MAP_FAILED && fast != NULL && slow != NULL);
	cr_assert_eq(registry_init(r, BT_CAP), 0);
	memset(sh, 0, sizeof(*sh));
	bt_list(0, first);
	cr_assert_eq(registry_apply_source(r, first, BT_SET, 1000, 30000, NULL, NULL), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		bt_writer(r, sh);
		_exit(0);
	}
	while (bt_now_ms() < deadline && (flips < BT_MIN_FLIPS || selects < BT_MIN_SELECTS)) {
		for (int k = 0; k < 64; k++, selects++) {
			struct select_choice c;
			int rc, set;

			/* The snapshot path, the scan, and round-robin's lists in turn. */
			if (k % 8 == 7) {
				rc = select_best(fast, r, &rr, NULL, NULL, 0, 0, &c);
				cr_assert(rc == 0 || rc == -EAGAIN, "round-robin: %d", rc);
				continue;
			}
			rc = select_best(k % 2 ? fast : slow, r, &load, NULL, NULL, 0, 0, &c);
			if (rc == -EAGAIN) {
				eagain++;
				continue;
			}
			cr_assert_eq(rc, 0, "select_best gave %d: it saw a list with nothing in it",
				     rc);
			set = bt_set_of(c.rec.cold.address);
			cr_assert_geq(set, 0, "%s", c.rec.cold.address);
			cr_assert_str_eq(c.rec.cold.address, bt_min_address(set),
					 "the %s path chose %s, not list %c's idlest: it saw half "
					 "a batch",
					 k % 2 ? "snapshot" : "scan", c.rec.cold.address,
					 set ? 'B' : 'A');
			answers[set]++;
			flips += set != last;
			last = set;
		}
		{
			int v = bt_view(r);

			if (v >= 0)
				views[v]++;
		}
	}
	atomic_store(&sh->stop, 1);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_assert_eq(atomic_load(&sh->writer_error), 0, "the writer failed: %d",
		     atomic_load(&sh->writer_error));
	cr_log_info("%llu batches, %llu selections (%llu A, %llu B, %llu -EAGAIN, %llu switches), "
		    "views %llu A %llu B",
		    (unsigned long long)atomic_load(&sh->batches), (unsigned long long)selects,
		    (unsigned long long)answers[0], (unsigned long long)answers[1],
		    (unsigned long long)eagain, (unsigned long long)flips,
		    (unsigned long long)views[0], (unsigned long long)views[1]);
	/* Without switches the reader never raced the writer and proved nothing. */
	cr_assert_geq(flips, 100, "the reader saw the lists switch only %llu times",
		      (unsigned long long)flips);
	cr_assert_gt(views[0] + views[1], 0);
	cr_assert_lt(eagain, selects / 10, "readers gave up too often: %llu of %llu",
		     (unsigned long long)eagain, (unsigned long long)selects);
	select_snapshot_free(fast);
	select_snapshot_free(slow);
	munmap(sh, sizeof(*sh));
	munmap(r, size);
}
