/* Seqlock tests: the primitive, a multi-process registry torture, writers dying mid-write. */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "region.h"
#include "registry.h"

#define TORTURE_SLOTS 4
#define TORTURE_WRITERS 2
#define TORTURE_READERS 3
/* Readers run TORTURE_RUN_MS and until each made TORTURE_MIN_READS reads (a
 * slow machine or valgrind), but never past TORTURE_MAX_MS; writers run until
 * the readers are done. A child still running TORTURE_GRACE_MS after that is
 * stuck, which is exactly what readers must never be. */
#define TORTURE_RUN_MS 2000
#define TORTURE_MAX_MS 20000
#define TORTURE_MIN_READS 100000
/* ...and until each saw writers change a slot this often: on a loaded machine
 * the scheduler may keep writers and readers apart for whole slices. */
#define TORTURE_MIN_CHANGES 500
#define TORTURE_GRACE_MS 8000

static int64_t sq_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *sq_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	cr_assert(p != MAP_FAILED);
	return p;
}

static struct registry *sq_registry(uint32_t capacity)
{
	struct registry *r = sq_map(registry_size(capacity));

	cr_assert_eq(registry_init(r, capacity), 0);
	return r;
}

/* Waits for pid to exit, at most timeout_ms; SIGKILLs it if it does not.
 * Returns its wait status, or -1 when it had to be killed. */
