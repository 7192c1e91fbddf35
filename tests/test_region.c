/* Tests of region.c: names, the country table, distances and proximity order. */
#include <criterion/criterion.h>
#include <string.h>

#include "region.h"

/* The existing gateway's country table, written out again pair by pair (not
 * copied from src/common/region.c) so that a typo in either shows up here. */
struct test_region_cc {
	const char *cc;
	const char *region;
};

static const struct test_region_cc test_region_table[] = {
	{ "FR", "eu-west" }, { "DE", "eu-west" }, { "GB", "eu-west" }, { "ES", "eu-west" },
	{ "IT", "eu-west" }, { "NL", "eu-west" }, { "BE", "eu-west" }, { "PT", "eu-west" },
	{ "IE", "eu-west" }, { "AT", "eu-west" }, { "CH", "eu-west" }, { "LU", "eu-west" },
	{ "MC", "eu-west" }, { "AD", "eu-west" }, { "MT", "eu-west" }, { "SM", "eu-west" },
	{ "VA", "eu-west" }, { "LI", "eu-west" },

	{ "SE", "eu-north" }, { "NO", "eu-north" }, { "DK", "eu-north" }, { "FI", "eu-north" },
	{ "IS", "eu-north" }, { "EE", "eu-north" }, { "LV", "eu-north" }, { "LT", "eu-north" },

	{ "PL", "eu-central" }, { "CZ", "eu-central" }, { "SK", "eu-central" },
	{ "HU", "eu-central" }, { "RO", "eu-central" }, { "BG", "eu-central" },
	{ "HR", "eu-central" }, { "SI", "eu-central" }, { "RS", "eu-central" },
	{ "BA", "eu-central" }, { "ME", "eu-central" }, { "MK", "eu-central" },
	{ "AL", "eu-central" }, { "XK", "eu-central" }, { "MD", "eu-central" },
	{ "UA", "eu-central" }, { "BY", "eu-central" }, { "RU", "eu-central" },
	{ "KZ", "eu-central" }, { "UZ", "eu-central" }, { "TM", "eu-central" },
	{ "KG", "eu-central" }, { "TJ", "eu-central" }, { "AZ", "eu-central" },
	{ "GE", "eu-central" }, { "AM", "eu-central" },

	{ "GR", "eu-south" }, { "TR", "eu-south" }, { "CY", "eu-south" }, { "EG", "eu-south" },
	{ "LY", "eu-south" }, { "TN", "eu-south" }, { "DZ", "eu-south" }, { "MA", "eu-south" },

	{ "US", "us-east" }, { "CA", "us-east" }, { "MX", "us-east" }, { "GT", "us-east" },
	{ "BZ", "us-east" }, { "SV", "us-east" }, { "HN", "us-east" }, { "NI", "us-east" },
	{ "CR", "us-east" }, { "PA", "us-east" }, { "CU", "us-east" }, { "JM", "us-east" },
	{ "HT", "us-east" }, { "DO", "us-east" }, { "PR", "us-east" }, { "TT", "us-east" },
	{ "BB", "us-east" }, { "BS", "us-east" },

	{ "BR", "sa-east" }, { "AR", "sa-east" }, { "UY", "sa-east" }, { "PY", "sa-east" },
	{ "VE", "sa-east" }, { "CO", "sa-east" }, { "GY", "sa-east" }, { "SR", "sa-east" },
	{ "GF", "sa-east" },

	{ "CL", "sa-west" }, { "PE", "sa-west" }, { "EC", "sa-west" }, { "BO", "sa-west" },

	{ "JP", "ap-northeast" }, { "KR", "ap-northeast" }, { "TW", "ap-northeast" },
	{ "HK", "ap-northeast" }, { "MO", "ap-northeast" },

	{ "CN", "ap-east" },

	{ "SG", "ap-southeast" }, { "MY", "ap-southeast" }, { "TH", "ap-southeast" },
	{ "VN", "ap-southeast" }, { "ID", "ap-southeast" }, { "PH", "ap-southeast" },
	{ "MM", "ap-southeast" }, { "KH", "ap-southeast" }, { "LA", "ap-southeast" },
	{ "BN", "ap-southeast" }, { "AU", "ap-southeast" }, { "NZ", "ap-southeast" },
	{ "FJ", "ap-southeast" }, { "PG", "ap-southeast" }, { "NC", "ap-southeast" },
	{ "VU", "ap-southeast" }, { "WS", "ap-southeast" }, { "TO", "ap-southeast" },

	{ "IN", "ap-south" }, { "PK", "ap-south" }, { "BD", "ap-south" }, { "LK", "ap-south" },
	{ "NP", "ap-south" }, { "BT", "ap-south" }, { "MV", "ap-south" },

	{ "AE", "me-south" }, { "SA", "me-south" }, { "QA", "me-south" }, { "KW", "me-south" },
	{ "BH", "me-south" }, { "OM", "me-south" }, { "IL", "me-south" }, { "JO", "me-south" },
	{ "LB", "me-south" }, { "IQ", "me-south" }, { "IR", "me-south" }, { "YE", "me-south" },

	{ "ZA", "af-south" }, { "NG", "af-south" }, { "KE", "af-south" }, { "GH", "af-south" },
	{ "TZ", "af-south" }, { "UG", "af-south" }, { "ET", "af-south" }, { "SN", "af-south" },
	{ "CI", "af-south" }, { "CM", "af-south" }, { "AO", "af-south" }, { "ZW", "af-south" },
	{ "ZM", "af-south" }, { "MZ", "af-south" }, { "BW", "af-south" }, { "NA", "af-south" },
	{ "RW", "af-south" }, { "MU", "af-south" }, { "MG", "af-south" },
};

