/* Test harness: start the real daemon and mock SFUs on loopback, talk HTTP to them, clean up. */
#ifndef SFU_TEST_HARNESS_H
#define SFU_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HARNESS_MAX_PROCS 32

struct harness_proc {
	pid_t pid;
	int port;
	int out_fd; /* read end of the child's stdout (mock: "PORT n") */
	char log_path[256]; /* the child's stderr */
	char lock_path[512]; /* gateway: its instance lock (instance.h), removed at cleanup */
};

struct harness_resp {
	int status; /* 0 when no response */
	char head[8192];
	char body[65536];
	size_t body_len;
};

/* A free TCP port on 127.0.0.1 (bound to 0, read, closed). */
int harness_free_port(void);
/* Monotonic milliseconds. */
int64_t harness_now_ms(void);
/* ms, or under valgrind (which runs the daemon ~20x slower) ten times ms: for a
 * time the daemon is configured with, which the test then waits out. */
int harness_slow_ms(int ms);
/* Something the test needs is not on this machine (what says which, and how to
 * get it): under CI (CI=true or 1) the test fails, elsewhere it is skipped with
 * that one line. Does not return. */
_Noreturn void harness_absent(const char *what);
/* toml itself (NULL too), or under valgrind toml with request timeouts stretched
 * as the tests' deadlines are (a TLS handshake or a slow mock there outlasts the
 * default bounds) when it sets none itself. The copy is static: use it before
 * the next call. */
const char *harness_slow_failover(const char *toml);
/* A fresh directory under /tmp for this test (removed at cleanup). */
const char *harness_tmpdir(void);
/* Writes text to dir/name; returns the full path (static buffer per call slot). */
const char *harness_write_file(const char *name, const char *text);

/* Starts build/mock-sfu with the given extra args (NULL-terminated) and
 * waits for its "PORT n" line. key_b64 is its AUTH_KEY. */
struct harness_proc *harness_mock_start(const char *key_b64, const char *const *args);
/* Starts build/mock-registry (MOCK_REGISTRY_BIN), the external registry of the tests,
 * with args (NULL-terminated, may be NULL; "--port N" picks the port) and waits for its
 * "PORT n" line. */
struct harness_proc *harness_registry_start(const char *const *args);
/* Starts the gateway with env entries ("NAME=value", NULL-terminated; the
 * SFU_GATEWAY_* variables of the test process are cleared first) and args;
 * picks a port (--port) unless args has one; waits until GET /noop answers.
 * Returns NULL when it did not come up within the deadline. */
struct harness_proc *harness_gateway_start(const char *const *env, const char *const *args);
/* Starts the gateway without waiting; returns its exit code if it exited
 * within timeout_ms, else -1 (then it is still running and tracked). */
int harness_gateway_run(const char *const *env, const char *const *args, int timeout_ms,
			struct harness_proc **out);
/* Sends a signal and waits for the exit, up to timeout_ms; returns the exit
 * status (as from waitpid) or -1 on timeout (then SIGKILLs). */
int harness_stop(struct harness_proc *p, int sig, int timeout_ms);
/* Kills and reaps every tracked process, removes instance locks and the tmpdir.
 * Use as .fini of every integration test. */
void harness_cleanup(void);
/* The shared memory segment pid maps (the first /dev/shm mapping of /proc/pid/maps):
 * its path into path (without " (deleted)"), and whether the kernel marks it removed.
 * False when pid maps none. */
bool harness_segment(pid_t pid, char *path, size_t len, bool *deleted);
/* Contents of a process's stderr log so far (static buffer). */
const char *harness_log(const struct harness_proc *p);
/* A whole file, NUL-terminated, on the heap (the caller frees it); NULL when it
 * cannot be opened. */
char *harness_read_file(const char *path);
/* The same, but "" (still to free) when it cannot be opened. */
char *harness_read_all(const char *path);
/* A process's whole log (harness_log stops at 64 KiB); the caller frees it. */
char *harness_whole_log(const struct harness_proc *p);
/* How many times needle occurs in text. */
int harness_count(const char *text, const char *needle);

/* One HTTP exchange on a new connection to 127.0.0.1:port: sends raw bytes,
 * reads until the peer closes or one full response arrived, within timeout.
 * Returns 0 or -errno. */
int harness_raw(int port, const char *raw, size_t len, struct harness_resp *r, int timeout_ms);
/* GET path with optional extra header lines ("Name: v\r\n..."). */
int harness_get(int port, const char *path, const char *headers, struct harness_resp *r);
int harness_post(int port, const char *path, const char *headers, const char *body,
		 struct harness_resp *r);
/* The same from the IPv4 source address src (NULL: the kernel's choice, 127.0.0.1): any
 * 127.0.0.0/8 address, so that one test plays several hosts (Odoo, a stranger, a proxy). */
