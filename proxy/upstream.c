/*
 * upstream.c - the SMTP client side of the proxy: connect, greet, EHLO,
 * STARTTLS, XCLIENT, commands, and the message with dot-stuffing.
 *
 * The order of the opening is connect, [PROXY header, for upstreams
 * without XCLIENT], 220, EHLO, [STARTTLS, handshake,
 * EHLO], [XCLIENT, 220, EHLO]: TLS first, because STARTTLS resets the
 * SMTP session (RFC 3207) and XCLIENT's attributes must hold for the
 * session moat then uses. Whatever the upstream sent after its 220 to
 * STARTTLS and before the handshake is discarded (and logged): it cannot
 * be a reply to anything (CVE-2011-0411 class). With upstream_tls = may a
 * failed handshake is retried once on a new connection without TLS.
 *
 * A small state machine over one bufferevent. Replies are parsed by
 * smtp_reply.c; the message is read back from the msg_spool in chunks and
 * dot-stuffed by smtp_data_stuff() as the socket drains, so a large
 * message never sits in memory twice. Owns its bufferevent, parser and
 * copies of the connection parameters.
 */
#include "upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "msg_spool.h"
#include "proxy_proto.h"
#include "smtp_data.h"
#include "tls.h"
#include "xtext.h"

enum phase {
	P_IDLE,		/* created, not connected */
	P_CONNECT,	/* TCP connect and greeting */
	P_EHLO,
	P_HELO,		/* EHLO refused: fallback */
	P_STARTTLS,	/* waiting for 220 to STARTTLS */
	P_HANDSHAKE,	/* TLS handshake */
	P_XCLIENT,
	P_EHLO2,
	P_READY,
	P_COMMAND,
	P_DATA,		/* waiting for 354 */
	P_BODY,		/* streaming the message */
	P_FINAL,	/* waiting for the final reply */
	P_QUIT,
	P_DEAD,
};

#define STREAM_CHUNK 65536
#define OUT_HIGH (256 * 1024)

struct upstream {
	struct event_base *base;
	struct upstream_params p;
	struct bufferevent *bev;
	enum phase phase;
	struct smtp_reply_parser parser;
	struct smtp_caps caps;
	upstream_cb cb;
	void *arg;
	int busy;		/* inside one of our libevent callbacks */
	int doomed;		/* upstream_close() was called meanwhile */
	int tls;		/* the handshake completed */
	int plain_retry;	/* upstream_tls = may: TLS failed, this try is plain */
	char tls_desc[128];
	char error[300];
	/* message streaming */
	const char *head;
	size_t head_len, head_off;
	const struct msg_spool *msg;
	size_t msg_off;
	int line_start;
	/* Once connected (plain TCP), commands are written by flush_cb()
	 * at the end of the loop pass that queued them; EV_WRITE is on only
	 * while the socket cannot take them all. */
	struct event *flush_ev;
	int direct;
};

static const char *const status_text[] = {
	[UPSTREAM_OK] = "ok",
	[UPSTREAM_ECONNECT] = "connection failed",
	[UPSTREAM_EGREETING] = "greeting or EHLO refused",
	[UPSTREAM_EXCLIENT] = "XCLIENT not offered or refused",
	[UPSTREAM_ETIMEOUT] = "timed out",
	[UPSTREAM_ECLOSED] = "connection closed",
	[UPSTREAM_EPROTO] = "protocol error",
	[UPSTREAM_ESPOOL] = "message spool read error",
	[UPSTREAM_ETLS] = "TLS required but not available",
};

