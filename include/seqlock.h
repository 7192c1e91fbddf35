/* Seqlock over relaxed atomic words: the C11-defined way to let readers copy data a writer may be changing. */
#ifndef SFU_SEQLOCK_H
#define SFU_SEQLOCK_H

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Why this shape (Boehm, "Can seqlocks get along with programming language
 * memory models?", HPL-2012-68; abseil's SequenceLock):
 *
 * A classic seqlock lets readers race with the writer and throws away a copy
 * that raced. In C11 a racing plain load is undefined behaviour even if the
 * result is discarded, so every protected word is an _Atomic uint64_t, read and
 * written with memory_order_relaxed. Relaxed accesses are never a data race;
 * the ordering comes from the sequence counter and two fences:
 *
 *   writer:  seq = s+1 (relaxed)      reader:  s1 = seq (acquire)
 *            fence(release)                    if s1 odd: retry
 *            data = ... (relaxed)              copy data (relaxed)
 *            seq = s+2 (release)               fence(acquire)
 *                                              s2 = seq (relaxed)
 *                                              if s1 != s2: retry
 *
 * The release fence after the odd store keeps the data stores from moving
 * above it: a reader that sees any new data word is guaranteed, through its
 * acquire fence, to then see seq >= s+1 and retry. The release store of s+2
 * publishes the data to a reader whose acquire load sees s+2.
 *
 * A seqlock does not serialise writers: callers hold a writer lock (see
 * registry.h). Readers never block and never write shared memory; they retry a
 * bounded number of times and then report -EAGAIN, so a writer that died with
 * the count odd cannot wedge them (the slot just looks unavailable until the
 * master repairs it).
 *
 * The words live in POSIX shared memory mapped by several processes, so the
 * atomics must be lock-free (address-free): checked at compile time here.
 */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free for shared memory");
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t), "atomic words must be plain-sized");

/* Readers give up after this many torn or in-progress reads. A writer holds a
 * slot odd for well under a microsecond, so hitting this means a dead writer. */
#define SEQLOCK_MAX_RETRIES 1024

typedef _Atomic uint64_t seqlock_word;

/* Starts a read: the sequence seen, to pass to seqlock_read_valid(). Odd means
 * a write is in progress: the caller should retry. */
static inline uint64_t seqlock_read_begin(const seqlock_word *seq)
{
	return atomic_load_explicit(seq, memory_order_acquire);
}

/* Ends a read: true when the copy made since seqlock_read_begin() returned
 * start is consistent (no write began or finished meanwhile). */
static inline int seqlock_read_valid(const seqlock_word *seq, uint64_t start)
{
	/* The acquire fence orders the relaxed data loads before the re-load of
	 * seq: if any of them saw a newer writer's store, seq has moved too. */
	atomic_thread_fence(memory_order_acquire);
	return (start & 1) == 0 && atomic_load_explicit(seq, memory_order_relaxed) == start;
}

/* Writer side; the caller serialises writers. */
static inline void seqlock_write_begin(seqlock_word *seq)
{
	uint64_t s = atomic_load_explicit(seq, memory_order_relaxed);

	atomic_store_explicit(seq, s + 1, memory_order_relaxed);
	/* Keeps the data stores below from becoming visible before the odd count. */
	atomic_thread_fence(memory_order_release);
}

static inline void seqlock_write_end(seqlock_word *seq)
{
	uint64_t s = atomic_load_explicit(seq, memory_order_relaxed);

	/* Release: everything written in the section is visible to a reader that
	 * acquires this even value. */
	atomic_store_explicit(seq, s + 1, memory_order_release);
}

/* Relaxed word-by-word copies between plain memory and protected words. The
 * plain side is memcpy'd per word so it may be any suitably sized struct. */
static inline void seqlock_copy_out(void *dst, const seqlock_word *words, size_t nwords)
{
	unsigned char *d = dst;

	for (size_t i = 0; i < nwords; i++) {
		uint64_t w = atomic_load_explicit(&words[i], memory_order_relaxed);

		memcpy(d + i * 8, &w, 8);
	}
}

static inline void seqlock_copy_in(seqlock_word *words, const void *src, size_t nwords)
{
	const unsigned char *s = src;

	for (size_t i = 0; i < nwords; i++) {
		uint64_t w;

		memcpy(&w, s + i * 8, 8);
		atomic_store_explicit(&words[i], w, memory_order_relaxed);
	}
}

/* A whole bounded read: copies nwords into dst. 0, or -EAGAIN after
 * SEQLOCK_MAX_RETRIES inconsistent attempts (dst then holds garbage). */
static inline int seqlock_read(const seqlock_word *seq, const seqlock_word *words, size_t nwords,
			       void *dst)
{
	for (unsigned tries = 0; tries < SEQLOCK_MAX_RETRIES; tries++) {
		uint64_t s = seqlock_read_begin(seq);

		if (s & 1)
			continue;
		seqlock_copy_out(dst, words, nwords);
		if (seqlock_read_valid(seq, s))
			return 0;
	}
	return -EAGAIN;
}

/* A whole write of nwords from src. The caller holds the writer lock. */
static inline void seqlock_write(seqlock_word *seq, seqlock_word *words, const void *src,
				 size_t nwords)
{
	seqlock_write_begin(seq);
	seqlock_copy_in(words, src, nwords);
	seqlock_write_end(seq);
}

/*
 * seqlock_write for a section whose only writer is a process that is restarted
 * when it dies (the reaper's status blocks). A predecessor that died between
 * begin and end left seq odd, and readers retry until it turns even again: the
 * successor, the only writer there can be, closes that section first (its words
 * are about to be overwritten whole), then writes its own.
 */
static inline void seqlock_write_restarted(seqlock_word *seq, seqlock_word *words,
					   const void *src, size_t nwords)
{
	uint64_t s = atomic_load_explicit(seq, memory_order_relaxed);

	if (s & 1)
		atomic_store_explicit(seq, s + 1, memory_order_release);
	seqlock_write(seq, words, src, nwords);
}

#endif
