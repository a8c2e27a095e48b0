/*
 * tls.c - OpenSSL contexts of the proxy: a listener's certificates (the
 * default one and those chosen by SNI), the client context towards the
 * upstream, and the facts of a handshake for logs and filters.
 *
 * Server contexts allow TLS 1.2 and later, no compression, no
 * renegotiation. A listener's struct tls_server is rebuilt from the files
 * at every configuration apply, so SIGHUP picks up renewed certificates;
 * sessions hold a reference to the one they started with.
 *
 * Owns: the SSL_CTX objects it creates (one reference each). Errors are
 * returned as text naming the file; nothing here logs.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_server {
	int refs;
	SSL_CTX *ctx;		/* tls_cert_file, the default */
	SSL_CTX **sni;		/* tls_sni_chain_files, by the names they carry */
	size_t nsni;
	char fingerprint[100];
};

/* OpenSSL's reason for the first queued error; the queue is cleared. */
static const char *ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	if (r)
		snprintf(buf, len, "%s", r);
	else if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "unknown error");
	ERR_clear_error();
	return buf;
}

/* A client certificate is asked for, never checked: its subject is a
 * fact for the log and filters, not an authentication. */
static int accept_any_cert(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

static SSL_CTX *server_ctx(const struct moat_listener_conf *lc, const char *cert, const char *key,
			   char *err, size_t errlen)
{
	char why[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	ERR_clear_error();
	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context: %s", ssl_reason(why, sizeof(why)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
			    SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_dh_auto(ctx, 1);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"moat", 4);
	if (lc->tls_ask_ccert)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_cert);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "%s: cannot read the certificate chain: %s", cert,
			 ssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "%s: cannot read the private key: %s", key,
			 ssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "%s: the private key does not match the certificate in %s: %s",
			 key, cert, ssl_reason(why, sizeof(why)));
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* SNI: the first extra certificate that names what the client asked
 * for; otherwise the default stays. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_server *ts = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	(void)alert;
	if (!name)
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 0; i < ts->nsni; i++) {
		X509 *cert = SSL_CTX_get0_certificate(ts->sni[i]);
		if (cert && X509_check_host(cert, name, strlen(name), 0, NULL) == 1) {
			SSL_set_SSL_CTX(ssl, ts->sni[i]);
			break;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

static void set_fingerprint(struct tls_server *ts)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	X509 *cert = SSL_CTX_get0_certificate(ts->ctx);
	size_t o = 0;

	ts->fingerprint[0] = '\0';
	if (!cert || X509_digest(cert, EVP_sha256(), md, &n) != 1)
		return;
	for (unsigned int i = 0; i < n && o + 4 < sizeof(ts->fingerprint); i++)
		o += (size_t)snprintf(ts->fingerprint + o, sizeof(ts->fingerprint) - o, "%s%02X",
				      i ? ":" : "", md[i]);
}

struct tls_server *tls_server_new(const struct moat_listener_conf *lc, char *err, size_t errlen)
{
	struct tls_server *ts = calloc(1, sizeof(*ts));
	const char *key = lc->tls_key_file && *lc->tls_key_file ? lc->tls_key_file
							       : lc->tls_cert_file;
	if (!ts) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ts->refs = 1;
	ts->ctx = server_ctx(lc, lc->tls_cert_file, key, err, errlen);
	if (!ts->ctx)
		goto fail;
	if (lc->tls_sni_chain_files.n) {
		ts->sni = calloc(lc->tls_sni_chain_files.n, sizeof(*ts->sni));
		if (!ts->sni) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		for (size_t i = 0; i < lc->tls_sni_chain_files.n; i++) {
			const char *f = lc->tls_sni_chain_files.v[i];
			if (!(ts->sni[i] = server_ctx(lc, f, f, err, errlen)))
				goto fail;
			ts->nsni = i + 1;
		}
		SSL_CTX_set_tlsext_servername_callback(ts->ctx, sni_cb);
		SSL_CTX_set_tlsext_servername_arg(ts->ctx, ts);
	}
	set_fingerprint(ts);
	return ts;
fail:
	tls_server_unref(ts);
	return NULL;
}

struct tls_server *tls_server_ref(struct tls_server *ts)
{
	if (ts)
		ts->refs++;
	return ts;
}

void tls_server_unref(struct tls_server *ts)
{
	if (!ts || --ts->refs > 0)
		return;
	for (size_t i = 0; i < ts->nsni; i++)
		SSL_CTX_free(ts->sni[i]);
	free(ts->sni);
	SSL_CTX_free(ts->ctx);
	free(ts);
}

SSL *tls_server_ssl_new(struct tls_server *ts)
{
	return ts ? SSL_new(ts->ctx) : NULL;
}

const char *tls_server_fingerprint(const struct tls_server *ts)
{
	return ts->fingerprint;
}

SSL_CTX *tls_client_ctx_new(const struct moat_listener_conf *lc, char *err, size_t errlen)
{
	char why[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	ERR_clear_error();
	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context: %s", ssl_reason(why, sizeof(why)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (lc->upstream_tls_verify_id != MOAT_TLS_VERIFY_NONE) {
		const char *ca = lc->upstream_tls_ca_file;
		int ok = ca && *ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL)
				   : SSL_CTX_set_default_verify_paths(ctx);
		if (ok != 1) {
			snprintf(err, errlen, "%s: cannot read the CA certificates: %s",
				 ca && *ca ? ca : "the system's CA store", ssl_reason(why, sizeof(why)));
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	return ctx;
}

static int is_ip_literal(const char *s)
{
	unsigned char a[16];
	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

SSL *tls_client_ssl_new(SSL_CTX *ctx, enum moat_tls_level level, enum moat_tls_verify verify,
			const char *name)
{
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		return NULL;
	int ip = name && is_ip_literal(name);
	if (name && *name && !ip)
		SSL_set_tlsext_host_name(ssl, name);
	if (level == MOAT_TLS_ENCRYPT && verify != MOAT_TLS_VERIFY_NONE) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		if (verify == MOAT_TLS_VERIFY_HOSTNAME && name && *name) {
			int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
				    : SSL_set1_host(ssl, name);
			SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (ok != 1) {
				SSL_free(ssl);
				return NULL;
			}
		}
	}
	return ssl;
}

const char *tls_upstream_name(const struct moat_listener_conf *lc, char *buf, size_t len)
{
	const char *u = lc->upstream ? lc->upstream : "";
	const char *end;

	if (lc->upstream_tls_name && *lc->upstream_tls_name) {
		snprintf(buf, len, "%s", lc->upstream_tls_name);
		return buf;
	}
	if (*u == '[' && (end = strchr(u, ']')) != NULL)
		snprintf(buf, len, "%.*s", (int)(end - u - 1), u + 1);
	else if ((end = strrchr(u, ':')) != NULL)
		snprintf(buf, len, "%.*s", (int)(end - u), u);
	else
		snprintf(buf, len, "%s", u);
	return buf;
}

/* Printable ASCII only: what a log line and a filter may safely show. */
static void printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f || *s == '"')
			*s = '?';
}

