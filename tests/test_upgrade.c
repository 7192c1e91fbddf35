/* Binary upgrade (SIGUSR2): the handover under load, failed and refused upgrades, the lease, the layout check. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "lease.h"
#include "shm.h"
#include "upgrade.h"

#define UP_GW_KEY "dXBncmFkZS10ZXN0LWdhdGV3YXkta2V5LTAxMjM0NTY3ODlhYmNkZWY="
#define UP_SFU_KEY "dXBncmFkZS10ZXN0LXNmdS1rZXktMDEyMzQ1Njc4OWFiY2RlZmdoaWo="
#define UP_LOADERS 4 /* processes sending requests during the upgrade */
#define UP_LOAD_MAX_MS 30000 /* a loader stops by itself after this long */

/* ---- units: the lease, the variable, the segment check */

Test(lease, one_holder_renews_and_an_expired_one_is_taken_over)
{
	struct lease l;

	memset(&l, 0, sizeof(l));
	cr_assert(lease_hold(&l, 100, 1000, 2000), "a free lease is taken");
	cr_assert_not(lease_hold(&l, 200, 1500, 2000), "a live holder keeps it");
	cr_assert(lease_hold(&l, 100, 2500, 2000), "the holder renews it");
	cr_assert_not(lease_hold(&l, 200, 4500, 2000), "renewed at 2500: still live at 4500");
	cr_assert(lease_hold(&l, 200, 4501, 2000), "not renewed for more than the ttl: taken");
	cr_assert_eq(lease_holder(&l), 200);
	cr_assert_not(lease_hold(&l, 100, 4600, 2000), "the old holder learns it lost the lease");
	lease_release(&l, 100);
	cr_assert_eq(lease_holder(&l), 200, "only the holder releases it");
	lease_release(&l, 200);
	cr_assert_eq(lease_holder(&l), 0);
	cr_assert(lease_hold(&l, 100, 4700, 2000), "a released lease is free at once");
}

Test(upgrade_env, encodes_and_decodes_every_descriptor)
{
	struct upgrade_fds u, v;
	char text[512];

	memset(&u, 0, sizeof(u));
	u.old_master = 4242;
	u.ready = 9;
	u.shm = 7;
	u.lock = 3;
	u.pid_file = -1;
	u.keeper = 11;
	u.n_listen = 3;
	u.listen[0] = 4;
	u.listen[1] = 5;
	u.listen[2] = 12;
	cr_assert_eq(upgrade_encode(&u, text, sizeof(text)), 0);
	cr_assert_str_eq(text, "version=1 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=11 "
			       "listen=4,5,12");
	cr_assert_eq(upgrade_decode(text, &v), 0);
	cr_assert_eq(v.old_master, 4242);
	cr_assert(v.ready == 9 && v.shm == 7 && v.lock == 3 && v.pid_file == -1 && v.keeper == 11);
	cr_assert(v.n_listen == 3 && v.listen[0] == 4 && v.listen[1] == 5 && v.listen[2] == 12);
	cr_assert_eq(upgrade_encode(&u, text, 20), -ENOSPC);
}

Test(upgrade_env, refuses_what_a_running_gateway_never_writes)
{
	static const char *const bad[] = {
		"",
		"version=2 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=1 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=4242 ready=-1 shm=7 lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=",
		"version=1 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=4,",
		"version=1 master=4242 ready=9 shm=7 lock=3 pid=-1 keeper=-1 listen=4x",
		"version=1 master=4242 ready=9 shm=7x lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=4242 shm=7 ready=9 lock=3 pid=-1 keeper=-1 listen=4",
		"version=1 master=4242 ready=99999999999 shm=7 lock=3 pid=-1 keeper=-1 listen=4",
	};
	struct upgrade_fds u;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(upgrade_decode(bad[i], &u), -EINVAL, "accepted: \"%s\"", bad[i]);
}

