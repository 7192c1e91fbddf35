/* Unit tests of the cluster's pieces: etcd keys and values, claim answers, the queue, the pure rules. */
#include <criterion/criterion.h>

#include <errno.h>
#include <json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base64.h"
#include "claim.h"
#include "cluster.h"
#include "clusterq.h"
#include "etcd.h"
#include "heartbeat.h"
#include "strbuf.h"

/* ---- keys */

Test(etcd, keys_name_sfus_and_claims_under_the_prefix)
{
	char k[ETCD_KEY_MAX], addr[CONFIG_ADDRESS_MAX];
	uint64_t aff = 0;
	int n;

	n = etcd_sfu_key("/gw/", "http://10.0.0.1:8070", k, sizeof(k));
	cr_assert_str_eq(k, "/gw/sfus/http://10.0.0.1:8070");
	cr_assert_eq(n, (int)strlen(k));
	cr_assert_eq(etcd_key_parse("/gw/", k, (size_t)n, addr, sizeof(addr), &aff), ETCD_KEY_SFU);
	cr_assert_str_eq(addr, "http://10.0.0.1:8070");

	n = etcd_affinity_key("/gw/", 0x0123456789abcdefULL, k, sizeof(k));
	cr_assert_str_eq(k, "/gw/affinity/0123456789abcdef");
	cr_assert_eq(etcd_key_parse("/gw/", k, (size_t)n, addr, sizeof(addr), &aff),
		     ETCD_KEY_AFFINITY);
	cr_assert_eq(aff, 0x0123456789abcdefULL);

	/* Another prefix, another kind, a malformed claim: not ours. */
	cr_assert_eq(etcd_key_parse("/other/", k, (size_t)n, addr, sizeof(addr), &aff),
		     ETCD_KEY_OTHER);
	cr_assert_eq(etcd_key_parse("/gw/", "/gw/x/y", 7, addr, sizeof(addr), &aff), ETCD_KEY_OTHER);
	cr_assert_eq(etcd_key_parse("/gw/", "/gw/affinity/0123456789ABCDEF", 29, addr, sizeof(addr),
				    &aff),
		     ETCD_KEY_OTHER);
	cr_assert_eq(etcd_key_parse("/gw/", "/gw/affinity/12", 15, addr, sizeof(addr), &aff),
		     ETCD_KEY_OTHER);
	cr_assert_eq(etcd_key_parse("/gw/", "/gw/sfus/", 9, addr, sizeof(addr), &aff),
		     ETCD_KEY_OTHER, "no address");
	cr_assert_eq(etcd_key_parse("/gw/", "/gw/sfus/a\0b", 12, addr, sizeof(addr), &aff),
		     ETCD_KEY_OTHER, "a NUL inside");
	/* An address longer than the buffer is refused, not cut. */
	{
		char longkey[600];

		memset(longkey, 'a', sizeof(longkey));
		memcpy(longkey, "/gw/sfus/", 9);
		cr_assert_eq(etcd_key_parse("/gw/", longkey, sizeof(longkey), addr, sizeof(addr),
					    &aff),
			     ETCD_KEY_OTHER);
	}
	cr_assert_eq(etcd_sfu_key("/gw/", "http://x", k, 8), -ENOSPC);
}

Test(etcd, prefix_range_end_is_the_prefix_with_its_last_byte_plus_one)
{
	struct strbuf b = { 0 };
	uint8_t out[64];
	ssize_t n;

	etcd_b64_prefix_end(&b, "/sfu-gateway/");
	cr_assert(!b.failed);
	cr_assert_eq(b.buf[0], '"');
	n = base64_decode(b.buf + 1, b.len - 2, out, sizeof(out));
	cr_assert_eq(n, 13);
	cr_assert_eq(memcmp(out, "/sfu-gateway0", 13), 0);
	strbuf_free(&b);
}

/* ---- registration values */

