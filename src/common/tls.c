/* TLS: OpenSSL contexts and connections over memory BIOs for libuv streams, and failures in words. */
#include "tls.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
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
#include <sys/stat.h>
#include <unistd.h>

/* The only application protocol spoken: ALPN's wire form of "http/1.1". */
static const unsigned char tls_alpn[] = "\x08http/1.1";
#define TLS_ALPN_LEN (sizeof(tls_alpn) - 1)
/* Ties server sessions to this program: OpenSSL refuses to resume a session
 * with a client certificate without one. */
static const unsigned char tls_sid_ctx[] = "sfu-gateway";

/* Sets err from a reason and, when OpenSSL queued one, its error; clears the queue. */
static int tls_fail(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;

	if (errlen > 0) {
		if (why != NULL)
			snprintf(err, errlen, "%s: %s", what, why);
		else
			snprintf(err, errlen, "%s", what);
	}
	ERR_clear_error();
	return -EINVAL;
}

/* Settings every context shares. */
static int tls_ctx_common(SSL_CTX *ctx)
{
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		return -EINVAL;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* SSL_write takes what it is given at once (memory BIOs never block), and
	 * callers keep no buffer between calls. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return 0;
}

static bool tls_set(const char *s)
{
	return s != NULL && s[0] != '\0';
}

/*
 * The system's CAs, looked up in their hashed directory (/etc/ssl/certs on
 * Debian) when a certificate is verified, one file per issuer. Loading the
 * bundle instead (SSL_CTX_set_default_verify_paths) parses all of its 140
 * certificates into every context: about 230 million instructions with
 * OpenSSL 3.0, a tenth of a second of every worker's start. SSL_CERT_DIR and
 * SSL_CERT_FILE are honoured as OpenSSL's defaults honour them.
 */
static int tls_system_store(SSL_CTX *ctx, char *err, size_t errlen)
{
	const char *dir = getenv(X509_get_default_cert_dir_env());
	const char *file = getenv(X509_get_default_cert_file_env());
	char what[TLS_PATH_MAX + 64];

	if (dir == NULL || dir[0] == '\0')
		dir = X509_get_default_cert_dir();
	if (SSL_CTX_load_verify_dir(ctx, dir) != 1) {
		snprintf(what, sizeof(what), "the system CA directory %s cannot be used", dir);
		return tls_fail(err, errlen, what);
	}
	if (file != NULL && file[0] != '\0' && SSL_CTX_load_verify_file(ctx, file) != 1) {
		snprintf(what, sizeof(what), "the system CA file %s (SSL_CERT_FILE) cannot be loaded",
			 file);
		return tls_fail(err, errlen, what);
	}
	return 0;
}