const char *upstream_status_text(enum upstream_status st)
{
	return (size_t)st < sizeof(status_text) / sizeof(status_text[0]) ? status_text[st] : "?";
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

struct upstream *upstream_new(struct event_base *base, const struct upstream_params *p)
{
	struct upstream *up = calloc(1, sizeof(*up));
	if (!up)
		return NULL;
	up->base = base;
	up->p = *p;
	up->p.ehlo_name = dup_or_null(p->ehlo_name);
	up->p.client_addr = dup_or_null(p->client_addr);
	up->p.client_name = dup_or_null(p->client_name);
	up->p.client_helo = dup_or_null(p->client_helo);
	up->p.client_login = dup_or_null(p->client_login);
	up->p.tls_name = dup_or_null(p->tls_name);
	if (up->p.tls_ctx)
		SSL_CTX_up_ref(up->p.tls_ctx);
	smtp_reply_parser_init(&up->parser);
	up->phase = P_IDLE;
	return up;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void go_direct(struct upstream *up);

static void destroy(struct upstream *up)
{
	if (up->bev && up->tls)
		SSL_shutdown(bufferevent_openssl_get_ssl(up->bev));	/* close_notify */
	if (up->bev)
		bufferevent_free(up->bev);
	if (up->flush_ev)
		event_free(up->flush_ev);
	smtp_reply_parser_free(&up->parser);
	free((char *)up->p.ehlo_name);
	free((char *)up->p.client_addr);
	free((char *)up->p.client_name);
	free((char *)up->p.client_helo);
	free((char *)up->p.client_login);
	free((char *)up->p.tls_name);
	SSL_CTX_free(up->p.tls_ctx);
	free(up);
}

static void quit_or_destroy(struct upstream *up);

/* Callbacks into the session may call upstream_close(); the object is
 * only released once control is back at the outermost entry point. */
static void enter(struct upstream *up)
{
	up->busy++;
}

/* Returns 1 if up was released. */
static int leave(struct upstream *up)
{
	if (--up->busy == 0 && up->doomed) {
		up->doomed = 0;
		quit_or_destroy(up);
		return 1;
	}
	return 0;
}

static void set_timeout(struct upstream *up, long sec)
{
	struct timeval tv = {sec, 0};
	bufferevent_set_timeouts(up->bev, &tv, &tv);
}

/* Ends the outstanding operation. */
static void complete(struct upstream *up, enum upstream_status st,
		     const struct smtp_reply *reply)
{
	upstream_cb cb = up->cb;
	void *arg = up->arg;
	up->cb = NULL;
	up->arg = NULL;
	if (st != UPSTREAM_OK && up->phase != P_QUIT) {
		up->phase = P_DEAD;
		moat_metrics_add(MOAT_M_UPSTREAM_ERRORS, upstream_status_text(st), NULL, 1);
	}
	if (cb)
		cb(arg, st, reply);
}

static void fail(struct upstream *up, enum upstream_status st)
{
	up->phase = P_DEAD;
	if (up->bev) {
		bufferevent_disable(up->bev, EV_READ | EV_WRITE);
	}
	complete(up, st, NULL);
}

static void set_error(struct upstream *up, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_error(struct upstream *up, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(up->error, sizeof(up->error), fmt, ap);
	va_end(ap);
}

static void send_line(struct upstream *up, const char *line)
{
	evbuffer_add_printf(bufferevent_get_output(up->bev), "%s\r\n", line);
}

/* The EHLO after XCLIENT carries the client's own HELO name, so the
 * upstream records what the client said (the XCLIENT HELO attribute is
 * overwritten by any later EHLO). A name unfit for a command argument is
 * replaced by ours. */
static const char *ehlo_arg(const struct upstream *up, enum phase next)
{
	const char *h = up->p.client_helo;
	if (next != P_EHLO2 || !h || !*h || strlen(h) > 255)
		return up->p.ehlo_name;
	for (const char *c = h; *c; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
			return up->p.ehlo_name;
	return h;
}

static void send_ehlo(struct upstream *up, enum phase next)
{
	char line[300];
	snprintf(line, sizeof(line), "%s %s", next == P_HELO ? "HELO" : "EHLO",
		 ehlo_arg(up, next));
	up->phase = next;
	send_line(up, line);
}

/* A HELO name is forwarded only if it is plain enough to be a command
 * argument; xtext takes care of it inside XCLIENT anyway. */
static void send_xclient(struct upstream *up)
{
	char line[1024], enc[600];
	size_t off;
	unsigned want = up->caps.xclient;

	off = (size_t)snprintf(line, sizeof(line), "XCLIENT");
	if (want & SMTP_XCLIENT_NAME)
		off += (size_t)snprintf(line + off, sizeof(line) - off, " NAME=%s",
					up->p.client_name ? up->p.client_name : "[UNAVAILABLE]");
	if (want & SMTP_XCLIENT_ADDR) {
		int v6 = strchr(up->p.client_addr, ':') != NULL;
		xtext_encode(up->p.client_addr, strlen(up->p.client_addr), enc, sizeof(enc));
		off += (size_t)snprintf(line + off, sizeof(line) - off, " ADDR=%s%s",
					v6 ? "IPV6:" : "", enc);
	}
	if (want & SMTP_XCLIENT_PORT)
		off += (size_t)snprintf(line + off, sizeof(line) - off, " PORT=%d",
					up->p.client_port);
	if (want & SMTP_XCLIENT_PROTO)
		off += (size_t)snprintf(line + off, sizeof(line) - off, " PROTO=%s",
					up->p.client_esmtp ? "ESMTP" : "SMTP");
	if (want & SMTP_XCLIENT_HELO) {
		if (up->p.client_helo) {
			xtext_encode(up->p.client_helo, strlen(up->p.client_helo), enc, sizeof(enc));
			if (strlen(enc) + 6 >= sizeof(line) - off - 1)
				snprintf(enc, sizeof(enc), "[UNAVAILABLE]");
		} else {
			snprintf(enc, sizeof(enc), "[UNAVAILABLE]");
		}
		off += (size_t)snprintf(line + off, sizeof(line) - off, " HELO=%s", enc);
	}
	if ((want & SMTP_XCLIENT_LOGIN) && up->p.client_login && *up->p.client_login &&
	    strlen(up->p.client_login) < 256) {
		/* all of it or nothing: a cut name would be someone else's */
		size_t el = xtext_encode(up->p.client_login, strlen(up->p.client_login), enc,
					 sizeof(enc));
		if (el < sizeof(enc) && off < sizeof(line) && el + 7 < sizeof(line) - off)
			off += (size_t)snprintf(line + off, sizeof(line) - off, " LOGIN=%s", enc);
	}
	(void)off;
	up->phase = P_XCLIENT;
	send_line(up, line);
}

static void stream_more(struct upstream *up);
static void start_tls(struct upstream *up);

static int want_tls(const struct upstream *up)
{
	return !up->tls && !up->plain_retry && up->p.tls_level != MOAT_TLS_NONE;
}

/* After the last EHLO before XCLIENT (the first, or the one after TLS). */
static void after_ehlo(struct upstream *up, const struct smtp_reply *r)
{
	if (up->p.xclient) {
		/* Without ADDR, XCLIENT cannot say who the client is. */
		if (!(up->caps.ext & SMTP_EXT_XCLIENT) ||
		    !(up->caps.xclient & SMTP_XCLIENT_ADDR)) {
			up->phase = P_DEAD;
			complete(up, UPSTREAM_EXCLIENT, r);
			return;
		}
		send_xclient(up);
		return;
	}
	up->phase = P_READY;
	complete(up, UPSTREAM_OK, r);
}

static void on_reply(struct upstream *up, struct smtp_reply *r)
{
	switch (up->phase) {
	case P_CONNECT:
		if (r->code != 220) {
			up->phase = P_DEAD;
			complete(up, UPSTREAM_EGREETING, r);
			return;
		}
		set_timeout(up, up->p.timeout);
		go_direct(up);
		send_ehlo(up, P_EHLO);
		return;
	case P_EHLO:
	case P_EHLO2:
		if (r->code / 100 != 2) {
			if (up->phase == P_EHLO && r->code / 100 == 5) {
				send_ehlo(up, P_HELO);	/* an SMTP-only server */
				return;
			}
			up->phase = P_DEAD;
			complete(up, UPSTREAM_EGREETING, r);
			return;
		}
		if (up->phase == P_EHLO2) {
			/* After XCLIENT the upstream speaks to "the client" and
			 * may no longer offer XCLIENT; remember that it did. */
			struct smtp_caps first = up->caps;
			smtp_caps_parse(r, &up->caps);
			up->caps.ext |= first.ext & SMTP_EXT_XCLIENT;
			up->caps.xclient = first.xclient;
		} else {
			smtp_caps_parse(r, &up->caps);
		}
		if (up->phase == P_EHLO && want_tls(up)) {
			if (up->caps.ext & SMTP_EXT_STARTTLS) {
				up->phase = P_STARTTLS;
				send_line(up, "STARTTLS");
				return;
			}
			if (up->p.tls_level == MOAT_TLS_ENCRYPT) {
				set_error(up, "does not offer STARTTLS");
				up->phase = P_DEAD;
				complete(up, UPSTREAM_ETLS, r);
				return;
			}
		}
		if (up->phase == P_EHLO) {
			after_ehlo(up, r);
			return;
		}
		up->phase = P_READY;
		complete(up, UPSTREAM_OK, r);
		return;
	case P_HELO:
		if (r->code / 100 != 2) {
			up->phase = P_DEAD;
			complete(up, UPSTREAM_EGREETING, r);
			return;
		}
		memset(&up->caps, 0, sizeof(up->caps));
		if (up->p.tls_level == MOAT_TLS_ENCRYPT && !up->tls) {
			set_error(up, "refused EHLO, so it offers no STARTTLS");
			up->phase = P_DEAD;
			complete(up, UPSTREAM_ETLS, r);
			return;
		}
		if (up->p.xclient) {
			up->phase = P_DEAD;
			complete(up, UPSTREAM_EXCLIENT, r);
			return;
		}
		up->phase = P_READY;
		complete(up, UPSTREAM_OK, r);
		return;
	case P_STARTTLS:
		if (r->code == 220) {
			start_tls(up);
			return;
		}
		if (up->p.tls_level == MOAT_TLS_ENCRYPT) {
			set_error(up, "refused STARTTLS with %d", r->code);
			up->phase = P_DEAD;
			complete(up, UPSTREAM_ETLS, r);
			return;
		}
		/* may: go on in plain text on this connection */
		up->plain_retry = 1;
		after_ehlo(up, r);
		return;
	case P_XCLIENT:
		/* Postfix answers 220 (a new greeting); accept any 2xx. */
		if (r->code / 100 != 2) {
			up->phase = P_DEAD;
			complete(up, UPSTREAM_EXCLIENT, r);
			return;
		}
		send_ehlo(up, P_EHLO2);
		return;
	case P_COMMAND:
		up->phase = r->code == 421 ? P_DEAD : P_READY;
		complete(up, UPSTREAM_OK, r);
		return;
	case P_DATA:
		if (r->code / 100 == 2 || (r->code / 100 == 3 && r->code != 354)) {
			/* "250" to DATA: no message went up; never pass that
			 * on as the final reply */
			moat_log(LOG_WARNING, "upstream answered DATA with %d, not 354", r->code);
			up->phase = P_DEAD;
			complete(up, UPSTREAM_EPROTO, r);
			return;
		}
		if (r->code != 354) {
			up->phase = r->code == 421 ? P_DEAD : P_READY;
			complete(up, UPSTREAM_OK, r);
			return;
		}
		up->phase = P_BODY;
		up->head_off = 0;
		up->line_start = 1;
		set_timeout(up, up->p.data_timeout);
		stream_more(up);
		return;
	case P_BODY:
		/* A reply before we finished sending: the upstream gave up. Only
		 * a refusal may reach the client; a 2xx for half a message is a
		 * protocol error (451). */
		up->phase = P_DEAD;
		complete(up, r->code >= 400 ? UPSTREAM_OK : UPSTREAM_EPROTO, r);
		return;
	case P_FINAL:
		up->phase = r->code == 421 ? P_DEAD : P_READY;
		set_timeout(up, up->p.timeout);
		complete(up, UPSTREAM_OK, r);
		return;
	case P_READY:
		/* Unsolicited (e.g. 421 on the upstream's idle timeout). */
		moat_log(LOG_INFO, "upstream said while idle: %d", r->code);
		up->phase = P_DEAD;
		bufferevent_disable(up->bev, EV_READ | EV_WRITE);
		return;
	default:
		return;
	}
}

static void read_lines(struct upstream *up, struct bufferevent *bev);

static void out_added_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct upstream *up = arg;
	(void)buf;
	if (info->n_added && up->direct)
		event_active(up->flush_ev, EV_TIMEOUT, 0);
}

/* After the greeting of a plain connection (nothing left to send from
 * the connect: the PROXY header went with it): direct writes. */
static void go_direct(struct upstream *up)
{
	struct evbuffer *out = bufferevent_get_output(up->bev);
	if (up->direct || up->tls || evbuffer_get_length(out) > 0)
		return;
	if (!up->flush_ev && !(up->flush_ev = event_new(up->base, -1, 0, flush_cb, up)))
		return;
	up->direct = 1;
	evbuffer_add_cb(out, out_added_cb, up);
	bufferevent_disable(up->bev, EV_WRITE);	/* not pending: no syscall */
}

static void write_cb(struct bufferevent *bev, void *arg);

/* Writes the queued output to the socket now. What the socket does not
 * take (or an error) is left to libevent, as without direct writes; a
 * drained buffer goes on as libevent's write callback would. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *up = arg;
	struct evbuffer *out;
	(void)fd;
	(void)what;
	if (!up->direct || !up->bev || up->phase == P_DEAD)
		return;
	out = bufferevent_get_output(up->bev);
	if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(up->bev) & EV_WRITE))
		return;
	/* libevent keeps the start of a socket bufferevent's output frozen
	 * except while it writes itself: so do we */
	evbuffer_unfreeze(out, 1);
	evbuffer_write(out, bufferevent_getfd(up->bev));
	evbuffer_freeze(out, 1);
	if (evbuffer_get_length(out) > 0) {
		bufferevent_enable(up->bev, EV_WRITE);
		return;
	}
	write_cb(up->bev, up);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct upstream *up = arg;
	if (up->phase == P_QUIT && !up->busy) {
		/* any reply to QUIT ends it */
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
			destroy(up);
		return;
	}
	enter(up);
	read_lines(up, bev);
	leave(up);
}

static void read_lines(struct upstream *up, struct bufferevent *bev)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while (up->phase != P_DEAD && up->phase != P_HANDSHAKE && !up->doomed &&
	       (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		int rc = smtp_reply_feed(&up->parser, line, len);
		free(line);
		if (rc < 0) {
			moat_log(LOG_WARNING, "upstream sent a malformed reply");
			fail(up, UPSTREAM_EPROTO);
			return;
		}
		if (rc == 1) {
			struct smtp_reply r;
			smtp_reply_parser_take(&up->parser, &r);
			on_reply(up, &r);
			smtp_reply_clear(&r);
		}
	}
	if (up->phase != P_DEAD && up->phase != P_HANDSHAKE &&
	    evbuffer_get_length(in) > 2 * SMTP_REPLY_MAX_LINE) {
		moat_log(LOG_WARNING, "upstream sent an over-long reply line");
		fail(up, UPSTREAM_EPROTO);
	}
}

static int stuff_out(void *arg, const char *buf, size_t len)
{
	return evbuffer_add(arg, buf, len);
}

/* Fills the output buffer with the next part of the message. */
static void stream_more(struct upstream *up)
{
	struct evbuffer *out = bufferevent_get_output(up->bev);
	char chunk[STREAM_CHUNK];

	if (up->phase == P_BODY && up->head_off < up->head_len) {
		smtp_data_stuff(&up->line_start, up->head + up->head_off,
				up->head_len - up->head_off, stuff_out, out);
		up->head_off = up->head_len;
	}
	while (up->phase == P_BODY && evbuffer_get_length(out) < OUT_HIGH) {
		ssize_t n = msg_spool_read(up->msg, up->msg_off, chunk, sizeof(chunk));
		if (n < 0) {
			moat_log(LOG_ERR, "cannot read spooled message: %s", strerror(errno));
			fail(up, UPSTREAM_ESPOOL);
			return;
		}
		if (n == 0) {
			smtp_data_stuff_end(up->line_start, stuff_out, out);
			up->phase = P_FINAL;
			return;
		}
		smtp_data_stuff(&up->line_start, chunk, (size_t)n, stuff_out, out);
		up->msg_off += (size_t)n;
	}
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct upstream *up = arg;
	if (up->direct && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);	/* not pending: no syscall */
	if (up->phase == P_BODY) {
		enter(up);
		stream_more(up);
		leave(up);
	}
}

static void handle_event(struct upstream *up, short what);

static void tls_done(struct upstream *up);

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct upstream *up = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		if (up->phase == P_HANDSHAKE) {
			enter(up);
			tls_done(up);
			leave(up);
		}
		return;
	}
	if (up->phase == P_QUIT) {
		destroy(up);
		return;
	}
	enter(up);
	handle_event(up, what);
	leave(up);
}

