/* Cluster benchmark driver: first-request latency, heartbeat propagation between gateways, a fleet's heartbeats (bench/cluster.sh runs it). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"

/*
 * Usage (keys are base64; everything goes to 127.0.0.1):
 *   bench-cluster first PORT GW_KEY N
 *     N channel requests, each of a new issuer (its first request), one at a time on
 *     one keep-alive connection: p50, p99 and mean in microseconds.
 *   bench-cluster propagate PORT_A PORT_B REG_KEY N
 *     N times: a new SFU's heartbeat to gateway A, then GET /v1/health of B until it
 *     lists the SFU; the time from sending the heartbeat to B listing it (p50, p99),
 *     then its sign-off at A.
 *   bench-cluster fleet PORT_A PORT_B REG_KEY SFUS INTERVAL_MS SECONDS
 *     SFUS SFUs each heartbeating every INTERVAL_MS, alternately to A and B (a load
 *     balancer), for SECONDS: prints the heartbeats sent and refused.
 */

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
	fprintf(stderr, "bench-cluster: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int conn_open(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die("connect()");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* One request on a keep-alive connection (reopened when the server closed it):
 * the status, and the body into body (NUL-terminated, cut to cap). */
static int http_do(int *fd, int port, const char *req, size_t len, char *body, size_t cap)
{
	static char buf[1 << 20];
	size_t got = 0;
	ssize_t n;
	char *end;
	long clen;
	int status;

	for (int tries = 0; tries < 2; tries++) {
		if (*fd < 0)
			*fd = conn_open(port);
		if (write(*fd, req, len) == (ssize_t)len)
			break;
		close(*fd);
		*fd = -1;
	}
	for (;;) {
		n = read(*fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0) {
			close(*fd);
			*fd = -1;
			if (got == 0)
				return http_do(fd, port, req, len, body, cap);
			break;
		}
		got += (size_t)n;
		buf[got] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end == NULL)
			continue;
		{
			const char *cl = strcasestr(buf, "\r\nContent-Length:");

			clen = cl != NULL && cl < end ? strtol(cl + 17, NULL, 10) : 0;
		}
		if (got >= (size_t)(end + 4 - buf) + (size_t)clen)
			break;
	}
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
		status = 0;
	end = strstr(buf, "\r\n\r\n");
	if (body != NULL && cap > 0) {
		snprintf(body, cap, "%s", end != NULL ? end + 4 : "");
	}
	if (strcasestr(buf, "\r\nConnection: close") != NULL) {
		close(*fd);
		*fd = -1;
	}
	return status;
}

static size_t key_decode(const char *b64, uint8_t *out)
{
	ssize_t n = base64_decode_key(b64, out, 128);

	if (n <= 0) {
		fprintf(stderr, "bench-cluster: a key is not base64\n");
		exit(2);
	}
	return (size_t)n;
}

/* An HS256 JWT of the claims JSON, into out. */
static void jwt(const uint8_t *key, size_t klen, const char *claims, char *out, size_t cap)
{
	static const char head[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char h[128], c[1024], sig[64];
	uint8_t mac[32];
	unsigned maclen = 0;
	int n;

	base64url_encode((const uint8_t *)head, sizeof(head) - 1, h, sizeof(h));
	base64url_encode((const uint8_t *)claims, strlen(claims), c, sizeof(c));
	n = snprintf(out, cap, "%s.%s", h, c);
	HMAC(EVP_sha256(), key, (int)klen, (const uint8_t *)out, (size_t)n, mac, &maclen);
	base64url_encode(mac, maclen, sig, sizeof(sig));
	snprintf(out + n, cap - (size_t)n, ".%s", sig);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, int64_t *v, int n)
{
	int64_t sum = 0;

	qsort(v, (size_t)n, sizeof(*v), cmp_i64);
	for (int i = 0; i < n; i++)
		sum += v[i];
	printf("%s n=%d p50_us=%" PRId64 " p99_us=%" PRId64 " mean_us=%" PRId64 " max_us=%" PRId64
	       "\n",
	       what, n, v[n / 2], v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], sum / n, v[n - 1]);
}

