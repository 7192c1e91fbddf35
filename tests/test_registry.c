/* Unit tests of the registry: insert, update, remove, find, generations, capacity, static sync, list batches. */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "region.h"
#include "registry.h"

/* A registry in shared anonymous memory, as the daemon's is (shm_open). */
static struct registry *reg_map(uint32_t capacity)
{
	size_t size = registry_size(capacity);
	struct registry *r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				  -1, 0);

	cr_assert(r != MAP_FAILED);
	cr_assert_eq(registry_init(r, capacity), 0);
	return r;
}

static void reg_unmap(struct registry *r)
{
	munmap(r, registry_size(r->capacity));
}

static struct sfu_record reg_record(const char *address, const char *region, uint32_t sessions)
{
	struct sfu_record rec;

	memset(&rec, 0, sizeof(rec));
	snprintf(rec.cold.address, sizeof(rec.cold.address), "%s", address);
	snprintf(rec.cold.region, sizeof(rec.cold.region), "%s", region);
	memset(rec.cold.key, 0x42, 32);
	rec.cold.key_len = 32;
	rec.hot.source = SFU_SOURCE_REGISTERED;
	rec.hot.has_load = 1;
	rec.hot.sessions = sessions;
	rec.hot.channels = sessions * 2;
	rec.hot.cpu = 0.25;
	rec.hot.memory = 0.5;
	rec.hot.last_report_ms = 1000 + sessions;
	return rec;
}

static struct config_sfu reg_static(const char *address, const char *region, uint8_t keybyte,
				    uint32_t max_sessions)
{
	struct config_sfu c;

	memset(&c, 0, sizeof(c));
	snprintf(c.address, sizeof(c.address), "%s", address);
	snprintf(c.region, sizeof(c.region), "%s", region);
	memset(c.key, keybyte, 16);
	c.key_len = 16;
	c.max_sessions = max_sessions;
	return c;
}

Test(registry, hash_is_fnv1a_and_never_zero)
{
	/* Published FNV-1a 64 vectors. */
	cr_expect_eq(registry_hash(""), 0xcbf29ce484222325ULL);
	cr_expect_eq(registry_hash("a"), 0xaf63dc4c8601ec8cULL);
	cr_expect_eq(registry_hash("foobar"), 0x85944171f73967e8ULL);
	cr_expect_neq(registry_hash("http://10.0.0.1:8070"), registry_hash("http://10.0.0.1:8071"));
}

Test(registry, size_covers_the_slots_and_tombstones)
{
	cr_expect_eq(registry_size(0), sizeof(struct registry));
	cr_expect_eq(registry_size(10), sizeof(struct registry) +
						10 * sizeof(struct registry_slot) +
						10 * sizeof(struct registry_tomb));
	cr_expect_eq(sizeof(struct registry_slot) % 64, 0);
}

Test(registry, insert_then_find_and_read)
{
	struct registry *r = reg_map(8);
	struct sfu_record rec = reg_record("http://10.0.0.1:8070", "eu-west", 7), got;
	uint32_t slot = 99;
	bool created = false;

	cr_assert_eq(registry_scan_end(r), 0);
	cr_assert_eq(registry_find(r, "http://10.0.0.1:8070"), -ENOENT);
	cr_assert_eq(registry_upsert(r, &rec, false, &slot, &created), 0);
	cr_expect_eq(slot, 0);
	cr_expect(created);
	cr_expect_eq(atomic_load(&r->count), 1);
	cr_expect_eq(registry_scan_end(r), 1);
	cr_expect_gt(atomic_load(&r->epoch), 0);
	cr_expect_eq(registry_find(r, "http://10.0.0.1:8070"), 0);
	/* A prefix or an extension of the address is another SFU. */
	cr_expect_eq(registry_find(r, "http://10.0.0.1:807"), -ENOENT);
	cr_expect_eq(registry_find(r, "http://10.0.0.1:80700"), -ENOENT);
	cr_expect_eq(registry_find(r, ""), -ENOENT);

	cr_assert_eq(registry_read(r, 0, &got), 0);
	cr_expect_eq(got.hot.in_use, 1);
	cr_expect_eq(got.hot.address_hash, registry_hash("http://10.0.0.1:8070"));
	cr_expect_eq(got.hot.region_hash, registry_hash("eu-west"));
	cr_expect_eq(got.hot.region_id, region_lookup("eu-west", 7));
	cr_expect_neq(got.hot.region_id, REGION_UNKNOWN);
	cr_expect_neq(got.hot.generation, 0);
	cr_expect_eq(got.hot.sessions, 7);
	cr_expect_eq(got.hot.channels, 14);
	cr_expect_eq(got.hot.cpu, 0.25);
	cr_expect_eq(got.hot.last_report_ms, 1007);
	cr_expect_str_eq(got.cold.address, "http://10.0.0.1:8070");
	cr_expect_str_eq(got.cold.region, "eu-west");
	cr_expect_eq(got.cold.key_len, 32);
	cr_expect_eq(memcmp(got.cold.key, rec.cold.key, 32), 0);

	struct sfu_hot hot;

	cr_assert_eq(registry_read_hot(r, 0, &hot), 0);
	cr_expect_eq(memcmp(&hot, &got.hot, sizeof(hot)), 0);
	reg_unmap(r);
}

Test(registry, unknown_and_empty_regions)
{
	struct registry *r = reg_map(4);
	struct sfu_record a = reg_record("http://a:1", "", 1);
	struct sfu_record b = reg_record("http://b:1", "mars-1", 1);
	struct sfu_hot hot;

	cr_assert_eq(registry_upsert(r, &a, false, NULL, NULL), 0);
	cr_assert_eq(registry_upsert(r, &b, false, NULL, NULL), 0);
	cr_assert_eq(registry_read_hot(r, 0, &hot), 0);
	cr_expect_eq(hot.region_hash, 0);
	cr_expect_eq(hot.region_id, REGION_UNKNOWN);
	cr_assert_eq(registry_read_hot(r, 1, &hot), 0);
	cr_expect_eq(hot.region_hash, registry_hash("mars-1"));
	cr_expect_eq(hot.region_id, REGION_UNKNOWN);
	reg_unmap(r);
}

