/* Shared memory: create, size, map and remove the POSIX segment; publish the live config. */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

void shm_name_for(char *out, size_t outlen, uint16_t port)
{
	snprintf(out, outlen, "/sfu-gateway.%u.%u", (unsigned)getuid(), (unsigned)port);
}

/* True when the existing segment's lock is held: its instance still runs. */
static int shm_owner_alive(const char *name)
{
	int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
	int alive = 0;

	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
		alive = 1;
	close(fd); /* also drops the lock if we got it */
	return alive;
}

int shm_create(struct shm_segment *seg, const char *name, uint32_t capacity)
{
	size_t size = offsetof(struct shm_layout, registry) + registry_size(capacity);
	struct shm_layout *l;
	int fd, rc;

	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
	snprintf(seg->name, sizeof(seg->name), "%s", name);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST) {
		if (shm_owner_alive(name))
			return -EADDRINUSE;
		log_warn("shm: replacing stale segment %s from a crashed run", name);
		shm_unlink(name);
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		rc = -errno;
		goto fail;
	}
	/* The umask may have narrowed the mode, never widened it; make it exact. */
	if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0) {
		rc = -errno;
		goto fail;
	}
	l = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (l == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	seg->fd = fd;
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
		shm_unlink(name);
		close(fd);
		seg->fd = -1;
		return rc;
	}
	atomic_store(&l->master_pid, (int32_t)getpid());
	seg->layout = l;
	seg->size = size;
	seg->owner = 1;
	return 0;
fail:
	close(fd);
	shm_unlink(name);
	return rc;
}

void shm_destroy(struct shm_segment *seg)
{
	if (seg->layout != NULL)
		munmap(seg->layout, seg->size);
	if (seg->owner)
		shm_unlink(seg->name);
	if (seg->fd >= 0)
		close(seg->fd);
	seg->fd = -1;
	seg->layout = NULL;
	seg->owner = 0;
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