static int bench_first(int port, const char *key_b64, int n)
{
	uint8_t key[128];
	size_t klen = key_decode(key_b64, key);
	int64_t *lat = calloc((size_t)n, sizeof(*lat));
	int fd = -1, bad = 0;

	if (lat == NULL)
		die("calloc()");
	for (int i = 0; i < n; i++) {
		char claims[256], tok[1024], req[2048];
		int len, status;
		int64_t t0;

		snprintf(claims, sizeof(claims),
			 "{\"iss\":\"bench-%d-%d\",\"key\":\"k\",\"exp\":%lld}", (int)getpid(), i,
			 (long long)time(NULL) + 300);
		jwt(key, klen, claims, tok, sizeof(tok));
		len = snprintf(req, sizeof(req),
			       "GET /v1/channel?webRTC=false HTTP/1.1\r\nHost: b\r\n"
			       "Authorization: jwt %s\r\n\r\n",
			       tok);
		t0 = now_us();
		status = http_do(&fd, port, req, (size_t)len, NULL, 0);
		lat[i] = now_us() - t0;
		bad += status != 200;
	}
	report("first-request", lat, n);
	if (bad)
		printf("non-200 answers: %d\n", bad);
	free(lat);
	return bad ? 1 : 0;
}

/* POST /v1/sfu for the SFU at address: up (with key and load) or down. */
static int heartbeat(int *fd, int port, const uint8_t *rkey, size_t rklen, const char *address,
		     bool up, uint64_t seq)
{
	static const char sfukey[] = "YmVuY2gtc2Z1LWtleS0wMTIzNDU2Nzg5YWJjZGVmZ2hpag==";
	char body[512], claims[512], tok[1024], req[2560], digest[64];
	uint8_t sha[32];
	int blen, len;
	long long now = (long long)time(NULL);

	if (up)
		blen = snprintf(body, sizeof(body),
				"{\"status\":\"up\",\"address\":\"%s\",\"key\":\"%s\",\"channels\":%d,"
				"\"sessions\":%d,\"cpuUsage\":0.25}",
				address, sfukey, (int)(seq % 7), (int)(seq % 13));
	else
		blen = snprintf(body, sizeof(body), "{\"status\":\"down\",\"address\":\"%s\"}",
				address);
	SHA256((const uint8_t *)body, (size_t)blen, sha);
	base64url_encode(sha, sizeof(sha), digest, sizeof(digest));
	snprintf(claims, sizeof(claims),
		 "{\"address\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"sha256\":\"%s\",\"seq\":%" PRIu64
		 "}",
		 address, now, now + 60, digest, seq);
	jwt(rkey, rklen, claims, tok, sizeof(tok));
	len = snprintf(req, sizeof(req),
		       "POST /v1/sfu HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
		       "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
		       tok, blen, body);
	return http_do(fd, port, req, (size_t)len, NULL, 0);
}

/* ms since the epoch, strictly increasing across calls: a heartbeat seq. */
static uint64_t next_seq(void)
{
	static uint64_t last;
	struct timespec ts;
	uint64_t s;

	clock_gettime(CLOCK_REALTIME, &ts);
	s = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (s <= last)
		s = last + 1;
	last = s;
	return s;
}