Test(registry, invalid_records_are_refused)
{
	struct registry *r = reg_map(4);
	struct sfu_record rec = reg_record("", "", 1);

	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), -EINVAL);
	rec = reg_record("http://a:1", "", 1);
	rec.cold.key_len = CONFIG_KEY_MAX + 1;
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), -EINVAL);
	rec = reg_record("http://a:1", "", 1);
	memset(rec.cold.address, 'x', sizeof(rec.cold.address));
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), -EINVAL);
	cr_expect_eq(atomic_load(&r->count), 0);
	reg_unmap(r);
}

Test(registry, update_keeps_slot_and_generation)
{
	struct registry *r = reg_map(4);
	struct sfu_record a = reg_record("http://a:1", "eu-west", 1);
	struct sfu_record b = reg_record("http://b:1", "", 2);
	struct sfu_record got;
	uint64_t gen, epoch;
	uint32_t slot;
	bool created;

	cr_assert_eq(registry_upsert(r, &a, false, NULL, NULL), 0);
	cr_assert_eq(registry_upsert(r, &b, false, &slot, &created), 0);
	cr_expect_eq(slot, 1);
	cr_assert_eq(registry_read(r, 1, &got), 0);
	gen = got.hot.generation;
	epoch = atomic_load(&r->epoch);

	atomic_store(&r->slots[1].assigned, 5);
	b = reg_record("http://b:1", "us-east", 40);
	cr_assert_eq(registry_upsert(r, &b, false, &slot, &created), 0);
	cr_expect_eq(slot, 1);
	cr_expect(!created);
	cr_expect_eq(atomic_load(&r->count), 2);
	cr_expect_gt(atomic_load(&r->epoch), epoch);
	cr_expect_eq(atomic_load(&r->slots[1].assigned), 5, "assigned kept without reset_assigned");
	cr_assert_eq(registry_read(r, 1, &got), 0);
	cr_expect_eq(got.hot.generation, gen);
	cr_expect_eq(got.hot.sessions, 40);
	cr_expect_str_eq(got.cold.region, "us-east");
	cr_expect_eq(got.hot.region_hash, registry_hash("us-east"));

	cr_assert_eq(registry_upsert(r, &b, true, &slot, &created), 0);
	cr_expect_eq(atomic_load(&r->slots[1].assigned), 0, "a load report resets assigned");
	reg_unmap(r);
}

Test(registry, remove_frees_the_slot)
{
	struct registry *r = reg_map(4);
	struct sfu_record a = reg_record("http://a:1", "", 1), b = reg_record("http://b:1", "", 2);
	struct sfu_record got;
	struct sfu_hot hot;

	cr_assert_eq(registry_upsert(r, &a, false, NULL, NULL), 0);
	cr_assert_eq(registry_upsert(r, &b, false, NULL, NULL), 0);
	cr_assert_eq(registry_remove(r, "http://a:1"), 0);
	cr_expect_eq(registry_remove(r, "http://a:1"), -ENOENT);
	cr_expect_eq(registry_remove(r, "http://nope:1"), -ENOENT);
	cr_expect_eq(registry_find(r, "http://a:1"), -ENOENT);
	cr_expect_eq(registry_find(r, "http://b:1"), 1);
	cr_expect_eq(registry_read(r, 0, &got), -ENOENT);
	cr_expect_eq(registry_read_hot(r, 0, &hot), -ENOENT);
	cr_expect_eq(atomic_load(&r->count), 1);
	cr_expect_eq(registry_scan_end(r), 2, "high_water never shrinks");
	cr_expect_eq(atomic_load(&r->slots[0].seq) & 1, 0);
	reg_unmap(r);
}

Test(registry, free_and_out_of_range_slots_read_enoent)
{
	struct registry *r = reg_map(4);
	struct sfu_record got;
	struct sfu_hot hot;

	cr_expect_eq(registry_read(r, 0, &got), -ENOENT);
	cr_expect_eq(registry_read_hot(r, 3, &hot), -ENOENT);
	cr_expect_eq(registry_read(r, 4, &got), -ENOENT);
	cr_expect_eq(registry_read_hot(r, 1000, &hot), -ENOENT);
	cr_expect_eq(registry_remove_slot(r, 4, 1, SFU_SOURCE_REGISTERED), -ENOENT);
	reg_unmap(r);
}

Test(registry, generation_changes_when_a_slot_is_reused)
{
	struct registry *r = reg_map(4);
	struct sfu_record a = reg_record("http://a:1", "", 1), b = reg_record("http://b:1", "", 1);
	struct sfu_hot hot;
	uint64_t gens[3];
	uint32_t slot;

	cr_assert_eq(registry_upsert(r, &a, false, &slot, NULL), 0);
	cr_assert_eq(registry_read_hot(r, slot, &hot), 0);
	gens[0] = hot.generation;
	cr_assert_eq(registry_remove(r, "http://a:1"), 0);

	cr_assert_eq(registry_upsert(r, &b, false, &slot, NULL), 0);
	cr_expect_eq(slot, 0, "the freed slot is reused");
	cr_assert_eq(registry_read_hot(r, slot, &hot), 0);
	gens[1] = hot.generation;
	cr_assert_eq(registry_remove(r, "http://b:1"), 0);

	/* Even the same SFU coming back is a new occupant. */
	cr_assert_eq(registry_upsert(r, &a, false, &slot, NULL), 0);
	cr_expect_eq(slot, 0);
	cr_assert_eq(registry_read_hot(r, slot, &hot), 0);
	gens[2] = hot.generation;
	cr_expect_neq(gens[0], gens[1]);
	cr_expect_neq(gens[1], gens[2]);
	cr_expect_neq(gens[0], gens[2]);
	reg_unmap(r);
}

