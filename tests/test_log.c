/* Tests of the log's rate limit: the decision per cause, lines in a file, and a token flood through the daemon. */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"

/* base64 of the 32 bytes "log-tests-gateway-key-0123456789" */
#define LOG_GW_KEY "bG9nLXRlc3RzLWdhdGV3YXkta2V5LTAxMjM0NTY3ODk="

/* The sum of N over the "<cause>: suppressed N similar lines" lines of text. */
static unsigned long long log_suppressed(const char *text, const char *cause)
{
	char needle[128];
	unsigned long long sum = 0;

	snprintf(needle, sizeof(needle), "%s: suppressed ", cause);
	for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
		sum += strtoull(p + strlen(needle), NULL, 10);
	return sum;
}

/* ---- the decision */

Test(log, burst_per_window_then_one_summary)
{
	struct log_limit l = { .cause = "test" };
	uint64_t summary;
	int64_t span, t = 5000;
	int written = 0;

	for (int i = 0; i < LOG_LIMIT_BURST + 37; i++) {
		written += log_limit_admit(&l, t + i, &summary, &span);
		cr_assert_eq(summary, 0, "no summary within the first window");
	}
	cr_assert_eq(written, LOG_LIMIT_BURST);
	/* Still inside the window: dropped. */
	cr_assert_eq(log_limit_admit(&l, t + LOG_LIMIT_WINDOW_MS - 1, &summary, &span), 0);
	cr_assert_eq(summary, 0);
	/* The first line of the next window comes with the count of what was dropped, and the
	 * time since the first of those (line LOG_LIMIT_BURST, at t + LOG_LIMIT_BURST). */
	cr_assert_eq(log_limit_admit(&l, t + LOG_LIMIT_WINDOW_MS, &summary, &span), 1);
	cr_assert_eq(summary, 38);
	cr_assert_eq(span, LOG_LIMIT_WINDOW_MS - LOG_LIMIT_BURST);
	/* The new window has its own burst, and nothing more to sum up. */
	written = 1;
	for (int i = 0; i < 2 * LOG_LIMIT_BURST; i++) {
		written += log_limit_admit(&l, t + LOG_LIMIT_WINDOW_MS + 1, &summary, &span);
		cr_assert_eq(summary, 0);
	}
	cr_assert_eq(written, LOG_LIMIT_BURST);
}

Test(log, causes_are_independent)
{
	struct log_limit a = { .cause = "a" }, b = { .cause = "b" };
	uint64_t summary;
	int64_t span;
	int wa = 0, wb = 0;

	for (int i = 0; i < 3 * LOG_LIMIT_BURST; i++)
		wa += log_limit_admit(&a, 100, &summary, &span);
	for (int i = 0; i < LOG_LIMIT_BURST; i++)
		wb += log_limit_admit(&b, 100, &summary, &span);
	cr_assert_eq(wa, LOG_LIMIT_BURST);
	cr_assert_eq(wb, LOG_LIMIT_BURST, "a flood of one cause silenced another");
}

Test(log, quiet_cause_writes_no_summary)
{
	struct log_limit l = { .cause = "test" };
	uint64_t summary;
	int64_t span;

	for (int w = 0; w < 5; w++) {
		for (int i = 0; i < LOG_LIMIT_BURST; i++)
			cr_assert_eq(log_limit_admit(&l, 1 + w * LOG_LIMIT_WINDOW_MS, &summary, &span), 1);
		cr_assert_eq(summary, 0, "a summary of nothing in window %d", w);
	}
}

/* ---- lines in a file */

static const char *log_file(void)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/test.log", harness_tmpdir());
	cr_assert_eq(log_open(path, 0), 0);
	log_set_level(LOG_LEVEL_INFO);
	return path;
}

/* One call site, the way the daemon's are written. */
static void log_one_bad_thing(int i)
{
	log_info_limited("test: bad things", "test: bad thing number %d", i);
}

Test(log, file_gets_burst_and_summary_at_flush, .fini = harness_cleanup)
{
	const char *path = log_file();
	char *text;

	for (int i = 0; i < 1000; i++)
		log_one_bad_thing(i);
	log_limit_flush(1);
	text = harness_read_all(path);
	cr_assert_eq(harness_count(text, "test: bad thing number "), LOG_LIMIT_BURST, "%s", text);
	cr_assert_eq(harness_count(text, "test: bad things: suppressed 980 similar lines in the "
					 "last "),
		     1, "%s", text);
	cr_assert_eq(harness_count(text, "\n"), LOG_LIMIT_BURST + 1, "%s", text);
	/* The summary is at the level of the lines it stands for. */
	cr_assert_neq(strstr(text, " info main["), NULL, "%s", text);
	free(text);
	/* Flushed once: nothing more to write. */
	log_limit_flush(1);
	text = harness_read_all(path);
	cr_assert_eq(harness_count(text, "\n"), LOG_LIMIT_BURST + 1, "%s", text);
	free(text);
	log_close();
}

