/* TLS: OpenSSL contexts and connections over memory BIOs for libuv streams, and failures in words. */
#ifndef SFU_TLS_H
#define SFU_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* OpenSSL's types, named without pulling its headers into every includer. */
struct ssl_ctx_st;
struct ssl_st;
struct bio_st;
struct x509_st;
struct ssl_session_st;

#define TLS_PATH_MAX 512 /* a certificate, key or CA path, NUL included */
#define TLS_FILE_MAX (1024 * 1024) /* larger PEM files are refused */
#define TLS_DIGEST_LEN 32 /* SHA-256 of a certificate pair's files */
#define TLS_TICKET_KEY_LEN 80 /* session ticket key: name, HMAC and AES keys */

/*
 * Every context: TLS 1.2 at least, the system's OpenSSL policy for ciphers
 * and groups (nothing narrowed here), no renegotiation, no compression.
 */

/* The client side (to SFUs, and the agent to gateways). */
struct tls_client_opts {
	const char *ca_file; /* PEM bundle of trusted CAs; NULL or "" for none */
	const char *ca_path; /* hashed directory of trusted CAs; NULL or "" for none */
	/* Neither: the system store (/etc/ssl/certs on Debian). */
	const char *cert_file, *key_file; /* a client certificate (mTLS), or NULL */
	bool verify; /* false: certificates are not checked at all (an explicit opt-out) */
};

/* A client context: verification against the CAs, the peer's name checked per
 * connection (tls_conn_client), ALPN http/1.1 offered, sessions kept by the
 * caller (SSL_SESS_CACHE_CLIENT without OpenSSL's internal store). 0, or
 * -EINVAL with a one-line reason in err. */
int tls_client_ctx_new(struct ssl_ctx_st **out, const struct tls_client_opts *o, char *err,
		       size_t errlen);

/*
 * The listener's certificate pair (and the CA of client certificates) as read
 * from their files: the bytes, so that every process builds the very pair that
 * was checked, and their digest, so that a process can tell that files it
 * reads again are still the ones checked.
 */
struct tls_pair {
	char *cert; /* PEM: the certificate, then its chain */
	size_t cert_len;
	char *key; /* PEM private key, unencrypted; wiped when freed */
	size_t key_len;
	char *client_ca; /* PEM CA certificates, or NULL */
	size_t client_ca_len;
	uint8_t digest[TLS_DIGEST_LEN];
};

/*
 * Reads cert_path, key_path and (when not NULL or "") client_ca_path, and
 * checks them by building a server context: the key must match the
 * certificate, and a key file that others may read or write is refused.
 * 0, or -errno with a one-line reason naming the file in err.
 */
int tls_pair_read(struct tls_pair *p, const char *cert_path, const char *key_path,
		  const char *client_ca_path, char *err, size_t errlen);
void tls_pair_free(struct tls_pair *p);
/* Seconds until the pair's certificate expires (negative: expired). */
int64_t tls_pair_expires_in(const struct tls_pair *p);

/*
 * A server context from a pair: ALPN http/1.1, sessions resumable by ID and by
 * ticket (with ticket_key when not NULL, so that every worker takes the
 * tickets of the others). With a client CA, client certificates are requested,
 * never required: the handshake succeeds without one or with a bad one, and
 * tls_conn_peer_cert() says what it was worth. 0 or -EINVAL with a reason.
 */
int tls_server_ctx_new(struct ssl_ctx_st **out, const struct tls_pair *p,
		       const uint8_t *ticket_key, char *err, size_t errlen);
/* Takes one more reference to ctx (tls_ctx_free drops one). */
void tls_ctx_ref(struct ssl_ctx_st *ctx);
void tls_ctx_free(struct ssl_ctx_st *ctx);

/*
 * One TLS connection over two memory BIOs: ciphertext from the socket goes in
 * with tls_conn_feed, plaintext comes out of tls_conn_read; plaintext goes in
 * with tls_conn_write and the ciphertext leaves with tls_conn_flush. OpenSSL
 * never touches the socket, so libuv keeps its loop.
 */