static int connect_now(struct upstream *up);

static void handle_event(struct upstream *up, short what)
{
	if (what & BEV_EVENT_TIMEOUT) {
		if (up->phase == P_HANDSHAKE)
			set_error(up, "TLS handshake timed out");
		fail(up, UPSTREAM_ETIMEOUT);
		return;
	}
	if (up->phase == P_HANDSHAKE) {
		char why[256];
		unsigned long e = bufferevent_get_openssl_error(up->bev);
		tls_error_text(bufferevent_openssl_get_ssl(up->bev), e, why, sizeof(why));
		while (bufferevent_get_openssl_error(up->bev))
			;
		if (up->p.tls_level == MOAT_TLS_MAY) {
			moat_log(LOG_NOTICE, "upstream: TLS handshake failed (%s); upstream_tls = may: "
				 "trying again without TLS", why);
			up->direct = 0;
			bufferevent_free(up->bev);
			up->bev = NULL;
			up->plain_retry = 1;
			memset(&up->caps, 0, sizeof(up->caps));
			smtp_reply_parser_free(&up->parser);
			smtp_reply_parser_init(&up->parser);
			if (connect_now(up) < 0)
				fail(up, UPSTREAM_ECONNECT);
			return;
		}
		set_error(up, "TLS handshake failed: %s", why);
		fail(up, UPSTREAM_ETLS);
		return;
	}
	if (up->phase == P_CONNECT && !(what & BEV_EVENT_EOF) &&
	    evbuffer_get_length(bufferevent_get_input(up->bev)) == 0) {
		fail(up, UPSTREAM_ECONNECT);
		return;
	}
	fail(up, (what & BEV_EVENT_EOF) ? UPSTREAM_ECLOSED :
		 up->phase == P_CONNECT ? UPSTREAM_ECONNECT : UPSTREAM_ECLOSED);
}

