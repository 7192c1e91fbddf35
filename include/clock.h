/* Clock: the one source of time stamps every process and module uses. */
#ifndef SFU_CLOCK_H
#define SFU_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds: what the registry, timers and deadlines
 * are stamped with, comparable across the processes of one machine. */
int64_t clock_ms(void);
/* CLOCK_MONOTONIC in microseconds, for latencies and time budgets. */
int64_t clock_us(void);
/* CLOCK_REALTIME in milliseconds, for what people read (start time, logs). */
int64_t clock_wall_ms(void);

#endif