int harness_raw_from(const char *src, int port, const char *raw, size_t len,
		     struct harness_resp *r, int timeout_ms);
int harness_get_from(const char *src, int port, const char *path, const char *headers,
		     struct harness_resp *r);
int harness_post_from(const char *src, int port, const char *path, const char *headers,
		      const char *body, struct harness_resp *r);
/* Header value of a response (first match, case-insensitive) into out. */
bool harness_resp_header(const struct harness_resp *r, const char *name, char *out,
			 size_t outlen);

/* Independent HS256 signer (OpenSSL + own base64url): header_json and
 * claims_json are encoded as given. Returns a static buffer. */
const char *harness_token(const char *header_json, const char *claims_json, const char *key_b64);
/* An Odoo-style token: header {"typ": "JWT", "alg": "HS256"}, claims
 * {"iss": iss, "key": "...", "exp": now+30}. */
const char *harness_odoo_token(const char *iss, const char *key_b64);

/* JSON string field of a body ("" when absent), static buffer. */
const char *harness_json_str(const char *body, const char *field);

/* ---- helpers the integration suites share */

struct json_object;
struct evp_md_st;

/* Every *.log of the test's tmpdir, each after a "== path" line, for a failure message
 * (static buffer, cut at 16 KiB): cleanup removes the files. */
const char *harness_all_logs(void);
/* harness_gateway_start that must succeed: fails the test, with every log, otherwise. */
struct harness_proc *harness_gateway_up(const char *const *env, const char *const *args);
/* A gateway with SFU_GATEWAY_KEY=key_b64 (none when NULL) and the env entries (may be
 * NULL), `--workers workers` and, when toml is not NULL, that text as its config file;
 * fails the test when it does not come up. */
struct harness_proc *harness_gateway_keyed(const char *key_b64, const char *const *env,
					   int workers, const char *toml);
/* Waits up to timeout_ms for pid's exit (without reaping others); returns its exit code,
 * 128 + signal, or -1 at the deadline. */
int harness_wait_exit(pid_t pid, int timeout_ms);

/* "http://127.0.0.1:port", as the gateway names an SFU; eight rotating buffers. */
const char *harness_url(int port);
/* Which of the n mocks a 200 channel answer's body names by its url; -1 if none. */
int harness_served_by(struct harness_proc *const *mocks, int n, const char *body);

/* Like harness_token, with the given digest (NULL: an empty signature, as alg none) and
 * either base64url unpadded or (std) the standard alphabet padded, as Node writes it.
 * Two static buffers, so that two tokens can be alive at once. */
const char *harness_token_ex(const char *header_json, const char *claims_json,
			     const char *key_b64, const struct evp_md_st *md, bool std);
/* A heartbeat seq: ms since the epoch, or one more than the last one returned. */
uint64_t harness_next_seq(void);
/* base64url (unpadded) of SHA-256 over body's bytes (NUL excluded). Static buffer. */
const char *harness_body_sha256(const char *body);
/* An SFU's heartbeat bearer token in wire format v2: HS256 with key_b64, claims
 * {address, iat now, exp now+60, sha256 of body, seq harness_next_seq()}. Static buffer. */
const char *harness_sfu_token(const char *address, const char *key_b64, const char *body);
/* POST /v1/sfu with body, authorized by harness_sfu_token(address, key_b64, body), as an
 * SFU sends its heartbeat; the exchange must succeed. Heap response: free it. */
struct harness_resp *harness_heartbeat(int port, const char *address, const char *key_b64,
				       const char *body);
/* GET path (a /v1/channel URL) with an Odoo token for iss signed with key_b64 and extra
 * header lines (may be NULL); the exchange must succeed. Heap response: free it. */
struct harness_resp *harness_channel(int port, const char *path, const char *iss,
				     const char *key_b64, const char *extra);
/* The same from source address src (NULL: 127.0.0.1), as harness_get_from. */
struct harness_resp *harness_channel_from(const char *src, int port, const char *path,
					  const char *iss, const char *key_b64, const char *extra);
/* A raw GET /v1/channel with "Authorization: jwt token" and Connection: close into out;
 * returns its length. */
int harness_channel_req(char *out, size_t outlen, const char *token);

/* One request of harness_batch and what came back. */
struct harness_call {
	char req[4096]; /* the whole raw request, written by the caller */
	bool done; /* the answer is complete, or the peer closed */
	int status; /* of the answer's status line, 0 when none came */
	int64_t ms; /* from connect to the end of the answer */
	char head[2048]; /* the answer's head with its blank line, or what came of it */
	char body[4096]; /* the answer's body (cut to fit) */
};
/* Sends the n calls over up to conc connections at once (one request each) and reads
 * the answers until timeout_ms; a call without an answer keeps done false, status 0. */