Test(registry, new_occupant_starts_with_fresh_counters)
{
	struct registry *r = reg_map(2);
	struct sfu_record a = reg_record("http://a:1", "", 1), b = reg_record("http://b:1", "", 1);

	cr_assert_eq(registry_upsert(r, &a, false, NULL, NULL), 0);
	atomic_store(&r->slots[0].assigned, 3);
	atomic_store(&r->slots[0].requests_failed, 9);
	atomic_store(&r->slots[0].cb.state, 2);
	atomic_store(&r->slots[0].cb.failures, 4);
	cr_assert_eq(registry_remove(r, "http://a:1"), 0);
	cr_assert_eq(registry_upsert(r, &b, false, NULL, NULL), 0);
	cr_expect_eq(atomic_load(&r->slots[0].assigned), 0);
	cr_expect_eq(atomic_load(&r->slots[0].requests_failed), 0);
	cr_expect_eq(atomic_load(&r->slots[0].cb.state), 0);
	cr_expect_eq(atomic_load(&r->slots[0].cb.failures), 0);
	reg_unmap(r);
}

Test(registry, full_registry_gives_enospc_and_high_water)
{
	struct registry *r = reg_map(3);
	char addr[64];
	struct sfu_record rec;
	uint32_t slot;
	bool created;

	for (int i = 0; i < 3; i++) {
		snprintf(addr, sizeof(addr), "http://10.0.0.%d:8070", i);
		rec = reg_record(addr, "", (uint32_t)i);
		cr_assert_eq(registry_upsert(r, &rec, false, &slot, NULL), 0);
		cr_expect_eq(slot, (uint32_t)i);
		cr_expect_eq(registry_scan_end(r), (uint32_t)i + 1);
	}
	rec = reg_record("http://10.0.0.9:8070", "", 9);
	cr_expect_eq(registry_upsert(r, &rec, false, &slot, NULL), -ENOSPC);
	cr_expect_eq(atomic_load(&r->count), 3);
	cr_expect_eq(registry_find(r, "http://10.0.0.9:8070"), -ENOENT);

	/* Updating an SFU that is already in needs no room. */
	rec = reg_record("http://10.0.0.1:8070", "", 77);
	cr_expect_eq(registry_upsert(r, &rec, false, &slot, &created), 0);
	cr_expect_eq(slot, 1);
	cr_expect(!created);

	/* A hole below high_water is taken before high_water would grow. */
	cr_assert_eq(registry_remove(r, "http://10.0.0.1:8070"), 0);
	rec = reg_record("http://10.0.0.9:8070", "", 9);
	cr_assert_eq(registry_upsert(r, &rec, false, &slot, &created), 0);
	cr_expect_eq(slot, 1);
	cr_expect(created);
	cr_expect_eq(registry_scan_end(r), 3);
	cr_expect_eq(atomic_load(&r->count), 3);
	reg_unmap(r);
}

Test(registry, high_water_grows_only_when_no_hole)
{
	struct registry *r = reg_map(8);
	struct sfu_record a = reg_record("http://a:1", "", 1), b = reg_record("http://b:1", "", 1);
	struct sfu_record c = reg_record("http://c:1", "", 1);
	uint32_t slot;

	cr_assert_eq(registry_upsert(r, &a, false, NULL, NULL), 0);
	cr_assert_eq(registry_upsert(r, &b, false, NULL, NULL), 0);
	cr_assert_eq(registry_remove(r, "http://a:1"), 0);
	cr_assert_eq(registry_remove(r, "http://b:1"), 0);
	cr_expect_eq(registry_scan_end(r), 2);
	cr_assert_eq(registry_upsert(r, &c, false, &slot, NULL), 0);
	cr_expect_eq(slot, 0);
	cr_assert_eq(registry_upsert(r, &a, false, &slot, NULL), 0);
	cr_expect_eq(slot, 1);
	cr_assert_eq(registry_upsert(r, &b, false, &slot, NULL), 0);
	cr_expect_eq(slot, 2);
	cr_expect_eq(registry_scan_end(r), 3);
	reg_unmap(r);
}

Test(registry, remove_slot_needs_the_current_generation)
{
	struct registry *r = reg_map(4);
	struct sfu_record a = reg_record("http://a:1", "", 1);
	struct sfu_hot hot;
	uint64_t old;
	uint32_t slot;

	cr_assert_eq(registry_upsert(r, &a, false, &slot, NULL), 0);
	cr_assert_eq(registry_read_hot(r, slot, &hot), 0);
	old = hot.generation;
	/* The reaper saw generation old, but the SFU went and came back. */
	cr_assert_eq(registry_remove(r, "http://a:1"), 0);
	cr_assert_eq(registry_upsert(r, &a, false, &slot, NULL), 0);
	cr_expect_eq(registry_remove_slot(r, slot, old, SFU_SOURCE_REGISTERED), -ENOENT);
	cr_expect_eq(registry_find(r, "http://a:1"), (int)slot);
	cr_assert_eq(registry_read_hot(r, slot, &hot), 0);
	cr_expect_eq(registry_remove_slot(r, slot, hot.generation, SFU_SOURCE_REGISTERED), 0);
	cr_expect_eq(registry_find(r, "http://a:1"), -ENOENT);
	cr_expect_eq(registry_remove_slot(r, slot, hot.generation, SFU_SOURCE_REGISTERED), -ENOENT, "free slot");
	cr_expect_eq(atomic_load(&r->count), 0);
	reg_unmap(r);
}