/* After 220 to STARTTLS: drop whatever else the upstream sent, then
 * the handshake on the socket (a duplicate of it: the plain bufferevent
 * closes its own). OpenSSL reads and writes the socket itself, so no
 * callback runs inside a write. */
static void start_tls(struct upstream *up)
{
	struct evbuffer *in = bufferevent_get_input(up->bev);
	size_t junk = evbuffer_get_length(in);
	struct bufferevent *tb;
	evutil_socket_t fd;
	SSL *ssl;

	if (junk) {
		moat_log(LOG_WARNING, "upstream sent %zu octets after its 220 to STARTTLS, before "
			 "the TLS handshake; discarded", junk);
		evbuffer_drain(in, junk);
	}
	smtp_reply_parser_free(&up->parser);
	smtp_reply_parser_init(&up->parser);
	ssl = up->p.tls_ctx ? tls_client_ssl_new(up->p.tls_ctx, up->p.tls_level, up->p.tls_verify,
						 up->p.tls_name) : NULL;
	if (!ssl) {
		set_error(up, "cannot set up TLS (no context or out of memory)");
		fail(up, UPSTREAM_ETLS);
		return;
	}
	fd = fcntl(bufferevent_getfd(up->bev), F_DUPFD_CLOEXEC, 0);
	up->direct = 0;
	bufferevent_free(up->bev);
	up->bev = NULL;
	if (fd < 0) {
		SSL_free(ssl);
		set_error(up, "cannot set up TLS: %s", strerror(errno));
		fail(up, UPSTREAM_ETLS);
		return;
	}
	tb = bufferevent_openssl_socket_new(up->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
					    BEV_OPT_CLOSE_ON_FREE);
	if (!tb) {
		/* Out of memory. libevent freed ssl (CLOSE_ON_FREE) and may
		 * have closed fd: leaking it beats closing it twice. */
		set_error(up, "cannot set up TLS (out of memory)");
		fail(up, UPSTREAM_ETLS);
		return;
	}
	up->bev = tb;
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	bufferevent_setcb(tb, read_cb, write_cb, event_cb, up);
	bufferevent_setwatermark(tb, EV_WRITE, OUT_HIGH / 2, 0);
	set_timeout(up, up->p.timeout);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	up->phase = P_HANDSHAKE;
}