void harness_batch(int port, struct harness_call *calls, int n, int conc, int timeout_ms);
/* Header value of a batch answer (first match, case-insensitive) into out. */
bool harness_call_header(const struct harness_call *c, const char *name, char *out,
			 size_t outlen);

/* The value of one series (exact name and labels, as printed) in a /metrics text;
 * -1 when absent. */
double harness_series(const char *text, const char *series);
/* harness_series of the gateway's /metrics, which must answer 200. */
double harness_metric(int port, const char *series);
/* A mock's control route (GET path, must answer 200) parsed; the caller puts it. */
struct json_object *harness_mock_json(const struct harness_proc *m, const char *path);
/* An integer member of a mock's control route (GET path); the member must be there. */
int64_t harness_mock_int(const struct harness_proc *m, const char *path, const char *field);
/* POST path (empty body) to a mock's control route; asserts the status is want. */
void harness_mock_post(const struct harness_proc *m, const char *path, int want);

/* ---- the real odoo/sfu: the interop suite (make check-interop) exports SFU_INTEROP_PEER and
 * SFU_INTEROP_PEER_PATCHED, two prepared copies of it (scripts/interop-peer.sh), and NODE_BIN */

/* Which copy: odoo/sfu as users run it, or with the patches of etc/odoo-sfu applied. */
enum harness_peer { HARNESS_PEER_UPSTREAM, HARNESS_PEER_PATCHED };

/* SFU_INTEROP_PEER; fails the test when it is not set. */
const char *harness_peer_dir(void);
/* The folder of either copy; fails the test when its variable is not set. */
const char *harness_peer_dir_of(enum harness_peer peer);
/* Starts a real, unpatched odoo/sfu (its HTTP and auth services, no media workers: channel
 * requests need ?webRTC=false) on a free port of 127.0.0.1 with AUTH_KEY=key_b64,
 * PUBLIC_IP=127.0.0.1, PROXY=1 and LOG_LEVEL=warn; env entries ("NAME=value", NULL-terminated,
 * may be NULL) replace those ("PROXY=" turns PROXY off; "PORT=n" fixes the port). Its stdout
 * and stderr go to its log file. Waits until GET /v1/noop answers 200; NULL when it did not
 * come up within the deadline. */
struct harness_proc *harness_real_sfu_start(const char *key_b64, const char *const *env);
/* The same with the copy peer; the patched one also sends heartbeats when env sets
 * SFU_GATEWAY_URL, and signs off when stopped by SIGTERM or SIGINT. */
struct harness_proc *harness_real_sfu_start_peer(enum harness_peer peer, const char *key_b64,
						 const char *const *env);
/* harness_real_sfu_start(_peer) that must succeed: fails the test, with every log, otherwise. */
struct harness_proc *harness_real_sfu_up(const char *key_b64, const char *const *env);
struct harness_proc *harness_real_sfu_up_peer(enum harness_peer peer, const char *key_b64,
					      const char *const *env);
/* Opens n websocket sessions (ids first .. first + n - 1) to channel uuid of the real SFU on
 * sfu_port, authenticated with tokens signed with the channel's key claim channel_key, and
 * keeps them open until the process is stopped; fails the test unless all joined. */
struct harness_proc *harness_ws_sessions(int sfu_port, const char *uuid, const char *channel_key,
					 int n, int first);
/* Starts build/sfu-gateway-agent (SFU_AGENT_BIN) with args and exactly env (NULL: empty),
 * both NULL-terminated; stderr to its log file. Tracked like every harness process. */
struct harness_proc *harness_agent_start(const char *const *args, const char *const *env);

/* Starts argv (argv[0] a path) with exactly env (NULL: empty), its stdout and stderr to
 * its log file, tracked and killed at cleanup like every harness process (a third-party
 * server such as nginx, run in the foreground). Fails the test when it cannot fork. */
struct harness_proc *harness_process_start(const char *const *argv, const char *const *env);

/* GET path answered with a JSON body: the parsed body (the caller puts it); the status into
 * *status when not NULL. */
struct json_object *harness_get_json(int port, const char *path, int *status);
/* The first object of array arr whose string member has this value (borrowed), or NULL. */
struct json_object *harness_json_find(struct json_object *arr, const char *member,
				      const char *value);
/* The gateway's /v1/health entry of the SFU with this address (a new reference), NULL when
 * absent; the health status into *status when not NULL. */
struct json_object *harness_health_sfu(int gw_port, const char *address, int *status);
/* An integer member of o, which must be there. */
int64_t harness_json_int(struct json_object *o, const char *field);

#endif