static int sq_wait(pid_t pid, int64_t timeout_ms)
{
	int64_t deadline = sq_now_ms() + timeout_ms;
	struct timespec tick = { 0, 5 * 1000 * 1000 };
	int status;

	for (;;) {
		pid_t got = waitpid(pid, &status, WNOHANG);

		if (got == pid)
			return status;
		if (got < 0)
			return -1;
		if (sq_now_ms() >= deadline)
			break;
		nanosleep(&tick, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* ---- the primitive itself ---- */

struct sq_block {
	seqlock_word seq;
	seqlock_word words[4];
};

Test(seqlock, write_then_read_round_trips)
{
	struct sq_block b;
	uint64_t in[4] = { 1, 2, 3, UINT64_MAX }, out[4] = { 0 };

	atomic_init(&b.seq, 0);
	for (int i = 0; i < 4; i++)
		atomic_init(&b.words[i], 0);
	seqlock_write(&b.seq, b.words, in, 4);
	cr_expect_eq(atomic_load(&b.seq), 2);
	cr_assert_eq(seqlock_read(&b.seq, b.words, 4, out), 0);
	cr_expect_eq(memcmp(in, out, sizeof(in)), 0);
}

/* A writer that died inside its section leaves seq odd, and readers give up; its
 * restarted successor closes that section and publishes, and readers see it. */
Test(seqlock, restarted_writer_closes_a_dead_writers_section)
{
	struct sq_block b;
	uint64_t in[4] = { 7, 8, 9, 10 }, out[4] = { 0 };

	atomic_init(&b.seq, 4);
	for (int i = 0; i < 4; i++)
		atomic_init(&b.words[i], 0);
	seqlock_write_begin(&b.seq); /* ... and the writer dies */
	cr_assert_eq(seqlock_read(&b.seq, b.words, 4, out), -EAGAIN);
	seqlock_write_restarted(&b.seq, b.words, in, 4);
	cr_expect_eq(atomic_load(&b.seq) & 1, 0);
	cr_assert_eq(seqlock_read(&b.seq, b.words, 4, out), 0);
	cr_expect_eq(memcmp(in, out, sizeof(in)), 0);
	/* With no dead predecessor it is a plain write. */
	seqlock_write_restarted(&b.seq, b.words, in, 4);
	cr_expect_eq(atomic_load(&b.seq), 10);
}

Test(seqlock, a_read_overlapping_a_write_is_invalid)
{
	struct sq_block b;
	uint64_t start, out[4];

	atomic_init(&b.seq, 6);
	for (int i = 0; i < 4; i++)
		atomic_init(&b.words[i], 0);
	start = seqlock_read_begin(&b.seq);
	cr_expect(seqlock_read_valid(&b.seq, start));
	seqlock_write_begin(&b.seq);
	cr_expect(!seqlock_read_valid(&b.seq, start), "a write began during the read");
	cr_expect(!seqlock_read_valid(&b.seq, seqlock_read_begin(&b.seq)), "odd start");
	cr_expect_eq(seqlock_read(&b.seq, b.words, 4, out), -EAGAIN, "bounded while odd");
	seqlock_write_end(&b.seq);
	cr_expect(!seqlock_read_valid(&b.seq, start), "a write finished during the read");
	cr_expect_eq(seqlock_read(&b.seq, b.words, 4, out), 0);
	cr_expect_eq(atomic_load(&b.seq), 8);
}

/* ---- torture: writer and reader processes on the same few slots ---- */

struct sq_reader_stats {
	_Atomic uint64_t reads; /* consistent copies of a used slot */
	_Atomic uint64_t torn; /* copies whose fields disagree: must stay 0 */
	_Atomic uint64_t enoent, eagain, finds, changes;
	_Atomic int64_t end_ms;
};

struct sq_writer_stats {
	_Atomic uint64_t writes, creates, removes, enospc, errors;
};

struct sq_shared {
	_Atomic uint32_t counter;
	_Atomic uint32_t readers_done;
	int64_t deadline_ms; /* readers' minimum run */
	int64_t hard_deadline_ms; /* everyone's maximum run */
	struct sq_reader_stats rd[TORTURE_READERS];
	struct sq_writer_stats wr[TORTURE_WRITERS];
};

/*
 * Every field of the record follows from two numbers: v0, the counter value
 * when the SFU was created (it names the address), and u, the counter value
 * of the write. A copy mixing two writes cannot satisfy all of them.
 */
static void sq_record(struct sfu_record *rec, uint32_t v0, uint32_t u)
{
	memset(rec, 0, sizeof(*rec));
	snprintf(rec->cold.address, sizeof(rec->cold.address), "http://10.0.0.1:%" PRIu32, v0);
	snprintf(rec->cold.region, sizeof(rec->cold.region), "v%" PRIu32 "-u%" PRIu32, v0, u);
	rec->cold.key_len = 1 + u % CONFIG_KEY_MAX;
	memset(rec->cold.key, (int)(u & 0xff), rec->cold.key_len);
	rec->cold.flags = u ^ v0 ^ 0xdeadbeefU; /* checksum of the cold part */
	rec->hot.source = SFU_SOURCE_REGISTERED;
	rec->hot.has_load = 1;
	rec->hot.sessions = u;
	rec->hot.channels = u * 3;
	rec->hot.max_sessions = v0;
	rec->hot.pad1 = u ^ 0xa5a5a5a5U; /* checksum of the hot part */
	rec->hot.cpu = u / 1e9;
	rec->hot.memory = (u % 1000) / 1000.0;
	rec->hot.last_report_ms = (int64_t)u * 7;
}

/* The hot part alone: consistent with its own u. */
static bool sq_hot_ok(const struct sfu_hot *h)
{
	uint32_t u = h->sessions;

	return h->in_use == 1 && h->source == SFU_SOURCE_REGISTERED && h->has_load == 1 &&
	       h->generation != 0 && h->channels == u * 3 && h->pad1 == (u ^ 0xa5a5a5a5U) &&
	       h->cpu == u / 1e9 && h->memory == (u % 1000) / 1000.0 &&
	       h->last_report_ms == (int64_t)u * 7;
}

/* The whole record, byte for byte, against the one its fields claim to be. */
static bool sq_record_ok(const struct sfu_record *got)
{
	struct sfu_record want;
	uint32_t v0;

	if (!sq_hot_ok(&got->hot))
		return false;
	if (sscanf(got->cold.address, "http://10.0.0.1:%" SCNu32, &v0) != 1)
		return false;
	sq_record(&want, v0, got->hot.sessions);
	want.hot.in_use = 1;
	want.hot.address_hash = registry_hash(want.cold.address);
	want.hot.region_hash = registry_hash(want.cold.region);
	want.hot.region_id = (uint8_t)region_lookup(want.cold.region, strlen(want.cold.region));
	want.hot.generation = got->hot.generation;
	return memcmp(&want, got, sizeof(want)) == 0;
}

static void sq_writer(struct registry *r, struct sq_shared *sh, struct sq_writer_stats *st)
{
	struct sfu_record cur, rec;
	uint32_t v, v0, i;
	bool created;
	int err;

	for (uint64_t n = 0;; n++) {
		if ((n & 63) == 0 && (atomic_load(&sh->readers_done) == TORTURE_READERS ||
				      sq_now_ms() >= sh->hard_deadline_ms))
			break;
		v = atomic_fetch_add(&sh->counter, 1) + 1;
		i = (v / 8) % TORTURE_SLOTS;
		if (v % 8 == 0) {
			/* Churn: replace slot i's SFU by a new one. */
			if (registry_read(r, i, &cur) == 0 &&
			    registry_remove(r, cur.cold.address) == 0)
				atomic_fetch_add(&st->removes, 1);
			sq_record(&rec, v, v);
		} else if (registry_read(r, i, &cur) == 0 &&
			   sscanf(cur.cold.address, "http://10.0.0.1:%" SCNu32, &v0) == 1) {
			/* Heartbeat: same SFU, all-new load fields. */
			sq_record(&rec, v0, v);
		} else {
			sq_record(&rec, v, v);
		}
		err = registry_upsert(r, &rec, true, NULL, &created);
		if (err == 0) {
			atomic_fetch_add(&st->writes, 1);
			if (created)
				atomic_fetch_add(&st->creates, 1);
		} else if (err == -ENOSPC) {
			atomic_fetch_add(&st->enospc, 1);
		} else {
			atomic_fetch_add(&st->errors, 1);
		}
	}
}

static void sq_reader(struct registry *r, struct sq_shared *sh, struct sq_reader_stats *st)
{
	uint32_t last_u[TORTURE_SLOTS] = { 0 };
	uint64_t reads = 0, torn = 0, enoent = 0, eagain = 0, finds = 0, changes = 0;
	struct sfu_record rec;
	struct sfu_hot hot;
	int err, f;

	for (uint64_t n = 0;; n++) {
		uint32_t i = (uint32_t)(n % TORTURE_SLOTS);

		if ((n & 255) == 0) {
			int64_t now = sq_now_ms();

			if ((now >= sh->deadline_ms && reads >= TORTURE_MIN_READS &&
			     changes >= TORTURE_MIN_CHANGES) ||
			    now >= sh->hard_deadline_ms)
				break;
		}
		if (n & 1) {
			err = registry_read(r, i, &rec);
			if (err == 0 && !sq_record_ok(&rec))
				torn++;
			if (err == 0)
				hot = rec.hot;
		} else {
			err = registry_read_hot(r, i, &hot);
			if (err == 0 && !sq_hot_ok(&hot))
				torn++;
		}
		if (err == -ENOENT) {
			enoent++;
			continue;
		}
		if (err == -EAGAIN) {
			eagain++;
			continue;
		}
		reads++;
		if (hot.sessions != last_u[i])
			changes++;
		last_u[i] = hot.sessions;
		if ((n & 15) == 1) {
			/* Lock-free find of what we just read: wherever it is now,
			 * the answer is a slot index or not-found. */
			f = registry_find(r, rec.cold.address);
			if (f != -ENOENT && (f < 0 || f >= TORTURE_SLOTS))
				torn++;
			finds++;
		}
	}
	atomic_store(&st->reads, reads);
	atomic_store(&st->torn, torn);
	atomic_store(&st->enoent, enoent);
	atomic_store(&st->eagain, eagain);
	atomic_store(&st->finds, finds);
	atomic_store(&st->changes, changes);
	atomic_store(&st->end_ms, sq_now_ms());
	atomic_fetch_add(&sh->readers_done, 1);
}

Test(seqlock_torture, readers_never_see_a_torn_slot, .timeout = 90)
{
	struct registry *r = sq_registry(TORTURE_SLOTS);
	struct sq_shared *sh = sq_map(sizeof(*sh));
	pid_t pids[TORTURE_WRITERS + TORTURE_READERS];
	uint64_t reads = 0, torn = 0, eagain = 0, changes = 0, writes = 0, creates = 0;
	struct sfu_record rec;
	int n = 0, status;

	for (uint32_t v = 1; v <= TORTURE_SLOTS; v++) {
		sq_record(&rec, v, v);
		cr_assert_eq(registry_upsert(r, &rec, false, NULL, NULL), 0);
	}
	atomic_store(&sh->counter, TORTURE_SLOTS + 1);
	sh->deadline_ms = sq_now_ms() + TORTURE_RUN_MS;
	sh->hard_deadline_ms = sh->deadline_ms - TORTURE_RUN_MS + TORTURE_MAX_MS;

	for (int k = 0; k < TORTURE_WRITERS + TORTURE_READERS; k++) {
		pid_t pid = fork();

		cr_assert_neq(pid, -1);
		if (pid == 0) {
			if (k < TORTURE_WRITERS)
				sq_writer(r, sh, &sh->wr[k]);
			else
				sq_reader(r, sh, &sh->rd[k - TORTURE_WRITERS]);
			_exit(0);
		}
		pids[n++] = pid;
	}
	for (int k = 0; k < n; k++) {
		status = sq_wait(pids[k], sh->hard_deadline_ms + TORTURE_GRACE_MS - sq_now_ms());
		cr_expect(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
			  "child %d stuck or failed (status %d)", k, status);
	}
	for (int k = 0; k < TORTURE_READERS; k++) {
		reads += atomic_load(&sh->rd[k].reads);
		torn += atomic_load(&sh->rd[k].torn);
		eagain += atomic_load(&sh->rd[k].eagain);
		changes += atomic_load(&sh->rd[k].changes);
		cr_expect_gt(atomic_load(&sh->rd[k].finds), 0);
		cr_expect_lt(atomic_load(&sh->rd[k].end_ms),
			     sh->hard_deadline_ms + TORTURE_GRACE_MS, "reader %d finished late", k);
	}
	for (int k = 0; k < TORTURE_WRITERS; k++) {
		writes += atomic_load(&sh->wr[k].writes);
		creates += atomic_load(&sh->wr[k].creates);
		cr_expect_eq(atomic_load(&sh->wr[k].errors), 0);
	}
	cr_log_info("torture: %" PRIu64 " reads, %" PRIu64 " torn, %" PRIu64 " eagain, %" PRIu64
		    " changes seen, %" PRIu64 " writes, %" PRIu64 " creates",
		    reads, torn, eagain, changes, writes, creates);
	cr_expect_eq(torn, 0, "%" PRIu64 " torn copies in %" PRIu64 " reads", torn, reads);
	cr_expect_gt(reads, 100000, "only %" PRIu64 " reads", reads);
	cr_expect_gt(writes, 1000, "only %" PRIu64 " writes", writes);
	cr_expect_gt(creates, 10, "the churn path ran");
	cr_expect_gt(changes, 1000, "readers saw writers' changes only %" PRIu64 " times", changes);

	/* Afterwards the registry is whole: no slot odd, count right. */
	uint32_t used = 0;

	for (uint32_t i = 0; i < TORTURE_SLOTS; i++) {
		cr_expect_eq(atomic_load(&r->slots[i].seq) & 1, 0);
		if (registry_read(r, i, &rec) == 0) {
			cr_expect(sq_record_ok(&rec));
			used++;
		}
	}
	cr_expect_eq(atomic_load(&r->count), used);
	cr_expect_eq(atomic_load(&r->writing_slot), -1);
	cr_expect_eq(registry_repair(r), 0);
	cr_expect_eq(atomic_load(&r->repairs), 0);
}

/* ---- writers that die ---- */

/*
 * Forks a writer that takes the write lock and, when half_write, opens a
 * write section on slot and stores the first half of a record's words
 * exactly as registry.c does (writing_slot first, then seq odd, then data),
 * then waits to be killed. Returns once the child is dead, SIGKILLed while
 * in the section.
 */
static void sq_die_writing(struct registry *r, uint32_t slot, bool half_write)
{
	struct sfu_record junk;
	int fds[2];
	char c = 0;
	pid_t pid;
	struct pollfd pfd;
	bool ready;

	memset(&junk, 0x5c, sizeof(junk));
	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		close(fds[0]);
		if (pthread_mutex_lock(&r->write_lock) != 0)
			_exit(1);
		if (half_write) {
			atomic_store(&r->writing_slot, (int32_t)slot);
			seqlock_write_begin(&r->slots[slot].seq);
			seqlock_copy_in(r->slots[slot].hot, &junk.hot, SFU_HOT_WORDS);
			seqlock_copy_in(r->slots[slot].cold, &junk.cold, SFU_COLD_WORDS / 2);
		}
		if (write(fds[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(fds[1]);
	pfd = (struct pollfd){ .fd = fds[0], .events = POLLIN };
	ready = poll(&pfd, 1, 10000) == 1 && read(fds[0], &c, 1) == 1;
	close(fds[0]);
	/* Killed even when it failed, so that no child outlives the test. */
	kill(pid, SIGKILL);
	cr_assert_neq(sq_wait(pid, 10000), -1);
	cr_assert(ready, "writer child never got into its section");
}

static void sq_fill(struct registry *r, int n)
{
	struct sfu_record rec;

	for (int v = 1; v <= n; v++) {
		sq_record(&rec, (uint32_t)v, (uint32_t)v);
		cr_assert_eq(registry_upsert(r, &rec, false, NULL, NULL), 0);
	}
}

Test(registry_death, readers_give_up_and_next_writer_repairs, .timeout = 30)
{
	struct registry *r = sq_registry(4);
	struct sfu_record rec;
	struct sfu_hot hot;
	uint64_t old_gen;
	int64_t t0;
	uint32_t slot;
	bool created;

	sq_fill(r, 3); /* http://10.0.0.1:1 .. :3 in slots 0..2 */
	cr_assert_eq(registry_read_hot(r, 0, &hot), 0);
	old_gen = hot.generation;
	sq_die_writing(r, 0, true);
	cr_assert_eq(atomic_load(&r->slots[0].seq) & 1, 1, "the dead writer left seq odd");

	/* Readers are not wedged: they give up on that slot, quickly. */
	t0 = sq_now_ms();
	cr_expect_eq(registry_read_hot(r, 0, &hot), -EAGAIN);
	cr_expect_eq(registry_read(r, 0, &rec), -EAGAIN);
	cr_expect_eq(registry_find(r, "http://10.0.0.1:1"), -ENOENT);
	cr_expect_lt(sq_now_ms() - t0, 1000, "bounded reads took %" PRId64 " ms", sq_now_ms() - t0);
	/* Other slots are fine. */
	cr_expect_eq(registry_read(r, 1, &rec), 0);
	cr_expect(sq_record_ok(&rec));
	cr_expect_eq(registry_find(r, "http://10.0.0.1:3"), 2);
	cr_expect_eq(atomic_load(&r->repairs), 0);

	/* The next writer inherits the lock (EOWNERDEAD), frees the half-written
	 * slot and goes on with its own update. */
	sq_record(&rec, 3, 300);
	cr_assert_eq(registry_upsert(r, &rec, false, &slot, &created), 0);
	cr_expect_eq(slot, 2);
	cr_expect(!created);
	cr_expect_eq(atomic_load(&r->repairs), 1);
	cr_expect_eq(atomic_load(&r->slots[0].seq) & 1, 0);
	cr_expect_eq(atomic_load(&r->writing_slot), -1);
	cr_expect_eq(registry_read_hot(r, 0, &hot), -ENOENT, "the repaired slot is free");
	cr_expect_eq(atomic_load(&r->count), 2);
	cr_expect_eq(registry_find(r, "http://10.0.0.1:1"), -ENOENT);

	/* The lock is consistent again: more writes, and a new SFU takes slot 0
	 * with a generation its earlier occupant never had. */
	sq_record(&rec, 9, 9);
	cr_assert_eq(registry_upsert(r, &rec, false, &slot, &created), 0);
	cr_expect_eq(slot, 0);
	cr_expect(created);
	cr_assert_eq(registry_read_hot(r, 0, &hot), 0);
	cr_expect_neq(hot.generation, old_gen);
	cr_expect_eq(registry_repair(r), 0);
	cr_expect_eq(atomic_load(&r->repairs), 1);
}

Test(registry_death, master_repair_frees_the_odd_slot, .timeout = 30)
{
	struct registry *r = sq_registry(4);
	struct sfu_record rec;
	struct sfu_hot hot;

	sq_fill(r, 3);
	sq_die_writing(r, 1, true);
	cr_expect_eq(registry_read_hot(r, 1, &hot), -EAGAIN);

	/* The master reaped the child: it repairs without waiting for a write. */
	cr_expect_eq(registry_repair(r), 1);
	cr_expect_eq(atomic_load(&r->repairs), 1);
	cr_expect_eq(atomic_load(&r->slots[1].seq) & 1, 0);
	cr_expect_eq(registry_read_hot(r, 1, &hot), -ENOENT);
	cr_expect_eq(atomic_load(&r->count), 2);
	cr_expect_eq(registry_repair(r), 0, "nothing left to repair");
	sq_record(&rec, 2, 2);
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), 0);
	cr_expect_eq(registry_find(r, "http://10.0.0.1:2"), 1);
}

Test(registry_death, writer_dying_outside_a_section_repairs_nothing, .timeout = 30)
{
	struct registry *r = sq_registry(4);
	struct sfu_record rec;

	sq_fill(r, 2);
	sq_die_writing(r, 0, false);
	sq_record(&rec, 5, 5);
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), 0);
	cr_expect_eq(atomic_load(&r->repairs), 0);
	cr_expect_eq(atomic_load(&r->count), 3);
	cr_expect_eq(registry_find(r, "http://10.0.0.1:1"), 0, "intact SFUs are kept");
	cr_expect_eq(registry_find(r, "http://10.0.0.1:2"), 1);
}

Test(registry_death, repair_scan_fixes_an_odd_slot_nobody_holds)
{
	struct registry *r = sq_registry(4);
	struct sfu_hot hot;

	sq_fill(r, 3);
	/* Whatever left it so, an odd slot with the lock free has no writer. */
	atomic_fetch_add(&r->slots[2].seq, 1);
	cr_expect_eq(registry_read_hot(r, 2, &hot), -EAGAIN);
	cr_expect_eq(registry_repair(r), 1);
	cr_expect_eq(registry_read_hot(r, 2, &hot), -ENOENT);
	cr_expect_eq(atomic_load(&r->count), 2);
	cr_expect_eq(registry_read_hot(r, 0, &hot), 0);
}

Test(registry_death, unrecoverable_lock_gives_eagain_and_reads_go_on, .timeout = 30)
{
	struct registry *r = sq_registry(4);
	struct sfu_record rec;
	struct sfu_hot hot;

	sq_fill(r, 2);
	sq_die_writing(r, 0, false);
	/* Someone inherits the lock and releases it without making it
	 * consistent: from then on it cannot be taken. */
	cr_assert_eq(pthread_mutex_lock(&r->write_lock), EOWNERDEAD);
	cr_assert_eq(pthread_mutex_unlock(&r->write_lock), 0);
	sq_record(&rec, 7, 7);
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), -EAGAIN);
	cr_expect_eq(registry_remove(r, "http://10.0.0.1:1"), -EAGAIN);
	cr_expect_eq(registry_repair(r), -EAGAIN);
	/* Readers never touch the lock. */
	cr_expect_eq(registry_read_hot(r, 0, &hot), 0);
	cr_expect_eq(registry_find(r, "http://10.0.0.1:2"), 1);
}

