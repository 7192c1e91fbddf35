/* Regions: the existing gateway's 13 regions, country codes, and proximity by great-circle distance. */
#ifndef SFU_REGION_H
#define SFU_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REGION_COUNT 13
#define REGION_UNKNOWN 0 /* ids of known regions are 1..REGION_COUNT */

/* The longest region name a heartbeat or the agent may give. */
#define REGION_NAME_MAX 63

/* Whether s is a region name SFUs may register with: [a-z0-9-]{1,63}. */
bool region_name_valid(const char *s);
/* Id of a known region name ("eu-west"...), exact and case-sensitive; 0 otherwise. */
int region_lookup(const char *name, size_t len);
/* Region id of an ISO 3166-1 alpha-2 code, case-insensitive; 0 when unknown. */
int region_from_country(const char *cc, size_t len);
/* Name of a known region id, NULL otherwise. */
const char *region_name(int id);
/* The REGION_COUNT known ids ordered by distance from id's centre, id first.
 * NULL for an unknown id. Computed once (thread-safe: a const table built at
 * first use under pthread_once, or at compile time). */
const uint8_t *region_proximity(int id);
/* Great-circle distance in km between two region centres; 0 when either is unknown. */
double region_distance_km(int a, int b);

#endif
