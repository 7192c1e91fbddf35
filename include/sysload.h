/* Host load for the agent's heartbeats: CPU from /proc/stat deltas, memory from /proc/meminfo. */
#ifndef SFU_SYSLOAD_H
#define SFU_SYSLOAD_H

#include <stddef.h>
#include <stdint.h>

/* Cumulative CPU time of the whole host, in the clock ticks /proc/stat counts. */
struct sysload_cpu {
	uint64_t busy; /* total minus idle and iowait */
	uint64_t total; /* user+nice+system+idle+iowait+irq+softirq+steal */
};

/* Reads the aggregate "cpu " line of a /proc/stat text (NUL-terminated).
 * Guest time is already inside user and nice, so it is not added twice.
 * Needs at least the four fields of every kernel (user nice system idle).
 * 0 or -EINVAL. */
int sysload_parse_stat(const char *text, struct sysload_cpu *out);

/* The share of CPU time spent busy between two samples, in [0, 1]; 0 when no
 * time passed or the counters went backwards (a new boot, a container move). */
double sysload_cpu_usage(const struct sysload_cpu *prev, const struct sysload_cpu *cur);

/* Memory in use as a share of MemTotal, in [0, 1], from a /proc/meminfo text:
 * 1 - MemAvailable / MemTotal, or, on kernels before 3.14 without MemAvailable,
 * 1 - (MemFree + Buffers + Cached) / MemTotal. 0 or -EINVAL. */
int sysload_parse_meminfo(const char *text, double *usage);

/* The same from files (path NULL: /proc/stat, /proc/meminfo). 0 or -errno. */
int sysload_read_cpu(const char *path, struct sysload_cpu *out);
int sysload_read_memory(const char *path, double *usage);

#endif