Test(registry, sync_static_adds_updates_and_removes)
{
	struct registry *r = reg_map(8);
	struct config_sfu cfg[3];
	struct sfu_record reg = reg_record("http://reg:1", "eu-west", 5), got;
	struct sfu_record promoted = reg_record("http://promo:1", "", 6);
	uint64_t gen_s1, gen_promo;
	int i;

	cr_assert_eq(registry_upsert(r, &reg, false, NULL, NULL), 0);
	cr_assert_eq(registry_upsert(r, &promoted, false, NULL, NULL), 0);

	cfg[0] = reg_static("http://s1:1", "eu-west", 0x11, 100);
	cfg[1] = reg_static("http://s2:1", "", 0x22, 0);
	cr_assert_eq(registry_sync_static(r, cfg, 2, 5000), 0);
	cr_expect_eq(atomic_load(&r->count), 4);
	i = registry_find(r, "http://s1:1");
	cr_assert_geq(i, 0);
	cr_assert_eq(registry_read(r, (uint32_t)i, &got), 0);
	cr_expect_eq(got.hot.source, SFU_SOURCE_STATIC);
	cr_expect_eq(got.hot.has_load, 0);
	cr_expect_eq(got.hot.max_sessions, 100);
	cr_expect_eq(got.hot.last_report_ms, 5000);
	cr_expect_eq(got.hot.region_id, region_lookup("eu-west", 7));
	cr_expect_eq(got.cold.key_len, 16);
	cr_expect_eq(got.cold.key[15], 0x11);
	cr_expect_eq(got.cold.key[16], 0);
	gen_s1 = got.hot.generation;
	i = registry_find(r, "http://promo:1");
	cr_assert_geq(i, 0);
	cr_assert_eq(registry_read(r, (uint32_t)i, &got), 0);
	gen_promo = got.hot.generation;

	/* Reload: s1 changes, s2 goes, promo's address becomes static. A
	 * heartbeat had reported load for s1 meanwhile. */
	i = registry_find(r, "http://s1:1");
	cr_assert_eq(registry_read(r, (uint32_t)i, &got), 0);
	got.hot.has_load = 1;
	got.hot.sessions = 12;
	cr_assert_eq(registry_upsert(r, &got, false, NULL, NULL), 0);
	cfg[0] = reg_static("http://s1:1", "us-east", 0x33, 200);
	cfg[1] = reg_static("http://promo:1", "eu-west", 0x44, 0);
	cr_assert_eq(registry_sync_static(r, cfg, 2, 9000), 0);

	cr_expect_eq(registry_find(r, "http://s2:1"), -ENOENT);
	cr_expect_eq(atomic_load(&r->count), 3);
	i = registry_find(r, "http://s1:1");
	cr_assert_geq(i, 0);
	cr_assert_eq(registry_read(r, (uint32_t)i, &got), 0);
	cr_expect_eq(got.hot.generation, gen_s1);
	cr_expect_eq(got.hot.max_sessions, 200);
	cr_expect_eq(got.hot.sessions, 12, "load is kept across a reload");
	cr_expect_eq(got.hot.has_load, 1);
	cr_expect_str_eq(got.cold.region, "us-east");
	cr_expect_eq(got.hot.region_hash, registry_hash("us-east"));
	cr_expect_eq(got.cold.key[0], 0x33);
	i = registry_find(r, "http://promo:1");
	cr_assert_geq(i, 0);
	cr_assert_eq(registry_read(r, (uint32_t)i, &got), 0);
	cr_expect_eq(got.hot.source, SFU_SOURCE_STATIC);
	cr_expect_eq(got.hot.generation, gen_promo);
	cr_expect_eq(got.hot.sessions, 6);
	cr_expect_eq(got.cold.key[0], 0x44);
	cr_expect_eq(got.cold.key_len, 16);

	/* The registered SFU is untouched throughout. */
	i = registry_find(r, "http://reg:1");
	cr_assert_geq(i, 0);
	cr_assert_eq(registry_read(r, (uint32_t)i, &got), 0);
	cr_expect_eq(got.hot.source, SFU_SOURCE_REGISTERED);
	cr_expect_eq(got.hot.sessions, 5);
	cr_expect_eq(got.cold.key[0], 0x42);

	/* An empty static list removes every static SFU, only those. */
	cr_assert_eq(registry_sync_static(r, NULL, 0, 9500), 0);
	cr_expect_eq(atomic_load(&r->count), 1);
	cr_expect_eq(registry_find(r, "http://s1:1"), -ENOENT);
	cr_expect_eq(registry_find(r, "http://promo:1"), -ENOENT);
	cr_expect_geq(registry_find(r, "http://reg:1"), 0);
	reg_unmap(r);
}

Test(registry, sync_static_reports_enospc_but_applies_the_rest)
{
	struct registry *r = reg_map(2);
	struct config_sfu cfg[3];
	struct sfu_record reg = reg_record("http://reg:1", "", 5);

	cr_assert_eq(registry_upsert(r, &reg, false, NULL, NULL), 0);
	cfg[0] = reg_static("http://s1:1", "", 1, 0);
	cfg[1] = reg_static("http://s2:1", "", 2, 0);
	cfg[2] = reg_static("http://reg:1", "", 3, 0);
	cr_expect_eq(registry_sync_static(r, cfg, 3, 100), -ENOSPC);
	cr_expect_geq(registry_find(r, "http://s1:1"), 0);
	cr_expect_eq(registry_find(r, "http://s2:1"), -ENOENT);
	cr_expect_geq(registry_find(r, "http://reg:1"), 0, "the one after the failure was applied");
	cr_expect_eq(atomic_load(&r->count), 2);

	/* Freed room on a later reload: removals run before additions. */
	cfg[0] = cfg[1];
	cr_expect_eq(registry_sync_static(r, cfg, 1, 200), 0);
	cr_expect_eq(registry_find(r, "http://s1:1"), -ENOENT);
	cr_expect_geq(registry_find(r, "http://s2:1"), 0);
	cr_expect_eq(registry_find(r, "http://reg:1"), -ENOENT, "reg had become static");
	reg_unmap(r);
}

Test(registry, find_scans_a_thousand_slots)
{
	struct registry *r = reg_map(1000);
	char addr[64];
	struct sfu_record rec;

	for (int i = 0; i < 1000; i++) {
		snprintf(addr, sizeof(addr), "http://10.0.%d.%d:8070", i / 250, i % 250);
		rec = reg_record(addr, "", 1);
		cr_assert_eq(registry_upsert(r, &rec, false, NULL, NULL), 0);
	}
	for (int i = 0; i < 1000; i += 37) {
		snprintf(addr, sizeof(addr), "http://10.0.%d.%d:8070", i / 250, i % 250);
		cr_expect_eq(registry_find(r, addr), i);
	}
	cr_expect_eq(registry_find(r, "http://10.0.9.9:8070"), -ENOENT);
	rec = reg_record("http://10.0.9.9:8070", "", 1);
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), -ENOSPC);
	reg_unmap(r);
}

/* ---- the external registry's batches */

/* A list entry as regdoc gives it: address, region, key (16 bytes of keybyte), and load
 * when sessions >= 0. */
