/* Cluster queue: the heartbeats workers accepted, in shared memory on their way to etcd through the reaper. */
#include "clusterq.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "pshared.h"

/* Inherited through fork(): the master sets it before its first child. */
static int clusterq_efd = -1;

int clusterq_init(struct clusterq *q)
{
	int err = pshared_mutex_init(&q->lock);

	if (err)
		return err;
	atomic_store(&q->head, 0);
	atomic_store(&q->tail, 0);
	return 0;
}

static int clusterq_lock(struct clusterq *q)
{
	int err = pthread_mutex_lock(&q->lock);

	if (err == EOWNERDEAD) {
		/* The dead producer moved tail only once its entry was whole: a
		 * half-written entry is past tail and gets overwritten. */
		err = pthread_mutex_consistent(&q->lock);
		if (err != 0) {
			pthread_mutex_unlock(&q->lock);
			return -EAGAIN;
		}
		return 0;
	}
	return err == 0 ? 0 : -EAGAIN;
}

int clusterq_push(struct clusterq *q, const struct clusterq_entry *e)
{
	uint64_t tail;
	int rc = clusterq_lock(q);

	if (rc != 0) {
		atomic_fetch_add_explicit(&q->dropped, 1, memory_order_relaxed);
		return rc;
	}
	tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
	if (tail - atomic_load_explicit(&q->head, memory_order_acquire) >= CLUSTERQ_CAP) {
		pthread_mutex_unlock(&q->lock);
		atomic_fetch_add_explicit(&q->dropped, 1, memory_order_relaxed);
		return -ENOSPC;
	}
	memcpy(&q->e[tail % CLUSTERQ_CAP], e, sizeof(*e));
	/* The entry is whole before the consumer can see it. */
	atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
	pthread_mutex_unlock(&q->lock);
	atomic_fetch_add_explicit(&q->pushed, 1, memory_order_relaxed);
	if (clusterq_efd >= 0) {
		uint64_t one = 1;
		ssize_t n = write(clusterq_efd, &one, sizeof(one));

		/* A full counter (EAGAIN) still wakes the reader: nothing to do. */
		(void)n;
	}
	return 0;
}

size_t clusterq_pop(struct clusterq *q, struct clusterq_entry *out, size_t max)
{
	uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
	size_t n = 0;

	while (head < tail && n < max) {
		struct clusterq_entry *e = &q->e[head % CLUSTERQ_CAP];

		memcpy(&out[n++], e, sizeof(*e));
		explicit_bzero(e, sizeof(*e));
		head++;
		/* The wipe is done before a producer may reuse the entry. */
		atomic_store_explicit(&q->head, head, memory_order_release);
	}
	return n;
}

int clusterq_wake_open(void)
{
	if (clusterq_efd >= 0)
		return 0;
	clusterq_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return clusterq_efd >= 0 ? 0 : -errno;
}

int clusterq_wake_fd(void)
{
	return clusterq_efd;
}

void clusterq_wake_clear(void)
{
	uint64_t v;
	ssize_t n;

	if (clusterq_efd < 0)
		return;
	n = read(clusterq_efd, &v, sizeof(v));
	(void)n;
}