int tls_client_ctx_new(SSL_CTX **out, const struct tls_client_opts *o, char *err, size_t errlen)
{
	SSL_CTX *ctx;
	char what[TLS_PATH_MAX + 64];

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL || tls_ctx_common(ctx) != 0) {
		SSL_CTX_free(ctx);
		return tls_fail(err, errlen, "SSL_CTX_new() failed");
	}
	if (o->verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		if (tls_set(o->ca_path)) {
			DIR *d = opendir(o->ca_path);

			if (d == NULL) {
				snprintf(what, sizeof(what), "CA directory %s: %s", o->ca_path,
					 strerror(errno));
				SSL_CTX_free(ctx);
				return tls_fail(err, errlen, what);
			}
			closedir(d);
		}
		if (tls_set(o->ca_file) && access(o->ca_file, R_OK) != 0) {
			snprintf(what, sizeof(what), "CA file %s: %s", o->ca_file, strerror(errno));
			SSL_CTX_free(ctx);
			ERR_clear_error();
			return tls_fail(err, errlen, what);
		}
		if (tls_set(o->ca_file) || tls_set(o->ca_path)) {
			if (SSL_CTX_load_verify_locations(ctx, tls_set(o->ca_file) ? o->ca_file : NULL,
							  tls_set(o->ca_path) ? o->ca_path
									      : NULL) != 1) {
				snprintf(what, sizeof(what), "CA file %s: no PEM certificate in it",
					 tls_set(o->ca_file) ? o->ca_file : o->ca_path);
				SSL_CTX_free(ctx);
				return tls_fail(err, errlen, what);
			}
		} else if (tls_system_store(ctx, err, errlen) != 0) {
			SSL_CTX_free(ctx);
			return -EINVAL;
		}
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (tls_set(o->cert_file) || tls_set(o->key_file)) {
		if (!tls_set(o->cert_file) || !tls_set(o->key_file)) {
			SSL_CTX_free(ctx);
			return tls_fail(err, errlen, "a client certificate needs its key, and a key "
						     "its certificate");
		}
		struct stat st;

		if (stat(o->key_file, &st) != 0 || access(o->cert_file, R_OK) != 0) {
			snprintf(what, sizeof(what), "%s: %s",
				 access(o->cert_file, R_OK) != 0 ? o->cert_file : o->key_file,
				 strerror(errno));
			SSL_CTX_free(ctx);
			ERR_clear_error();
			return tls_fail(err, errlen, what);
		}
		if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
			snprintf(what, sizeof(what),
				 "private key file %s is readable or writable by others (mode %04o): "
				 "refused; chmod o-rwx it",
				 o->key_file, (unsigned)(st.st_mode & 07777));
			SSL_CTX_free(ctx);
			return tls_fail(err, errlen, what);
		}
		if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
			snprintf(what, sizeof(what), "certificate file %s", o->cert_file);
			SSL_CTX_free(ctx);
			return tls_fail(err, errlen, what);
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1) {
			snprintf(what, sizeof(what), "private key file %s", o->key_file);
			SSL_CTX_free(ctx);
			return tls_fail(err, errlen, what);
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			snprintf(what, sizeof(what), "private key file %s does not match certificate %s",
				 o->key_file, o->cert_file);
			SSL_CTX_free(ctx);
			return tls_fail(err, errlen, what);
		}
	}
	/* Sessions are the caller's (one per SFU): OpenSSL hands each new one to
	 * the new-session callback and keeps none itself. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	if (SSL_CTX_set_alpn_protos(ctx, tls_alpn, TLS_ALPN_LEN) != 0) {
		SSL_CTX_free(ctx);
		return tls_fail(err, errlen, "SSL_CTX_set_alpn_protos() failed");
	}
	*out = ctx;
	return 0;
}

/* ---- the listener's pair */

/* Reads a whole file (at most TLS_FILE_MAX bytes); a key must not be readable
 * or writable by others. 0 or -errno with err set. */
static int tls_read_file(const char *what, const char *path, bool secret, char **out,
			 size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s %s: not a regular file", what, path);
		goto out;
	}
	if (secret && (st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
		rc = -EPERM;
		snprintf(err, errlen,
			 "%s %s is readable or writable by others (mode %04o): refused; "
			 "chmod o-rwx it",
			 what, path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if (st.st_size > TLS_FILE_MAX) {
		rc = -EFBIG;
		snprintf(err, errlen, "%s %s: larger than %d bytes", what, path, TLS_FILE_MAX);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s %s: out of memory", what, path);
		goto out;
	}
	while (n < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
out:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, (size_t)st.st_size + 1);
		free(buf);
	}
	close(fd);
	return rc;
}

/* SHA-256 over the three files, each preceded by its length so that bytes
 * cannot move from one to the next unnoticed. */
static int tls_pair_digest(struct tls_pair *p)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	const char *parts[3] = { p->cert, p->key, p->client_ca };
	size_t lens[3] = { p->cert_len, p->key_len, p->client_ca_len };
	unsigned int n = 0;
	int ok;

	ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	for (int i = 0; ok && i < 3; i++) {
		uint64_t l = lens[i];

		ok = EVP_DigestUpdate(md, &l, sizeof(l)) == 1 &&
		     (l == 0 || EVP_DigestUpdate(md, parts[i], lens[i]) == 1);
	}
	ok = ok && EVP_DigestFinal_ex(md, p->digest, &n) == 1 && n == TLS_DIGEST_LEN;
	EVP_MD_CTX_free(md);
	return ok ? 0 : -EIO;
}

void tls_pair_free(struct tls_pair *p)
{
	if (p == NULL)
		return;
	if (p->key != NULL)
		OPENSSL_cleanse(p->key, p->key_len);
	free(p->cert);
	free(p->key);
	free(p->client_ca);
	memset(p, 0, sizeof(*p));
}

