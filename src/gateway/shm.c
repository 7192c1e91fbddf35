/* Shared memory: create and map the POSIX segment, unnamed at once; publish the live config. */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* A name nobody can guess, so nobody can create it first; it exists only
 * for the few instructions between shm_open() and shm_unlink(). */
static int shm_random_name(char *out, size_t outlen)
{
	uint64_t r[2];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -EIO;
	snprintf(out, outlen, "/sfu-gateway.%016llx%016llx", (unsigned long long)r[0],
		 (unsigned long long)r[1]);
	return 0;
}

/* Creates an unnamed segment: a fresh name, O_EXCL and mode 0600, unlinked
 * at once, so nothing in /dev/shm ever holds the keys we are about to write
 * and nothing named outlives the processes, whatever kills them. */
static int shm_open_anonymous(void)
{
	for (int i = 0; i < 8; i++) {
		char name[64];
		int fd, rc = shm_random_name(name, sizeof(name));

		if (rc != 0)
			return rc;
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return -errno;
		if (shm_unlink(name) != 0) {
			rc = -errno;
			close(fd);
			return rc;
		}
		return fd;
	}
	return -EEXIST;
}

int shm_create(struct shm_segment *seg, uint32_t capacity)
{
	size_t size = offsetof(struct shm_layout, registry) + registry_size(capacity);
	struct shm_layout *l;
	int fd, rc;

	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
	fd = shm_open_anonymous();
	if (fd < 0)
		return fd;
	/* The umask may have narrowed the mode, never widened it; make it exact. */
	if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	l = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (l == MAP_FAILED) {
		rc = -errno;
		close(fd);
		return rc;
	}
	memset(l, 0, size);
	l->magic = SHM_MAGIC;
	l->layout_version = SHM_LAYOUT_VERSION;
	l->capacity = capacity;
	l->size = size;
	l->started_ms = clock_wall_ms();
	budget_init(&l->budget);
	rc = registry_init(&l->registry, capacity);
	if (rc == 0)
		rc = clusterq_init(&l->clusterq);
	if (rc != 0) {
		munmap(l, size);
		close(fd);
		return rc;
	}
	seg->fd = fd;
	seg->layout = l;
	seg->size = size;
	return 0;
}

/* The first fields of a segment, as shm_adopt reads them before mapping it. */
struct shm_head {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t capacity;
	uint64_t size;
};
_Static_assert(offsetof(struct shm_layout, magic) == offsetof(struct shm_head, magic) &&
		       offsetof(struct shm_layout, layout_version) ==
			       offsetof(struct shm_head, layout_version) &&
		       offsetof(struct shm_layout, capacity) == offsetof(struct shm_head, capacity) &&
		       offsetof(struct shm_layout, size) == offsetof(struct shm_head, size),
	       "struct shm_head must be the start of struct shm_layout");

int shm_adopt(struct shm_segment *seg, int fd, char *err, size_t errlen)
{
	struct stat st;
	struct shm_head head;
	struct shm_layout *l;
	uint32_t reg_capacity = 0;
	size_t want;
	int rc;

	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(err, errlen, "fstat() of descriptor %d failed: %s", fd, strerror(-rc));
		return rc;
	}
	/* pread() copies the header without mapping anything that could turn out
	 * shorter than it claims. */
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size < offsetof(struct shm_layout, registry) ||
	    pread(fd, &head, sizeof(head), 0) != (ssize_t)sizeof(head)) {
		snprintf(err, errlen, "descriptor %d is not a shared-memory segment of sfu-gateway",
			 fd);
		return -EINVAL;
	}
	if (head.magic != SHM_MAGIC) {
		snprintf(err, errlen,
			 "descriptor %d is not a shared-memory segment of sfu-gateway (bad magic)",
			 fd);
		return -EINVAL;
	}
	if (head.layout_version != SHM_LAYOUT_VERSION) {
		snprintf(err, errlen,
			 "the running gateway's shared memory has layout version %u; this binary "
			 "reads version %u only",
			 head.layout_version, (unsigned)SHM_LAYOUT_VERSION);
		return -EPROTO;
	}
	want = offsetof(struct shm_layout, registry) + registry_size(head.capacity);
	if (head.capacity == 0 || head.size != want || (uint64_t)st.st_size != head.size ||
	    pread(fd, &reg_capacity, sizeof(reg_capacity),
		  (off_t)(offsetof(struct shm_layout, registry) +
			  offsetof(struct registry, capacity))) != (ssize_t)sizeof(reg_capacity) ||
	    reg_capacity != head.capacity) {
		snprintf(err, errlen,
			 "the running gateway's shared memory is %lld bytes for %u SFUs, not the "
			 "%zu bytes this binary expects",
			 (long long)st.st_size, head.capacity, want);
		return -EINVAL;
	}
	l = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (l == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "mmap() of the shared memory failed: %s", strerror(-rc));
		return rc;
	}
	seg->fd = fd;
	seg->layout = l;
	seg->size = want;
	return 0;
}

void shm_destroy(struct shm_segment *seg)
{
	if (seg->layout != NULL)
		munmap(seg->layout, seg->size);
	if (seg->fd >= 0)
		close(seg->fd);
	seg->fd = -1;
	seg->layout = NULL;
}

void shm_live_publish(struct shm_layout *l, const struct config_tunables *t)
{
	/* Only the master writes the live block, so no writer lock is needed. */
	seqlock_write(&l->live.seq, l->live.words, t, SHM_TUNABLE_WORDS);
	atomic_fetch_add_explicit(&l->live.version, 1, memory_order_release);
}

int shm_live_refresh(const struct shm_layout *l, struct config_tunables *t, uint64_t *version)
{
	uint64_t v = atomic_load_explicit(&l->live.version, memory_order_acquire);
	struct config_tunables tmp;

	if (v == *version)
		return 0;
	if (seqlock_read(&l->live.seq, l->live.words, SHM_TUNABLE_WORDS, &tmp) != 0)
		return -EAGAIN;
	*t = tmp;
	*version = v;
	return 1;
}
