/* Test harness, TLS: a throwaway PKI made at test time, and a blocking HTTPS client. */
#include "harness_tls.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

/* ---- the PKI */

static EVP_PKEY *pki_keygen(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	cr_assert_not_null(k, "EVP_EC_gen failed");
	return k;
}

static void pki_write(const char *path, X509 *x, EVP_PKEY *k)
{
	FILE *f;

	if (x != NULL) {
		f = fopen(path, "w");
		cr_assert_not_null(f, "%s", path);
		cr_assert_eq(PEM_write_X509(f, x), 1);
		fclose(f);
		return;
	}
	/* Created 0600 from the start: a key is never readable by others. */
	{
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		cr_assert_geq(fd, 0, "%s", path);
		f = fdopen(fd, "w");
		cr_assert_not_null(f);
		cr_assert_eq(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
		fclose(f);
	}
}

static void pki_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	cr_assert_not_null(e, "extension %d = %s", nid, value);
	cr_assert_eq(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* A certificate for key k, subject cn, issued by (issuer, ik) or by itself. */
static X509 *pki_cert(EVP_PKEY *k, const char *cn, X509 *issuer, EVP_PKEY *ik, long from_s,
		      long to_s, bool ca, const char *sans)
{
	X509 *x = X509_new();
	X509_NAME *name;
	unsigned char serial[16];
	BIGNUM *bn;

	cr_assert_not_null(x);
	cr_assert_eq(X509_set_version(x, 2), 1);
	cr_assert_eq(RAND_bytes(serial, sizeof(serial)), 1);
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	cr_assert_not_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	BN_free(bn);
	cr_assert_not_null(X509_gmtime_adj(X509_getm_notBefore(x), from_s));
	cr_assert_not_null(X509_gmtime_adj(X509_getm_notAfter(x), to_s));
	cr_assert_eq(X509_set_pubkey(x, k), 1);
	name = X509_get_subject_name(x);
	cr_assert_eq(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
						 -1, -1, 0),
		     1);
	cr_assert_eq(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
	if (ca) {
		pki_ext(x, issuer ? issuer : x, NID_basic_constraints, "critical,CA:TRUE");
		pki_ext(x, issuer ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		pki_ext(x, issuer ? issuer : x, NID_basic_constraints, "CA:FALSE");
		pki_ext(x, issuer ? issuer : x, NID_ext_key_usage, "serverAuth,clientAuth");
	}
	pki_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
	if (issuer != NULL)
		pki_ext(x, issuer, NID_authority_key_identifier, "keyid");
	if (sans != NULL && sans[0] != '\0')
		pki_ext(x, issuer ? issuer : x, NID_subject_alt_name, sans);
	cr_assert_gt(X509_sign(x, ik ? ik : k, EVP_sha256()), 0);
	return x;
}

static void pki_paths(const char *name, struct harness_pki *out)
{
	snprintf(out->cert, sizeof(out->cert), "%s/%s.pem", harness_tmpdir(), name);
	snprintf(out->key, sizeof(out->key), "%s/%s.key", harness_tmpdir(), name);
}

void harness_pki_ca(const char *name, const char *cn, struct harness_pki *out)
{
	EVP_PKEY *k = pki_keygen();
	X509 *x = pki_cert(k, cn, NULL, NULL, -3600, 30L * 86400, true, NULL);

	pki_paths(name, out);
	pki_write(out->cert, x, NULL);
	pki_write(out->key, NULL, k);
	X509_free(x);
	EVP_PKEY_free(k);
}

void harness_pki_issue(const struct harness_pki *ca, const char *name, const char *cn,
		       const char *sans, long from_s, long to_s, struct harness_pki *out)
{
	EVP_PKEY *k = pki_keygen(), *ik = NULL;
	X509 *issuer = NULL, *x;
	FILE *f;

	if (ca != NULL) {
		f = fopen(ca->cert, "r");
		cr_assert_not_null(f, "%s", ca->cert);
		issuer = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
		f = fopen(ca->key, "r");
		cr_assert_not_null(f, "%s", ca->key);
		ik = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		cr_assert(issuer != NULL && ik != NULL, "cannot read the CA %s", ca->cert);
	}
	x = pki_cert(k, cn, issuer, ik, from_s, to_s, false, sans);
	pki_paths(name, out);
	pki_write(out->cert, x, NULL);
	pki_write(out->key, NULL, k);
	X509_free(x);
	X509_free(issuer);
	EVP_PKEY_free(ik);
	EVP_PKEY_free(k);
}

const char *harness_pki_cn(const char *cert_path)
{
	static char cn[256];
	FILE *f = fopen(cert_path, "r");
	X509 *x;

	cn[0] = '\0';
	if (f == NULL)
		return cn;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x != NULL)
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	X509_free(x);
	return cn;
}

/* ---- the client */

struct harness_tls_conn {
	int fd;
	SSL *ssl;
	SSL_CTX *ctx;
	char buf[65536 + 8192];
	size_t have; /* bytes of the next answer read ahead */
	char why[256]; /* how the last read failed */
};

static const char *tls_err(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *s = e ? ERR_reason_error_string(e) : NULL;

	return s ? s : "connection closed";
}

/* True when a blocking SSL call failed only because a signal interrupted it (the
 * test's children exit: SIGCHLD is no failure of the gateway): call it again. */
static bool tls_again(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);

	return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && errno == EINTR;
}

/* Connects, and shakes hands as c says; NULL with info->error set on failure. */
static struct harness_tls_conn *tls_connect(int port, struct harness_tls_client *c,
					    struct harness_tls_info *info, int timeout_ms)
{
	struct harness_tls_conn *k = calloc(1, sizeof(*k));
	struct sockaddr_in sa;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	const unsigned char *alpn;
	unsigned int alen;
	int one = 1, n;
	long v;

	cr_assert_not_null(k);
	memset(info, 0, sizeof(*info));
	ERR_clear_error();
	k->ctx = SSL_CTX_new(TLS_client_method());
	cr_assert_not_null(k->ctx);
	SSL_CTX_set_min_proto_version(k->ctx, TLS1_2_VERSION);
	if (c->ca != NULL) {
		cr_assert_eq(SSL_CTX_load_verify_locations(k->ctx, c->ca, NULL), 1, "%s", c->ca);
		SSL_CTX_set_verify(k->ctx, SSL_VERIFY_PEER, NULL);
	}
	if (c->cert != NULL) {
		cr_assert_eq(SSL_CTX_use_certificate_chain_file(k->ctx, c->cert), 1, "%s", c->cert);
		cr_assert_eq(SSL_CTX_use_PrivateKey_file(k->ctx, c->key, SSL_FILETYPE_PEM), 1,
			     "%s", c->key);
	}
	SSL_CTX_set_alpn_protos(k->ctx,
				(const unsigned char *)(c->alpn ? c->alpn : "\x08http/1.1"),
				(unsigned)strlen(c->alpn ? c->alpn : "\x08http/1.1"));
	k->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(k->fd, 0);
	setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* A blocking call that a signal interrupts (the test's children exit) is
	 * tried again: SIGCHLD is no failure of the gateway. */
	if (connect(k->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINTR) {
		snprintf(info->error, sizeof(info->error), "connect: %s", strerror(errno));
		goto fail;
	}
	k->ssl = SSL_new(k->ctx);
	cr_assert_not_null(k->ssl);
	SSL_set_fd(k->ssl, k->fd);
	if (c->host != NULL) {
		SSL_set_tlsext_host_name(k->ssl, c->host);
		SSL_set1_host(k->ssl, c->host);
	} else {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), "127.0.0.1");
	}
	if (c->resume && c->session != NULL) {
		SSL_SESSION *copy = SSL_SESSION_dup(c->session);

		SSL_set_session(k->ssl, copy);
		SSL_SESSION_free(copy);
	}
	do
		n = SSL_connect(k->ssl);
	while (n != 1 && tls_again(k->ssl, n));
	if (n != 1) {
		v = SSL_get_verify_result(k->ssl);
		snprintf(info->error, sizeof(info->error), "%s",
			 v != X509_V_OK ? X509_verify_cert_error_string(v) : tls_err());
		goto fail;
	}
	info->resumed = SSL_session_reused(k->ssl) == 1;
	SSL_get0_alpn_selected(k->ssl, &alpn, &alen);
	if (alpn != NULL && alen < sizeof(info->alpn)) {
		memcpy(info->alpn, alpn, alen);
		info->alpn[alen] = '\0';
	}
	{
		X509 *peer = SSL_get1_peer_certificate(k->ssl);

		if (peer != NULL)
			X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
						  info->peer_cn, sizeof(info->peer_cn));
		X509_free(peer);
	}
	ERR_clear_error();
	return k;
fail:
	ERR_clear_error();
	SSL_free(k->ssl);
	SSL_CTX_free(k->ctx);
	close(k->fd);
	free(k);
	return NULL;
}