void tls_info_get(SSL *ssl, struct tls_info *out)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	memset(out, 0, sizeof(*out));
	snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(ssl));
	if (c) {
		snprintf(out->cipher, sizeof(out->cipher), "%s", SSL_CIPHER_get_name(c));
		out->bits = SSL_CIPHER_get_bits(c, NULL);
	}
	X509 *peer = SSL_get1_peer_certificate(ssl);
	if (peer) {
		BIO *b = BIO_new(BIO_s_mem());
		if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
			int n = BIO_read(b, out->peer_subject, (int)sizeof(out->peer_subject) - 1);
			out->peer_subject[n > 0 ? n : 0] = '\0';
		}
		BIO_free(b);
		X509_free(peer);
	}
	printable(out->version);
	printable(out->cipher);
	printable(out->peer_subject);
}

const char *tls_error_text(SSL *ssl, unsigned long err, char *buf, size_t len)
{
	if (ssl && !SSL_is_server(ssl) && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)) {
		long v = SSL_get_verify_result(ssl);
		if (v != X509_V_OK) {
			snprintf(buf, len, "certificate verification failed: %s",
				 X509_verify_cert_error_string(v));
			ERR_clear_error();
			return buf;
		}
	}
	if (!err)
		err = ERR_get_error();
	const char *r = err ? ERR_reason_error_string(err) : NULL;
	if (r)
		snprintf(buf, len, "%s", r);
	else if (err)
		ERR_error_string_n(err, buf, len);
	else
		snprintf(buf, len, "connection closed during the handshake");
	ERR_clear_error();
	return buf;
}
