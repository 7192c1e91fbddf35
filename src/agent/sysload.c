/* Host load for the agent's heartbeats: CPU from /proc/stat deltas, memory from /proc/meminfo. */
#include "sysload.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Both files are a few kB on any host (meminfo ~1.5 kB; the "cpu " line comes first). */
#define SYSLOAD_READ_MAX 16384

/* Reads one unsigned decimal field after spaces; false when there is none. */
static bool sysload_field(const char **p, uint64_t *out)
{
	const char *s = *p;
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	*p = end;
	return true;
}

int sysload_parse_stat(const char *text, struct sysload_cpu *out)
{
	/* user nice system idle iowait irq softirq steal guest guest_nice */
	uint64_t f[10] = { 0 };
	const char *p;
	int n = 0;

	if (text == NULL || out == NULL)
		return -EINVAL;
	/* The aggregate line is "cpu" followed by a space; "cpu0" lines are per core. */
	for (p = text; p != NULL; p = strchr(p, '\n'), p = p != NULL ? p + 1 : NULL)
		if (strncmp(p, "cpu ", 4) == 0)
			break;
	if (p == NULL)
		return -EINVAL;
	p += 3;
	while (n < 10 && sysload_field(&p, &f[n]))
		n++;
	if (n < 4)
		return -EINVAL;
	out->total = f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
	out->busy = out->total - f[3] - f[4];
	return 0;
}

double sysload_cpu_usage(const struct sysload_cpu *prev, const struct sysload_cpu *cur)
{
	uint64_t dt, db;
	double u;

	if (cur->total <= prev->total || cur->busy < prev->busy)
		return 0.0;
	dt = cur->total - prev->total;
	db = cur->busy - prev->busy;
	u = (double)db / (double)dt;
	return u > 1.0 ? 1.0 : u;
}

/* The kB value of "Name:" at the start of a meminfo line; false when absent. */
static bool sysload_meminfo_value(const char *text, const char *name, uint64_t *out)
{
	size_t nl = strlen(name);

	for (const char *p = text; p != NULL; p = strchr(p, '\n'), p = p != NULL ? p + 1 : NULL) {
		if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;

			return sysload_field(&v, out);
		}
	}
	return false;
}

int sysload_parse_meminfo(const char *text, double *usage)
{
	uint64_t total, avail, free_kb, buffers, cached;
	double u;

	if (text == NULL || usage == NULL)
		return -EINVAL;
	if (!sysload_meminfo_value(text, "MemTotal", &total) || total == 0)
		return -EINVAL;
	if (!sysload_meminfo_value(text, "MemAvailable", &avail)) {
		if (!sysload_meminfo_value(text, "MemFree", &free_kb))
			return -EINVAL;
		/* Buffers and Cached are reclaimable; old kernels have no better estimate. */
		if (!sysload_meminfo_value(text, "Buffers", &buffers))
			buffers = 0;
		if (!sysload_meminfo_value(text, "Cached", &cached))
			cached = 0;
		avail = free_kb + buffers + cached;
	}
	u = avail >= total ? 0.0 : 1.0 - (double)avail / (double)total;
	*usage = u;
	return 0;
}

/* Reads a small file into buf (NUL-terminated). 0 or -errno. */
static int sysload_slurp(const char *path, char *buf, size_t cap)
{
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	/* procfs hands out a file in pieces; read until the end or the buffer is full. */
	while (got < cap - 1) {
		ssize_t n = read(fd, buf + got, cap - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return rc;
}

int sysload_read_cpu(const char *path, struct sysload_cpu *out)
{
	char *buf = malloc(SYSLOAD_READ_MAX);
	int rc;

	if (buf == NULL)
		return -ENOMEM;
	rc = sysload_slurp(path != NULL ? path : "/proc/stat", buf, SYSLOAD_READ_MAX);
	if (rc == 0)
		rc = sysload_parse_stat(buf, out);
	free(buf);
	return rc;
}

int sysload_read_memory(const char *path, double *usage)
{
	char *buf = malloc(SYSLOAD_READ_MAX);
	int rc;

	if (buf == NULL)
		return -ENOMEM;
	rc = sysload_slurp(path != NULL ? path : "/proc/meminfo", buf, SYSLOAD_READ_MAX);
	if (rc == 0)
		rc = sysload_parse_meminfo(buf, usage);
	free(buf);
	return rc;
}
