/*
 * msglog.h - the one log line per message, "msg session=... result=...
 * score=... action=... symbols=... stages_ms=... [tls=... cipher=...
 * bits=... tls_peer="..."] [auth=...]", written the same way
 * by every front end (the proxy, the milter), so one parser reads both.
 *
 * Owns nothing: every field is borrowed for the call.
 */
#ifndef MOAT_MSGLOG_H
#define MOAT_MSGLOG_H

#include <stddef.h>

#include "filter.h"
#include "verdict.h"

struct moat_msglog {
	const char *session_id;
	const char *listener;
	const char *client_addr;
	const char *helo;		/* NULL: "-" */
	const char *mail_from;		/* NULL: "" */
	const char *const *rcpts;
	size_t nrcpts;
	size_t size;			/* octets of the message held */
	int code;			/* what the client was told: 2xx, 4xx, 5xx */
	const char *reply;		/* its text (one line; quotes are replaced) */
	size_t reply_len;
	const char *queue_id;		/* the MTA's queue id; NULL or "": "-" */
	struct moat_verdict *v;		/* the message's verdict (totalled here) */
	const double *stage_ms;		/* MOAT_STAGE__COUNT entries */
	double seconds;			/* since MAIL */
	/* the client's TLS and AUTH; NULL: left out of the line */
	const char *tls_version;
	const char *tls_cipher;
	int tls_bits;
	const char *tls_peer_subject;
	const char *auth_user;		/* "": authenticated, name unknown */
};

/* Writes the line at LOG_INFO. */
void moat_msglog(const struct moat_msglog *m);

#endif
