/* SFU load fields: what an SFU reports about itself (status, channels, sessions...), with the heartbeat's names and rules. */
#ifndef SFU_SFULOAD_H
#define SFU_SFULOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "registry.h"

struct json_object;

/* The rule each field must follow, for the error that names it. */
#define SFULOAD_RULE_STATUS "must be \"up\" or \"down\""
#define SFULOAD_RULE_COUNT "must be a non-negative integer"
#define SFULOAD_RULE_USAGE "must be a number in [0, 1]"

/*
 * "status": *up is true for "up", false for "down"; absent or null is an
 * error ("missing field 'status'") when required, else *up = true.
 * 0, or -EINVAL with err naming the field.
 */
int sfuload_status(struct json_object *o, bool required, bool *up, char *err, size_t errlen);

/*
 * The load fields of object o into load: channels and sessions (non-negative
 * integers that fit 32 bits, required), maxSessions (the same, optional, 0 when
 * absent), cpuUsage and memoryUsage (optional numbers in [0, 1], 0 when absent:
 * the score then counts sessions alone). Other members of load are untouched.
 * 0, or -EINVAL with err naming the field ("missing field 'channels'",
 * "invalid field 'cpuUsage': must be a number in [0, 1]").
 */
int sfuload_parse(struct json_object *o, struct sfu_hot *load, char *err, size_t errlen);

/* Whether o carries any load field (channels, sessions, cpuUsage, memoryUsage). */
bool sfuload_present(struct json_object *o);

/* maxSessions alone (optional, 0 when absent). 0 or -EINVAL as sfuload_parse. */
int sfuload_max_sessions(struct json_object *o, uint32_t *out, char *err, size_t errlen);

#endif