static int bench_propagate(int port_a, int port_b, const char *key_b64, int n)
{
	uint8_t key[128];
	size_t klen = key_decode(key_b64, key);
	int64_t *lat = calloc((size_t)n, sizeof(*lat));
	int fa = -1, fb = -1;
	static char body[1 << 20];
	static const char health[] = "GET /v1/health HTTP/1.1\r\nHost: b\r\n\r\n";

	if (lat == NULL)
		die("calloc()");
	for (int i = 0; i < n; i++) {
		char address[64], needle[80];
		int64_t t0;

		snprintf(address, sizeof(address), "http://127.0.0.1:%d", 40000 + i % 20000);
		snprintf(needle, sizeof(needle), "\"address\":\"%s\"", address);
		t0 = now_us();
		if (heartbeat(&fa, port_a, key, klen, address, true, next_seq()) != 200) {
			fprintf(stderr, "bench-cluster: heartbeat refused\n");
			return 1;
		}
		for (;;) {
			http_do(&fb, port_b, health, sizeof(health) - 1, body, sizeof(body));
			if (strstr(body, needle) != NULL)
				break;
			if (now_us() - t0 > 5000000) {
				fprintf(stderr, "bench-cluster: B never listed %s\n", address);
				return 1;
			}
		}
		lat[i] = now_us() - t0;
		heartbeat(&fa, port_a, key, klen, address, false, next_seq());
		/* Gone from B too before the next round, so rounds do not overlap,
		 * and a pause: each heartbeat is a lone one, as in a quiet fleet (in
		 * a busy one, writes are batched: at most CLUSTER_FLUSH_MS more). */
		for (int64_t t1 = now_us(); now_us() - t1 < 5000000;) {
			http_do(&fb, port_b, health, sizeof(health) - 1, body, sizeof(body));
			if (strstr(body, needle) == NULL)
				break;
		}
		usleep(50000);
	}
	report("heartbeat-A-to-listed-at-B", lat, n);
	free(lat);
	return 0;
}

static int bench_fleet(int port_a, int port_b, const char *key_b64, int sfus, int interval_ms,
		       int seconds)
{
	uint8_t key[128];
	size_t klen = key_decode(key_b64, key);
	int fa = -1, fb = -1, refused = 0;
	long sent = 0;
	int64_t start = now_us(), end = start + (int64_t)seconds * 1000000;
	/* Heartbeat k of SFU i is due at start + i * interval / sfus + k * interval. */
	int64_t step = (int64_t)interval_ms * 1000 / sfus;

	for (long k = 0;; k++) {
		int64_t due = start + k * step;
		int i = (int)(k % sfus), status;
		char address[64];

		if (due >= end)
			break;
		while (now_us() < due)
			usleep((useconds_t)((due - now_us()) > 2000 ? 1000 : 100));
		snprintf(address, sizeof(address), "http://127.0.%d.%d:8070", 1 + i / 250,
			 1 + i % 250);
		/* Each heartbeat to the next gateway in turn, as a round-robin balancer does. */
		if ((k / sfus + i) % 2 == 0)
			status = heartbeat(&fa, port_a, key, klen, address, true, next_seq());
		else
			status = heartbeat(&fb, port_b, key, klen, address, true, next_seq());
		sent++;
		refused += status != 200;
	}
	printf("fleet sfus=%d interval_ms=%d seconds=%d heartbeats=%ld refused=%d rate=%.1f/s\n",
	       sfus, interval_ms, seconds, sent, refused,
	       (double)sent * 1e6 / (double)(now_us() - start));
	return refused ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "first") == 0)
		return bench_first(atoi(argv[2]), argv[3], atoi(argv[4]));
	if (argc == 6 && strcmp(argv[1], "propagate") == 0)
		return bench_propagate(atoi(argv[2]), atoi(argv[3]), argv[4], atoi(argv[5]));
	if (argc == 8 && strcmp(argv[1], "fleet") == 0)
		return bench_fleet(atoi(argv[2]), atoi(argv[3]), argv[4], atoi(argv[5]),
				   atoi(argv[6]), atoi(argv[7]));
	fprintf(stderr, "usage: bench-cluster first PORT GW_KEY N\n"
			"       bench-cluster propagate PORT_A PORT_B REG_KEY N\n"
			"       bench-cluster fleet PORT_A PORT_B REG_KEY SFUS INTERVAL_MS SECONDS\n");
	return 2;
}
