/* Pshared: the one way a lock in shared memory is made, process-shared and robust. */
#ifndef SFU_PSHARED_H
#define SFU_PSHARED_H

#include <pthread.h>

/*
 * Initialises a mutex in shared memory that every process of the gateway may
 * lock (process-shared) and that a process dying while it holds it cannot
 * wedge (robust: the next locker gets EOWNERDEAD, repairs what the dead one
 * left, and calls pthread_mutex_consistent). 0 or -errno.
 */
int pshared_mutex_init(pthread_mutex_t *m);

#endif