#define TEST_REGION_NCC (sizeof(test_region_table) / sizeof(test_region_table[0]))

static const char *const test_region_names[REGION_COUNT] = {
	"eu-west",	"eu-north",	"eu-central", "eu-south", "us-east",
	"sa-east",	"sa-west",	"ap-northeast", "ap-east", "ap-southeast",
	"ap-south",	"me-south",	"af-south",
};

static int test_region_id(const char *name)
{
	int id = region_lookup(name, strlen(name));

	cr_assert_neq(id, REGION_UNKNOWN, "region %s unknown", name);
	return id;
}

/* Asserts that the proximity order of from starts with the given names. */
static void test_region_assert_order(const char *from, const char *const *names, size_t n)
{
	const uint8_t *order = region_proximity(test_region_id(from));

	cr_assert_not_null(order);
	for (size_t k = 0; k < n; k++)
		cr_assert_str_eq(region_name(order[k]), names[k], "%s: position %zu is %s, not %s",
				 from, k, region_name(order[k]), names[k]);
}

Test(region, names_round_trip)
{
	bool seen[REGION_COUNT + 1] = { false };

	for (int k = 0; k < REGION_COUNT; k++) {
		int id = test_region_id(test_region_names[k]);

		cr_assert(id >= 1 && id <= REGION_COUNT);
		cr_assert_not(seen[id], "id %d given twice", id);
		seen[id] = true;
		cr_assert_str_eq(region_name(id), test_region_names[k]);
	}
	cr_assert_null(region_name(0));
	cr_assert_null(region_name(REGION_COUNT + 1));
	cr_assert_null(region_name(-1));
}

Test(region, lookup_is_exact_and_case_sensitive)
{
	cr_assert_eq(region_lookup("EU-WEST", 7), REGION_UNKNOWN);
	cr_assert_eq(region_lookup("Eu-west", 7), REGION_UNKNOWN);
	cr_assert_eq(region_lookup("eu-wes", 6), REGION_UNKNOWN);
	cr_assert_eq(region_lookup("eu-west ", 8), REGION_UNKNOWN);
	cr_assert_eq(region_lookup("", 0), REGION_UNKNOWN);
	cr_assert_eq(region_lookup(NULL, 0), REGION_UNKNOWN);
	cr_assert_eq(region_lookup("mars-1", 6), REGION_UNKNOWN);
	/* The length bounds the name: the hint need not be NUL-terminated. */
	cr_assert_eq(region_lookup("eu-westXYZ", 7), test_region_id("eu-west"));
	cr_assert_eq(region_lookup("ap-southeast", 8), test_region_id("ap-south"));
}

Test(region, every_country_of_the_contract)
{
	cr_assert_eq(TEST_REGION_NCC, 153, "the contract lists 153 codes");
	for (size_t i = 0; i < TEST_REGION_NCC; i++) {
		const struct test_region_cc *e = &test_region_table[i];
		int got = region_from_country(e->cc, 2);

		cr_assert_str_eq(region_name(got) ? region_name(got) : "(none)", e->region,
				 "country %s", e->cc);
	}
}

Test(region, country_codes_are_unique_in_the_table)
{
	for (size_t i = 0; i < TEST_REGION_NCC; i++)
		for (size_t j = i + 1; j < TEST_REGION_NCC; j++)
			cr_assert_str_neq(test_region_table[i].cc, test_region_table[j].cc);
}

Test(region, country_lookup_is_case_insensitive)
{
	int eu_west = test_region_id("eu-west");

	cr_assert_eq(region_from_country("fr", 2), eu_west);
	cr_assert_eq(region_from_country("Fr", 2), eu_west);
	cr_assert_eq(region_from_country("fR", 2), eu_west);
	for (size_t i = 0; i < TEST_REGION_NCC; i++) {
		char lower[3] = { (char)(test_region_table[i].cc[0] + 32),
				  (char)(test_region_table[i].cc[1] + 32), '\0' };

		cr_assert_eq(region_from_country(lower, 2),
			     region_from_country(test_region_table[i].cc, 2), "%s", lower);
	}
}