static struct sfu_record reg_listed(const char *address, const char *region, uint8_t keybyte,
				    int sessions)
{
	struct sfu_record rec;

	memset(&rec, 0, sizeof(rec));
	snprintf(rec.cold.address, sizeof(rec.cold.address), "%s", address);
	snprintf(rec.cold.region, sizeof(rec.cold.region), "%s", region);
	memset(rec.cold.key, keybyte, 16);
	rec.cold.key_len = 16;
	if (sessions >= 0) {
		rec.hot.has_load = 1;
		rec.hot.sessions = (uint32_t)sessions;
		rec.hot.channels = 1;
		rec.hot.cpu = 0.5;
	}
	return rec;
}

static struct sfu_record reg_get(struct registry *r, const char *address)
{
	struct sfu_record got;
	int i = registry_find(r, address);

	cr_assert_geq(i, 0, "%s is not in the registry", address);
	cr_assert_eq(registry_read(r, (uint32_t)i, &got), 0);
	return got;
}

Test(registry, precedence_table)
{
	/* The config wins everywhere; the list never over the config; heartbeats report load. */
	cr_expect_eq(registry_right(SFU_SOURCE_NONE, SFU_SOURCE_REGISTERED), REGISTRY_RIGHT_ALL);
	cr_expect_eq(registry_right(SFU_SOURCE_REGISTRY, SFU_SOURCE_STATIC), REGISTRY_RIGHT_ALL);
	cr_expect_eq(registry_right(SFU_SOURCE_REGISTERED, SFU_SOURCE_STATIC), REGISTRY_RIGHT_ALL);
	cr_expect_eq(registry_right(SFU_SOURCE_STATIC, SFU_SOURCE_REGISTRY), REGISTRY_RIGHT_NONE);
	cr_expect_eq(registry_right(SFU_SOURCE_REGISTERED, SFU_SOURCE_REGISTRY), REGISTRY_RIGHT_ALL);
	cr_expect_eq(registry_right(SFU_SOURCE_REGISTRY, SFU_SOURCE_REGISTRY), REGISTRY_RIGHT_ALL);
	cr_expect_eq(registry_right(SFU_SOURCE_STATIC, SFU_SOURCE_REGISTERED), REGISTRY_RIGHT_LOAD);
	cr_expect_eq(registry_right(SFU_SOURCE_REGISTRY, SFU_SOURCE_REGISTERED), REGISTRY_RIGHT_LOAD);
	cr_expect(registry_may_remove(SFU_SOURCE_REGISTRY, SFU_SOURCE_REGISTRY));
	cr_expect_not(registry_may_remove(SFU_SOURCE_REGISTRY, SFU_SOURCE_REGISTERED));
	cr_expect_not(registry_may_remove(SFU_SOURCE_STATIC, SFU_SOURCE_REGISTRY));
}

Test(registry, apply_source_adds_updates_removes_and_skips_unchanged)
{
	struct registry *r = reg_map(8);
	struct sfu_record list[3], got;
	struct registry_batch b;
	uint64_t gen_a, epoch, batch;

	list[0] = reg_listed("http://a:1", "eu-west", 0x11, -1);
	list[1] = reg_listed("http://b:1", "", 0x22, 7);
	cr_assert_eq(registry_apply_source(r, list, 2, 1000, 30000, NULL, &b), 0);
	cr_expect_eq(b.added, 2);
	cr_expect_eq(atomic_load(&r->count), 2);
	got = reg_get(r, "http://a:1");
	cr_expect_eq(got.hot.source, SFU_SOURCE_REGISTRY);
	cr_expect_eq(got.hot.has_load, 0);
	cr_expect_eq(got.hot.region_id, region_lookup("eu-west", 7));
	cr_expect_eq(got.cold.key[15], 0x11);
	cr_expect_eq(got.cold.key[16], 0);
	gen_a = got.hot.generation;
	got = reg_get(r, "http://b:1");
	cr_expect_eq(got.hot.has_load, 1);
	cr_expect_eq(got.hot.reported_by, SFU_REPORTER_REGISTRY);
	cr_expect_eq(got.hot.sessions, 7);
	cr_expect_eq(got.hot.last_report_ms, 1000);
	cr_expect_neq(got.hot.generation, gen_a);
	cr_expect_gt(atomic_load(&r->epoch), got.hot.generation);

	/* The same list: no write, no batch, no epoch step. */
	epoch = atomic_load(&r->epoch);
	batch = registry_batch_seq(r);
	cr_assert_eq(registry_apply_source(r, list, 2, 2000, 30000, NULL, &b), 0);
	cr_expect_eq(b.unchanged, 2);
	cr_expect_eq(b.added + b.updated + b.removed, 0);
	cr_expect_eq(atomic_load(&r->epoch), epoch);
	cr_expect_eq(registry_batch_seq(r), batch);
	cr_expect_eq(reg_get(r, "http://b:1").hot.last_report_ms, 1000,
		     "unchanged figures keep their time");

	/* a: new key (unchecked again), b: removed, c: added. */
	atomic_store(&r->slots[registry_find(r, "http://a:1")].key_check, SFU_KEY_OK);
	list[0] = reg_listed("http://a:1", "eu-west", 0x33, -1);
	list[1] = reg_listed("http://c:1", "us-east", 0x44, 2);
	cr_assert_eq(registry_apply_source(r, list, 2, 3000, 30000, NULL, &b), 0);
	cr_expect_eq(b.updated, 1);
	cr_expect_eq(b.removed, 1);
	cr_expect_eq(b.added, 1);
	cr_expect_eq(registry_batch_seq(r), batch + 2, "one batch");
	cr_expect_eq(registry_find(r, "http://b:1"), -ENOENT);
	got = reg_get(r, "http://a:1");
	cr_expect_eq(got.hot.generation, gen_a, "an update keeps the slot's generation");
	cr_expect_eq(got.cold.key[0], 0x33);
	cr_expect_eq(atomic_load(&r->slots[registry_find(r, "http://a:1")].key_check),
		     SFU_KEY_UNCHECKED);
	cr_expect_eq(atomic_load(&r->count), 2);
	cr_expect_eq(registry_scan_end(r), 2, "c took b's slot");

	/* An empty list removes the registry's SFUs, only those. */
	{
		struct sfu_record hb = reg_record("http://hb:1", "", 3);

		cr_assert_eq(registry_upsert(r, &hb, false, NULL, NULL), 0);
	}
	cr_assert_eq(registry_apply_source(r, NULL, 0, 4000, 30000, NULL, &b), 0);
	cr_expect_eq(b.removed, 2);
	cr_expect_eq(atomic_load(&r->count), 1);
	cr_expect_geq(registry_find(r, "http://hb:1"), 0);
	reg_unmap(r);
}