struct tls_conn {
	struct ssl_st *ssl;
	struct bio_st *rbio; /* socket -> OpenSSL */
	struct bio_st *wbio; /* OpenSSL -> socket */
	int64_t failure; /* why the connection failed (tls_failure_text), 0 while it has not */
	bool established; /* the handshake completed */
};

/* tls_conn_read and tls_conn_handshake: the peer ended the session (close_notify). */
#define TLS_CLOSED (-1)
/* ... or the connection failed: t->failure says why. */
#define TLS_FAILED (-2)

/* A client connection to host (a DNS name or an IP literal without brackets):
 * SNI for a name, the certificate checked for that name or address. Resumes
 * session when not NULL (a copy: the caller's stays usable by others). 0,
 * -ENOMEM or -EINVAL. */
int tls_conn_client(struct tls_conn *t, struct ssl_ctx_st *ctx, const char *host,
		    void *app_data, struct ssl_session_st *session);
/* A server connection (accepting). 0 or -ENOMEM. */
int tls_conn_server(struct tls_conn *t, struct ssl_ctx_st *ctx, void *app_data);
void tls_conn_free(struct tls_conn *t);
/* Ciphertext that arrived. 0 or -ENOMEM. */
int tls_conn_feed(struct tls_conn *t, const char *data, size_t len);
/* Drives the handshake with what was fed: 1 done, 0 needs more, TLS_CLOSED or TLS_FAILED. */
int tls_conn_handshake(struct tls_conn *t);
/* Plaintext into buf: bytes (> 0), 0 when more ciphertext is needed, TLS_CLOSED or
 * TLS_FAILED. Also runs the handshake while it is not done. */
int tls_conn_read(struct tls_conn *t, char *buf, size_t cap);
/* Encrypts len bytes (the ciphertext waits for tls_conn_flush). 0 or TLS_FAILED. */
int tls_conn_write(struct tls_conn *t, const void *data, size_t len);
/* A close_notify for the peer (waits for tls_conn_flush). */
void tls_conn_shutdown(struct tls_conn *t);
/* Whether a tls_conn_read now could give more (ciphertext or plaintext is
 * waiting inside); false means it would only say "need more input", and the
 * call is spared. */
bool tls_conn_more(const struct tls_conn *t);
/* True when the session was resumed (valid once established). */
bool tls_conn_resumed(const struct tls_conn *t);

/*
 * Sends the waiting ciphertext on s: straight into the socket when it takes it
 * all and nothing is queued before it, else as a copy queued with uv_write.
 * Returns 1 when everything left at once (done is not called), 0 when a write
 * was queued (done(arg, status) runs once it is written or failed; writes stay
 * in order), or a negative libuv error.
 */
int tls_conn_flush(struct tls_conn *t, uv_stream_t *s, void (*done)(void *arg, int status),
		   void *arg);

/*
 * The client certificate of a server connection: 0 with *cert (borrowed) when
 * the client sent one that the client CA vouches for; -ENOENT when it sent
 * none; -EACCES when it did not verify (*why, when not NULL, says why).
 */
int tls_conn_peer_cert(const struct tls_conn *t, struct x509_st **cert, const char **why);

/* True when cert's subjectAltName names host: a DNS name (a wildcard covers
 * one label), an IP address, or a URI whose host part is host. The subject's
 * common name is never used. host is a name or an IP literal without brackets. */
bool tls_cert_names_host(struct x509_st *cert, const char *host);

/*
 * Failure codes (t->failure, and wherever they are stored): > 0 an X.509
 * verification result ("certificate has expired"), < 0 an OpenSSL error
 * ("wrong version number", "tlsv1 alert unknown ca"), TLS_FAILURE_EOF when the
 * peer closed the connection in the middle of the handshake.
 */
#define TLS_FAILURE_EOF INT64_MIN
const char *tls_failure_text(int64_t code);

/* Random bytes for a ticket key. 0 or -EIO. */
int tls_random(uint8_t *out, size_t len);

#endif
