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
	if (rc != 0) {
		munmap(l, size);
		close(fd);
		return rc;
	}
	atomic_store(&l->master_pid, (int32_t)getpid());
	seg->fd = fd;
	seg->layout = l;
	seg->size = size;
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
