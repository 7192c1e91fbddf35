/* Regions: the existing gateway's 13 regions, their centres, country table and proximity order. */
#include "region.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#define REGION_EARTH_RADIUS_KM 6371.0

struct region_def {
	const char *name;
	double lat, lon; /* degrees, of the city the existing gateway takes as the centre */
};

/* Index = region id; 0 is the "unknown" placeholder. The order (and so the ids)
 * is the existing gateway's own list of regions. */
static const struct region_def region_defs[REGION_COUNT + 1] = {
	{ NULL, 0.0, 0.0 },
	{ "eu-west", 48.8, 2.3 }, /* Paris */
	{ "eu-north", 59.3, 18.0 }, /* Stockholm */
	{ "eu-central", 52.5, 13.4 }, /* Berlin */
	{ "eu-south", 41.9, 12.5 }, /* Rome */
	{ "us-east", 39.0, -77.0 }, /* Virginia */
	{ "sa-east", -23.5, -46.6 }, /* Sao Paulo */
	{ "sa-west", -33.4, -70.6 }, /* Santiago */
	{ "ap-northeast", 35.7, 139.7 }, /* Tokyo */
	{ "ap-east", 31.2, 121.5 }, /* Shanghai */
	{ "ap-southeast", 1.3, 103.8 }, /* Singapore */
	{ "ap-south", 19.0, 72.8 }, /* Mumbai */
	{ "me-south", 25.3, 55.3 }, /* Dubai */
	{ "af-south", -26.2, 28.0 }, /* Johannesburg */
};

/* The existing gateway's country table, one space-separated list per region id,
 * written as that gateway lists it so that a review can compare them line by line. */
static const char *const region_countries[REGION_COUNT + 1] = {
	NULL,
	"FR DE GB ES IT NL BE PT IE AT CH LU MC AD MT SM VA LI",
	"SE NO DK FI IS EE LV LT",
	"PL CZ SK HU RO BG HR SI RS BA ME MK AL XK MD UA BY RU KZ UZ TM KG TJ AZ GE AM",
	"GR TR CY EG LY TN DZ MA",
	"US CA MX GT BZ SV HN NI CR PA CU JM HT DO PR TT BB BS",
	"BR AR UY PY VE CO GY SR GF",
	"CL PE EC BO",
	"JP KR TW HK MO",
	"CN",
	"SG MY TH VN ID PH MM KH LA BN AU NZ FJ PG NC VU WS TO",
	"IN PK BD LK NP BT MV",
	"AE SA QA KW BH OM IL JO LB IQ IR YE",
	"ZA NG KE GH TZ UG ET SN CI CM AO ZW ZM MZ BW NA RW MU MG",
};

/*
 * Derived tables, filled once under pthread_once and read-only afterwards
 * (pthread_once gives every later caller a happens-before edge to the writes).
 * Computing them from the lists above keeps one source of truth instead of a
 * hand-maintained 676-entry array and a 13x13 matrix.
 */
static pthread_once_t region_once = PTHREAD_ONCE_INIT;
static uint8_t region_by_country[26 * 26]; /* [A-Z][A-Z] -> region id, 0 = unknown */
static double region_dist[REGION_COUNT + 1][REGION_COUNT + 1];
static uint8_t region_order[REGION_COUNT + 1][REGION_COUNT];

static double region_haversine(const struct region_def *a, const struct region_def *b)
{
	const double rad = M_PI / 180.0;
	double dlat = (b->lat - a->lat) * rad;
	double dlon = (b->lon - a->lon) * rad;
	double s1 = sin(dlat / 2.0), s2 = sin(dlon / 2.0);
	double h = s1 * s1 + cos(a->lat * rad) * cos(b->lat * rad) * s2 * s2;

	/* Rounding can push h a hair above 1 for antipodal points. */
	if (h > 1.0)
		h = 1.0;
	return 2.0 * REGION_EARTH_RADIUS_KM * asin(sqrt(h));
}

/* Insertion sort of the other regions by (distance, id); 13 entries, run once. */
static void region_sort_from(int from)
{
	uint8_t *o = region_order[from];
	int n = 0;

	for (int id = 1; id <= REGION_COUNT; id++) {
		int j = n++;

		while (j > 0) {
			int prev = o[j - 1];
			double dp = region_dist[from][prev], di = region_dist[from][id];
			bool after;

			/* The region itself sorts first even if another centre
			 * coincided with it; otherwise distance, then id. */
			if (prev == from)
				after = true;
			else if (id == from)
				after = false;
			else
				after = dp < di || (dp == di && prev < id);
			if (after)
				break;
			o[j] = o[j - 1];
			j--;
		}
		o[j] = (uint8_t)id;
	}
}

static void region_build(void)
{
	for (int id = 1; id <= REGION_COUNT; id++) {
		const char *p = region_countries[id];

		/* Entries are "XY" separated by single spaces. */
		for (; p[0] && p[1]; p += (p[2] ? 3 : 2))
			region_by_country[(p[0] - 'A') * 26 + (p[1] - 'A')] = (uint8_t)id;
	}
	/* The diagonal stays exactly 0 (static storage) rather than a rounding residue. */
	for (int a = 1; a <= REGION_COUNT; a++)
		for (int b = 1; b <= REGION_COUNT; b++)
			if (a != b)
				region_dist[a][b] = region_haversine(&region_defs[a], &region_defs[b]);
	for (int a = 1; a <= REGION_COUNT; a++)
		region_sort_from(a);
}

static void region_init(void)
{
	pthread_once(&region_once, region_build);
}

static bool region_valid(int id)
{
	return id >= 1 && id <= REGION_COUNT;
}

int region_lookup(const char *name, size_t len)
{
	if (!name)
		return REGION_UNKNOWN;
	for (int id = 1; id <= REGION_COUNT; id++) {
		const char *n = region_defs[id].name;

		if (strlen(n) == len && memcmp(n, name, len) == 0)
			return id;
	}
	return REGION_UNKNOWN;
}

int region_from_country(const char *cc, size_t len)
{
	int hi, lo;

	if (!cc || len != 2)
		return REGION_UNKNOWN;
	/* ASCII folding by hand: toupper() depends on the locale. */
	hi = (cc[0] >= 'a' && cc[0] <= 'z') ? cc[0] - 'a' : cc[0] - 'A';
	lo = (cc[1] >= 'a' && cc[1] <= 'z') ? cc[1] - 'a' : cc[1] - 'A';
	if (hi < 0 || hi >= 26 || lo < 0 || lo >= 26)
		return REGION_UNKNOWN;
	region_init();
	return region_by_country[hi * 26 + lo];
}

const char *region_name(int id)
{
	return region_valid(id) ? region_defs[id].name : NULL;
}

const uint8_t *region_proximity(int id)
{
	if (!region_valid(id))
		return NULL;
	region_init();
	return region_order[id];
}

double region_distance_km(int a, int b)
{
	if (!region_valid(a) || !region_valid(b))
		return 0.0;
	region_init();
	return region_dist[a][b];
}

bool region_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > REGION_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}