int tls_pair_read(struct tls_pair *p, const char *cert_path, const char *key_path,
		  const char *client_ca_path, char *err, size_t errlen)
{
	struct tls_pair n;
	SSL_CTX *ctx = NULL;
	int rc;

	memset(&n, 0, sizeof(n));
	rc = tls_read_file("certificate", cert_path, false, &n.cert, &n.cert_len, err, errlen);
	if (rc == 0)
		rc = tls_read_file("private key", key_path, true, &n.key, &n.key_len, err, errlen);
	if (rc == 0 && tls_set(client_ca_path))
		rc = tls_read_file("client CA", client_ca_path, false, &n.client_ca,
				   &n.client_ca_len, err, errlen);
	if (rc == 0)
		rc = tls_server_ctx_new(&ctx, &n, NULL, err, errlen);
	if (rc == 0 && tls_pair_digest(&n) != 0) {
		snprintf(err, errlen, "SHA-256 failed in OpenSSL");
		rc = -EIO;
	}
	tls_ctx_free(ctx);
	if (rc != 0) {
		tls_pair_free(&n);
		return rc;
	}
	*p = n;
	return 0;
}

int64_t tls_pair_expires_in(const struct tls_pair *p)
{
	BIO *b = BIO_new_mem_buf(p->cert, (int)p->cert_len);
	X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	int days = 0, secs = 0;
	int64_t left = INT64_MAX;

	if (x != NULL && ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1)
		left = (int64_t)days * 86400 + secs;
	X509_free(x);
	BIO_free(b);
	ERR_clear_error();
	return left;
}

/* Keys are never prompted for (a daemon has no terminal): an encrypted one fails. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* The client certificate is judged later, per route (tls_conn_peer_cert): the
 * handshake goes on whatever it is, so routes that need none keep working. */
