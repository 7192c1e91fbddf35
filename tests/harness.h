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
	char shm_name[64]; /* gateway: its segment, unlinked at cleanup */
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
/* A fresh directory under /tmp for this test (removed at cleanup). */
const char *harness_tmpdir(void);
/* Writes text to dir/name; returns the full path (static buffer per call slot). */
const char *harness_write_file(const char *name, const char *text);

/* Starts build/mock-sfu with the given extra args (NULL-terminated) and
 * waits for its "PORT n" line. key_b64 is its AUTH_KEY. */
struct harness_proc *harness_mock_start(const char *key_b64, const char *const *args);
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
/* Kills and reaps every tracked process, removes segments and the tmpdir.
 * Use as .fini of every integration test. */
void harness_cleanup(void);
/* Contents of a process's stderr log so far (static buffer). */
const char *harness_log(const struct harness_proc *p);

/* One HTTP exchange on a new connection to 127.0.0.1:port: sends raw bytes,
 * reads until the peer closes or one full response arrived, within timeout.
 * Returns 0 or -errno. */
int harness_raw(int port, const char *raw, size_t len, struct harness_resp *r, int timeout_ms);
/* GET path with optional extra header lines ("Name: v\r\n..."). */
int harness_get(int port, const char *path, const char *headers, struct harness_resp *r);
int harness_post(int port, const char *path, const char *headers, const char *body,
		 struct harness_resp *r);
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

#endif