/* A writer that dies while writing a tombstone (the heartbeat seq of an SFU that left)
 * leaves it half-written: the next writer drops that one, forgetting one seq, and keeps
 * the others. */
Test(registry_death, half_written_tombstone_is_dropped, .timeout = 30)
{
	struct registry *r = sq_registry(4);
	struct registry_tomb *tombs = (struct registry_tomb *)(void *)&r->slots[r->capacity];
	struct sfu_record rec;
	int fds[2];
	char c = 0;
	pid_t pid;

	cr_assert_eq(registry_signoff(r, "http://10.0.0.1:1", 10), -ENOENT);
	cr_assert_eq(registry_signoff(r, "http://10.0.0.1:2", 10), -ENOENT);
	cr_assert_eq(r->tombs_used, 2);
	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		close(fds[0]);
		if (pthread_mutex_lock(&r->write_lock) != 0)
			_exit(1);
		atomic_store(&r->writing_tomb, 0);
		memset(&tombs[0], 0x5c, sizeof(tombs[0]) / 2);
		if (write(fds[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], &c, 1), 1);
	close(fds[0]);
	kill(pid, SIGKILL);
	cr_assert_neq(sq_wait(pid, 10000), -1);

	/* The next writer repairs: the first address's seq is gone, the second's is kept. */
	sq_record(&rec, 1, 1);
	rec.cold.hb_seq = 5;
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), 0);
	cr_expect_eq(tombs[0].address_hash, 0);
	cr_expect_eq(atomic_load(&r->writing_tomb), -1);
	sq_record(&rec, 2, 1);
	rec.cold.hb_seq = 5;
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), -ESTALE);
	cr_expect_eq(r->tombs_used, 1);
}
