/* Tests of sysload.c: /proc/stat and /proc/meminfo parsing, CPU deltas, reading the real files. */
#include "sysload.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A /proc/stat of a 2-core host (Linux 6.x layout). */
static const char sysload_t_stat[] =
	"cpu  100 5 50 800 20 3 2 10 7 1\n"
	"cpu0 50 2 25 400 10 1 1 5 3 0\n"
	"cpu1 50 3 25 400 10 2 1 5 4 1\n"
	"intr 12345 0 0\n"
	"ctxt 999\n";

Test(sysload, stat_aggregate_line)
{
	struct sysload_cpu c;

	cr_assert_eq(sysload_parse_stat(sysload_t_stat, &c), 0);
	/* guest (7) and guest_nice (1) are already inside user and nice. */
	cr_assert_eq(c.total, 100 + 5 + 50 + 800 + 20 + 3 + 2 + 10);
	cr_assert_eq(c.busy, c.total - 800 - 20);
}

Test(sysload, stat_old_kernels_and_rejections)
{
	struct sysload_cpu c;

	/* Linux 2.4 had four fields only. */
	cr_assert_eq(sysload_parse_stat("cpu  1 2 3 4\n", &c), 0);
	cr_assert_eq(c.total, 10);
	cr_assert_eq(c.busy, 6);
	/* The aggregate line need not be first. */
	cr_assert_eq(sysload_parse_stat("x 1\ncpu 4 0 0 4\n", &c), 0);
	cr_assert_eq(c.busy, 4);
	cr_assert_eq(sysload_parse_stat("cpu0 1 2 3 4\n", &c), -EINVAL, "per-core line taken");
	cr_assert_eq(sysload_parse_stat("cpu  1 2 3\n", &c), -EINVAL, "three fields");
	cr_assert_eq(sysload_parse_stat("cpu  a b c d\n", &c), -EINVAL);
	cr_assert_eq(sysload_parse_stat("", &c), -EINVAL);
	cr_assert_eq(sysload_parse_stat(NULL, &c), -EINVAL);
}

Test(sysload, cpu_usage_deltas)
{
	struct sysload_cpu zero = { 0, 0 }, a = { 300, 1000 }, b = { 450, 1200 };
	struct sysload_cpu all_busy = { 500, 1200 }, reboot = { 10, 100 };

	cr_assert_float_eq(sysload_cpu_usage(&a, &b), 0.75, 1e-9);
	/* From zero: the average since boot. */
	cr_assert_float_eq(sysload_cpu_usage(&zero, &a), 0.3, 1e-9);
	cr_assert_float_eq(sysload_cpu_usage(&a, &all_busy), 1.0, 1e-9);
	cr_assert_float_eq(sysload_cpu_usage(&a, &a), 0.0, 1e-9, "no time passed");
	cr_assert_float_eq(sysload_cpu_usage(&a, &reboot), 0.0, 1e-9, "counters went back");
}

Test(sysload, meminfo)
{
	double u = -1;

	cr_assert_eq(sysload_parse_meminfo("MemTotal:       1000 kB\nMemFree:  100 kB\n"
					   "MemAvailable:    250 kB\nBuffers: 10 kB\n",
					   &u),
		     0);
	cr_assert_float_eq(u, 0.75, 1e-9);
	/* Before Linux 3.14: free + buffers + cached. */
	cr_assert_eq(sysload_parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\n"
					   "Cached: 250 kB\nSwapCached: 999 kB\n",
					   &u),
		     0);
	cr_assert_float_eq(u, 0.6, 1e-9);
	cr_assert_eq(sysload_parse_meminfo("MemTotal: 1000 kB\nMemAvailable: 2000 kB\n", &u), 0);
	cr_assert_float_eq(u, 0.0, 1e-9, "clamped at 0");
	cr_assert_eq(sysload_parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n", &u), -EINVAL);
	cr_assert_eq(sysload_parse_meminfo("MemFree: 1 kB\n", &u), -EINVAL, "no total");
	cr_assert_eq(sysload_parse_meminfo("MemTotal: 10 kB\n", &u), -EINVAL, "nothing free");
	/* "MemTotalX" is another field. */
	cr_assert_eq(sysload_parse_meminfo("MemTotalX: 10 kB\nMemAvailable: 1 kB\n", &u),
		     -EINVAL);
}

Test(sysload, real_files)
{
	struct sysload_cpu c1, c2;
	double m = -1;

	cr_assert_eq(sysload_read_cpu(NULL, &c1), 0);
	cr_assert_gt(c1.total, 0);
	cr_assert_leq(c1.busy, c1.total);
	cr_assert_eq(sysload_read_cpu(NULL, &c2), 0);
	cr_assert_geq(c2.total, c1.total);
	cr_assert_eq(sysload_read_memory(NULL, &m), 0);
	cr_assert(m > 0.0 && m < 1.0, "memory usage %g", m);
	cr_assert_eq(sysload_read_cpu("/nonexistent/stat", &c1), -ENOENT);
	cr_assert_eq(sysload_read_memory("/nonexistent/meminfo", &m), -ENOENT);
}

Test(sysload, file_in_pieces)
{
	char path[] = "/tmp/sysload-test.XXXXXX";
	int fd = mkstemp(path);
	struct sysload_cpu c;
	FILE *f;

	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	fputs(sysload_t_stat, f);
	fclose(f);
	cr_assert_eq(sysload_read_cpu(path, &c), 0);
	cr_assert_eq(c.total, 990);
	unlink(path);
}