static int tls_accept_any(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

/* Picks http/1.1 when the client offers it; a client offering only other
 * protocols (h2 alone) gets the no_application_protocol alert. */
static int tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			   const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned char *sel = NULL;

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto(&sel, outlen, tls_alpn, TLS_ALPN_LEN, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* Loads the chain from PEM: the first certificate is the server's, the others its chain. */
static int tls_use_chain(SSL_CTX *ctx, const struct tls_pair *p, char *err, size_t errlen)
{
	BIO *b = BIO_new_mem_buf(p->cert, (int)p->cert_len);
	X509 *x;
	int rc = 0;

	if (b == NULL)
		return tls_fail(err, errlen, "out of memory");
	x = PEM_read_bio_X509_AUX(b, NULL, tls_no_passphrase, NULL);
	if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1) {
		X509_free(x);
		BIO_free(b);
		return tls_fail(err, errlen, "certificate: no PEM certificate in the file");
	}
	X509_free(x);
	while ((x = PEM_read_bio_X509(b, NULL, tls_no_passphrase, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
			X509_free(x);
			rc = tls_fail(err, errlen, "certificate: its chain cannot be used");
			break;
		}
	}
	/* Reading stops at the end of the file with a "no start line" error. */
	if (rc == 0)
		ERR_clear_error();
	BIO_free(b);
	return rc;
}

static int tls_use_key(SSL_CTX *ctx, const struct tls_pair *p, char *err, size_t errlen)
{
	BIO *b = BIO_new_mem_buf(p->key, (int)p->key_len);
	EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, tls_no_passphrase, NULL) : NULL;
	int rc = 0;

	if (k == NULL)
		rc = tls_fail(err, errlen,
			      "private key: no unencrypted PEM private key in the file");
	else if (SSL_CTX_use_PrivateKey(ctx, k) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		rc = tls_fail(err, errlen, "private key: it does not match the certificate");
	EVP_PKEY_free(k);
	BIO_free(b);
	return rc;
}

/* Trusts the client CA's certificates and asks clients for one they issued. */
static int tls_use_client_ca(SSL_CTX *ctx, const struct tls_pair *p, char *err, size_t errlen)
{
	BIO *b = BIO_new_mem_buf(p->client_ca, (int)p->client_ca_len);
	X509_STORE *st = SSL_CTX_get_cert_store(ctx);
	X509 *x;
	int n = 0;

	if (b == NULL)
		return tls_fail(err, errlen, "out of memory");
	while ((x = PEM_read_bio_X509(b, NULL, tls_no_passphrase, NULL)) != NULL) {
		if (X509_STORE_add_cert(st, x) != 1 || SSL_CTX_add_client_CA(ctx, x) != 1) {
			X509_free(x);
			BIO_free(b);
			return tls_fail(err, errlen, "client CA: a certificate cannot be used");
		}
		X509_free(x);
		n++;
	}
	ERR_clear_error();
	BIO_free(b);
	if (n == 0)
		return tls_fail(err, errlen, "client CA: no PEM certificate in the file");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_accept_any);
	return 0;
}

int tls_server_ctx_new(SSL_CTX **out, const struct tls_pair *p, const uint8_t *ticket_key,
		       char *err, size_t errlen)
{
	SSL_CTX *ctx;
	int rc;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL || tls_ctx_common(ctx) != 0) {
		SSL_CTX_free(ctx);
		return tls_fail(err, errlen, "SSL_CTX_new() failed");
	}
	rc = tls_use_chain(ctx, p, err, errlen);
	if (rc == 0)
		rc = tls_use_key(ctx, p, err, errlen);
	if (rc == 0 && p->client_ca != NULL)
		rc = tls_use_client_ca(ctx, p, err, errlen);
	if (rc == 0 &&
	    SSL_CTX_set_session_id_context(ctx, tls_sid_ctx, sizeof(tls_sid_ctx) - 1) != 1)
		rc = tls_fail(err, errlen, "SSL_CTX_set_session_id_context() failed");
	if (rc == 0 && ticket_key != NULL &&
	    SSL_CTX_set_tlsext_ticket_keys(ctx, (void *)ticket_key, TLS_TICKET_KEY_LEN) != 1)
		rc = tls_fail(err, errlen, "SSL_CTX_set_tlsext_ticket_keys() failed");
	if (rc != 0) {
		SSL_CTX_free(ctx);
		return rc;
	}
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select, NULL);
	/* An idle client connection gives its record buffers back (about 34 KB,
	 * as nginx does): thousands of kept-alive clients would otherwise hold
	 * them all. It costs about 1,800 instructions a request (a malloc and a
	 * free per record buffer), so pooled connections to SFUs, few and busy,
	 * keep theirs. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	*out = ctx;
	return 0;
}

void tls_ctx_ref(SSL_CTX *ctx)
{
	SSL_CTX_up_ref(ctx);
}

void tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

/* ---- connections */

/*
 * SSL_get_error reads the thread's error queue, which must be empty before
 * the call it judges. Emptying it is not free in OpenSSL 3.0 (about 800
 * instructions, three times a request), so it is done only when something
 * is in it: failures empty it as they are reported (tls_conn_failed).
 */
static void tls_errors_clear(void)
{
	if (ERR_peek_error() != 0)
		ERR_clear_error();
}