Test(etcd, a_registration_reads_back_as_the_heartbeat_it_came_from)
{
	struct clusterq_entry e;
	struct heartbeat hb;
	struct strbuf b = { 0 };
	struct json_object *o;
	char err[300];

	memset(&e, 0, sizeof(e));
	e.op = CLUSTERQ_PUT;
	e.seq = 1790000000123ULL;
	snprintf(e.address, sizeof(e.address), "http://10.1.2.3:8070");
	snprintf(e.region, sizeof(e.region), "eu-west");
	memcpy(e.key, "0123456789abcdef0123456789abcdef", 32);
	e.key_len = 32;
	e.sessions = 12;
	e.channels = 3;
	e.max_sessions = 400;
	e.cpu = 0.123456789;
	e.memory = 0.5;
	etcd_reg_value(&b, &e);
	cr_assert(!b.failed);
	cr_assert_eq(heartbeat_parse(b.buf, b.len, &hb, err, sizeof(err)), 0, "%s: %s", err,
		     b.buf);
	cr_assert(hb.up);
	cr_assert_str_eq(hb.address, e.address);
	cr_assert_str_eq(hb.region, "eu-west");
	cr_assert_eq(hb.key_len, 32);
	cr_assert_eq(memcmp(hb.key, e.key, 32), 0);
	cr_assert_eq(hb.load.sessions, 12);
	cr_assert_eq(hb.load.channels, 3);
	cr_assert_eq(hb.load.max_sessions, 400);
	cr_assert_eq(hb.load.cpu, e.cpu, "full precision");
	cr_assert_eq(hb.load.memory, 0.5);
	o = json_tokener_parse(b.buf);
	cr_assert_eq(etcd_int(o, "seq"), (int64_t)e.seq);
	json_object_put(o);
	/* No region: none in the value, none read back. */
	e.region[0] = '\0';
	strbuf_reset(&b);
	etcd_reg_value(&b, &e);
	cr_assert_null(strstr(b.buf, "region"));
	cr_assert_eq(heartbeat_parse(b.buf, b.len, &hb, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(hb.region, "");
	strbuf_free(&b);
}

Test(etcd, numbers_come_as_strings_and_zero_values_are_left_out)
{
	struct json_object *o = json_tokener_parse(
		"{\"header\":{\"revision\":\"9007199254740993\"},\"ID\":\"2324035658777741063\","
		"\"n\":7,\"bad\":\"12x\",\"t\":true,\"s\":\"eA==\",\"junk\":\"@@\"}");
	char out[8];

	cr_assert_not_null(o);
	cr_assert_eq(etcd_int(json_object_object_get(o, "header"), "revision"),
		     9007199254740993LL, "64-bit, beyond a double's precision");
	cr_assert_eq(etcd_int(o, "ID"), 2324035658777741063LL);
	cr_assert_eq(etcd_int(o, "n"), 7);
	cr_assert_eq(etcd_int(o, "bad"), 0);
	cr_assert_eq(etcd_int(o, "absent"), 0);
	cr_assert_eq(etcd_int(NULL, "x"), 0);
	cr_assert(etcd_bool(o, "t"));
	json_object_put(o);
	/* Member IDs are unsigned 64-bit: beyond etcd_int, still "there". */
	o = json_tokener_parse("{\"leader\":\"17953373217349613291\",\"zero\":\"0\",\"n\":0,"
			       "\"t\":true,\"s\":\"eA==\",\"junk\":\"@@\"}");
	cr_assert(etcd_nonzero(o, "leader"));
	cr_assert_not(etcd_nonzero(o, "zero"));
	cr_assert_not(etcd_nonzero(o, "n"));
	cr_assert_not(etcd_nonzero(o, "absent"));
	cr_assert_not(etcd_bool(o, "succeeded"), "false is left out");
	cr_assert_eq(etcd_bytes(o, "s", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "x");
	cr_assert_eq(etcd_bytes(o, "junk", out, sizeof(out)), -EINVAL);
	cr_assert_eq(etcd_bytes(o, "absent", out, sizeof(out)), 0);
	json_object_put(o);
	o = json_tokener_parse("{\"error\":\"etcdserver: requested lease not found\",\"code\":5}");
	cr_assert_str_eq(etcd_error(o), "etcdserver: requested lease not found");
	json_object_put(o);
	cr_assert_str_eq(etcd_error(NULL), "");
}

/* ---- claims */

Test(claim, answers_won_lost_and_garbage)
{
	static const char won[] = "{\"header\":{\"revision\":\"5\"},\"succeeded\":true,"
				  "\"responses\":[{\"response_put\":{\"header\":{}}}]}";
	/* "http://10.0.0.9:8070" in base64. */
	static const char lost[] =
		"{\"header\":{\"revision\":\"5\"},\"responses\":[{\"response_range\":{\"kvs\":"
		"[{\"key\":\"eA==\",\"create_revision\":\"4\",\"mod_revision\":\"4\","
		"\"value\":\"aHR0cDovLzEwLjAuMC45OjgwNzA=\"}],\"count\":\"1\"}}]}";
	static const char vanished[] = "{\"header\":{\"revision\":\"5\"},\"responses\":"
				       "[{\"response_range\":{}}]}";
	struct claim_answer a;

	claim_parse(won, sizeof(won) - 1, &a);
	cr_assert_eq(a.result, CLAIM_WON);
	claim_parse(lost, sizeof(lost) - 1, &a);
	cr_assert_eq(a.result, CLAIM_LOST);
	cr_assert_str_eq(a.address, "http://10.0.0.9:8070");
	cr_assert_eq(a.mod_revision, 4);
	claim_parse(vanished, sizeof(vanished) - 1, &a);
	cr_assert_eq(a.result, CLAIM_LOST);
	cr_assert_str_eq(a.address, "", "the claim expired between compare and read");
	claim_parse("{\"resp", 6, &a);
	cr_assert_eq(a.result, CLAIM_FAILED);
	cr_assert_not_null(a.why);
	claim_parse("[1]", 3, &a);
	cr_assert_eq(a.result, CLAIM_FAILED);
}

/* ---- the reaper's rules */

Test(cluster_rules, a_deletion_spares_a_later_local_heartbeat)
{
	cr_assert(cluster_delete_applies(0, 5), "unknown last value: the deletion holds");
	cr_assert(cluster_delete_applies(5, 5), "the heartbeat etcd held is the one we have");
	cr_assert(cluster_delete_applies(7, 5), "etcd had newer than we have");
	cr_assert_not(cluster_delete_applies(5, 6), "we heard a later heartbeat ourselves");
}

Test(cluster_rules, leases_last_at_least_what_they_keep)
{
	/* [registration] stale_after_ms 30 s, slices of 2 s: 32 s. */
	cr_assert_eq(cluster_lease_ttl_s(30000, CLUSTER_LEASE_SLICE_MS), 32);
	cr_assert_eq(cluster_lease_ttl_s(2500, 2000), 5, "rounded up to whole seconds");
	cr_assert_eq(cluster_claim_period_ms(60000), 15000);
	cr_assert_eq(cluster_claim_period_ms(1000), CLUSTER_LEASE_SLICE_MS);
	cr_assert_eq(cluster_claim_period_ms(86400000), 30000);
}

/* ---- the queue */

static struct clusterq *cq_new(void)
{
	struct clusterq *q = calloc(1, sizeof(*q));

	cr_assert_not_null(q);
	cr_assert_eq(clusterq_init(q), 0);
	return q;
}

Test(clusterq, keeps_order_drops_when_full_and_wipes_what_it_gave)
{
	struct clusterq *q = cq_new();
	struct clusterq_entry e, *out = calloc(CLUSTERQ_CAP, sizeof(*out));
	static const struct clusterq_entry zero;

	cr_assert_not_null(out);
	memset(&e, 0, sizeof(e));
	e.op = CLUSTERQ_PUT;
	for (uint64_t i = 0; i < CLUSTERQ_CAP; i++) {
		e.seq = i + 1;
		cr_assert_eq(clusterq_push(q, &e), 0);
	}
	cr_assert_eq(clusterq_push(q, &e), -ENOSPC, "full");
	cr_assert_eq(atomic_load(&q->dropped), 1);
	cr_assert_eq(atomic_load(&q->pushed), CLUSTERQ_CAP);
	cr_assert_eq(clusterq_pop(q, out, 10), 10);
	for (uint64_t i = 0; i < 10; i++)
		cr_assert_eq(out[i].seq, i + 1);
	/* Taken entries hold nothing any more (keys). */
	for (size_t i = 0; i < 10; i++)
		cr_assert_eq(memcmp(&q->e[i], &zero, sizeof(zero)), 0);
	/* Room again; the rest comes out in order, wrapping around. */
	e.seq = CLUSTERQ_CAP + 1;
	cr_assert_eq(clusterq_push(q, &e), 0);
	cr_assert_eq(clusterq_pop(q, out, CLUSTERQ_CAP), CLUSTERQ_CAP - 10 + 1);
	for (size_t i = 0; i < CLUSTERQ_CAP - 10 + 1; i++)
		cr_assert_eq(out[i].seq, 11 + i);
	cr_assert_eq(clusterq_pop(q, out, CLUSTERQ_CAP), 0);
	free(out);
	free(q);
}

/* A producer that died holding the lock (the robust mutex's owner is gone)
 * leaves the queue usable, with nothing half-written in it. */
Test(clusterq, a_producer_dying_inside_leaves_it_usable)
{
	struct clusterq *q = mmap(NULL, sizeof(*q), PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct clusterq_entry e, out[4];
	pid_t pid;
	int status;

	cr_assert_neq(q, MAP_FAILED);
	cr_assert_eq(clusterq_init(q), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Takes the lock, scribbles half an entry where the next goes, dies. */
		pthread_mutex_lock(&q->lock);
		memset(&q->e[0], 0x5a, sizeof(q->e[0]) / 2);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	memset(&e, 0, sizeof(e));
	e.op = CLUSTERQ_DELETE;
	e.seq = 42;
	cr_assert_eq(clusterq_push(q, &e), 0, "the next producer repairs the lock");
	cr_assert_eq(clusterq_pop(q, out, 4), 1, "nothing of the dead producer's");
	cr_assert_eq(out[0].seq, 42);
	cr_assert_eq(out[0].op, CLUSTERQ_DELETE);
	munmap(q, sizeof(*q));
}