/* The handshake is done: what was learned before is forgotten (RFC
 * 3207 4.2), EHLO again. */
static void tls_done(struct upstream *up)
{
	struct tls_info ti;
	tls_info_get(bufferevent_openssl_get_ssl(up->bev), &ti);
	snprintf(up->tls_desc, sizeof(up->tls_desc), "%s %s %d", ti.version, ti.cipher, ti.bits);
	up->tls = 1;
	memset(&up->caps, 0, sizeof(up->caps));
	send_ehlo(up, P_EHLO);
}

/* Queues the PROXY protocol header, the first bytes the upstream gets
 * (sent once the connection is up). The capability probe has no client:
 * its header names this connection's own ends. */
static int send_proxy_header(struct upstream *up, int fd)
{
	unsigned char hdr[PROXY_HDR_MAX];
	struct sockaddr_storage src = up->p.proxy_src, dst = up->p.proxy_dst;
	if (src.ss_family == 0) {
		socklen_t len = sizeof(src);
		if (getsockname(fd, (struct sockaddr *)&src, &len) < 0)
			return -1;
		memcpy(&dst, &up->p.addr.ss, sizeof(dst));
	}
	size_t n = proxy_proto_build(up->p.proxy_version, (struct sockaddr *)&src,
				     (struct sockaddr *)&dst, hdr, sizeof(hdr));
	return n ? bufferevent_write(up->bev, hdr, n) : -1;
}