/* A copy of a live segment's descriptor with a field changed, for shm_adopt. */
static int up_tampered(const struct shm_segment *seg, size_t off, const void *val, size_t n)
{
	int fd = memfd_create("tampered", MFD_CLOEXEC);
	char *copy;

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)seg->size), 0);
	copy = mmap(NULL, seg->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(copy, MAP_FAILED);
	memcpy(copy, seg->layout, seg->size);
	memcpy(copy + off, val, n);
	munmap(copy, seg->size);
	return fd;
}

Test(shm_adopt, takes_a_segment_of_its_layout_and_refuses_others)
{
	struct shm_segment seg, adopted;
	char err[512];
	uint32_t v99 = 99, cap = 7;
	uint64_t magic = 1;
	int fd;

	cr_assert_eq(shm_create(&seg, 16), 0);
	seg.layout->budget.tokens = 1234;
	fd = dup(seg.fd);
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(adopted.size, seg.size);
	cr_assert_eq(adopted.layout->budget.tokens, 1234, "the same segment, not a new one");
	adopted.layout->budget.tokens = 99;
	cr_assert_eq(seg.layout->budget.tokens, 99, "mapped shared");
	shm_destroy(&adopted);

	fd = up_tampered(&seg, offsetof(struct shm_layout, layout_version), &v99, sizeof(v99));
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), -EPROTO);
	cr_assert_not_null(strstr(err, "layout version 99; this binary reads version"), "%s", err);
	close(fd);
	fd = up_tampered(&seg, offsetof(struct shm_layout, magic), &magic, sizeof(magic));
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "bad magic"), "%s", err);
	close(fd);
	fd = up_tampered(&seg, offsetof(struct shm_layout, capacity), &cap, sizeof(cap));
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "bytes for 7 SFUs"), "%s", err);
	close(fd);
	fd = memfd_create("short", MFD_CLOEXEC);
	cr_assert_eq(ftruncate(fd, 100), 0);
	cr_assert_eq(shm_adopt(&adopted, fd, err, sizeof(err)), -EINVAL);
	close(fd);
	shm_destroy(&seg);
}

/*
 * The layout a version stands for. A change of any of these sizes or offsets
 * without a new SHM_LAYOUT_VERSION would let a binary upgrade hand a segment
 * to a binary that misreads it: bump the version in include/shm.h, then
 * record the new fingerprint here.
 */
Test(shm_adopt, layout_fingerprint_matches_its_version)
{
	static const struct {
		unsigned version;
		unsigned long long fingerprint;
	} known[] = {
		{ 3, 9589728239924236595ULL },
	};
	size_t parts[] = {
		sizeof(struct shm_layout),
		offsetof(struct shm_layout, budget),
		offsetof(struct shm_layout, reaper_lease),
		offsetof(struct shm_layout, live),
		offsetof(struct shm_layout, metrics),
		offsetof(struct shm_layout, affinity),
		offsetof(struct shm_layout, regstatus),
		offsetof(struct shm_layout, registry),
		sizeof(struct config_tunables),
		sizeof(struct metrics_proc),
		sizeof(struct affinity_table),
		sizeof(struct regstatus),
		sizeof(struct registry),
		sizeof(struct registry_slot),
		sizeof(struct sfu_hot),
		sizeof(struct sfu_cold),
		sizeof(struct circuit),
		sizeof(pthread_mutex_t),
	};
	unsigned long long fp = 1469598103934665603ULL;

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		fp ^= (unsigned long long)parts[i];
		fp *= 1099511628211ULL;
	}
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i].version == SHM_LAYOUT_VERSION)
			cr_assert_eq(known[i].fingerprint, fp,
				     "the shared-memory layout changed (fingerprint %llu): bump "
				     "SHM_LAYOUT_VERSION in include/shm.h and record the new "
				     "fingerprint in this test",
				     fp);
	cr_assert_eq(known[sizeof(known) / sizeof(known[0]) - 1].version, SHM_LAYOUT_VERSION,
		     "SHM_LAYOUT_VERSION %u has no fingerprint here (%llu)", SHM_LAYOUT_VERSION, fp);
}
