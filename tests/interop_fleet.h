/* The interop suites' fixture: real odoo/sfu processes behind a real gateway, and their routes. */
#ifndef SFU_TEST_INTEROP_FLEET_H
#define SFU_TEST_INTEROP_FLEET_H

#include <stdbool.h>
#include <stdint.h>

#include "harness.h"

/* The gateway's key (Odoo signs with it), the SFUs' AUTH_KEY, a key nobody uses. */
#define FLEET_GW_KEY "aW50ZXJvcC1nYXRld2F5LWtleS1mb3ItcmVhbC1zZnUtMDAx"
#define FLEET_SFU_KEY "aW50ZXJvcC1yZWFsLXNmdS1hdXRoLWtleS0wMDAwMDAwMDI="
#define FLEET_BAD_KEY "aW50ZXJvcC13cm9uZy1rZXktbm9ib2R5LXVzZXMtMDAwMw=="
/* The channel key claim of Odoo's tokens (harness_odoo_token): sessions sign with it. */
#define FLEET_CHANNEL_KEY "6f1d7a52-8d67-4c6e-a1f1-0c7e2f6f2f4d"
/* Channel requests through the gateway: the SFUs run without media workers. */
#define FLEET_CHANNEL_PATH "/v1/channel?webRTC=false"
#define FLEET_MAX 4

struct fleet {
	struct harness_proc *gw;
	struct harness_proc *sfu[FLEET_MAX];
	int n;
};

/* Starts n real, unpatched SFUs with FLEET_SFU_KEY (env as for harness_real_sfu_start). */
void fleet_sfus(struct fleet *f, int n, const char *const *env);
/* The same with the copy peer (the patched one: etc/odoo-sfu applied). */
void fleet_sfus_peer(struct fleet *f, int n, enum harness_peer peer, const char *const *env);
/* Starts the gateway (FLEET_GW_KEY, 2 workers, env entries may be NULL) configured with the
 * TOML text extra and one [[sfu]] per SFU of f, region eu-west, with keys[i] (keys NULL or
 * keys[i] NULL: FLEET_SFU_KEY). */
void fleet_gateway(struct fleet *f, const char *extra, const char *const *keys,
		   const char *const *env);
/* A fresh issuer per call (issuer affinity must not pin tests' requests); four buffers. */
const char *fleet_issuer(void);
/* GET FLEET_CHANNEL_PATH on port with an Odoo token for iss signed with key_b64 and extra
 * header lines (may be NULL); the exchange must succeed. Heap response: free it. */
struct harness_resp *fleet_channel(int port, const char *iss, const char *key_b64,
				   const char *extra);
/* fleet_channel from source address src (NULL: 127.0.0.1), as Odoo on another host asks. */
struct harness_resp *fleet_channel_from(const char *src, int port, const char *iss,
					const char *key_b64, const char *extra);
/* Whether s is a lower-case RFC 4122 version 4 uuid, as crypto.randomUUID() writes. */
bool fleet_uuid_valid(const char *s);
/* A 200 channel answer's uuid, which must be a valid one. Static buffer (four slots). */
const char *fleet_uuid(const struct harness_resp *r);
/* The SFU's /v1/stats entry of channel uuid (a new reference), NULL when not listed. */
struct json_object *fleet_stats_channel(const struct harness_proc *sfu, const char *uuid);
/* The number of channels in the SFU's /v1/stats. */
int fleet_stats_count(const struct harness_proc *sfu);
/* sessionsStats.count of a /v1/stats entry. */
int64_t fleet_stats_sessions(struct json_object *entry);
/* The remoteAddress the SFU recorded for channel uuid (its creator); the SFU must list the
 * channel. Static buffer. */
const char *fleet_creator(const struct harness_proc *sfu, const char *uuid);
/* The sessions the SFU counts in channel uuid, which it must list. */
int64_t fleet_sessions(const struct harness_proc *sfu, const char *uuid);
/* Odoo's hang-up, straight to the SFU: POST /v1/disconnect from source address src (NULL:
 * 127.0.0.1) with extra header lines (may be NULL), the body a bare token signed with key_b64
 * with claims {"sessionIdsByChannel": {uuid: [ids]}, "exp": now + 20} (ids: "1,2"). The
 * exchange must succeed; returns the status. */
int fleet_hangup(const struct harness_proc *sfu, const char *src, const char *key_b64,
		 const char *uuid, const char *ids, const char *extra);
/* Polls the gateway's /v1/health entry of the SFU on sfu_port until its integer member
 * field equals want, up to timeout_ms; returns the last value seen (-1: no entry). */
int64_t fleet_health_wait(int gw_port, int sfu_port, const char *field, int64_t want,
			  int timeout_ms);
/* A string member of the gateway's /v1/health entry of the SFU on sfu_port ("" when the SFU
 * or the member is absent); a dotted name ("circuit.state") looks one level down. Static
 * buffer. */
const char *fleet_health_str(int gw_port, int sfu_port, const char *field);

#endif