/* Opens the TCP connection. Returns -1 on an immediate failure. */
static int connect_now(struct upstream *up)
{
	/* Our own socket, close-on-exec: the milter and SPF worker
	 * processes moatd starts must not inherit upstream connections. */
	int fd = socket(up->p.addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	up->bev = fd >= 0 ? bufferevent_socket_new(up->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!up->bev) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	bufferevent_setcb(up->bev, read_cb, write_cb, event_cb, up);
	bufferevent_setwatermark(up->bev, EV_WRITE, OUT_HIGH / 2, 0);
	set_timeout(up, up->p.connect_timeout);
	up->phase = P_CONNECT;
	if (bufferevent_socket_connect(up->bev, (struct sockaddr *)&up->p.addr.ss,
				       (int)up->p.addr.len) < 0 ||
	    (up->p.proxy_version && send_proxy_header(up, fd) < 0)) {
		bufferevent_free(up->bev);
		up->bev = NULL;
		return -1;
	}
	/* After the connect, which re-registers the socket: enabling
	 * before it costs four more epoll changes. */
	bufferevent_enable(up->bev, EV_READ | EV_WRITE);
	return 0;
}

void upstream_open(struct upstream *up, upstream_cb cb, void *arg)
{
	enter(up);
	up->cb = cb;
	up->arg = arg;
	/* Immediate failure (libevent reports refused connections later,
	 * through event_cb). The callback may thus run inside this call;
	 * callers resume through their own deferred event. */
	if (connect_now(up) < 0) {
		up->phase = P_DEAD;
		complete(up, UPSTREAM_ECONNECT, NULL);
	}
	leave(up);
}

void upstream_command(struct upstream *up, const char *line, upstream_cb cb, void *arg)
{
	up->cb = cb;
	up->arg = arg;
	up->phase = P_COMMAND;
	set_timeout(up, up->p.timeout);
	send_line(up, line);
}

void upstream_send_message(struct upstream *up, const char *head, size_t headlen,
			   const struct msg_spool *msg, size_t body_off,
			   upstream_cb cb, void *arg)
{
	up->cb = cb;
	up->arg = arg;
	up->head = head;
	up->head_len = headlen;
	up->msg = msg;
	up->msg_off = body_off;
	up->phase = P_DATA;
	set_timeout(up, up->p.timeout);
	send_line(up, "DATA");
}

const struct smtp_caps *upstream_caps(const struct upstream *up)
{
	return &up->caps;
}

const char *upstream_tls(const struct upstream *up)
{
	return up->tls ? up->tls_desc : NULL;
}

const char *upstream_error(const struct upstream *up)
{
	return up->error;
}

int upstream_ready(const struct upstream *up)
{
	return up && up->phase == P_READY;
}

void upstream_close(struct upstream *up)
{
	if (!up)
		return;
	up->cb = NULL;
	up->arg = NULL;
	if (up->busy) {
		up->doomed = 1;
		return;
	}
	quit_or_destroy(up);
}

static void quit_or_destroy(struct upstream *up)
{
	if (up->phase != P_READY || !up->bev) {
		destroy(up);
		return;
	}
	up->phase = P_QUIT;
	set_timeout(up, 10);
	send_line(up, "QUIT");
}