static void tls_free(struct harness_tls_conn *k)
{
	/* Freed without a shutdown, OpenSSL would mark the session (the one kept
	 * for the next connection) not resumable. */
	if (k->ssl != NULL)
		SSL_set_shutdown(k->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(k->ssl);
	SSL_CTX_free(k->ctx);
	close(k->fd);
	free(k);
}

/* Bytes of a complete answer at the start of buf (head and Content-Length body), else 0. */
static size_t tls_answer_len(const char *buf, size_t n)
{
	const char *end = memmem(buf, n, "\r\n\r\n", 4), *p;
	size_t hl, cl = 0;

	if (end == NULL)
		return 0;
	hl = (size_t)(end - buf) + 4;
	for (p = buf; p < end; p++) {
		if ((p == buf || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0) {
			cl = strtoul(p + 15, NULL, 10);
			break;
		}
	}
	return n >= hl + cl ? hl + cl : 0;
}

static void tls_fill_resp(const char *buf, size_t n, struct harness_resp *r)
{
	const char *end = memmem(buf, n, "\r\n\r\n", 4);
	size_t hl = end ? (size_t)(end - buf) + 4 : n;

	memset(r, 0, sizeof(*r));
	if (hl >= sizeof(r->head))
		hl = sizeof(r->head) - 1;
	memcpy(r->head, buf, hl);
	r->head[hl] = '\0';
	sscanf(r->head, "HTTP/1.%*d %d", &r->status);
	r->body_len = n - hl < sizeof(r->body) - 1 ? n - hl : sizeof(r->body) - 1;
	memcpy(r->body, buf + hl, r->body_len);
	r->body[r->body_len] = '\0';
}

/* Reads one answer; the bytes after it stay in k->buf for the next. */
static int tls_read_answer(struct harness_tls_conn *k, struct harness_resp *r)
{
	size_t len;

	while ((len = tls_answer_len(k->buf, k->have)) == 0) {
		int n;

		if (k->have >= sizeof(k->buf) - 1)
			return -EMSGSIZE;
		do
			n = SSL_read(k->ssl, k->buf + k->have, (int)(sizeof(k->buf) - 1 - k->have));
		while (n <= 0 && tls_again(k->ssl, n));
		if (n <= 0) {
			int e = SSL_get_error(k->ssl, n);

			snprintf(k->why, sizeof(k->why), "SSL_read: error %d, errno %d (%s), %s", e,
				 errno, strerror(errno), tls_err());
			ERR_clear_error();
			/* An answer without Content-Length ends with the connection. */
			if (k->have > 0 && (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)) {
				tls_fill_resp(k->buf, k->have, r);
				k->have = 0;
				return 0;
			}
			return e == SSL_ERROR_ZERO_RETURN ? -ECONNRESET : -EIO;
		}
		k->have += (size_t)n;
	}
	tls_fill_resp(k->buf, len, r);
	memmove(k->buf, k->buf + len, k->have - len);
	k->have -= len;
	return 0;
}

static int tls_write_all(struct harness_tls_conn *k, const char *raw, size_t len)
{
	while (len > 0) {
		int n;

		do
			n = SSL_write(k->ssl, raw, (int)len);
		while (n <= 0 && tls_again(k->ssl, n));

		if (n <= 0) {
			ERR_clear_error();
			return -EIO;
		}
		raw += n;
		len -= (size_t)n;
	}
	return 0;
}

int harness_tls_raw(int port, struct harness_tls_client *c, const char *raw, size_t len,
		    struct harness_resp *r, struct harness_tls_info *info, int timeout_ms)
{
	struct harness_tls_info scratch;
	struct harness_tls_conn *k;
	int rc;

	memset(r, 0, sizeof(*r));
	if (info == NULL)
		info = &scratch;
	k = tls_connect(port, c, info, timeout_ms);
	if (k == NULL)
		return -EPROTO;
	rc = tls_write_all(k, raw, len);
	if (rc == 0)
		rc = tls_read_answer(k, r);
	if (rc != 0 && k->why[0] != '\0')
		snprintf(info->error, sizeof(info->error), "%s", k->why);
	/* A TLS 1.3 session arrives after the handshake: it is there by now. */
	if (rc == 0 && c->resume) {
		SSL_SESSION *s = SSL_get0_session(k->ssl);

		if (s != NULL && SSL_SESSION_is_resumable(s)) {
			SSL_SESSION_free(c->session);
			c->session = SSL_SESSION_dup(s);
		}
	}
	tls_free(k);
	return rc;
}

int harness_tls_get(int port, struct harness_tls_client *c, const char *path,
		    const char *headers, struct harness_resp *r, struct harness_tls_info *info)
{
	char req[16384];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n", path,
			 headers ? headers : "");

	return harness_tls_raw(port, c, req, (size_t)n, r, info, 10000);
}

int harness_tls_post(int port, struct harness_tls_client *c, const char *path,
		     const char *headers, const char *body, struct harness_resp *r,
		     struct harness_tls_info *info)
{
	size_t bl = strlen(body);
	char *req = malloc(bl + 16384);
	int n, rc;

	cr_assert_not_null(req);
	n = snprintf(req, 16384,
		     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		     path, headers ? headers : "", bl);
	memcpy(req + n, body, bl);
	rc = harness_tls_raw(port, c, req, (size_t)n + bl, r, info, 10000);
	free(req);
	return rc;
}

void harness_tls_client_reset(struct harness_tls_client *c)
{
	SSL_SESSION_free(c->session);
	c->session = NULL;
}

struct harness_tls_conn *harness_tls_open(int port, struct harness_tls_client *c,
					  struct harness_tls_info *info)
{
	struct harness_tls_info scratch;

	return tls_connect(port, c, info ? info : &scratch, 10000);
}

int harness_tls_conn_get(struct harness_tls_conn *k, const char *path, struct harness_resp *r)
{
	char req[1024];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
	int rc = tls_write_all(k, req, (size_t)n);

	memset(r, 0, sizeof(*r));
	if (rc == 0)
		rc = tls_read_answer(k, r);
	if (rc == 0 && strcasestr(r->head, "Connection: close") != NULL)
		rc = -ECONNRESET;
	return rc;
}

int harness_tls_conn_send(struct harness_tls_conn *k, const char *raw, size_t len)
{
	return tls_write_all(k, raw, len);
}

int harness_tls_conn_read(struct harness_tls_conn *k, struct harness_resp *r)
{
	memset(r, 0, sizeof(*r));
	return tls_read_answer(k, r);
}

void harness_tls_close(struct harness_tls_conn *k)
{
	if (k != NULL)
		tls_free(k);
}

struct harness_proc *harness_tls_gateway_up(const char *key_b64, const char *const *env,
					    int workers, const char *toml, const char *ca)
{
	static int seq;
	const char *envp[16], *args[8];
	char key_env[512], nw[16], name[32];
	struct harness_tls_client c = { .ca = ca };
	struct harness_proc *p = NULL;
	int64_t deadline;
	int n = 0, a = 0;

	if (key_b64 != NULL) {
		snprintf(key_env, sizeof(key_env), "SFU_GATEWAY_KEY=%s", key_b64);
		envp[n++] = key_env;
	}
	for (int i = 0; env != NULL && env[i] != NULL && n < 15; i++)
		envp[n++] = env[i];
	envp[n] = NULL;
	snprintf(nw, sizeof(nw), "%d", workers);
	snprintf(name, sizeof(name), "tls-gateway%d.toml", seq++);
	args[a++] = "--workers";
	args[a++] = nw;
	args[a++] = "--config";
	args[a++] = harness_write_file(name, toml);
	args[a] = NULL;
	/* Started without waiting (its plain /noop would never answer), then polled over TLS. */
	cr_assert_eq(harness_gateway_run(envp, args, 0, &p), -1, "the gateway exited at once: %s",
		     harness_all_logs());
	cr_assert_not_null(p);
	deadline = harness_now_ms() + 10000;
	while (harness_now_ms() < deadline) {
		struct harness_resp *r = calloc(1, sizeof(*r));
		int rc, status;

		cr_assert_not_null(r);
		rc = harness_tls_get(p->port, &c, "/noop", NULL, r, NULL);
		status = r->status;
		free(r);
		if (rc == 0 && status == 200)
			return p;
		cr_assert_neq(waitpid(p->pid, NULL, WNOHANG), p->pid, "the gateway exited: %s",
			      harness_all_logs());
		poll(NULL, 0, 20);
	}
	cr_assert_fail("the HTTPS gateway did not answer /noop: %s", harness_all_logs());
	return NULL;
}