Test(registry, apply_source_respects_the_other_sources)
{
	struct registry *r = reg_map(8);
	struct config_sfu st = reg_static("http://st:1", "eu-west", 0x55, 10);
	struct sfu_record hb = reg_record("http://hb:1", "", 4), list[2], got;
	struct registry_batch b;
	uint8_t ignored[2];
	uint64_t gen_hb;

	cr_assert_eq(registry_sync_static(r, &st, 1, 100), 0);
	hb.hot.reported_by = SFU_REPORTER_HEARTBEAT;
	hb.hot.last_report_ms = 900;
	cr_assert_eq(registry_upsert(r, &hb, false, NULL, NULL), 0);
	gen_hb = reg_get(r, "http://hb:1").hot.generation;

	list[0] = reg_listed("http://st:1", "us-east", 0x66, 50);
	list[1] = reg_listed("http://hb:1", "ap-south", 0x77, 99);
	cr_assert_eq(registry_apply_source(r, list, 2, 1000, 30000, ignored, &b), 0);
	cr_expect_eq(b.ignored, 1);
	cr_expect_eq(ignored[0], 1);
	cr_expect_eq(ignored[1], 0);
	got = reg_get(r, "http://st:1");
	cr_expect_eq(got.hot.source, SFU_SOURCE_STATIC, "the config's entry wins");
	cr_expect_str_eq(got.cold.region, "eu-west");
	cr_expect_eq(got.cold.key[0], 0x55);
	cr_expect_eq(got.hot.has_load, 0);
	got = reg_get(r, "http://hb:1");
	cr_expect_eq(got.hot.source, SFU_SOURCE_REGISTRY, "the list takes a registered SFU over");
	cr_expect_eq(got.hot.generation, gen_hb);
	cr_expect_str_eq(got.cold.region, "ap-south");
	cr_expect_eq(got.cold.key[0], 0x77);
	cr_expect_eq(got.hot.sessions, 4, "a fresh heartbeat's load beats the list's");
	cr_expect_eq(got.hot.reported_by, SFU_REPORTER_HEARTBEAT);

	/* The heartbeat goes stale: the list's load is taken. */
	cr_assert_eq(registry_apply_source(r, list, 2, 900 + 30001, 30000, NULL, &b), 0);
	got = reg_get(r, "http://hb:1");
	cr_expect_eq(got.hot.sessions, 99);
	cr_expect_eq(got.hot.reported_by, SFU_REPORTER_REGISTRY);

	/* The list stops giving load: the old figures go (probes take over). */
	list[1].hot.has_load = 0;
	cr_assert_eq(registry_apply_source(r, list, 2, 40000, 30000, NULL, &b), 0);
	got = reg_get(r, "http://hb:1");
	cr_expect_eq(got.hot.has_load, 0);
	cr_expect_eq(got.hot.reported_by, SFU_REPORTER_NONE);

	/* A heartbeat may not take it back, nor sign it off; the list removes it. */
	hb.hot.reported_by = SFU_REPORTER_HEARTBEAT;
	cr_expect_eq(registry_upsert(r, &hb, false, NULL, NULL), -EPERM);
	cr_expect_eq(registry_remove_slot(r, (uint32_t)registry_find(r, "http://hb:1"),
					  gen_hb, SFU_SOURCE_REGISTERED),
		     -EPERM);
	cr_assert_eq(registry_apply_source(r, list, 1, 50000, 30000, NULL, &b), 0);
	cr_expect_eq(b.removed, 1);
	cr_expect_eq(registry_find(r, "http://hb:1"), -ENOENT);
	cr_expect_geq(registry_find(r, "http://st:1"), 0, "the list never removes a static SFU");

	/* The config takes a registry SFU over, and the list's entry is then ignored. */
	list[0] = reg_listed("http://reg:1", "", 0x12, -1);
	cr_assert_eq(registry_apply_source(r, list, 1, 60000, 30000, NULL, &b), 0);
	st = reg_static("http://reg:1", "", 0x13, 0);
	cr_assert_eq(registry_sync_static(r, &st, 1, 61000), 0);
	got = reg_get(r, "http://reg:1");
	cr_expect_eq(got.hot.source, SFU_SOURCE_STATIC);
	cr_expect_eq(got.cold.key[0], 0x13);
	cr_assert_eq(registry_apply_source(r, list, 1, 62000, 30000, NULL, &b), 0);
	cr_expect_eq(b.ignored, 1);
	cr_expect_eq(reg_get(r, "http://reg:1").cold.key[0], 0x13);
	reg_unmap(r);
}

Test(registry, apply_source_is_all_or_nothing)
{
	struct registry *r = reg_map(3);
	struct sfu_record list[4], hb = reg_record("http://hb:1", "", 1);
	struct registry_batch b;
	uint64_t batch;

	cr_assert_eq(registry_upsert(r, &hb, false, NULL, NULL), 0);
	list[0] = reg_listed("http://a:1", "", 1, -1);
	list[1] = reg_listed("http://b:1", "", 2, -1);
	cr_assert_eq(registry_apply_source(r, list, 2, 100, 30000, NULL, &b), 0);
	batch = registry_batch_seq(r);
	/* Three new ones where one is removed: 2 + 1 free... one too many. */
	list[0] = reg_listed("http://c:1", "", 3, -1);
	list[1] = reg_listed("http://d:1", "", 4, -1);
	list[2] = reg_listed("http://e:1", "", 5, -1);
	list[3] = reg_listed("http://a:1", "", 1, -1);
	cr_expect_eq(registry_apply_source(r, list, 4, 200, 30000, NULL, &b), -ENOSPC);
	cr_expect_eq(registry_batch_seq(r), batch, "nothing applied");
	cr_expect_geq(registry_find(r, "http://b:1"), 0);
	cr_expect_eq(registry_find(r, "http://c:1"), -ENOENT);
	/* Replacing both fits: removals make room in the same batch. */
	cr_expect_eq(registry_apply_source(r, list, 2, 300, 30000, NULL, &b), 0);
	cr_expect_eq(b.added, 2);
	cr_expect_eq(b.removed, 2);
	cr_expect_eq(atomic_load(&r->count), 3);

	/* A duplicate address or an invalid record: refused whole. */
	batch = registry_batch_seq(r);
	list[0] = reg_listed("http://x:1", "", 1, -1);
	list[1] = reg_listed("http://x:1", "", 2, -1);
	cr_expect_eq(registry_apply_source(r, list, 2, 400, 30000, NULL, &b), -EINVAL);
	list[1] = reg_listed("", "", 2, -1);
	cr_expect_eq(registry_apply_source(r, list, 2, 400, 30000, NULL, &b), -EINVAL);
	cr_expect_eq(registry_batch_seq(r), batch);
	cr_expect_geq(registry_find(r, "http://c:1"), 0);
	reg_unmap(r);
}