Test(log, periodic_flush_waits_for_the_window, .fini = harness_cleanup)
{
	const char *path = log_file();
	int64_t deadline;
	char *text;

	for (int i = 0; i < LOG_LIMIT_BURST + 5; i++)
		log_one_bad_thing(i);
	/* The window is not over yet: the periodic flush leaves the count for later. */
	log_limit_flush(0);
	text = harness_read_all(path);
	cr_assert_eq(harness_count(text, "suppressed"), 0, "%s", text);
	free(text);
	/* Once it is, the same flush writes it. */
	deadline = harness_now_ms() + 3 * LOG_LIMIT_WINDOW_MS;
	do {
		poll(NULL, 0, 50);
		log_limit_flush(0);
		text = harness_read_all(path);
		if (harness_count(text, "suppressed") > 0 || harness_now_ms() > deadline)
			break;
		free(text);
	} while (1);
	cr_assert_eq(harness_count(text, "test: bad things: suppressed 5 similar lines in the "
					 "last "),
		     1, "%s", text);
	free(text);
	log_close();
}

Test(log, lines_below_the_level_do_not_count, .fini = harness_cleanup)
{
	const char *path = log_file();
	char *text;

	log_set_level(LOG_LEVEL_WARN);
	for (int i = 0; i < 1000; i++)
		log_one_bad_thing(i);
	log_set_level(LOG_LEVEL_INFO);
	for (int i = 0; i < LOG_LIMIT_BURST; i++)
		log_one_bad_thing(i);
	log_limit_flush(1);
	text = harness_read_all(path);
	cr_assert_eq(harness_count(text, "test: bad thing number "), LOG_LIMIT_BURST, "%s", text);
	cr_assert_eq(harness_count(text, "suppressed"), 0, "%s", text);
	free(text);
	log_close();
}

/* ---- through the daemon */

#define LOG_FLOOD_MS 2500
#define LOG_FLOOD_PIPELINE 64

/* Sends n pipelined channel requests with a bad token on fd and reads their n answers;
 * returns how many were 401. */
static int log_flood_round(int fd, int n)
{
	static const char req[] = "GET /v1/channel HTTP/1.1\r\nHost: x\r\n"
				  "Authorization: jwt eyJhbGciOiJIUzI1NiJ9.e30.bad-signature\r\n\r\n";
	static char out[LOG_FLOOD_PIPELINE * sizeof(req)], in[1 << 16];
	int64_t deadline = harness_now_ms() + 5000;
	size_t len = 0, have = 0;
	int answers = 0, unauthorized = 0;

	for (int i = 0; i < n; i++) {
		memcpy(out + len, req, sizeof(req) - 1);
		len += sizeof(req) - 1;
	}
	cr_assert_eq(send(fd, out, len, MSG_NOSIGNAL), (ssize_t)len, "send(): %s", strerror(errno));
	while (answers < n && harness_now_ms() < deadline) {
		struct pollfd pf = { fd, POLLIN, 0 };
		ssize_t r;
		char *p;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		r = recv(fd, in + have, sizeof(in) - have - 1, 0);
		cr_assert_gt(r, 0, "the gateway closed the connection");
		have += (size_t)r;
		in[have] = '\0';
		/* Whole answers only: each ends with its JSON body. */
		while ((p = strstr(in, "\"}")) != NULL) {
			size_t used = (size_t)(p + 2 - in);

			answers++;
			unauthorized += strncmp(in, "HTTP/1.1 401 ", 13) == 0;
			memmove(in, in + used, have - used + 1);
			have -= used;
		}
	}
	cr_assert_eq(answers, n, "only %d of %d answers", answers, n);
	return unauthorized;
}

Test(log_flood, rejected_tokens_are_rate_limited_and_counted, .fini = harness_cleanup,
     .timeout = 60)
{
	char path[PATH_MAX];
	const char *env[] = { "SFU_GATEWAY_KEY=" LOG_GW_KEY, NULL };
	const char *args[] = { "--workers", "2", "--log-file", path, NULL };
	struct harness_proc *gw;
	unsigned long long rejected = 0, written, suppressed = 0;
	int64_t t0, deadline, flood_ms;
	int fds[4];
	char *text = NULL;

	snprintf(path, sizeof(path), "%s/gw.log", harness_tmpdir());
	gw = harness_gateway_up(env, args);
	for (int i = 0; i < 4; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)gw->port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert_geq(fds[i], 0);
		cr_assert_eq(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	t0 = harness_now_ms();
	while (harness_now_ms() - t0 < LOG_FLOOD_MS)
		for (int i = 0; i < 4; i++)
			rejected += (unsigned long long)log_flood_round(fds[i], LOG_FLOOD_PIPELINE);
	flood_ms = harness_now_ms() - t0;
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	cr_assert_gt(rejected, 1000, "the flood was too small to mean anything: %llu", rejected);

	/* Every rejection is accounted for: written, or counted in a summary, which the
	 * workers write within a window or two of the flood's end. */
	deadline = harness_now_ms() + 5000;
	for (;;) {
		free(text);
		text = harness_read_all(path);
		written = (unsigned long long)harness_count(text, "channel: rejected token from ");
		suppressed = log_suppressed(text, "channel: rejected tokens");
		if (written + suppressed >= rejected || harness_now_ms() > deadline)
			break;
		poll(NULL, 0, 100);
	}
	cr_assert_eq(written + suppressed, rejected,
		     "%llu rejections, %llu lines and %llu counted in summaries", rejected, written,
		     suppressed);
	/* At most a burst per window per worker, plus a window at each end. */
	cr_assert_leq(written,
		      2ULL * LOG_LIMIT_BURST * (unsigned long long)(flood_ms / LOG_LIMIT_WINDOW_MS + 3),
		      "%llu lines for %llu rejections in %lld ms", written, rejected,
		      (long long)flood_ms);
	cr_assert_gt(suppressed, 0);
	free(text);
}
