/*
 * upstream.h - moat's SMTP client towards the upstream MTA.
 *
 * One struct upstream is one SMTP connection: opened (greeting, EHLO,
 * STARTTLS and EHLO again when asked to, XCLIENT and EHLO again) when a
 * session's first MAIL (or AUTH) arrives, then used
 * for every transaction of that session. Each operation completes
 * through a callback on the loop; exactly one operation is outstanding
 * at a time. The session owns the upstream; upstream_close() hands it
 * over to a polite QUIT after which it frees itself.
 */
#ifndef MOAT_UPSTREAM_H
#define MOAT_UPSTREAM_H

#include <sys/socket.h>

#include "addr.h"
#include "config.h"
#include "smtp_reply.h"

struct event_base;
struct msg_spool;
struct upstream;
struct ssl_ctx_st;

enum upstream_status {
	UPSTREAM_OK = 0,	/* a reply arrived (any code): see reply */
	UPSTREAM_ECONNECT,	/* TCP connection failed */
	UPSTREAM_EGREETING,	/* greeting or EHLO/HELO not accepted (reply set) */
	UPSTREAM_EXCLIENT,	/* XCLIENT wanted but not offered or refused */
	UPSTREAM_ETIMEOUT,	/* no reply in time */
	UPSTREAM_ECLOSED,	/* the upstream closed the connection */
	UPSTREAM_EPROTO,	/* malformed reply */
	UPSTREAM_ESPOOL,	/* the held message could not be read */
	UPSTREAM_ETLS,		/* upstream_tls = encrypt and no TLS: see upstream_error() */
};

const char *upstream_status_text(enum upstream_status st);

/* reply is NULL unless the status comes with one; it is borrowed for
 * the duration of the callback. */
typedef void (*upstream_cb)(void *arg, enum upstream_status st,
			    const struct smtp_reply *reply);

struct upstream_params {
	struct moat_addr addr;
	const char *ehlo_name;		/* our name in EHLO */
	long connect_timeout, timeout, data_timeout;
	int xclient;			/* send XCLIENT (required) */
	/* the real client, for XCLIENT */
	const char *client_addr;	/* numeric */
	int client_port;
	const char *client_name;	/* "[UNAVAILABLE]" */
	const char *client_helo;	/* NULL if none */
	int client_esmtp;		/* PROTO=ESMTP or SMTP */
	const char *client_login;	/* XCLIENT LOGIN after AUTH, or NULL */
	/* STARTTLS towards the upstream */
	enum moat_tls_level tls_level;
	enum moat_tls_verify tls_verify;
	struct ssl_ctx_st *tls_ctx;	/* NULL: no TLS (a reference is taken) */
	const char *tls_name;		/* SNI and the name verified */
	/* PROXY protocol header first (upstream_proxy_protocol): 0, 1 or 2;
	 * from proxy_src to proxy_dst, or, with proxy_src unset (family 0),
	 * this connection's own addresses (the capability probe) */
	int proxy_version;
	struct sockaddr_storage proxy_src, proxy_dst;
};

/* The params' strings are copied. */
struct upstream *upstream_new(struct event_base *base, const struct upstream_params *p);

/* Connects and greets. On UPSTREAM_OK the connection is ready and
 * upstream_caps() tells what it offers; reply is the final EHLO reply. */
void upstream_open(struct upstream *up, upstream_cb cb, void *arg);

/* Sends one command line (without CRLF) and waits for its reply. */
void upstream_command(struct upstream *up, const char *line, upstream_cb cb, void *arg);

/* Sends DATA; on 354 streams the message dot-stuffed (head, then msg
 * from body_off on) and reports the final reply; any other reply to DATA
 * is reported as is. head and msg stay the caller's and must live until
 * cb runs. */
void upstream_send_message(struct upstream *up, const char *head, size_t headlen,
			   const struct msg_spool *msg, size_t body_off,
			   upstream_cb cb, void *arg);

const struct smtp_caps *upstream_caps(const struct upstream *up);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384 256" once TLS is up, else NULL. */
const char *upstream_tls(const struct upstream *up);
/* Why the connection failed (UPSTREAM_ETLS: "does not offer STARTTLS",
 * "TLS handshake failed: ..."), or "". */
const char *upstream_error(const struct upstream *up);
int upstream_ready(const struct upstream *up);	/* open, idle, healthy */

/* Drops any pending callback; sends QUIT when the connection is usable
 * and frees itself afterwards. The caller must forget up. */
void upstream_close(struct upstream *up);

#endif