Test(registry, a_batch_left_open_is_closed_by_the_repair, .timeout = 10)
{
	struct registry *r = reg_map(8);
	struct sfu_record list[2], hb = reg_record("http://hb:1", "", 1);
	uint64_t seq;

	cr_assert_eq(registry_upsert(r, &hb, false, NULL, NULL), 0);
	list[0] = reg_listed("http://a:1", "", 1, -1);
	list[1] = reg_listed("http://b:1", "", 2, -1);
	cr_assert_eq(registry_apply_source(r, list, 2, 100, 30000, NULL, NULL), 0);
	cr_assert_eq(registry_view_begin(r, &seq), 0);
	cr_assert(registry_view_valid(r, seq));
	/* A batch writer dies inside its batch. */
	seqlock_write_begin(&r->batch_seq);
	cr_expect_not(registry_view_valid(r, seq));
	cr_expect_eq(registry_view_begin(r, &seq), -EAGAIN, "readers give up, bounded");
	cr_expect_eq(registry_repair(r), 1);
	cr_expect_eq(registry_view_begin(r, &seq), 0);
	cr_expect_eq(registry_find(r, "http://a:1"), -ENOENT, "a half-applied list is dropped");
	cr_expect_eq(registry_find(r, "http://b:1"), -ENOENT);
	cr_expect_geq(registry_find(r, "http://hb:1"), 0, "other sources stay");
	cr_expect_eq(atomic_load(&r->count), 1);
	/* The next list is applied as usual. */
	cr_assert_eq(registry_apply_source(r, list, 2, 200, 30000, NULL, NULL), 0);
	cr_expect_eq(atomic_load(&r->count), 3);
	reg_unmap(r);
}

/* ---- heartbeat seqs: replays refused, remembered after the SFU left */

static struct sfu_record reg_beat_rec(const char *address, uint64_t seq)
{
	struct sfu_record rec = reg_record(address, "eu-west", 1);

	rec.cold.hb_seq = seq;
	return rec;
}

Test(registry, heartbeat_seq_must_grow)
{
	struct registry *r = reg_map(4);
	struct sfu_record a = reg_beat_rec("http://a:1", 10), got;
	struct sfu_hot load = { .has_load = 1, .sessions = 5 };
	bool created = false;
	uint32_t slot;

	cr_assert_eq(registry_upsert(r, &a, false, &slot, &created), 0);
	cr_expect(created);
	cr_expect_eq(registry_upsert(r, &a, false, NULL, NULL), -ESTALE, "the same seq twice");
	a.cold.hb_seq = 9;
	cr_expect_eq(registry_upsert(r, &a, false, NULL, NULL), -ESTALE, "a smaller seq");
	a.cold.hb_seq = 11;
	a.hot.sessions = 7;
	cr_assert_eq(registry_upsert(r, &a, false, NULL, &created), 0);
	cr_expect_not(created);
	cr_assert_eq(registry_read(r, slot, &got), 0);
	cr_expect_eq(got.cold.hb_seq, 11);
	cr_expect_eq(got.hot.sessions, 7);
	/* A write that is no heartbeat (seq 0) keeps the remembered seq. */
	a.cold.hb_seq = 0;
	cr_assert_eq(registry_upsert(r, &a, false, NULL, NULL), 0);
	cr_assert_eq(registry_read(r, slot, &got), 0);
	cr_expect_eq(got.cold.hb_seq, 11);
	/* Load-only updates: a probe's (seq 0) passes, a heartbeat's must grow. */
	cr_expect_eq(registry_update_load(r, slot, got.hot.generation, &load, false, 0), 0);
	cr_expect_eq(registry_update_load(r, slot, got.hot.generation, &load, false, 11), -ESTALE);
	cr_expect_eq(registry_update_load(r, slot, got.hot.generation, &load, false, 12), 0);
	cr_assert_eq(registry_read(r, slot, &got), 0);
	cr_expect_eq(got.cold.hb_seq, 12);
	reg_unmap(r);
}

Test(registry, seq_outlives_the_slot)
{
	struct registry *r = reg_map(4);
	struct sfu_record a = reg_beat_rec("http://a:1", 100), got;
	uint32_t slot;

	/* Signed off with seq 200: a heartbeat up to 200 cannot bring it back. */
	cr_assert_eq(registry_upsert(r, &a, false, &slot, NULL), 0);
	cr_expect_eq(registry_signoff(r, "http://a:1", 100), -ESTALE, "a sign-off replayed");
	cr_assert_eq(registry_signoff(r, "http://a:1", 200), 0);
	cr_expect_eq(registry_find(r, "http://a:1"), -ENOENT);
	cr_expect_eq(registry_signoff(r, "http://a:1", 200), -ESTALE, "the same sign-off twice");
	a.cold.hb_seq = 150;
	cr_expect_eq(registry_upsert(r, &a, false, NULL, NULL), -ESTALE, "replay after sign-off");
	cr_expect_eq(atomic_load(&r->count), 0);
	a.cold.hb_seq = 201;
	cr_assert_eq(registry_upsert(r, &a, false, &slot, NULL), 0);
	cr_assert_eq(registry_read(r, slot, &got), 0);
	cr_expect_eq(got.cold.hb_seq, 201);

	/* Expired by the reaper (remove_slot): its own seq is kept. */
	cr_assert_eq(registry_remove_slot(r, slot, got.hot.generation, SFU_SOURCE_REGISTERED), 0);
	cr_expect_eq(registry_upsert(r, &a, false, NULL, NULL), -ESTALE, "replay after expiry");
	a.cold.hb_seq = 202;
	cr_assert_eq(registry_upsert(r, &a, false, &slot, NULL), 0);

	/* A sign-off of an address never seen is remembered too. */
	cr_expect_eq(registry_signoff(r, "http://b:1", 50), -ENOENT);
	cr_expect_eq(registry_signoff(r, "http://b:1", 50), -ESTALE);
	a = reg_beat_rec("http://b:1", 40);
	cr_expect_eq(registry_upsert(r, &a, false, NULL, NULL), -ESTALE);
	cr_expect_eq(registry_signoff(r, "http://b:1", 0), -EINVAL);
	reg_unmap(r);
}