Test(region, unknown_countries_give_no_region)
{
	static const char *const bad[] = { "XX", "ZZ", "AA", "QQ", "EU", "UK", "1A", "F1",
					   "@A", "[A", "`a", "{a", "--", "  " };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(region_from_country(bad[i], 2), REGION_UNKNOWN, "%s", bad[i]);
	cr_assert_eq(region_from_country("F", 1), REGION_UNKNOWN);
	cr_assert_eq(region_from_country("FRA", 3), REGION_UNKNOWN);
	cr_assert_eq(region_from_country("", 0), REGION_UNKNOWN);
	cr_assert_eq(region_from_country(NULL, 2), REGION_UNKNOWN);
	/* Only the first two bytes count when len says 2. */
	cr_assert_eq(region_from_country("FRANCE", 2), test_region_id("eu-west"));
}

Test(region, distances)
{
	int paris = test_region_id("eu-west"), berlin = test_region_id("eu-central");
	int tokyo = test_region_id("ap-northeast"), santiago = test_region_id("sa-west");

	for (int a = 1; a <= REGION_COUNT; a++) {
		cr_assert_eq(region_distance_km(a, a), 0.0);
		for (int b = 1; b <= REGION_COUNT; b++) {
			cr_assert_eq(region_distance_km(a, b), region_distance_km(b, a));
			if (a != b)
				cr_assert_gt(region_distance_km(a, b), 500.0);
			cr_assert_lt(region_distance_km(a, b), 20016.0);
		}
	}
	/* Paris-Berlin: haversine of (48.8,2.3)-(52.5,13.4) with R = 6371 km. */
	cr_assert(region_distance_km(paris, berlin) > 880.0 &&
		  region_distance_km(paris, berlin) < 886.0, "%f",
		  region_distance_km(paris, berlin));
	cr_assert(region_distance_km(tokyo, santiago) > 17200.0 &&
		  region_distance_km(tokyo, santiago) < 17280.0, "%f",
		  region_distance_km(tokyo, santiago));
	cr_assert_eq(region_distance_km(0, paris), 0.0);
	cr_assert_eq(region_distance_km(paris, REGION_COUNT + 1), 0.0);
}

Test(region, proximity_is_a_sorted_permutation)
{
	cr_assert_null(region_proximity(0));
	cr_assert_null(region_proximity(REGION_COUNT + 1));
	for (int a = 1; a <= REGION_COUNT; a++) {
		const uint8_t *o = region_proximity(a);
		bool seen[REGION_COUNT + 1] = { false };

		cr_assert_not_null(o);
		cr_assert_eq(o[0], a, "region %d is not first in its own order", a);
		for (int k = 0; k < REGION_COUNT; k++) {
			cr_assert(o[k] >= 1 && o[k] <= REGION_COUNT);
			cr_assert_not(seen[o[k]]);
			seen[o[k]] = true;
			if (k > 0)
				cr_assert_leq(region_distance_km(a, o[k - 1]),
					      region_distance_km(a, o[k]));
		}
		cr_assert_eq(region_proximity(a), o, "the order is computed once, not per call");
	}
}

/* Orders worked out from the centres' great-circle distances (rounded, km):
 * Paris-Berlin 883, Paris-Rome 1105, Paris-Stockholm 1546, Paris-Dubai 5244;
 * Virginia-Paris 6155, -Stockholm 6623, -Berlin 6701, -Rome 7209, -Sao Paulo 7636;
 * Santiago-Sao Paulo 2583, -Virginia 8078, -Johannesburg 9170;
 * Mumbai-Dubai 1931, -Singapore 3909, -Shanghai 5046. */
Test(region, proximity_known_orders)
{
	static const char *const eu_west[] = { "eu-west", "eu-central", "eu-south", "eu-north",
					       "me-south", "us-east" };
	static const char *const us_east[] = { "us-east", "eu-west", "eu-north", "eu-central",
					       "eu-south", "sa-east", "sa-west" };
	static const char *const sa_west[] = { "sa-west", "sa-east", "us-east", "af-south",
					       "eu-west" };
	static const char *const ap_south[] = { "ap-south", "me-south", "ap-southeast",
						"ap-east" };
	static const char *const ap_northeast[] = { "ap-northeast", "ap-east", "ap-southeast" };

	test_region_assert_order("eu-west", eu_west, 6);
	test_region_assert_order("us-east", us_east, 7);
	test_region_assert_order("sa-west", sa_west, 5);
	test_region_assert_order("ap-south", ap_south, 4);
	test_region_assert_order("ap-northeast", ap_northeast, 3);
}
