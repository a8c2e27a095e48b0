/*
 * tls.h - the proxy's TLS: server certificates of a listener (with SNI),
 * the client context towards its upstream, and the facts of a finished
 * handshake.
 *
 * A struct tls_server holds one listener's certificates, read when a
 * configuration is applied (start, SIGHUP); it is reference-counted so a
 * session that took it keeps using it after a reload replaced it. The
 * upstream context is a plain OpenSSL SSL_CTX (itself reference-counted).
 * Nothing here prints: errors come back as text naming the file.
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "config.h"

struct tls_server;

/* Reads lc's certificates and keys. Returns NULL with "FILE: reason" in
 * err. */
struct tls_server *tls_server_new(const struct moat_listener_conf *lc, char *err, size_t errlen);
struct tls_server *tls_server_ref(struct tls_server *ts);
void tls_server_unref(struct tls_server *ts);
/* A new server-side SSL for one client connection, or NULL. */
SSL *tls_server_ssl_new(struct tls_server *ts);
/* The SHA-256 fingerprint of the default certificate, for the log. */
const char *tls_server_fingerprint(const struct tls_server *ts);

/* The context moat connects to lc's upstream with (TLS 1.2 or later;
 * the CA store when upstream_tls_verify asks for it). NULL with err. */
SSL_CTX *tls_client_ctx_new(const struct moat_listener_conf *lc, char *err, size_t errlen);
/* A client SSL for one upstream connection: verification as the level
 * and verify mode ask, name for SNI and the host check. NULL if out of
 * memory. */
SSL *tls_client_ssl_new(SSL_CTX *ctx, enum moat_tls_level level, enum moat_tls_verify verify,
			const char *name);

/* The name moat expects the upstream's certificate to carry and sends
 * as SNI: upstream_tls_name, else the host part of upstream; in buf. */
const char *tls_upstream_name(const struct moat_listener_conf *lc, char *buf, size_t len);

/* What a finished handshake agreed on. */
struct tls_info {
	char version[16];	/* "TLSv1.3" */
	char cipher[64];
	int bits;
	char peer_subject[256];	/* "" without a peer certificate */
};

void tls_info_get(SSL *ssl, struct tls_info *out);

/* The reason the last TLS operation on ssl failed (the verify result,
 * else OpenSSL's error queue, which is cleared), in buf. */
const char *tls_error_text(SSL *ssl, unsigned long err, char *buf, size_t len);

#endif