static int tls_conn_new(struct tls_conn *t, SSL_CTX *ctx, void *app_data)
{
	memset(t, 0, sizeof(*t));
	t->ssl = SSL_new(ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
		SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		memset(t, 0, sizeof(*t));
		ERR_clear_error();
		return -ENOMEM;
	}
	/* An empty input BIO means "wait for more", not the end of the stream. */
	BIO_set_mem_eof_return(t->rbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	SSL_set_app_data(t->ssl, app_data);
	return 0;
}

int tls_conn_client(struct tls_conn *t, SSL_CTX *ctx, const char *host, void *app_data,
		    SSL_SESSION *session)
{
	unsigned char ip[16];
	bool numeric = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
	int rc = tls_conn_new(t, ctx, app_data);

	if (rc != 0)
		return rc;
	SSL_set_connect_state(t->ssl);
	SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	/* SNI carries names only, never addresses. */
	if (numeric)
		rc = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1 ? 0 : -EINVAL;
	else
		rc = SSL_set_tlsext_host_name(t->ssl, host) == 1 && SSL_set1_host(t->ssl, host) == 1
			     ? 0
			     : -EINVAL;
	/* A copy of its own: OpenSSL changes the session of a connection that
	 * resumes it, which would spoil it for others resuming it at once. */
	if (rc == 0 && session != NULL) {
		SSL_SESSION *copy = SSL_SESSION_dup(session);

		if (copy == NULL || SSL_set_session(t->ssl, copy) != 1)
			rc = -EINVAL;
		SSL_SESSION_free(copy);
	}
	if (rc != 0) {
		ERR_clear_error();
		tls_conn_free(t);
	}
	return rc;
}

int tls_conn_server(struct tls_conn *t, SSL_CTX *ctx, void *app_data)
{
	int rc = tls_conn_new(t, ctx, app_data);

	if (rc == 0)
		SSL_set_accept_state(t->ssl);
	return rc;
}

void tls_conn_free(struct tls_conn *t)
{
	/* OpenSSL takes a connection freed without a shutdown for a broken one
	 * and marks its session not resumable, and that session object is the
	 * one a pool hands to its next connections: a connection that merely
	 * ended (EOF, idle, the end of a request) says it shut down. One that
	 * failed does not, and a fatal alert already spoiled its session. */
	if (t->ssl != NULL && t->established && t->failure == 0)
		SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	/* The BIOs belong to the SSL since SSL_set_bio. */
	SSL_free(t->ssl);
	t->ssl = NULL;
	t->rbio = t->wbio = NULL;
}

int tls_conn_feed(struct tls_conn *t, const char *data, size_t len)
{
	while (len > 0) {
		int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
		int n = BIO_write(t->rbio, data, chunk);

		if (n <= 0) {
			ERR_clear_error();
			return -ENOMEM;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Why the last call failed, kept in t->failure: the certificate's verdict
 * when it was refused, else OpenSSL's error. */
static int tls_conn_failed(struct tls_conn *t, int ssl_err)
{
	long v = SSL_get_verify_result(t->ssl);
	unsigned long e = ERR_peek_last_error();

	if (ssl_err == SSL_ERROR_ZERO_RETURN) {
		ERR_clear_error();
		return TLS_CLOSED;
	}
	if (!t->established && v != X509_V_OK)
		t->failure = v;
	else if (e != 0)
		t->failure = -(int64_t)e;
	else
		t->failure = TLS_FAILURE_EOF;
	ERR_clear_error();
	return TLS_FAILED;
}

int tls_conn_handshake(struct tls_conn *t)
{
	int r;

	if (t->established)
		return 1;
	tls_errors_clear();
	r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->established = true;
		return 1;
	}
	r = SSL_get_error(t->ssl, r);
	if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
		return 0;
	return tls_conn_failed(t, r);
}

int tls_conn_read(struct tls_conn *t, char *buf, size_t cap)
{
	int r;

	tls_errors_clear();
	r = SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
	if (r > 0) {
		t->established = true;
		return r;
	}
	r = SSL_get_error(t->ssl, r);
	if (!t->established && SSL_is_init_finished(t->ssl))
		t->established = true;
	if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
		return 0;
	return tls_conn_failed(t, r);
}

int tls_conn_write(struct tls_conn *t, const void *data, size_t len)
{
	const char *p = data;

	tls_errors_clear();
	while (len > 0) {
		int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
		int n = SSL_write(t->ssl, p, chunk);

		if (n <= 0)
			return tls_conn_failed(t, SSL_get_error(t->ssl, n));
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void tls_conn_shutdown(struct tls_conn *t)
{
	if (t->ssl == NULL || !t->established)
		return;
	ERR_clear_error();
	(void)SSL_shutdown(t->ssl);
	ERR_clear_error();
}

bool tls_conn_more(const struct tls_conn *t)
{
	return BIO_ctrl_pending(t->rbio) > 0 || SSL_has_pending(t->ssl) == 1;
}

bool tls_conn_resumed(const struct tls_conn *t)
{
	return SSL_session_reused(t->ssl) == 1;
}

/* A queued copy of ciphertext that did not fit the socket at once. */
struct tls_write {
	uv_write_t req;
	void (*done)(void *arg, int status);
	void *arg;
	char data[];
};

static void tls_on_written(uv_write_t *w, int status)
{
	struct tls_write *tw = (struct tls_write *)w;

	if (tw->done != NULL)
		tw->done(tw->arg, status);
	free(tw);
}

int tls_conn_flush(struct tls_conn *t, uv_stream_t *s, void (*done)(void *arg, int status),
		   void *arg)
{
	char *p;
	long n = BIO_get_mem_data(t->wbio, &p);
	struct tls_write *tw;
	uv_buf_t b;
	int w = 0, rc;

	if (n <= 0)
		return 1;
	b = uv_buf_init(p, (unsigned)n);
	/* Writes already queued go first: uv_try_write would say EAGAIN anyway. */
	if (uv_stream_get_write_queue_size(s) == 0) {
		w = uv_try_write(s, &b, 1);
		if (w == UV_EAGAIN)
			w = 0;
		if (w < 0) {
			(void)BIO_reset(t->wbio);
			return w;
		}
		if (w == n) {
			(void)BIO_reset(t->wbio);
			return 1;
		}
	}
	tw = malloc(sizeof(*tw) + (size_t)(n - w));
	if (tw == NULL) {
		(void)BIO_reset(t->wbio);
		return UV_ENOMEM;
	}
	memcpy(tw->data, p + w, (size_t)(n - w));
	(void)BIO_reset(t->wbio);
	tw->done = done;
	tw->arg = arg;
	b = uv_buf_init(tw->data, (unsigned)(n - w));
	rc = uv_write(&tw->req, s, &b, 1, tls_on_written);
	if (rc != 0) {
		free(tw);
		return rc;
	}
	return 0;
}

int tls_conn_peer_cert(const struct tls_conn *t, X509 **cert, const char **why)
{
	X509 *x = SSL_get0_peer_certificate(t->ssl);
	long v;

	if (x == NULL)
		return -ENOENT;
	v = SSL_get_verify_result(t->ssl);
	if (v != X509_V_OK) {
		if (why != NULL)
			*why = X509_verify_cert_error_string(v);
		return -EACCES;
	}
	*cert = x;
	return 0;
}

/* The host of a URI "scheme://[userinfo@]host[:port][/...]", brackets removed. */
static bool tls_uri_host_is(const char *uri, size_t len, const char *host)
{
	const char *p = memchr(uri, ':', len), *end = uri + len, *h, *he;
	const char *at;
	size_t hl = strlen(host);

	if (p == NULL || end - p < 3 || p[1] != '/' || p[2] != '/')
		return false;
	h = p + 3;
	he = h;
	while (he < end && *he != '/' && *he != '?' && *he != '#')
		he++;
	at = memchr(h, '@', (size_t)(he - h));
	if (at != NULL)
		h = at + 1;
	if (h < he && *h == '[') {
		const char *rb = memchr(h, ']', (size_t)(he - h));

		if (rb == NULL)
			return false;
		h++;
		he = rb;
	} else {
		const char *colon = memchr(h, ':', (size_t)(he - h));

		if (colon != NULL)
			he = colon;
	}
	return (size_t)(he - h) == hl && strncasecmp(h, host, hl) == 0;
}

bool tls_cert_names_host(X509 *cert, const char *host)
{
	unsigned char ip[16];
	GENERAL_NAMES *names;
	bool found = false;

	if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)
		found = X509_check_ip_asc(cert, host, 0) == 1;
	else
		found = X509_check_host(cert, host, 0,
					X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
						X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
					NULL) == 1;
	if (found)
		return true;
	names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && !found; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);

		if (g->type == GEN_URI)
			found = tls_uri_host_is((const char *)ASN1_STRING_get0_data(g->d.ia5),
						(size_t)ASN1_STRING_length(g->d.ia5), host);
	}
	GENERAL_NAMES_free(names);
	ERR_clear_error();
	return found;
}

const char *tls_failure_text(int64_t code)
{
	const char *s;

	if (code == 0)
		return NULL;
	/* The texts are OpenSSL's, loaded with its first context; a process may
	 * render a verdict another one recorded before it made any. */
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
	if (code == TLS_FAILURE_EOF)
		return "connection closed during the TLS handshake";
	if (code > 0)
		return X509_verify_cert_error_string((long)code);
	s = ERR_reason_error_string((unsigned long)-code);
	return s != NULL ? s : "TLS handshake failed";
}

int tls_random(uint8_t *out, size_t len)
{
	return RAND_bytes(out, (int)len) == 1 ? 0 : -EIO;
}
