/* Test harness, TLS: a throwaway PKI made at test time, and a blocking HTTPS client. */
#ifndef SFU_TEST_HARNESS_TLS_H
#define SFU_TEST_HARNESS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

struct ssl_session_st;

/* A certificate and its private key, as files in the test's tmpdir. */
struct harness_pki {
	char cert[512];
	char key[512];
};

/*
 * Certificates are made with OpenSSL's API in the test's tmpdir (EC P-256 keys,
 * SHA-256 signatures): nothing private is ever in the repository, and dates can
 * lie in the past. Keys are written mode 0600.
 */

/* A self-signed CA (basicConstraints CA:TRUE) named cn; files name.pem and name.key. */
void harness_pki_ca(const char *name, const char *cn, struct harness_pki *out);
/*
 * A leaf certificate for sans ("IP:127.0.0.1,DNS:localhost,URI:https://h:1"; NULL for
 * none) issued by ca (NULL: self-signed), valid from now + from_s to now + to_s seconds,
 * for servers and clients; its subject CN is cn. Files name.pem and name.key.
 */
void harness_pki_issue(const struct harness_pki *ca, const char *name, const char *cn,
		       const char *sans, long from_s, long to_s, struct harness_pki *out);
/* The subject CN of the certificate in a PEM file (static buffer). */
const char *harness_pki_cn(const char *cert_path);

/*
 * A gateway serving HTTPS: like harness_gateway_keyed (key_b64 as SFU_GATEWAY_KEY, env,
 * --workers, toml as its config file), ready once GET /noop answers 200 over TLS with
 * the certificate verified against ca. Fails the test, with every log, otherwise.
 */
struct harness_proc *harness_tls_gateway_up(const char *key_b64, const char *const *env,
					    int workers, const char *toml, const char *ca);

/* How a test client connects. */
struct harness_tls_client {
	const char *ca; /* PEM file the server is verified against; NULL: not verified */
	const char *cert, *key; /* client certificate, or NULL */
	const char *host; /* the name checked and sent as SNI; NULL: 127.0.0.1 (IP check) */
	const char *alpn; /* wire-format ALPN list; NULL: "http/1.1" */
	bool resume; /* keep the session of each connection for the next one */
	struct ssl_session_st *session; /* with resume: the one the next connection resumes */
};

/* What a handshake gave. */
struct harness_tls_info {
	bool resumed;
	char alpn[32]; /* the protocol the server picked, "" when none */
	char peer_cn[256]; /* subject CN of the server's certificate */
	char error[256]; /* why the handshake failed, "" when it did not */
};

/* One HTTPS exchange on a new connection to 127.0.0.1:port, like harness_raw.
 * 0, -EPROTO when the handshake failed (info->error says why), or -errno. */
int harness_tls_raw(int port, struct harness_tls_client *c, const char *raw, size_t len,
		    struct harness_resp *r, struct harness_tls_info *info, int timeout_ms);
int harness_tls_get(int port, struct harness_tls_client *c, const char *path,
		    const char *headers, struct harness_resp *r, struct harness_tls_info *info);
int harness_tls_post(int port, struct harness_tls_client *c, const char *path,
		     const char *headers, const char *body, struct harness_resp *r,
		     struct harness_tls_info *info);
/* Frees a session kept in c. */
void harness_tls_client_reset(struct harness_tls_client *c);

/* A keep-alive HTTPS connection: several requests, one handshake. */
struct harness_tls_conn;
struct harness_tls_conn *harness_tls_open(int port, struct harness_tls_client *c,
					  struct harness_tls_info *info);
/* GET path on it (Connection kept); the answer must be complete and keep the
 * connection open. 0 or -errno. */
int harness_tls_conn_get(struct harness_tls_conn *k, const char *path, struct harness_resp *r);
/* Raw bytes on it (several requests at once, say), then one answer at a time. 0 or -errno. */
int harness_tls_conn_send(struct harness_tls_conn *k, const char *raw, size_t len);
int harness_tls_conn_read(struct harness_tls_conn *k, struct harness_resp *r);
void harness_tls_close(struct harness_tls_conn *k);

#endif