Test(registry, static_sfus_keep_their_seq_and_refuse_signoff)
{
	struct registry *r = reg_map(4);
	struct config_sfu s = reg_static("http://s:1", "eu-west", 0x11, 0);
	struct sfu_record got;
	struct sfu_hot load = { .has_load = 1 };
	int slot;

	/* An address that left with seq 300 and comes back static carries it on. */
	cr_expect_eq(registry_signoff(r, "http://s:1", 300), -ENOENT);
	cr_assert_eq(registry_sync_static(r, &s, 1, 0), 0);
	slot = registry_find(r, "http://s:1");
	cr_assert_geq(slot, 0);
	cr_assert_eq(registry_read(r, (uint32_t)slot, &got), 0);
	cr_expect_eq(got.cold.hb_seq, 300);
	cr_expect_eq(registry_update_load(r, (uint32_t)slot, got.hot.generation, &load, false, 300),
		     -ESTALE);
	cr_expect_eq(registry_update_load(r, (uint32_t)slot, got.hot.generation, &load, false, 301),
		     0);
	/* A reload keeps it; a static SFU does not sign off. */
	cr_assert_eq(registry_sync_static(r, &s, 1, 0), 0);
	cr_assert_eq(registry_read(r, (uint32_t)slot, &got), 0);
	cr_expect_eq(got.cold.hb_seq, 301);
	cr_expect_eq(registry_signoff(r, "http://s:1", 302), -EPERM);
	cr_expect_eq(registry_find(r, "http://s:1"), slot);
	cr_expect_eq(registry_signoff(r, "http://s:1", 301), -ESTALE);
	/* Removed from the config: the seq goes to a tombstone. */
	cr_assert_eq(registry_sync_static(r, NULL, 0, 0), 0);
	got = reg_beat_rec("http://s:1", 301);
	cr_expect_eq(registry_upsert(r, &got, false, NULL, NULL), -ESTALE);
	got.cold.hb_seq = 302;
	cr_expect_eq(registry_upsert(r, &got, false, NULL, NULL), 0);
	reg_unmap(r);
}

/* capacity tombstones; when all are taken the oldest is reused. */
Test(registry, tombstones_are_bounded_oldest_reused)
{
	struct registry *r = reg_map(2);
	struct sfu_record rec;

	cr_expect_eq(registry_signoff(r, "http://a:1", 10), -ENOENT);
	poll(NULL, 0, 2); /* distinct write times */
	cr_expect_eq(registry_signoff(r, "http://b:1", 10), -ENOENT);
	poll(NULL, 0, 2);
	/* A third address takes a's tombstone: a's seq is forgotten, b's is not. */
	cr_expect_eq(registry_signoff(r, "http://c:1", 10), -ENOENT);
	rec = reg_beat_rec("http://b:1", 10);
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), -ESTALE);
	rec = reg_beat_rec("http://c:1", 10);
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), -ESTALE);
	rec = reg_beat_rec("http://a:1", 10);
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), 0);
	rec = reg_beat_rec("http://b:1", 11);
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), 0, "b's slot");
	/* b's tombstone went with its new slot, c's is still there. */
	rec = reg_beat_rec("http://c:1", 10);
	cr_expect_eq(registry_upsert(r, &rec, false, NULL, NULL), -ESTALE);
	reg_unmap(r);
}

/* An SFU the external registry lists may send heartbeats too (load only): their seq is
 * kept across list updates, and remembered when the list drops the SFU. */
Test(registry, listed_sfus_keep_their_heartbeat_seq)
{
	struct registry *r = reg_map(4);
	struct sfu_record list[1], got;
	struct sfu_hot load = { .has_load = 1, .sessions = 3 };
	int slot;

	list[0] = reg_listed("http://a:1", "eu-west", 1, -1);
	cr_assert_eq(registry_apply_source(r, list, 1, 100, 30000, NULL, NULL), 0);
	slot = registry_find(r, "http://a:1");
	cr_assert_geq(slot, 0);
	cr_assert_eq(registry_read(r, (uint32_t)slot, &got), 0);
	cr_expect_eq(registry_update_load(r, (uint32_t)slot, got.hot.generation, &load, false, 50),
		     0);
	list[0] = reg_listed("http://a:1", "eu-central", 1, -1);
	cr_assert_eq(registry_apply_source(r, list, 1, 200, 30000, NULL, NULL), 0);
	cr_assert_eq(registry_read(r, (uint32_t)slot, &got), 0);
	cr_expect_str_eq(got.cold.region, "eu-central");
	cr_expect_eq(got.cold.hb_seq, 50, "a list update kept the seq");
	cr_expect_eq(registry_update_load(r, (uint32_t)slot, got.hot.generation, &load, false, 50),
		     -ESTALE);
	/* Dropped by the list: a replayed heartbeat cannot register it. */
	cr_assert_eq(registry_apply_source(r, list, 0, 300, 30000, NULL, NULL), 0);
	cr_expect_eq(registry_find(r, "http://a:1"), -ENOENT);
	got = reg_beat_rec("http://a:1", 50);
	cr_expect_eq(registry_upsert(r, &got, false, NULL, NULL), -ESTALE);
	got.cold.hb_seq = 51;
	cr_expect_eq(registry_upsert(r, &got, false, NULL, NULL), 0);
	reg_unmap(r);
}
